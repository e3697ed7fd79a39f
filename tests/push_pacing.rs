//! Per-vault CREATE pacing (docs/byok-protocol.md#throttling-and-retries): one sync job pushes many keys into a vault whose
//! emulator enforces the CREATE budget (scaled by a time factor). With byokd's budget set to the
//! same figures no 429 is drawn at all and the job shares one KEK; with byokd's pacing off the
//! emulator does throttle, and the 429s are retried inside the client without reaching the job.
//! Imports run several at once, never more than `azure.vault_concurrent_imports` per vault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod control_rig;

use byokd_emulator::{
    AppConfig, Emulator, EmulatorConfig, EmulatorHandle, FaultAction, FaultRule, KeyPoolConfig, Op,
    RecoveryLevel, ThrottleConfig, VaultOptions,
};
use control_rig::{ADMIN, Daemon, OPERATOR, Options};
use std::time::{Duration, Instant};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b";
const SECRET: &str = "Qv8~pacing.KnownSecret-0042";
const VAULT: &str = "byokd-pacing";
/// Keys pushed in the one job: well over the 10-CREATE burst.
const KEYS: usize = 30;
/// The emulator's and byokd's window: Azure's 10 s scaled by 0.3, so 10 CREATEs per 3 s. A
/// push of one key takes well under the 300 ms per CREATE this allows, so the budget binds.
const WINDOW_MS: u64 = 3_000;

struct Rig {
    _rt: tokio::runtime::Runtime,
    emu: EmulatorHandle,
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

fn start(byokd_budget: u32) -> Rig {
    start_with(byokd_budget, 4)
}

fn start_with(byokd_budget: u32, concurrent_imports: u32) -> Rig {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("emulator-ca.pem");
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig {
            ca_out: Some(ca_path.clone()),
            key_pool: KeyPoolConfig {
                rsa2048: 2,
                rsa3072: 0,
                rsa4096: 0,
            },
            delete_pending_ms: 100,
            throttling: ThrottleConfig {
                enabled: true,
                time_factor: WINDOW_MS as f64 / 10_000.0,
                ..ThrottleConfig::default()
            },
            ..EmulatorConfig::default()
        }))
        .unwrap();
    emu.add_app(AppConfig::with_secret(TENANT, CLIENT, SECRET))
        .unwrap();
    emu.add_vault(
        VAULT,
        VaultOptions {
            recovery_level: RecoveryLevel::RecoverablePurgeable,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let addr = emu.addr();
    let sections = format!(
        r#"
[azure]
cloud = "public"
extra_ca = ["{ca}"]
kek_size = 2048
retry_base_ms = 20
max_attempts = 20
vault_create_budget = {byokd_budget}
vault_budget_window_ms = {WINDOW_MS}
vault_concurrent_imports = {concurrent_imports}

[azure.resolve]
"login.microsoftonline.com" = "{addr}"
"{VAULT}.vault.azure.net" = "{addr}"
"#,
        ca = ca_path.display()
    );
    let daemon = Daemon::start_with(Options {
        hsm_extra: "allow_host_wrap = true\n".into(),
        sections,
        ..Options::default()
    });
    let secret_file = daemon.path("client-secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let out = daemon.ctl(
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
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = daemon.ctl(
        ADMIN,
        &[
            "group",
            "create",
            "paced",
            "--credential",
            "azure-app",
            "--vault",
            VAULT,
            "--key-type",
            "EC-P256",
            "--key-ops",
            "sign,verify",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for k in 0..KEYS {
        let out = daemon.ctl(OPERATOR, &["key", "create", "paced", &format!("k{k}")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Rig {
        _rt: rt,
        emu,
        daemon,
        _dir: dir,
    }
}

/// Runs `group sync` for every key; returns the job as JSON.
fn sync_all(rig: &Rig) -> serde_json::Value {
    let d = &rig.daemon;
    let (code, job) = d.ctl_json(OPERATOR, &["group", "sync", "paced"]);
    assert_eq!(code, 0, "group sync: {job}\n--- daemon log\n{}", d.log());
    job
}

fn create_requests(rig: &Rig) -> (usize, usize) {
    let reqs = rig.emu.requests();
    let kek_creates = reqs
        .iter()
        .filter(|r| r.op == Op::CreateKey && r.status == 200)
        .count();
    let imports = reqs
        .iter()
        .filter(|r| r.op == Op::ImportKey && r.status == 200)
        .count();
    (kek_creates, imports)
}

#[test]
fn a_paced_job_draws_no_429_and_shares_one_kek() {
    let rig = start(10);
    let job = sync_all(&rig);
    assert_eq!(job["state"], "succeeded", "{job}");
    let counters = rig.emu.counters(VAULT);
    assert_eq!(counters.throttled, 0, "the emulator throttled a paced push");
    assert_eq!(rig.emu.throttled_total(), 0);
    assert_eq!(counters.imports, KEYS as u64);
    let (kek_creates, imports) = create_requests(&rig);
    assert_eq!(kek_creates, 1, "several keys in one job share one KEK");
    assert_eq!(imports, KEYS);
    assert!(rig.emu.live_keks(VAULT).is_empty());
    assert_eq!(rig.emu.key_versions(VAULT, "paced").len(), KEYS);
}

#[test]
fn unpaced_429s_are_retried_without_reaching_the_job() {
    let rig = start(0);
    let job = sync_all(&rig);
    assert_eq!(job["state"], "succeeded", "{job}");
    let counters = rig.emu.counters(VAULT);
    assert!(
        counters.throttled > 0,
        "without pacing, {} CREATEs in a burst must exceed the emulator's budget",
        KEYS + 1
    );
    assert_eq!(counters.imports, KEYS as u64);
    // The 429s were absorbed by retries: the job shows them only as `waiting-retry` steps and
    // carries no error.
    assert!(job["error"].is_null(), "{job}");
    let retries = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["message"].as_str().unwrap_or("").contains("retrying in"))
        .count();
    assert!(
        retries > 0,
        "each absorbed 429 shows as a retry step: {job}"
    );
    assert!(rig.emu.live_keks(VAULT).is_empty());
    assert_eq!(rig.emu.key_versions(VAULT, "paced").len(), KEYS);
}

#[test]
fn imports_run_concurrently_up_to_the_per_vault_bound() {
    const BOUND: u64 = 3;
    let rig = start_with(10, BOUND as u32);
    // Every import is held a while before the emulator acts on it: the ones in flight pile up.
    let holds = rig.emu.holds();
    rig.emu.inject_fault(FaultRule::every(
        Op::ImportKey,
        FaultAction::Delay { ms: 1500 },
    ));
    let (code, started) = rig
        .daemon
        .ctl_json(OPERATOR, &["group", "sync", "paced", "--no-wait"]);
    assert_eq!(code, 0, "{started}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.emu.holds() < holds + BOUND {
        assert!(Instant::now() < deadline, "{}", rig.daemon.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Several are in flight at once, and for as long as they are held no other one is sent.
    for _ in 0..40 {
        let in_flight = rig.emu.holds() - holds;
        assert!(
            in_flight == BOUND,
            "{in_flight} imports were sent while {BOUND} were held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rig.emu.clear_faults();
    // A second sync waits for the vault behind the first, so when it ends the first has too.
    let job = sync_all(&rig);
    assert_eq!(job["state"], "succeeded", "{job}");
    let first = started["job"]["id"].as_str().unwrap();
    let (_, first) = rig.daemon.ctl_json(OPERATOR, &["job", "show", first]);
    assert_eq!(first["state"], "succeeded", "{first}");
    assert!(first["error"].is_null(), "{first}");
    assert_eq!(rig.emu.key_versions(VAULT, "paced").len(), KEYS);
    assert!(rig.emu.live_keks(VAULT).is_empty());
}

#[test]
fn a_throttled_import_is_retried_in_a_slot_of_its_own() {
    let rig = start(10);
    // Two imports past the first full window are refused once each (as Azure may refuse when
    // its count and byokd's differ): their retries must take new slots of byokd's window, not
    // land in slots promised to later imports and draw the emulator's strict window in turn.
    rig.emu.inject_fault(FaultRule {
        skip: 12,
        times: Some(2),
        ..FaultRule::every(Op::ImportKey, FaultAction::Throttle)
    });
    let job = sync_all(&rig);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(job["error"].is_null(), "{job}");
    assert_eq!(rig.emu.throttled_total(), 2, "only the two injected 429s");
    assert_eq!(
        rig.emu.counters(VAULT).throttled,
        0,
        "a retry drew the strict window's 429\n{}",
        rig.daemon.log()
    );
    let (_, imports) = create_requests(&rig);
    assert_eq!(imports, KEYS);
    assert_eq!(rig.emu.key_versions(VAULT, "paced").len(), KEYS);
}
