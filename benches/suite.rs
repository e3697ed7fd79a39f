//! byokd-bench: the performance suite (issue #8). Not a test: it measures, prints a table and
//! writes JSON; every comparison runs side by side in the same run and is reported as a ratio.
//!
//! Run: `bench/setup.sh` once (the Python SDK comparator's venv), then
//! `cargo bench --bench suite -- --out bench.json` (options: `--rtt-ms 30`, `--time-factor 0.25`,
//! `--only sdk,budget,hsm,footprint,api`, `--ns 1,10,100`, `--no-python`, `--quick`). No network: SoftHSM and the in-process Azure
//! emulator over real TLS, the real daemon and `byokctl`.
//!
//! Sections:
//! - `sdk`: the documented manual flow scripted with Azure's official Python SDK
//!   (benches/sdk_flow.py) against one byokd sync job, N = 1, 10, 100, throttling off.
//! - `budget`: Azure's per-vault CREATE budget scaled by the time factor, enforced by the emulator
//!   as a strict sliding window; 100 keys to one vault, ten vaults with 100 keys each at once, the
//!   #5 batch (50 RSA-2048 keys), and the SDK flow pushing the same 100 keys to one vault under
//!   the same budget.
//! - `hsm`: key generation through byokd's API against a raw `C_GenerateKeyPair` loop on the same
//!   token (in a child process), one session and two, taking turns in short rounds.
//! - `footprint`: RSS idle and with 10,000 groups / 50,000 keys, start-up to `READY=1`, state
//!   bytes per key, idle CPU, and the cost of one state commit at that size.
//! - `api`: the control-socket figures of benches/control_api.rs on the same big state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/control_rig/mod.rs"]
mod rig;
#[path = "support/mod.rs"]
mod support;

use byokd_emulator::{
    AppConfig, Emulator, EmulatorConfig, EmulatorHandle, KeyPoolConfig, Op, RecoveryLevel,
    ThrottleConfig, VaultOptions,
};
use rig::{ADMIN, Daemon, OPERATOR, Options};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::client::{Conn, client_config, connect, request};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b";
const SECRET: &str = "Bench~Secret.0042-not-real";
const LOGIN_HOST: &str = "login.microsoftonline.com";

// ---------------------------------------------------------------------------------------------
// Options and report

struct Opts {
    out: Option<PathBuf>,
    rtt_ms: u64,
    time_factor: f64,
    only: Option<Vec<String>>,
    sdk_ns: Vec<usize>,
    budget_keys: usize,
    batch_keys: usize,
    sdk_threads: usize,
    hsm_counts: [(&'static str, usize); 3],
    idle_secs: u64,
    no_python: bool,
}

impl Opts {
    fn parse() -> Opts {
        let mut o = Opts {
            out: None,
            rtt_ms: 30,
            time_factor: 0.25,
            only: None,
            sdk_ns: vec![1, 10, 100],
            budget_keys: 100,
            batch_keys: 50,
            sdk_threads: 4,
            hsm_counts: [("RSA-2048", 20), ("RSA-4096", 4), ("EC-P256", 100)],
            idle_secs: 20,
            no_python: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--out" => o.out = args.next().map(PathBuf::from),
                "--rtt-ms" => o.rtt_ms = args.next().unwrap().parse().unwrap(),
                "--time-factor" => o.time_factor = args.next().unwrap().parse().unwrap(),
                "--only" => {
                    o.only = Some(args.next().unwrap().split(',').map(str::to_owned).collect())
                }
                "--ns" => {
                    o.sdk_ns = args
                        .next()
                        .unwrap()
                        .split(',')
                        .map(|n| n.parse().unwrap())
                        .collect()
                }
                "--no-python" => o.no_python = true,
                "--quick" => {
                    o.sdk_ns = vec![1, 10];
                    o.budget_keys = 40;
                    o.batch_keys = 20;
                    o.hsm_counts = [("RSA-2048", 4), ("RSA-4096", 1), ("EC-P256", 20)];
                    o.idle_secs = 5;
                }
                // `cargo bench` passes `--bench`; harness flags are ignored.
                _ => {}
            }
        }
        o
    }

    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == section))
    }
}

/// One line of the printed table.
struct Row {
    section: &'static str,
    metric: String,
    value: String,
    goal: String,
    met: Option<bool>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn row(
        &mut self,
        section: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
        goal: impl Into<String>,
        met: Option<bool>,
    ) {
        let r = Row {
            section,
            metric: metric.into(),
            value: value.into(),
            goal: goal.into(),
            met,
        };
        println!(
            "  {:<10} {:<58} {:>22}  {}",
            r.section,
            r.metric,
            r.value,
            goal_text(&r)
        );
        self.rows.push(r);
    }

    fn put(&mut self, key: &str, v: Value) {
        self.json.insert(key.to_owned(), v);
    }

    fn print_table(&self) {
        println!("\n{:=<118}", "");
        println!("  {:<10} {:<58} {:>22}  goal", "section", "metric", "value");
        println!("{:-<118}", "");
        for r in &self.rows {
            println!(
                "  {:<10} {:<58} {:>22}  {}",
                r.section,
                r.metric,
                r.value,
                goal_text(r)
            );
        }
        println!("{:=<118}", "");
    }
}

fn goal_text(r: &Row) -> String {
    match r.met {
        Some(true) => format!("{} (met)", r.goal),
        Some(false) => format!("{} (NOT met)", r.goal),
        None => r.goal.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// The rig: emulator + daemon

struct Rig {
    _rt: tokio::runtime::Runtime,
    emu: EmulatorHandle,
    _dir: tempfile::TempDir,
    ca: PathBuf,
}

impl Rig {
    fn start(vaults: &[&str]) -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("emulator-ca.pem");
        let emu = rt
            .block_on(Emulator::start(EmulatorConfig {
                ca_out: Some(ca.clone()),
                key_pool: KeyPoolConfig {
                    rsa2048: 16,
                    rsa3072: 0,
                    rsa4096: 0,
                },
                throttling: ThrottleConfig {
                    enabled: false,
                    ..ThrottleConfig::default()
                },
                request_log_cap: 1_000_000,
                ..EmulatorConfig::default()
            }))
            .unwrap();
        emu.add_app(AppConfig::with_secret(TENANT, CLIENT, SECRET))
            .unwrap();
        let rig = Rig {
            _rt: rt,
            emu,
            _dir: dir,
            ca,
        };
        for v in vaults {
            rig.add_vault(v);
        }
        rig
    }

    fn add_vault(&self, name: &str) {
        self.emu
            .add_vault(
                name,
                VaultOptions {
                    recovery_level: RecoveryLevel::RecoverablePurgeable,
                    ..VaultOptions::default()
                },
            )
            .unwrap();
    }

    /// The daemon, resolving the vaults' and sign-in host names to the emulator; `budget` is
    /// byokd's CREATE pacing (0 = off) per `window_ms`.
    fn daemon(&self, vaults: &[&str], budget: u32, window_ms: u64) -> Byokd {
        let addr = self.emu.addr();
        let mut resolve = format!("\"{LOGIN_HOST}\" = \"{addr}\"\n");
        for v in vaults {
            resolve.push_str(&format!("\"{v}.vault.azure.net\" = \"{addr}\"\n"));
        }
        let sections = format!(
            r#"
[azure]
cloud = "public"
extra_ca = ["{ca}"]
kek_size = 2048
max_attempts = 20
vault_create_budget = {budget}
vault_budget_window_ms = {window_ms}

[azure.resolve]
{resolve}"#,
            ca = self.ca.display()
        );
        let d = Daemon::start_with(Options {
            hsm_extra: "allow_host_wrap = true\n".into(),
            sections,
            idle_timeout_ms: 120_000,
            read_timeout_ms: 120_000,
            max_body_bytes: 65536,
            ..Options::default()
        });
        let secret_file = d.path("client-secret.txt");
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        let out = d.ctl(
            ADMIN,
            &[
                "credential",
                "add",
                "azure-app",
                "--tenant-id",
                TENANT,
                "--client-id",
                CLIENT,
                "--secret-file",
                secret_file.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "credential add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&secret_file).unwrap();
        let admin = client_config(d.dir.path(), ADMIN);
        let operator = client_config(d.dir.path(), OPERATOR);
        Byokd { d, admin, operator }
    }

    fn set_budget(&self, enabled: bool, time_factor: f64) {
        self.emu.set_throttling(ThrottleConfig {
            enabled,
            time_factor,
            ..ThrottleConfig::default()
        });
    }

    /// Runs the SDK comparator; returns its wall time in seconds (None if the venv is missing).
    fn sdk_flow(&self, vault: &str, n: usize, threads: usize, poll: Option<f64>) -> Option<f64> {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/.venv/bin/python");
        if !python.exists() {
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/sdk_flow.py");
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .args(["--emulator", &self.emu.addr().to_string()])
            .args(["--tenant", TENANT, "--client-id", CLIENT, "--vault", vault])
            .args(["--key-name", "sdk-key", "--n", &n.to_string()])
            .args(["--threads", &threads.to_string()])
            .env("REQUESTS_CA_BUNDLE", &self.ca)
            .env("SSL_CERT_FILE", &self.ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = poll {
            cmd.args(["--polling-interval", &format!("{p}")]);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{SECRET}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "sdk_flow.py failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["seconds"].as_f64()
    }

    /// Requests the emulator logged since the last clear.
    fn traffic(&self) -> Traffic {
        let reqs = self.emu.requests();
        let count = |op: Op| {
            reqs.iter()
                .filter(|r| r.op == op && (200..300).contains(&r.status))
                .count()
        };
        let creates: Vec<(String, u64)> = reqs
            .iter()
            .filter(|r| {
                matches!(r.op, Op::CreateKey | Op::ImportKey) && (200..300).contains(&r.status)
            })
            .map(|r| (r.host.clone(), r.time_ms))
            .collect();
        Traffic {
            requests: reqs.len(),
            kek_creates: count(Op::CreateKey),
            imports: count(Op::ImportKey),
            throttled: reqs.iter().filter(|r| r.status == 429).count(),
            creates,
        }
    }
}

struct Traffic {
    requests: usize,
    kek_creates: usize,
    imports: usize,
    throttled: usize,
    /// (vault host, arrival ms) of every successful CREATE-class request.
    creates: Vec<(String, u64)>,
}

impl Traffic {
    /// CREATE arrivals (seconds) per vault, in order.
    fn by_vault(&self) -> BTreeMap<&str, Vec<f64>> {
        let mut by_vault: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for (h, t) in &self.creates {
            by_vault.entry(h).or_default().push(*t as f64 / 1e3);
        }
        for ts in by_vault.values_mut() {
            ts.sort_by(f64::total_cmp);
        }
        by_vault
    }

    /// Budget use per vault, averaged over vaults: the shortest time the budget allows for the
    /// vault's CREATEs (see [`min_span`]) over the time its first to last CREATE took.
    fn window_use(&self, limit: f64, window_s: f64) -> f64 {
        let uses: Vec<f64> = self
            .by_vault()
            .values()
            .map(|ts| {
                let span = ts[ts.len() - 1] - ts[0];
                let min = min_span(ts.len() as f64, limit, window_s);
                if span <= 0.0 {
                    1.0
                } else {
                    (min / span).min(1.0)
                }
            })
            .collect();
        uses.iter().sum::<f64>() / uses.len().max(1) as f64
    }

    /// The longest time from a vault's first to its last CREATE.
    fn create_span_s(&self) -> f64 {
        self.by_vault()
            .values()
            .map(|ts| ts[ts.len() - 1] - ts[0])
            .fold(0.0, f64::max)
    }

    /// The most CREATEs one vault accepted in any window (from the emulator's arrival times).
    fn fullest_window(&self, window_s: f64) -> usize {
        self.by_vault()
            .values()
            .map(|ts| {
                (0..ts.len())
                    .map(|i| {
                        ts[i..]
                            .iter()
                            .take_while(|&&t| t < ts[i] + window_s)
                            .count()
                    })
                    .max()
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }
}

/// The shortest first-to-last time in which `creates` CREATEs fit a budget of `limit` in any
/// window: full windows back to back, `ceil(creates / limit) - 1` windows.
fn min_span(creates: f64, limit: f64, window_s: f64) -> f64 {
    ((creates / limit).ceil() - 1.0).max(0.0) * window_s
}

struct Byokd {
    d: Daemon,
    admin: Arc<rustls::ClientConfig>,
    operator: Arc<rustls::ClientConfig>,
}

impl Byokd {
    fn conn(&self) -> Conn {
        connect(&self.operator, self.d.port)
    }

    fn group(&self, name: &str, vault: &str, key_type: &str) {
        let mut c = connect(&self.admin, self.d.port);
        let ops = if key_type.starts_with("EC") {
            r#","key_ops":["sign","verify"]"#
        } else {
            ""
        };
        let body = format!(
            r#"{{"name":"{name}","credential":"azure-app","vault":"{vault}","key_type":"{key_type}"{ops}}}"#
        );
        let (s, v) = request(&mut c, "POST", "/v1/groups", Some(&body));
        assert_eq!(s, 201, "group create {name}: {v}");
    }

    /// Creates `n` keys; returns the time of each create.
    fn keys(&self, conn: &mut Conn, group: &str, prefix: &str, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|i| {
                let body = format!(r#"{{"name":"{prefix}{i:04}"}}"#);
                let t = Instant::now();
                let (s, v) = request(
                    conn,
                    "POST",
                    &format!("/v1/groups/{group}/keys"),
                    Some(&body),
                );
                let took = t.elapsed();
                assert_eq!(s, 201, "key create {group}: {v}");
                took
            })
            .collect()
    }

    fn sync(&self, group: &str) -> String {
        let mut c = self.conn();
        let (s, v) = request(
            &mut c,
            "POST",
            &format!("/v1/groups/{group}/sync"),
            Some("{}"),
        );
        assert_eq!(s, 202, "group sync {group}: {v}");
        v["job"]["id"].as_str().unwrap().to_owned()
    }

    fn wait(&self, job: &str) -> Value {
        let mut c = self.conn();
        loop {
            let (s, v) = request(&mut c, "GET", &format!("/v1/jobs/{job}?wait=60"), None);
            assert_eq!(s, 200, "{v}");
            if ["succeeded", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or("")) {
                return v;
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// 429s that reached a job: a job that did not succeed because of throttling, or a step that
/// reports throttling (byokd's 429 error reads "... is throttling requests (429) ...").
fn throttle_mentions(job: &Value) -> usize {
    let steps = job["steps"].as_array().cloned().unwrap_or_default();
    let mut texts: Vec<String> = steps
        .iter()
        .map(|s| s["message"].as_str().unwrap_or("").to_ascii_lowercase())
        .collect();
    texts.push(job["error"].as_str().unwrap_or("").to_ascii_lowercase());
    texts
        .iter()
        .filter(|t| t.contains("throttl") || t.contains("(429)"))
        .count()
}

/// Jobs that did not end `succeeded`.
fn failed_jobs(jobs: &[Value]) -> usize {
    jobs.iter().filter(|j| j["state"] != "succeeded").count()
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

// ---------------------------------------------------------------------------------------------
// Section 1: SDK flow vs byokd, throttling off

fn section_sdk(o: &Opts, rep: &mut Report) {
    println!(
        "\n[sdk] SDK flow vs byokd, RTT {} ms, throttling off, 2 s post-delete 404 window",
        o.rtt_ms
    );
    let vaults: Vec<String> = o
        .sdk_ns
        .iter()
        .flat_map(|n| [format!("bench-b{n}"), format!("bench-s{n}")])
        .collect();
    let vrefs: Vec<&str> = vaults.iter().map(String::as_str).collect();
    let rig = Rig::start(&vrefs);
    rig.emu.set_rtt_delay(Duration::from_millis(o.rtt_ms));
    rig.emu.set_delete_pending(Duration::from_secs(2));
    let b = rig.daemon(&vrefs, 0, 10_000);
    let mut out = vec![];
    let mut conn = b.conn();
    for &n in &o.sdk_ns {
        let group = format!("sdk-n{n}");
        b.group(&group, &format!("bench-b{n}"), "RSA-2048");
        b.keys(&mut conn, &group, "k", n);
        rig.emu.clear_requests();
        let t = Instant::now();
        let job = b.wait(&b.sync(&group));
        let byokd_s = t.elapsed().as_secs_f64();
        assert_eq!(job["state"], "succeeded", "{job}");
        let bt = rig.traffic();
        rig.emu.clear_requests();
        let sdk_s = if o.no_python {
            None
        } else {
            rig.sdk_flow(&format!("bench-s{n}"), n, 1, None)
        };
        let st = rig.traffic();
        let Some(sdk_s) = sdk_s else {
            rep.row(
                "sdk",
                format!("N={n}: SDK comparator"),
                "not run",
                "run bench/setup.sh",
                None,
            );
            continue;
        };
        let speedup = ratio(sdk_s, byokd_s);
        let nf = n as f64;
        rep.row(
            "sdk",
            format!("N={n}: wall time SDK / byokd"),
            format!("{sdk_s:.1} s / {byokd_s:.2} s = {speedup:.1}x"),
            if n == 100 { ">= 5x" } else { "" },
            (n == 100).then_some(speedup >= 5.0),
        );
        rep.row(
            "sdk",
            format!("N={n}: HTTP requests per key, SDK / byokd"),
            format!(
                "{:.1} / {:.2}",
                st.requests as f64 / nf,
                bt.requests as f64 / nf
            ),
            "",
            None,
        );
        rep.row(
            "sdk",
            format!("N={n}: KEK creates per key, SDK / byokd"),
            format!(
                "{:.2} / {:.2}",
                st.kek_creates as f64 / nf,
                bt.kek_creates as f64 / nf
            ),
            if n == 100 { "byokd <= 0.1" } else { "" },
            (n == 100).then_some(bt.kek_creates as f64 / nf <= 0.1),
        );
        out.push(json!({
            "n": n, "sdk_seconds": sdk_s, "byokd_seconds": byokd_s, "speedup": speedup,
            "sdk_requests": st.requests, "byokd_requests": bt.requests,
            "sdk_kek_creates": st.kek_creates, "byokd_kek_creates": bt.kek_creates,
            "sdk_imports": st.imports, "byokd_imports": bt.imports,
        }));
    }
    rep.put(
        "sdk_vs_byokd",
        json!({"rtt_ms": o.rtt_ms, "delete_pending_ms": 2000, "runs": out}),
    );
}

// ---------------------------------------------------------------------------------------------
// Section 2: against Azure's CREATE budget

fn section_budget(o: &Opts, rep: &mut Report) {
    let tf = o.time_factor;
    let window_s = 10.0 * tf;
    println!(
        "\n[budget] CREATE budget 10 in any {window_s} s per vault (Azure's 10 s x {tf}, a strict \
         sliding window in the emulator), RTT {} ms",
        o.rtt_ms
    );
    let many: Vec<String> = (1..=10).map(|v| format!("bench-m{v:02}")).collect();
    let mut vaults = vec!["bench-one", "bench-batch", "bench-sdk"];
    vaults.extend(many.iter().map(String::as_str));
    let rig = Rig::start(&vaults);
    rig.emu.set_rtt_delay(Duration::from_millis(o.rtt_ms));
    rig.emu
        .set_delete_pending(Duration::from_secs_f64(2.0 * tf));
    rig.set_budget(true, tf);
    let b = rig.daemon(&vaults, 10, (10_000.0 * tf) as u64);
    let mut conn = b.conn();
    let n = o.budget_keys;
    b.group("one", "bench-one", "EC-P256");
    b.keys(&mut conn, "one", "k", n);
    // Ten vaults at once, each with as many keys as the one-vault run.
    let many_groups: Vec<String> = (1..=10).map(|v| format!("m{v:02}")).collect();
    for (g, v) in many_groups.iter().zip(&many) {
        b.group(g, v, "EC-P256");
        b.keys(&mut conn, g, "k", n);
    }
    b.group("batch", "bench-batch", "RSA-2048");
    b.keys(&mut conn, "batch", "k", o.batch_keys);

    let mut runs = vec![];
    let mut one_vault_seconds = f64::NAN;
    let ten_label = format!("ten vaults at once, {n} keys each");
    for (label, groups) in [
        ("one vault", vec!["one"]),
        (
            ten_label.as_str(),
            many_groups.iter().map(String::as_str).collect(),
        ),
        ("#5 batch, RSA-2048, one vault", vec!["batch"]),
    ] {
        rig.emu.clear_requests();
        let t = Instant::now();
        let ids: Vec<String> = groups.iter().map(|g| b.sync(g)).collect();
        let jobs: Vec<Value> = ids.iter().map(|id| b.wait(id)).collect();
        let secs = t.elapsed().as_secs_f64();
        let tr = rig.traffic();
        let keys = tr.imports;
        let per_vault_creates = (tr.kek_creates + tr.imports) as f64 / groups.len() as f64;
        let theoretical = min_span(per_vault_creates, 10.0, window_s);
        let span = tr.create_span_s();
        let use_ = tr.window_use(10.0, window_s);
        let fullest = tr.fullest_window(window_s);
        let reached: usize = jobs.iter().map(throttle_mentions).sum();
        let failed = failed_jobs(&jobs);
        let per_key = tr.requests as f64 / keys.max(1) as f64;
        if groups.len() == 1 && groups[0] == "one" {
            one_vault_seconds = secs;
        }
        rep.row(
            "budget",
            format!("{label}: {keys} keys, budget use"),
            format!("{:.1} %", use_ * 100.0),
            ">= 90 %",
            Some(use_ >= 0.9),
        );
        rep.row(
            "budget",
            format!("{label}: 429s drawn (reaching a job, jobs failed)"),
            format!("{} ({reached}, {failed})", tr.throttled),
            "0",
            Some(tr.throttled == 0 && reached == 0 && failed == 0),
        );
        rep.row(
            "budget",
            format!("{label}: most CREATEs in one window of a vault"),
            format!("{fullest}"),
            "<= 10",
            Some(fullest <= 10),
        );
        let r = ratio(span, theoretical);
        rep.row(
            "budget",
            format!("{label}: first to last CREATE / theoretical minimum"),
            format!("{span:.2} s / {theoretical:.2} s = {r:.3}x"),
            "<= 1.05x",
            Some(r <= 1.05),
        );
        rep.row(
            "budget",
            format!("{label}: whole job(s) / theoretical minimum"),
            format!(
                "{secs:.2} s / {theoretical:.2} s = {:.3}x",
                ratio(secs, theoretical)
            ),
            "",
            None,
        );
        rep.row(
            "budget",
            format!("{label}: requests per key, KEK creates per key"),
            format!(
                "{per_key:.3}, {:.3}",
                tr.kek_creates as f64 / keys.max(1) as f64
            ),
            "<= 1.1, well under 1",
            Some(per_key <= 1.1 && (tr.kek_creates as f64 / keys.max(1) as f64) < 0.1),
        );
        runs.push(json!({
            "label": label, "vaults": groups.len(), "keys": keys, "seconds": secs,
            "create_span_seconds": span, "theoretical_min_seconds": theoretical,
            "budget_use": use_, "fullest_window": fullest, "requests_per_key": per_key,
            "kek_creates": tr.kek_creates, "imports": tr.imports, "requests": tr.requests,
            "throttled_429": tr.throttled, "throttle_reaching_jobs": reached,
            "jobs_succeeded": jobs.iter().filter(|j| j["state"] == "succeeded").count(),
        }));
    }

    // The SDK flow under the same budget, with concurrent workers so the budget binds, pushing
    // as many keys to one vault as byokd's one-vault run: the ratio is of wall times.
    rig.emu.clear_requests();
    let sdk = rig.sdk_flow("bench-sdk", n, o.sdk_threads, Some(2.0 * tf));
    let st = rig.traffic();
    let sdk_json = if let Some(sdk_s) = sdk {
        let r = ratio(sdk_s, one_vault_seconds);
        // The budget alone needs the time of 2N CREATEs for the SDK flow and N + 1 for byokd.
        let best = ratio(
            min_span(2.0 * n as f64, 10.0, window_s),
            min_span(n as f64 + 1.0, 10.0, window_s).max(window_s),
        );
        rep.row(
            "budget",
            format!(
                "one vault, {n} keys: wall time SDK flow ({} threads) / byokd",
                o.sdk_threads
            ),
            format!("{sdk_s:.1} s / {one_vault_seconds:.1} s = {r:.2}x"),
            format!(">= 1.9x (budget bound {best:.2}x)"),
            Some(r >= 1.9),
        );
        rep.row(
            "budget",
            "SDK flow: budget use, 429s drawn, KEK creates per key",
            format!(
                "{:.1} %, {}, {:.2}",
                st.window_use(10.0, window_s) * 100.0,
                st.throttled,
                st.kek_creates as f64 / n.max(1) as f64
            ),
            "",
            None,
        );
        json!({"keys": n, "threads": o.sdk_threads, "seconds": sdk_s,
               "byokd_seconds": one_vault_seconds, "ratio_sdk_over_byokd": r,
               "budget_bound_ratio": best,
               "budget_use": st.window_use(10.0, window_s), "throttled_429": st.throttled,
               "kek_creates": st.kek_creates, "imports": st.imports})
    } else {
        rep.row(
            "budget",
            "SDK flow under the budget",
            "not run",
            "run bench/setup.sh",
            None,
        );
        Value::Null
    };
    rep.put(
        "against_azure_budget",
        json!({"time_factor": tf, "window_seconds": window_s, "create_per_window": 10,
               "emulator_limiter": "strict sliding window",
               "rtt_ms": o.rtt_ms, "runs": runs, "sdk_flow": sdk_json}),
    );
}

// ---------------------------------------------------------------------------------------------
// Section 3: against the HSM

/// Child mode: `--raw-hsm MODULE LABEL PIN KIND COUNT THREADS` prints `{"seconds":..}` for
/// COUNT raw C_GenerateKeyPair calls (token objects, byokd's templates) spread over THREADS
/// sessions; KIND `login` times C_Initialize + C_OpenSession + C_Login instead.
fn raw_hsm(args: &[String]) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let (module, label, pin, kind) = (&args[0], &args[1], &args[2], args[3].as_str());
    let count: usize = args[4].parse().unwrap();
    let threads: usize = args[5].parse().unwrap();
    let t = Instant::now();
    let p = Pkcs11::new(module).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = p
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| {
            p.get_token_info(*s)
                .map(|i| i.label().trim() == label)
                .unwrap_or(false)
        })
        .unwrap();
    let login = p.open_rw_session(slot).unwrap();
    login
        .login(UserType::User, Some(&AuthPin::new(pin.clone().into())))
        .unwrap();
    if kind == "login" {
        println!("{}", json!({"seconds": t.elapsed().as_secs_f64()}));
        return;
    }
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            let p = &p;
            s.spawn(move || {
                let session = p.open_rw_session(slot).unwrap();
                for i in (th..count).step_by(threads) {
                    let mut id = vec![0xee, th as u8];
                    id.extend_from_slice(&(i as u64).to_be_bytes());
                    let common = [Attribute::Token(true), Attribute::Id(id.clone())];
                    let mut public = common.to_vec();
                    public.extend([Attribute::Private(false), Attribute::Verify(true)]);
                    let mut private = common.to_vec();
                    private.extend([
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(true),
                        Attribute::Sign(true),
                    ]);
                    let mech = match kind {
                        "EC-P256" => {
                            // DER OID 1.2.840.10045.3.1.7.
                            public.push(Attribute::EcParams(vec![
                                0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                            ]));
                            Mechanism::EccKeyPairGen
                        }
                        rsa => {
                            let bits: u64 = rsa.trim_start_matches("RSA-").parse().unwrap();
                            public.extend([
                                Attribute::ModulusBits(bits.into()),
                                Attribute::PublicExponent(vec![1, 0, 1]),
                                Attribute::Encrypt(true),
                            ]);
                            private.push(Attribute::Decrypt(true));
                            Mechanism::RsaPkcsKeyPairGen
                        }
                    };
                    session.generate_key_pair(&mech, &public, &private).unwrap();
                }
            });
        }
    });
    println!("{}", json!({"seconds": t.elapsed().as_secs_f64()}));
}

fn run_raw(d: &Daemon, kind: &str, count: usize, threads: usize) -> f64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--raw-hsm", &Daemon::module(), "ctl-test", "1234", kind])
        .arg(count.to_string())
        .arg(threads.to_string())
        .env("SOFTHSM2_CONF", d.path("softhsm2.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "raw HSM child: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["seconds"].as_f64().unwrap()
}

fn section_hsm(o: &Opts, rep: &mut Report) {
    println!(
        "\n[hsm] key generation: byokd API vs raw C_GenerateKeyPair on the same SoftHSM token"
    );
    let rig = Rig::start(&["bench-hsm"]);
    let b = rig.daemon(&["bench-hsm"], 10, 10_000);
    let mut out = vec![];
    for (kind, count) in o.hsm_counts {
        let g1 = format!("hsm-{}", kind.to_ascii_lowercase());
        let g2 = format!("hsm2-{}", kind.to_ascii_lowercase());
        b.group(&g1, "bench-hsm", kind);
        b.group(&g2, "bench-hsm", kind);
        // In short rounds, raw and API taking turns (and the order swapped every round), so
        // that drift on the shared machine (other builds, the disk) and the token's growth hit
        // both sides alike.
        let rounds = (count / 4).clamp(1, 5);
        let (mut raw_1, mut api_1, mut raw_2, mut api_2) = (0.0, 0.0, 0.0, 0.0);
        for r in 0..rounds {
            let n = count / rounds + usize::from(r < count % rounds);
            // A connection per round (kept alive within it): the daemon closes idle ones.
            let api_one = |mut conn: Conn| {
                let t = Instant::now();
                b.keys(&mut conn, &g1, &format!("a{r}-"), n);
                t.elapsed().as_secs_f64()
            };
            let api_two = || {
                let t = Instant::now();
                std::thread::scope(|s| {
                    let half = n / 2;
                    let b = &b;
                    let g2 = &g2;
                    s.spawn(move || b.keys(&mut b.conn(), g2, &format!("x{r}-"), half));
                    s.spawn(move || b.keys(&mut b.conn(), g2, &format!("y{r}-"), n - half));
                });
                t.elapsed().as_secs_f64()
            };
            if r % 2 == 0 {
                raw_1 += run_raw(&b.d, kind, n, 1);
                api_1 += api_one(b.conn());
                raw_2 += run_raw(&b.d, kind, n, 2);
                api_2 += api_two();
            } else {
                api_1 += api_one(b.conn());
                raw_1 += run_raw(&b.d, kind, n, 1);
                api_2 += api_two();
                raw_2 += run_raw(&b.d, kind, n, 2);
            }
        }
        let per = |s: f64| s * 1e3 / count as f64;
        let overhead = (api_1 - raw_1) / raw_1;
        // The goal is set for EC-P256, where generation is fast enough for byokd's own cost to
        // show; RSA generation times spread more than that cost.
        let ec = kind == "EC-P256";
        rep.row(
            "hsm",
            format!("{kind} x{count}: per key byokd API / raw, 1 client / 1 session"),
            format!(
                "{:.1} / {:.1} ms ({:+.1} %)",
                per(api_1),
                per(raw_1),
                overhead * 100.0
            ),
            if ec { "<= 10 %" } else { "" },
            ec.then_some(overhead <= 0.10),
        );
        // Two clients through the pool against two raw sessions: keys per second, as a share.
        let share = ratio(raw_2, api_2);
        rep.row(
            "hsm",
            format!("{kind} x{count}: 2 clients through byokd / 2 raw sessions"),
            format!(
                "{:.1} / {:.1} ms per key = {:.0} %",
                per(api_2),
                per(raw_2),
                share * 100.0
            ),
            ">= 90 %",
            Some(share >= 0.9),
        );
        rep.row(
            "hsm",
            format!("{kind} x{count}: speed-up with 2 sessions, raw / byokd"),
            format!("{:.2}x / {:.2}x", ratio(raw_1, raw_2), ratio(api_1, api_2)),
            "",
            None,
        );
        // Where a key's time goes inside the daemon, from its own log: the whole control
        // request against the token's key-pair generation (and public-key read) alone.
        let (request_ms, token_ms) = daemon_split(&b.d.log(), kind, 2 * count);
        rep.row(
            "hsm",
            format!("{kind} x{count}: in the daemon per key, request / token generation"),
            format!(
                "{request_ms:.1} / {token_ms:.1} ms (byokd's own {:.1} ms)",
                request_ms - token_ms
            ),
            "",
            None,
        );
        out.push(
            json!({"kind": kind, "count": count, "raw_1_session_s": raw_1,
            "byokd_1_client_s": api_1, "raw_2_sessions_s": raw_2, "byokd_2_clients_s": api_2,
            "overhead": overhead, "two_client_share_of_raw": share,
            "daemon_request_ms": request_ms, "daemon_token_ms": token_ms}),
        );
    }
    rep.put("hsm", json!(out));
}

// ---------------------------------------------------------------------------------------------
// Sections 4 and 5: footprint and control API

const BIG: support::seed::Seed = support::seed::Seed {
    big_group_keys: 10_000,
    small_groups: 9_999,
    keys_per_group: 4,
    rotation: true,
};

fn seed_big(dir: &Path) {
    support::seed::seed(dir, rig::TENANT, rig::CLIENT, BIG);
}

/// One start-up to `READY=1`, timed from outside, with the phases the daemon logs itself.
#[derive(Debug, Clone, Copy)]
struct Startup {
    /// Process spawn to `READY=1` on the notify socket, seconds.
    ready_s: f64,
    /// Module load, token lookup and login (the daemon's `login_ms`).
    login_ms: f64,
    /// The wrap known-answer tests (`self_test_ms`).
    self_test_ms: f64,
    /// The whole HSM start-up (`hsm_ms`).
    hsm_ms: f64,
}

/// The mean `elapsed_ms` of the last `n` key-create requests and of the last `n` generations of
/// `kind` in the daemon's log.
fn daemon_split(log: &str, kind: &str, n: usize) -> (f64, f64) {
    let elapsed = |line: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("elapsed_ms="))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let mean_of_last = |values: Vec<f64>| {
        let last = &values[values.len().saturating_sub(n)..];
        last.iter().sum::<f64>() / last.len().max(1) as f64
    };
    let requests = log
        .lines()
        .filter(|l| l.contains(r#"route="/v1/groups/{group}/keys" method=POST status=201"#))
        .filter_map(elapsed)
        .collect();
    let generations = log
        .lines()
        .filter(|l| {
            l.contains("generated key pair on the token") && l.contains(&format!("key_type={kind}"))
        })
        .filter_map(elapsed)
        .collect();
    (mean_of_last(requests), mean_of_last(generations))
}

/// The value of `field=` in the daemon's log.
/// Starts byokd on `d`'s configuration with a NOTIFY_SOCKET; returns the time to READY=1 and
/// the start-up phases it logs.
fn time_to_ready(d: &Daemon) -> Startup {
    let s = support::startup::time_to_ready(&d.config, &d.path(""), Duration::from_secs(60));
    let ms = |field| {
        s.field(field)
            .unwrap_or_else(|| panic!("no {field} in the start-up log:\n{}", s.log))
    };
    Startup {
        ready_s: s.ready_s,
        login_ms: ms("login_ms"),
        self_test_ms: ms("self_test_ms"),
        hsm_ms: ms("hsm_ms"),
    }
}

fn section_footprint(o: &Opts, rep: &mut Report) {
    println!("\n[footprint] idle and with 10,000 groups / 50,000 keys (rotation on for all)");
    // Idle, empty state.
    let idle = Daemon::start();
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_kib(idle.pid().unwrap());
    drop(idle);
    rep.row(
        "footprint",
        "RSS idle, empty state",
        format!("{:.1} MiB", idle_rss as f64 / 1024.0),
        "<= 20 MiB",
        Some(idle_rss <= 20 * 1024),
    );

    let t = Instant::now();
    let mut d = Daemon::start_with(Options {
        seed_state: Some(seed_big),
        idle_timeout_ms: 60_000,
        max_body_bytes: 65536,
        ..Options::default()
    });
    println!(
        "  (seeded {} keys and started in {:.1} s)",
        BIG.total_keys(),
        t.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.pid().unwrap();
    let big_rss = rss_kib(pid);
    rep.row(
        "footprint",
        format!(
            "RSS with {} groups / {} keys",
            BIG.small_groups + 1,
            BIG.total_keys()
        ),
        format!("{:.1} MiB", big_rss as f64 / 1024.0),
        "<= 80 MiB",
        Some(big_rss <= 80 * 1024),
    );
    // Idle CPU over a short window, extrapolated to an hour.
    let c0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(o.idle_secs));
    let c1 = cpu_ticks(pid);
    let cpu_s = (c1 - c0) as f64 / 100.0;
    let per_hour = cpu_s * 3600.0 / o.idle_secs as f64;
    rep.row(
        "footprint",
        format!("idle CPU, measured over {} s, per hour", o.idle_secs),
        format!("{per_hour:.2} s/h"),
        "near zero",
        Some(per_hour < 10.0),
    );
    // Control API on the same state.
    let mut api = vec![];
    if o.wants("api") {
        let cfg = client_config(d.dir.path(), ADMIN);
        for f in support::control::measure(&cfg, d.port, "/v1/groups/bench-group/keys", 200) {
            rep.row(
                "api",
                format!("GET 10,000 keys, {}", f.mode),
                format!(
                    "{:.0} req/s p50 {:.1} p99 {:.1} ms",
                    f.per_second, f.p50_ms, f.p99_ms
                ),
                "",
                None,
            );
            api.push(
                json!({"mode": f.mode, "requests": f.requests, "per_second": f.per_second,
                "p50_ms": f.p50_ms, "p99_ms": f.p99_ms, "body_bytes": f.body_bytes}),
            );
        }
    }
    d.stop();
    // State bytes per key.
    let state_dir = d.path("state");
    let state_bytes = std::fs::read_dir(&state_dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let per_key = state_bytes as f64 / BIG.total_keys() as f64;
    rep.row(
        "footprint",
        "state file bytes per key (largest slot / keys)",
        format!(
            "{per_key:.0} B ({:.1} MiB)",
            state_bytes as f64 / 1_048_576.0
        ),
        "",
        None,
    );
    // Start-up to READY=1, median of 3, with the HSM phases the daemon times itself.
    let mut starts: Vec<Startup> = (0..3).map(|_| time_to_ready(&d)).collect();
    starts.sort_by(|a, b| a.ready_s.total_cmp(&b.ready_s));
    let st = starts[1];
    rep.row(
        "footprint",
        "start-up to READY=1 with that state (HSM start-up incl.)",
        format!("{:.0} ms", st.ready_s * 1e3),
        "",
        None,
    );
    let excl_login = st.ready_s * 1e3 - st.login_ms;
    rep.row(
        "footprint",
        "start-up excluding HSM login",
        format!("{excl_login:.0} ms (login {:.0} ms)", st.login_ms),
        "<= 300 ms",
        Some(excl_login <= 300.0),
    );
    let excl_hsm = st.ready_s * 1e3 - st.hsm_ms;
    rep.row(
        "footprint",
        "start-up excluding all HSM start-up (login + wrap self-test)",
        format!("{excl_hsm:.0} ms (self-test {:.0} ms)", st.self_test_ms),
        "",
        None,
    );
    let login = st.login_ms / 1e3;
    // One state commit (what every journalled step costs) at this size and when small.
    let commit_big = commit_ms(&state_dir);
    let small = tempfile::tempdir().unwrap();
    support::seed::seed(
        small.path(),
        rig::TENANT,
        rig::CLIENT,
        support::seed::Seed {
            big_group_keys: 100,
            small_groups: 0,
            keys_per_group: 0,
            rotation: false,
        },
    );
    let commit_small = commit_ms(small.path());
    rep.row(
        "profile",
        "one state commit (encode + write + fsync + rename), 50,000 / 100 keys",
        format!("{:.1} / {:.1} ms", commit_big.0, commit_small.0),
        "",
        None,
    );
    rep.row(
        "profile",
        "  of which postcard encoding, 50,000 / 100 keys",
        format!("{:.1} / {:.2} ms", commit_big.1, commit_small.1),
        "",
        None,
    );
    rep.put(
        "footprint",
        json!({"idle_rss_kib": idle_rss, "big_rss_kib": big_rss, "groups": BIG.small_groups + 1,
               "keys": BIG.total_keys(), "idle_cpu_window_s": o.idle_secs,
               "idle_cpu_s_per_hour": per_hour, "state_bytes": state_bytes,
               "state_bytes_per_key": per_key, "startup_ms": starts.iter().map(|s| s.ready_s * 1e3).collect::<Vec<_>>(),
               "hsm_login_ms": login * 1e3, "hsm_self_test_ms": st.self_test_ms, "hsm_startup_ms": st.hsm_ms, "commit_ms_50k_keys": commit_big.0,
               "encode_ms_50k_keys": commit_big.1, "commit_ms_100_keys": commit_small.0,
               "encode_ms_100_keys": commit_small.1}),
    );
    if !api.is_empty() {
        rep.put("control_api", json!(api));
    }
}

/// One durable key record (a push's Azure version on one key) in the state in `dir`, median of
/// 7: (whole commit, of which postcard encoding of the changed record), ms.
fn commit_ms(dir: &Path) -> (f64, f64) {
    let (mut store, mut state, _) = byokd::store::Store::open(dir).unwrap();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let Some(id) = state.groups.keys().find_map(|g| {
        let first = state.keys_in(g).unwrap().into_iter().next()?;
        Some((first.group, first.name))
    }) else {
        return (0.0, 0.0);
    };
    let whole = median(
        (0..7u32)
            .map(|i| {
                let t = Instant::now();
                if let Some(k) = state.keys.get_mut(&id).unwrap() {
                    k.azure_version = Some(format!("{i:032x}").into());
                }
                store.commit(&mut state).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    let encode = median(
        (0..7)
            .map(|_| {
                let t = Instant::now();
                let bytes = postcard::to_allocvec(&state.keys.get(&id).unwrap()).unwrap();
                std::hint::black_box(bytes);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    (whole, encode)
}

// ---------------------------------------------------------------------------------------------

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg_at_start": load.trim(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--raw-hsm") {
        raw_hsm(&args[i + 1..]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let o = Opts::parse();
    let started = Instant::now();
    let mut rep = Report::default();
    rep.put("machine", machine());
    println!("byokd-bench: {}", rep.json["machine"]);
    if o.wants("sdk") {
        section_sdk(&o, &mut rep);
    }
    if o.wants("budget") {
        section_budget(&o, &mut rep);
    }
    if o.wants("hsm") {
        section_hsm(&o, &mut rep);
    }
    if o.wants("footprint") || o.wants("api") {
        section_footprint(&o, &mut rep);
    }
    let total = started.elapsed().as_secs_f64();
    rep.put("suite_seconds", json!(total));
    rep.put(
        "loadavg_at_end",
        json!(
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        ),
    );
    rep.print_table();
    println!("suite ran in {total:.0} s");
    if let Some(path) = &o.out {
        let mut v = serde_json::Map::new();
        v.append(&mut rep.json);
        v.insert(
            "table".into(),
            json!(
                rep.rows
                    .iter()
                    .map(|r| json!({"section": r.section, "metric": r.metric,
                "value": r.value, "goal": r.goal, "met": r.met}))
                    .collect::<Vec<_>>()
            ),
        );
        std::fs::write(path, serde_json::to_vec_pretty(&Value::Object(v)).unwrap()).unwrap();
        println!("wrote {}", path.display());
    }
}
