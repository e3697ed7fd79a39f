//! The real daemon (this build, SoftHSM token, the Azure emulator over real TLS) on a state of
//! 1,000,000 keys in 200,000 groups (issue #17): time from spawn to `READY=1` with the HSM
//! start-up it logs itself taken out, RSS after start-up, CPU over an idle window, bytes per
//! key, and a `byokctl backup create` of that state while a sync job pushes to the emulator: the
//! backup's time and the sync's slowdown against the same sync without a backup, run just
//! before.
//!
//! `cargo bench --bench footprint_1m` (env `BENCH_KEYS`, default 1000000, five a group;
//! `BENCH_IDLE_SECS`, default 30; `BENCH_SYNC_KEYS`, default 8; `BENCH_RTT_MS`, default 200;
//! `BENCH_ROUNDS` of sync alone / sync during a backup, default 3, medians reported).
//! Prints a table and writes `bench/results-footprint-1m.json`. No timed assertion anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/machine.rs"]
mod machine;
#[path = "../tests/control_rig/mod.rs"]
mod rig;
#[path = "support/seed.rs"]
#[allow(dead_code)]
mod seed;
#[path = "support/startup.rs"]
mod startup;

use machine::machine;

use rig::{ADMIN, Daemon, OPERATOR};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "3d0c6f4e-9b2a-4c1d-8e7f-5a6b7c8d9e0f";
const SECRET: &str = "Foot~print.Bench-1M-0017";
const VAULT: &str = "byokd-footprint";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn total_keys() -> usize {
    env_num("BENCH_KEYS", 1_000_000) as usize
}

fn seed_state(dir: &Path) {
    seed::seed(dir, TENANT, CLIENT, seed::Seed::five_a_group(total_keys()));
}

/// `field=` of the daemon's start-up log, in ms.
/// Spawns byokd on `d`'s configuration: (seconds to `READY=1`, the HSM start-up and the login
/// it logs, ms).
fn time_to_ready(d: &Daemon) -> (f64, f64, f64) {
    let s = startup::time_to_ready(&d.config, &d.path(""), Duration::from_secs(120));
    let ms = |field| s.field(field).unwrap_or(f64::NAN);
    (s.ready_s, ms("hsm_ms"), ms("login_ms"))
}

/// (CPU seconds user+system, RSS KiB, peak RSS KiB) of a process, from /proc.
fn usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |field: &str| {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (ticks as f64 / 100.0, kib("VmRSS:"), kib("VmHWM:"))
}

fn ctl_ok(d: &Daemon, who: &str, args: &[&str]) -> Value {
    let (code, v) = d.ctl_json(who, args);
    assert_eq!(code, 0, "byokctl {args:?}: {v}\n{}", d.log());
    v
}

/// Starts a sync of `group` and waits for it: seconds from start to end.
fn sync(d: &Daemon, group: &str) -> f64 {
    let t = Instant::now();
    let v = ctl_ok(d, OPERATOR, &["group", "sync", group, "--no-wait"]);
    let id = v
        .pointer("/job/id")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no job id: {v}"))
        .to_owned();
    loop {
        let (status, job) = d.curl(
            Some(OPERATOR),
            "GET",
            &format!("/v1/jobs/{id}?wait=5"),
            None,
        );
        assert_eq!(status, 200, "job {id}: {job}");
        match job["state"].as_str().unwrap_or("") {
            "succeeded" => return t.elapsed().as_secs_f64(),
            "failed" | "cancelled" => panic!("sync {group}: {job}\n{}", d.log()),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let keys = total_keys();
    let groups = keys / 5;
    let idle = env_num("BENCH_IDLE_SECS", 30);
    let sync_keys = env_num("BENCH_SYNC_KEYS", 8) as usize;
    let rtt = Duration::from_millis(env_num("BENCH_RTT_MS", 200));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("emulator-ca.pem");
    let (emu, mut options) = rig::emulator_and_options(&rt, &ca, (TENANT, CLIENT, SECRET), VAULT);
    options.sections = format!(
        "max_keys = {}\nmax_groups = {}\n{}",
        keys + 1000,
        groups + 100,
        options.sections
    );
    options.seed_state = Some(seed_state);
    options.idle_timeout_ms = 600_000;
    options.read_timeout_ms = 600_000;
    let t = Instant::now();
    let mut d = Daemon::prepare(options);
    let seeded_s = t.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(d.path("state/state.redb")).unwrap().len();
    println!(
        "seeded {keys} keys in {groups} groups in {seeded_s:.1} s: {file_bytes} bytes, {:.0} B/key",
        file_bytes as f64 / keys as f64
    );

    // Start-up to READY=1, three times; the median.
    let mut starts: Vec<(f64, f64, f64)> = (0..3).map(|_| time_to_ready(&d)).collect();
    starts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ready_s, hsm_ms, login_ms) = starts[1];
    let ready_excl_hsm_s = ready_s - hsm_ms / 1e3;
    println!(
        "READY=1 in {ready_s:.2} s (median of 3: {:?}); HSM start-up {hsm_ms:.0} ms (login {login_ms:.0} ms); without it {ready_excl_hsm_s:.2} s",
        starts.iter().map(|s| s.0).collect::<Vec<_>>()
    );

    // RSS after start-up and CPU over an idle window.
    d.spawn();
    let pid = d.pid().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (cpu0, rss0, _) = usage(pid);
    std::thread::sleep(Duration::from_secs(idle));
    let (cpu1, rss1, hwm1) = usage(pid);
    let idle_cpu = cpu1 - cpu0;
    println!(
        "RSS after start-up {:.1} MiB, after {idle} s idle {:.1} MiB (peak {:.1}); idle CPU {idle_cpu:.2} s ({:.3} % of a core)",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        hwm1 as f64 / 1024.0,
        100.0 * idle_cpu / idle as f64
    );

    // A sync alone, then the same sync while a backup of the whole state runs.
    let secret_file = d.path("client-secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    ctl_ok(
        &d,
        ADMIN,
        &[
            "credential",
            "add",
            "app",
            "--tenant-id",
            TENANT,
            "--client-id",
            CLIENT,
            "--secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    let rounds = env_num("BENCH_ROUNDS", 3) as usize;
    let groups_for = |round: usize| [format!("alone-{round}"), format!("backup-{round}")];
    for round in 0..rounds {
        for g in groups_for(round) {
            ctl_ok(
                &d,
                ADMIN,
                &[
                    "group",
                    "create",
                    &g,
                    "--credential",
                    "app",
                    "--vault",
                    VAULT,
                    "--key-type",
                    "EC-P256",
                    "--key-ops",
                    "sign,verify",
                ],
            );
            for i in 0..sync_keys {
                ctl_ok(&d, OPERATOR, &["key", "create", &g, &format!("k{i:02}")]);
            }
        }
    }
    emu.set_rtt_delay(rtt);
    let file = work.path().join("footprint.backup");
    let mut alone = Vec::new();
    let mut during = Vec::new();
    let mut backups = Vec::new();
    let mut backup_out = String::new();
    for round in 0..rounds {
        let [g_alone, g_backup] = groups_for(round);
        // Each sync starts with the vault's CREATE window empty, so both start from the same
        // budget.
        std::thread::sleep(Duration::from_secs(11));
        alone.push(sync(&d, &g_alone));
        std::thread::sleep(Duration::from_secs(11));
        let _ = std::fs::remove_file(&file);
        let (backup_s, with_backup_s, out) = std::thread::scope(|s| {
            let syncing = s.spawn(|| sync(&d, &g_backup));
            std::thread::sleep(Duration::from_millis(200));
            let t = Instant::now();
            let out = d.ctl(ADMIN, &["backup", "create", file.to_str().unwrap()]);
            let backup_s = t.elapsed().as_secs_f64();
            assert!(
                out.status.success(),
                "backup: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                d.log()
            );
            (
                backup_s,
                syncing.join().unwrap(),
                String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            )
        });
        println!(
            "round {round}: sync alone {:.2} s, during a backup {with_backup_s:.2} s; backup {backup_s:.2} s",
            alone[round]
        );
        during.push(with_backup_s);
        backups.push(backup_s);
        backup_out = out;
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (alone_s, with_backup_s, backup_s) = (median(&alone), median(&during), median(&backups));
    let backup_bytes = std::fs::metadata(&file).unwrap().len();
    let (_, rss2, hwm2) = usage(pid);
    let slowdown = with_backup_s / alone_s;
    println!(
        "sync of {sync_keys} keys (RTT {} ms), median of {rounds}: alone {alone_s:.2} s, during the backup {with_backup_s:.2} s ({slowdown:.2}x)",
        rtt.as_millis()
    );
    println!(
        "backup of the whole state: {backup_s:.2} s, {backup_bytes} bytes; RSS after {:.1} MiB, peak {:.1} MiB ({backup_out})",
        rss2 as f64 / 1024.0,
        hwm2 as f64 / 1024.0
    );
    d.stop();

    let out = json!({
        "bench": "footprint_1m",
        "machine": machine(),
        "keys": keys,
        "groups": groups,
        "seeded_s": seeded_s,
        "state_file_bytes": file_bytes,
        "bytes_per_key": file_bytes as f64 / keys as f64,
        "ready_s_runs": starts.iter().map(|s| s.0).collect::<Vec<_>>(),
        "ready_s": ready_s,
        "hsm_startup_ms": hsm_ms,
        "hsm_login_ms": login_ms,
        "ready_excluding_hsm_s": ready_excl_hsm_s,
        "ready_excluding_login_s": ready_s - login_ms / 1e3,
        "rss_after_start_mib": rss0 as f64 / 1024.0,
        "rss_after_idle_mib": rss1 as f64 / 1024.0,
        "rss_peak_before_backup_mib": hwm1 as f64 / 1024.0,
        "idle_window_s": idle,
        "idle_cpu_s": idle_cpu,
        "idle_cpu_s_per_hour": idle_cpu * 3600.0 / idle as f64,
        "sync_keys": sync_keys,
        "emulator_rtt_ms": rtt.as_millis() as u64,
        "rounds": rounds,
        "sync_alone_s_runs": alone,
        "sync_during_backup_s_runs": during,
        "backup_s_runs": backups,
        "sync_alone_s": alone_s,
        "sync_during_backup_s": with_backup_s,
        "sync_slowdown": slowdown,
        "backup_s": backup_s,
        "backup_bytes": backup_bytes,
        "rss_after_backup_mib": rss2 as f64 / 1024.0,
        "rss_peak_mib": hwm2 as f64 / 1024.0,
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results-footprint-1m.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap() + "\n").unwrap();
    println!("written to {}", path.display());
}
