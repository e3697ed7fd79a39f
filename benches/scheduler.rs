//! Benchmark (not a test): the rotation scheduler with 100,000 key groups, all with rotation
//! on, idle. Runs the real daemon on a SoftHSM token with the groups written straight into the
//! state (due times spread over the next 12 months), waits until the scheduler has planned them,
//! then samples the daemon's CPU time and resident memory from /proc while nothing is due.
//! The scheduler sleeps until the earliest due time, so both must stay flat.
//!
//! Run: `cargo bench --bench scheduler` (env `BENCH_IDLE_SECS`, default 30; `BENCH_GROUPS`,
//! default 100000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/control_rig/mod.rs"]
mod rig;
#[path = "support/seed.rs"]
#[allow(dead_code)]
mod seed;

use byokd::model::{GroupName, KeyGroup, KeyType, RotationPolicy, VaultName};
use rig::{Daemon, Options};
use std::path::Path;
use std::time::{Duration, Instant};

fn groups() -> usize {
    std::env::var("BENCH_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn seed(dir: &Path) {
    let (mut store, mut state, _) = byokd::store::Store::open(dir).unwrap();
    let credential = seed::credential(rig::TENANT, rig::CLIENT);
    let cred = credential.name.clone();
    state.credentials.insert(cred.clone(), credential);
    let key_type = KeyType::parse("RSA-2048", Default::default()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let n = groups();
    for i in 0..n {
        let name = GroupName::try_from(format!("group-{i:06}")).unwrap();
        // Created between 0 and 364 days ago with a 12-month period: due within the next year,
        // never now.
        let created = now - 86_400 * (i as i64 % 364) - 3600;
        let group = KeyGroup {
            name: name.clone(),
            credential: cred.clone(),
            target: byokd::model::Target::KeyVault(
                VaultName::try_from(format!("bench-kv-{}", i % 16)).unwrap(),
            ),
            key_type,
            key_ops: key_type.default_ops(),
            rotation: RotationPolicy {
                enabled: true,
                rotate_every_months: 12,
                keep_valid_months: 24,
            },
            last_rotated: None,
            created,
        };
        // The scheduler plans by the same model rule.
        let due = group.rotation_due().unwrap();
        assert!(
            due > now && due <= now + 366 * 86_400,
            "{name} due at {due}"
        );
        state.groups.insert(name, group);
    }
    store.commit(&mut state).unwrap();
}

/// (CPU seconds user+system, resident KiB) of a process, from /proc.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks as f64 / hz, rss)
}

fn main() {
    let idle: u64 = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let n = groups();
    let started = Instant::now();
    let d = Daemon::start_with(Options {
        seed_state: Some(seed),
        sections: "max_groups = 200000\n".into(),
        ..Options::default()
    });
    let pid = d.pid().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !d.log().contains("scheduler planned") {
        assert!(
            Instant::now() < deadline,
            "the scheduler never planned:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let planned_line = d
        .log()
        .lines()
        .find(|l| l.contains("scheduler planned"))
        .unwrap()
        .to_owned();
    assert!(
        planned_line.contains(&format!("rotations={n}")),
        "{planned_line}"
    );
    let ready = started.elapsed();
    // Let start-up settle, then sample.
    std::thread::sleep(Duration::from_secs(2));
    let (cpu0, rss0) = usage(pid);
    println!(
        "scheduler bench: {n} groups with rotation on; daemon ready and planned in {ready:.1?}"
    );
    println!("  t(s)   cpu(s)   rss(KiB)");
    println!("  {:>4}   {cpu0:>6.2}   {rss0:>8}", 0);
    let step = (idle / 6).max(1);
    let mut last = (cpu0, rss0);
    let mut t = 0;
    while t < idle {
        std::thread::sleep(Duration::from_secs(step));
        t += step;
        last = usage(pid);
        println!("  {t:>4}   {:>6.2}   {:>8}", last.0, last.1);
    }
    let cpu = last.0 - cpu0;
    let rss = last.1 as i64 - rss0 as i64;
    println!(
        "idle {idle} s: CPU used {cpu:.2} s ({:.3}% of one core), RSS change {rss} KiB",
        100.0 * cpu / idle as f64
    );
    let log = d.log();
    assert!(
        !log.contains("scheduled rotation started"),
        "nothing should have been due"
    );
}
