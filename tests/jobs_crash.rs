//! Durable jobs under SIGKILL: the real daemon on a SoftHSM token syncs, rotates, deletes keys on
//! cloud and checks cloud state in the Azure emulator over real TLS and is killed at every
//! journalled step in turn, then restarted. Each time the job must end `succeeded` (or `failed`
//! with a reason), the vault must hold no KEK, the number of Azure versions must be exact (a
//! rotation adds exactly one; a delete leaves none, purged) and the local keys intact. Also:
//! cancel and retention.
//!
//! Kill points are named by the typed journal step (`byokd::model::JobStep`) the job has
//! journalled when it dies, and every typed step of every kind is some kill point (checked by
//! `every_typed_step_of_every_kind_is_a_kill_point`). They need no hooks in the daemon: the
//! emulator holds one request (before acting on it, or after committing it but before
//! answering) and counts the hold, or the test watches the job's typed journal for a step; the
//! test then kills the daemon, so it dies with exactly that request in flight or just past that
//! step. The harness is generic over a job kind and its kill points.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod control_rig;

use byokd::model::{JobKind, JobStep};
use byokd_emulator::{
    AppConfig, Emulator, EmulatorConfig, EmulatorHandle, FaultAction, FaultRule, KeyPoolConfig, Op,
    RecoveryLevel, VaultOptions,
};
use control_rig::{ADMIN, ADMIN2, Daemon, OPERATOR, Options};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "5d2f0a11-8c4e-4f7b-b1a2-3c4d5e6f7a8b";
const SECRET: &str = "Crash~Test.Secret-0099";
const VAULT: &str = "byokd-crash";
/// A vault without soft-delete (recovery level `Purgeable`): a delete there is final.
const VAULT_NO_SOFT_DELETE: &str = "byokd-crash-nsd";
/// Keys per synchronize job: several, so kills land between imports too.
const KEYS: usize = 3;
/// Long enough that a held request is never answered while the test runs.
const HOLD_MS: u64 = 3_600_000;

struct Rig {
    rt: tokio::runtime::Runtime,
    emu: EmulatorHandle,
    daemon: Daemon,
    _ca_dir: tempfile::TempDir,
}

fn start(extra_sections: &str) -> Rig {
    start_with("", extra_sections)
}

/// As [`start`], with extra `[azure]` lines (e.g. `vault_concurrent_imports = 2\n`).
fn start_with(azure_extra: &str, extra_sections: &str) -> Rig {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("emulator-ca.pem");
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig {
            ca_out: Some(ca_path.clone()),
            key_pool: KeyPoolConfig {
                rsa2048: 4,
                rsa3072: 0,
                rsa4096: 0,
            },
            delete_pending_ms: 200,
            ..EmulatorConfig::default()
        }))
        .unwrap();
    emu.add_app(AppConfig::with_secret(TENANT, CLIENT, SECRET))
        .unwrap();
    let vault = VaultOptions {
        recovery_level: RecoveryLevel::RecoverablePurgeable,
        ..VaultOptions::default()
    };
    emu.add_vault(VAULT, vault).unwrap();
    emu.add_vault(
        VAULT_NO_SOFT_DELETE,
        VaultOptions {
            recovery_level: RecoveryLevel::Purgeable,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    // No per-vault budget: a kill point names the n-th request of an operation, and a 429 would
    // count as one.
    emu.set_throttling(byokd_emulator::ThrottleConfig {
        enabled: false,
        ..byokd_emulator::ThrottleConfig::default()
    });
    let sections = format!(
        "\n[azure]\ncloud = \"public\"\nextra_ca = [\"{ca}\"]\nkek_size = 2048\nretry_base_ms = 20\n{azure_extra}\n\
         [azure.resolve]\n\"login.microsoftonline.com\" = \"{addr}\"\n\"{VAULT}.vault.azure.net\" = \"{addr}\"\n\
         \"{VAULT_NO_SOFT_DELETE}.vault.azure.net\" = \"{addr}\"\n{extra_sections}",
        ca = ca_path.display(),
        addr = emu.addr(),
    );
    let daemon = Daemon::start_with(Options {
        hsm_extra: "allow_host_wrap = true\n".into(),
        sections,
        ..Options::default()
    });
    let secret_file = daemon.path("secret.txt");
    std::fs::write(&secret_file, SECRET).unwrap();
    let out = daemon.ctl(
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&secret_file).unwrap();
    Rig {
        rt,
        emu,
        daemon,
        _ca_dir: ca_dir,
    }
}

fn ok(d: &Daemon, who: &str, args: &[&str]) {
    let out = d.ctl(who, args);
    assert!(
        out.status.success(),
        "byokctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates group `group` with `n` EC-P256 keys k0..; returns each key's `key show` view.
fn group_with_keys(rig: &Rig, group: &str, n: usize) -> Vec<Value> {
    group_with_keys_in(rig, group, n, VAULT)
}

/// As [`group_with_keys`], on `vault`.
fn group_with_keys_in(rig: &Rig, group: &str, n: usize, vault: &str) -> Vec<Value> {
    let d = &rig.daemon;
    ok(
        d,
        ADMIN,
        &[
            "group",
            "create",
            group,
            "--credential",
            "app",
            "--vault",
            vault,
            "--key-type",
            "EC-P256",
            "--key-ops",
            "sign,verify",
        ],
    );
    (0..n)
        .map(|i| {
            let key = format!("k{i}");
            ok(d, OPERATOR, &["key", "create", group, &key]);
            d.ctl_json(OPERATOR, &["key", "show", group, &key]).1
        })
        .collect()
}

/// Starts a job with a `--no-wait` byokctl command; returns its id.
fn start_job(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    all.push("--no-wait");
    let out = d.ctl(OPERATOR, &all);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.pointer("/job/id")
        .and_then(Value::as_str)
        .unwrap_or_else(|| {
            panic!(
                "no job id from {args:?}: {v} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned()
}

fn job(d: &Daemon, id: &str, wait: u64) -> Value {
    let (status, v) = d.curl(
        Some(OPERATOR),
        "GET",
        &format!("/v1/jobs/{id}?wait={wait}"),
        None,
    );
    assert_eq!(status, 200, "job {id}: {v}");
    v
}

fn is_final(job: &Value) -> bool {
    ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or(""))
}

fn wait_final(d: &Daemon, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let v = job(d, id, 10);
        if is_final(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not end: {v}\n--- daemon log\n{}",
            d.log()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The generic crash harness.

/// Where the daemon dies.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Right after the job was accepted (it may still be pending).
    AtSubmit,
    /// While request number `skip` (0-based) of `op` is in flight, before Azure acted on it.
    Before { op: Op, skip: u32 },
    /// After Azure committed request number `skip` of `op`, before byokd saw the answer.
    AfterCommit { op: Op, skip: u32 },
    /// Several requests of `op` in flight at once, in arrival order: `true` held after Azure
    /// committed it (answer lost), `false` held before Azure acted on it.
    Held { op: Op, committed: &'static [bool] },
    /// As soon as the job's typed journal shows the kill point's step (the daemon may have gone
    /// on by a little: it runs until the kill lands).
    Journalled,
    /// Like `Journalled` on a rotation's `rotate.key-planned` step, then, with the daemon dead,
    /// a key pair labelled for the planned key is generated on the token by another PKCS#11
    /// client: the HSM as a crash between the key's generation and its record leaves it,
    /// whenever the kill really landed.
    GeneratedNotRecorded,
}

struct KillPoint {
    /// The typed journal step (`JobStep::code`) the job has journalled when it dies, `None`
    /// before its first one.
    step: Option<&'static str>,
    /// What is in flight then.
    what: &'static str,
    kill: Kill,
}

impl KillPoint {
    fn name(&self) -> String {
        format!("{} / {}", self.step.unwrap_or("(no step yet)"), self.what)
    }
}

/// A kill point before the job's first typed step.
const fn kp0(what: &'static str, kill: Kill) -> KillPoint {
    KillPoint {
        step: None,
        what,
        kill,
    }
}

/// A kill point after the typed step `step`.
const fn kp(step: &'static str, what: &'static str, kill: Kill) -> KillPoint {
    KillPoint {
        step: Some(step),
        what,
        kill,
    }
}

/// A job kind under crash test: its kill points, how to set a target up (returning a snapshot
/// to compare against), how to start the job, and how to judge the end.
struct JobCase {
    kind: &'static str,
    job_kind: byokd::model::JobKind,
    kill_points: Vec<KillPoint>,
    prepare: fn(&Rig, &str) -> Value,
    start: fn(&Rig, &str) -> String,
    check: fn(&Rig, &str, &Value, &Value),
}

fn wait_hold(rig: &Rig, id: &str, before: u64) {
    wait_holds(rig, id, before + 1);
}

/// Waits until the emulator holds `target` requests in all (counted since it started).
fn wait_holds(rig: &Rig, id: &str, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.emu.holds() < target {
        let v = job(&rig.daemon, id, 0);
        assert!(
            !is_final(&v) && Instant::now() < deadline,
            "the kill point was never reached: {v}\n--- daemon log\n{}",
            rig.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The typed steps of a job's journal, as the API shows them.
fn journal_codes(job: &Value) -> Vec<&str> {
    job["journal"]
        .as_array()
        .unwrap_or_else(|| panic!("a job shows its typed journal: {job}"))
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect()
}

fn wait_journal(rig: &Rig, id: &str, step: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = job(&rig.daemon, id, 5);
        if journal_codes(&v).contains(&step) {
            return v;
        }
        assert!(
            !is_final(&v) && Instant::now() < deadline,
            "the journal never showed {step:?}: {v}"
        );
    }
}

/// Runs one job of `case` on a fresh target, kills the daemon at `point`, restarts it and
/// checks the end state. Returns the job's last step before the kill and its final view.
fn run_kill_point(rig: &mut Rig, case: &JobCase, n: usize, point: &KillPoint) -> (String, Value) {
    let target = format!("crash-{}-{n}", case.kind);
    let snapshot = (case.prepare)(rig, &target);
    if let Kill::Before { op: Op::Token, .. } | Kill::AfterCommit { op: Op::Token, .. } = point.kill
    {
        // A fresh process has no cached token, so this job asks for one.
        rig.daemon.stop();
        rig.daemon.spawn();
    }
    let holds = rig.emu.holds();
    match point.kill {
        Kill::Before { op, skip } => rig.emu.inject_fault(FaultRule {
            skip,
            ..FaultRule::next(op, 1, FaultAction::Delay { ms: HOLD_MS })
        }),
        Kill::AfterCommit { op, skip } => rig.emu.inject_fault(FaultRule {
            skip,
            ..FaultRule::next(op, 1, FaultAction::CommitThenHold { ms: HOLD_MS })
        }),
        // Faults fire in insertion order, one request each: the n-th rule takes the n-th request.
        Kill::Held { op, committed } => {
            for &c in committed {
                let action = if c {
                    FaultAction::CommitThenHold { ms: HOLD_MS }
                } else {
                    FaultAction::Delay { ms: HOLD_MS }
                };
                rig.emu.inject_fault(FaultRule::next(op, 1, action));
            }
        }
        // Every Azure call takes a while, so the daemon is still near the step when it dies.
        Kill::Journalled | Kill::GeneratedNotRecorded => {
            rig.emu.set_rtt_delay(Duration::from_millis(400))
        }
        Kill::AtSubmit => {}
    }
    let id = (case.start)(rig, &target);
    let at_kill = match point.kill {
        Kill::AtSubmit => Value::Null,
        Kill::Before { .. } | Kill::AfterCommit { .. } => {
            wait_hold(rig, &id, holds);
            // The daemon is blocked on the held request: this is its journal as it dies.
            job(&rig.daemon, &id, 0)
        }
        Kill::Held { committed, .. } => {
            wait_holds(rig, &id, holds + committed.len() as u64);
            job(&rig.daemon, &id, 0)
        }
        Kill::Journalled | Kill::GeneratedNotRecorded => {
            let step = point.step.expect("a journal kill point names its step");
            wait_journal(rig, &id, step)
        }
    };
    // The job dies having journalled the step the kill point is named by (and none before
    // the first step).
    if !at_kill.is_null() {
        let codes = journal_codes(&at_kill);
        match point.step {
            Some(step) => assert!(
                codes.contains(&step),
                "{}: killed before {step} was journalled: {at_kill}",
                point.name()
            ),
            None => assert!(
                codes.is_empty(),
                "{}: killed after a typed step: {at_kill}",
                point.name()
            ),
        }
    }
    rig.daemon.kill9();
    if let Kill::GeneratedNotRecorded = point.kill {
        let planned = planned_key(&at_kill);
        generate_on_token(rig, &format!("byokd/{target}/{planned}"));
    }
    rig.emu.clear_faults();
    rig.emu.set_rtt_delay(Duration::ZERO);
    rig.daemon.spawn();
    let end = wait_final(&rig.daemon, &id);
    (case.check)(rig, &target, &snapshot, &end);
    let imports: Vec<String> = rig
        .emu
        .requests()
        .iter()
        .filter(|r| r.op == Op::ImportKey && r.path.contains(&format!("/keys/{target}")))
        .map(|r| r.status.to_string())
        .collect();
    let step = format!(
        "{}; import answers seen: [{}]",
        at_kill["step"].as_str().unwrap_or("(not read)"),
        imports.join(",")
    );
    (step, end)
}

// ---------------------------------------------------------------------------------------------
// "Synchronize HSM protected key(s)".

fn sync_case() -> JobCase {
    use Kill::*;
    let before = |op, skip| Before { op, skip };
    let after = |op, skip| AfterCommit { op, skip };
    JobCase {
        kind: "sync",
        job_kind: JobKind::Sync,
        kill_points: vec![
            kp0("job accepted (pending)", AtSubmit),
            kp0("token request in flight", before(Op::Token, 0)),
            kp0("token issued, answer not seen", after(Op::Token, 0)),
            kp(
                "push.kek-planned",
                "KEK create in flight",
                before(Op::CreateKey, 0),
            ),
            kp(
                "push.kek-planned",
                "KEK created, answer lost",
                after(Op::CreateKey, 0),
            ),
            kp("push.kek-created", "KEK recorded", Journalled),
            // Imports run several at once (up to `azure.vault_concurrent_imports`, default 4),
            // so while one is held the others of the job may be in flight or done.
            kp(
                "push.import-sent",
                "import 1 in flight",
                before(Op::ImportKey, 0),
            ),
            kp(
                "push.import-sent",
                "import 1 committed, answer lost",
                after(Op::ImportKey, 0),
            ),
            kp(
                "push.import-sent",
                "import 2 in flight (1 and 3 may be done)",
                before(Op::ImportKey, 1),
            ),
            kp(
                "push.import-sent",
                "import 2 committed, answer lost",
                after(Op::ImportKey, 1),
            ),
            kp(
                "push.import-sent",
                "import 3 committed, answer lost",
                after(Op::ImportKey, 2),
            ),
            kp(
                "push.import-sent",
                "imports 1 to 3 in flight at once",
                Held {
                    op: Op::ImportKey,
                    committed: &[false, false, false],
                },
            ),
            kp(
                "push.import-sent",
                "imports 1 to 3 committed, all answers lost",
                Held {
                    op: Op::ImportKey,
                    committed: &[true, true, true],
                },
            ),
            kp(
                "push.import-sent",
                "import 1 committed (lost), 2 and 3 in flight",
                Held {
                    op: Op::ImportKey,
                    committed: &[true, false, false],
                },
            ),
            kp(
                "push.import-sent",
                "import 2 committed (lost), 1 and 3 in flight",
                Held {
                    op: Op::ImportKey,
                    committed: &[false, true, false],
                },
            ),
            kp(
                "push.imported",
                "a version recorded, other imports in flight",
                Journalled,
            ),
            kp(
                "push.imported",
                "all versions recorded, KEK delete in flight",
                before(Op::DeleteKey, 0),
            ),
            kp(
                "push.imported",
                "KEK deleted, answer lost",
                after(Op::DeleteKey, 0),
            ),
            kp(
                "push.kek-deleted",
                "KEK deleted, waiting until it is listed",
                before(Op::GetDeletedKey, 0),
            ),
            kp(
                "push.kek-purge-sent",
                "KEK purge in flight",
                before(Op::PurgeDeletedKey, 0),
            ),
            kp(
                "push.kek-purge-sent",
                "KEK purged, answer lost",
                after(Op::PurgeDeletedKey, 0),
            ),
            kp("push.kek-settled", "KEK purged and recorded", Journalled),
        ],
        prepare: |rig, group| Value::Array(group_with_keys(rig, group, KEYS)),
        start: |rig, group| start_job(&rig.daemon, &["group", "sync", group]),
        check: check_sync,
    }
}

/// The invariants after a synchronize job ended.
fn check_sync(rig: &Rig, group: &str, before: &Value, job: &Value) {
    let d = &rig.daemon;
    check_end(group, job);
    assert!(
        rig.emu.live_keks(VAULT).is_empty(),
        "{group}: a live KEK was left in the vault: {job}"
    );
    let versions = rig.emu.key_versions(VAULT, group);
    let tags: BTreeSet<&String> = versions
        .iter()
        .filter_map(|v| v.tags.get("byokd-fingerprint"))
        .collect();
    assert_eq!(
        tags.len(),
        versions.len(),
        "{group}: a key was imported twice"
    );
    let mut recorded = 0;
    for key in before.as_array().unwrap() {
        let name = key["name"].as_str().unwrap();
        let (code, now) = d.ctl_json(OPERATOR, &["key", "show", group, name]);
        assert_eq!(code, 0, "{group}/{name}: the local key is lost: {now}");
        assert_eq!(
            now["check_digits"], key["check_digits"],
            "{group}/{name}: a different key"
        );
        assert_eq!(
            now["hsm_id"], key["hsm_id"],
            "{group}/{name}: a different HSM object"
        );
        assert_eq!(now["algorithm"], key["algorithm"]);
        if let Some(v) = now["version"].as_str() {
            assert!(
                versions.iter().any(|x| x.version == v),
                "{group}/{name}: version {v} is not in Azure"
            );
            recorded += 1;
        }
    }
    assert_eq!(
        versions.len(),
        recorded,
        "{group}: Azure versions differ from the versions byokd recorded: {job}"
    );
    if job["state"] == "succeeded" {
        assert_eq!(recorded, KEYS, "{group}: every key is pushed");
        assert!(
            rig.emu
                .deleted_keys(VAULT)
                .iter()
                .all(|k| !k.name.starts_with("byokd-kek")),
            "{group}: the KEK is purged on a vault that allows it"
        );
    }
}

/// Kills each case's job at each of its kill points in turn; every job must end `succeeded`.
fn run_cases(cases: &[JobCase]) {
    let mut rig = start("");
    let total: usize = cases.iter().map(|c| c.kill_points.len()).sum();
    let mut covered = 0;
    for case in cases {
        for (n, point) in case.kill_points.iter().enumerate() {
            let (step, end) = run_kill_point(&mut rig, case, n, point);
            assert_eq!(
                end["state"],
                "succeeded",
                "{} killed at {:?}: {end}",
                case.kind,
                point.name()
            );
            println!(
                "{} killed at {:<70} -> {:<9} (last message at the kill: {step})",
                case.kind,
                point.name(),
                end["state"].as_str().unwrap_or("")
            );
            covered += 1;
        }
    }
    let kinds: Vec<&str> = cases.iter().map(|c| c.kind).collect();
    println!(
        "crash test ({}): {covered} kill points covered",
        kinds.join(", ")
    );
    assert_eq!(covered, total);
    assert!(rig.emu.schema_violations().is_empty());
    drop(rig.rt);
}

#[test]
fn a_sync_killed_at_every_journalled_step_finishes_without_a_kek_or_a_duplicate() {
    run_cases(&[sync_case()]);
}

#[test]
fn a_rotation_killed_at_every_journalled_step_adds_exactly_one_version() {
    run_cases(&[rotate_case()]);
}

#[test]
fn a_delete_on_cloud_killed_at_every_journalled_step_deletes_and_purges_once() {
    run_cases(&[delete_case(), delete_no_soft_delete_case()]);
}

#[test]
fn a_cloud_check_killed_at_every_journalled_step_reports_and_changes_nothing() {
    run_cases(&[check_case()]);
}

/// Every typed journal step of every job kind is the step of some kill point of that kind's
/// crash cases, so each intent and result a restarted daemon resumes from is crash-tested.
#[test]
fn every_typed_step_of_every_kind_is_a_kill_point() {
    let cases = [
        sync_case(),
        rotate_case(),
        delete_case(),
        delete_no_soft_delete_case(),
        check_case(),
        recover_case(),
        purge_case(),
    ];
    for kind in [
        JobKind::Sync,
        JobKind::Rotate,
        JobKind::DeleteOnCloud,
        JobKind::CheckCloud,
        JobKind::Recover,
        JobKind::Purge,
    ] {
        let named: BTreeSet<&str> = cases
            .iter()
            .filter(|c| c.job_kind == kind)
            .flat_map(|c| c.kill_points.iter().filter_map(|p| p.step))
            .collect();
        let typed: BTreeSet<&str> = JobStep::codes_of(kind).into_iter().collect();
        assert_eq!(
            named, typed,
            "{kind:?}: the kill points must name exactly the kind's typed steps"
        );
    }
}

/// A rotation killed between its key's generation and the key's record, then resumed by a
/// daemon that can no longer push the group's key type (restarted without the `host`
/// strategy): the job fails with the reason before it generates a key, and still destroys the
/// key the crash left unrecorded on the token.
#[test]
fn a_resumed_rotation_that_can_no_longer_push_fails_early_and_leaves_no_key() {
    let mut rig = start("");
    let group = "crash-refused";
    let before = pushed_group(&rig, group);
    rig.emu.set_rtt_delay(Duration::from_millis(400));
    let id = start_job(&rig.daemon, &["group", "rotate", group]);
    let at_kill = wait_journal(&rig, &id, "rotate.key-planned");
    rig.daemon.kill9();
    let planned = planned_key(&at_kill);
    generate_on_token(&rig, &format!("byokd/{group}/{planned}"));
    rig.emu.set_rtt_delay(Duration::ZERO);
    let config = std::fs::read_to_string(&rig.daemon.config).unwrap();
    assert!(config.contains("allow_host_wrap = true"), "{config}");
    std::fs::write(
        &rig.daemon.config,
        config.replace("allow_host_wrap = true", "allow_host_wrap = false"),
    )
    .unwrap();
    rig.daemon.spawn();
    let end = wait_final(&rig.daemon, &id);
    assert_eq!(end["state"], "failed", "{end}");
    let error = end["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no wrap strategy is usable") && error.contains("last rotation unchanged"),
        "{end}"
    );
    check_rotate(&rig, group, &before, &end);
    assert_eq!(rig.emu.key_versions(VAULT, group).len(), 1, "{end}");
    drop(rig.rt);
}

// ---------------------------------------------------------------------------------------------
// Shared by rotation and delete on cloud.

/// A group with one key `k0` already pushed; returns `{"group": .., "keys": [..]}`.
fn pushed_group(rig: &Rig, group: &str) -> Value {
    pushed_group_in(rig, group, VAULT)
}

/// As [`pushed_group`], on `vault`.
fn pushed_group_in(rig: &Rig, group: &str, vault: &str) -> Value {
    group_with_keys_in(rig, group, 1, vault);
    ok(&rig.daemon, OPERATOR, &["key", "sync", group, "k0"]);
    let (_, k0) = rig.daemon.ctl_json(OPERATOR, &["key", "show", group, "k0"]);
    assert!(k0["version"].is_string(), "k0 is pushed: {k0}");
    assert_eq!(rig.emu.key_versions(vault, group).len(), 1);
    let (_, g) = rig.daemon.ctl_json(OPERATOR, &["group", "show", group]);
    serde_json::json!({ "group": g, "keys": [k0] })
}

/// The job ended `succeeded`, or `failed` saying why.
fn check_end(group: &str, job: &Value) {
    match job["state"].as_str() {
        Some("succeeded") => {}
        Some("failed") => assert!(
            job["error"].as_str().is_some_and(|e| e.len() > 10),
            "a failed job says why: {job}"
        ),
        _ => panic!("{group}: unexpected end {job}"),
    }
}

/// The key's `key show` view now, which must be the same HSM key as in `before`.
fn local_key_intact(d: &Daemon, group: &str, before: &Value) -> Value {
    let name = before["name"].as_str().unwrap();
    let (code, now) = d.ctl_json(OPERATOR, &["key", "show", group, name]);
    assert_eq!(code, 0, "{group}/{name}: the local key is lost: {now}");
    for field in ["check_digits", "hsm_id", "algorithm"] {
        assert_eq!(now[field], before[field], "{group}/{name}: {field} changed");
    }
    now
}

fn kek_purged(rig: &Rig) -> bool {
    rig.emu
        .deleted_keys(VAULT)
        .iter()
        .all(|k| !k.name.starts_with("byokd-kek"))
}

// ---------------------------------------------------------------------------------------------
// "Rotate key material".

fn rotate_case() -> JobCase {
    use Kill::*;
    let before = |op| Before { op, skip: 0 };
    let after = |op| AfterCommit { op, skip: 0 };
    let generated = "rotate.key-generated";
    JobCase {
        kind: "rotate",
        job_kind: JobKind::Rotate,
        kill_points: vec![
            kp0("job accepted (pending)", AtSubmit),
            kp(
                "rotate.key-planned",
                "key generated in the HSM, not recorded",
                GeneratedNotRecorded,
            ),
            kp(generated, "new key recorded", Journalled),
            kp(generated, "token request in flight", before(Op::Token)),
            kp(generated, "token issued, answer not seen", after(Op::Token)),
            kp(
                "push.kek-planned",
                "KEK create in flight",
                before(Op::CreateKey),
            ),
            kp(
                "push.kek-planned",
                "KEK created, answer lost",
                after(Op::CreateKey),
            ),
            kp("push.kek-created", "KEK recorded", Journalled),
            kp(
                "push.import-sent",
                "import in flight",
                before(Op::ImportKey),
            ),
            kp(
                "push.import-sent",
                "import committed, answer lost",
                after(Op::ImportKey),
            ),
            kp("push.imported", "version recorded", Journalled),
            kp(
                "push.imported",
                "KEK delete in flight",
                before(Op::DeleteKey),
            ),
            kp(
                "push.imported",
                "KEK deleted, answer lost",
                after(Op::DeleteKey),
            ),
            kp(
                "push.kek-deleted",
                "KEK deleted, waiting until it is listed",
                before(Op::GetDeletedKey),
            ),
            kp(
                "push.kek-purge-sent",
                "KEK purge in flight",
                before(Op::PurgeDeletedKey),
            ),
            kp(
                "push.kek-purge-sent",
                "KEK purged, answer lost",
                after(Op::PurgeDeletedKey),
            ),
            kp("push.kek-settled", "KEK purged and recorded", Journalled),
        ],
        prepare: pushed_group,
        start: |rig, group| start_job(&rig.daemon, &["group", "rotate", group]),
        check: check_rotate,
    }
}

/// After a rotation: the old key untouched, at most one new key, exactly one new Azure version
/// if it succeeded (none twice), and `last_rotated` set exactly when it succeeded.
fn check_rotate(rig: &Rig, group: &str, before: &Value, job: &Value) {
    let d = &rig.daemon;
    check_end(group, job);
    assert!(
        rig.emu.live_keks(VAULT).is_empty(),
        "{group}: a live KEK was left in the vault: {job}"
    );
    let old = &before["keys"][0];
    let now = local_key_intact(d, group, old);
    assert_eq!(
        now["version"], old["version"],
        "{group}: k0's version changed"
    );
    let versions = rig.emu.key_versions(VAULT, group);
    let tags: BTreeSet<&String> = versions
        .iter()
        .filter_map(|v| v.tags.get("byokd-fingerprint"))
        .collect();
    assert_eq!(
        tags.len(),
        versions.len(),
        "{group}: a key was imported twice: {job}"
    );
    let (_, list) = d.ctl_json(OPERATOR, &["key", "list", group]);
    let names: Vec<String> = list["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .filter(|n| n != "k0")
        .collect();
    assert!(
        names.len() <= 1,
        "{group}: more than one new key: {names:?}"
    );
    let mut recorded = vec![now["version"].as_str().unwrap().to_owned()];
    for name in &names {
        let (_, k) = d.ctl_json(OPERATOR, &["key", "show", group, name]);
        if let Some(v) = k["version"].as_str() {
            recorded.push(v.to_owned());
        }
    }
    for v in &recorded {
        assert!(
            versions.iter().any(|x| &x.version == v),
            "{group}: recorded version {v} is not in Azure"
        );
    }
    // The token holds exactly the group's recorded keys: no unused key of the rotation is left.
    let mut on_token = token_labels(rig, group);
    on_token.sort();
    let mut expected: Vec<String> = std::iter::once("k0".to_owned())
        .chain(names.iter().cloned())
        .map(|n| format!("byokd/{group}/{n}"))
        .collect();
    expected.sort();
    assert_eq!(
        on_token, expected,
        "{group}: the HSM holds keys byokd did not record: {job}"
    );
    assert_eq!(
        versions.len(),
        recorded.len(),
        "{group}: Azure versions differ from the versions byokd recorded: {job}"
    );
    let (_, g) = d.ctl_json(OPERATOR, &["group", "show", group]);
    if job["state"] == "succeeded" {
        assert_eq!(names.len(), 1, "{group}: the rotation made a key: {job}");
        assert_eq!(versions.len(), 2, "{group}: exactly one new version: {job}");
        assert!(
            g["last_rotated"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{group}: a rotation that succeeded sets last_rotated: {g}"
        );
        assert!(kek_purged(rig), "{group}: the KEK is purged");
    } else {
        assert!(
            g["last_rotated"].is_null(),
            "{group}: a failed rotation leaves last_rotated alone: {g}"
        );
    }
}

/// The key name a rotation journalled in its typed `rotate.key-planned` step.
fn planned_key(job: &Value) -> String {
    job["journal"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "rotate.key-planned")
        .and_then(|s| s["key"].as_str())
        .unwrap_or_else(|| panic!("no planned key in the journal: {job}"))
        .to_owned()
}

/// Runs pkcs11-tool as a user of the rig's token.
fn pkcs11_tool(rig: &Rig, args: &[&str]) -> String {
    let out = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", rig.daemon.path("softhsm2.conf"))
        .args([
            "--module",
            &Daemon::module(),
            "--token-label",
            "ctl-test",
            "--login",
            "--pin",
            "1234",
        ])
        .args(args)
        .output()
        .expect("pkcs11-tool (apt-get install opensc)");
    assert!(
        out.status.success(),
        "pkcs11-tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates an EC P-256 key pair labelled `label` with a 16-byte id, as byokd would.
fn generate_on_token(rig: &Rig, label: &str) {
    pkcs11_tool(
        rig,
        &[
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            label,
            "--id",
            "0badc0ffee0000000000000000000001",
        ],
    );
    assert!(
        token_labels(rig, label.split('/').nth(1).unwrap())
            .iter()
            .any(|l| l == label),
        "the planted key is not on the token"
    );
}

/// The labels of the private keys on the token that belong to `group`.
fn token_labels(rig: &Rig, group: &str) -> Vec<String> {
    let prefix = format!("byokd/{group}/");
    pkcs11_tool(rig, &["--list-objects", "--type", "privkey"])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("label:"))
        .map(|l| l.trim().to_owned())
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// "Delete key material on cloud".

/// Asks for the delete as ADMIN, approves it as ADMIN2; returns the job the approval started.
fn start_delete(rig: &Rig, group: &str) -> String {
    start_approved(rig, "delete-cloud", group)
}

/// Asks for the dual-control group action `action` as ADMIN, approves it as ADMIN2; returns the
/// job the approval started.
fn start_approved(rig: &Rig, action: &str, group: &str) -> String {
    let d = &rig.daemon;
    let (code, pending) = d.ctl_json(ADMIN, &["group", action, group]);
    assert_eq!(code, 0, "{pending}");
    let approval = pending["approval"]["id"].as_str().unwrap();
    let (status, approved) = d.curl(
        Some(ADMIN2),
        "POST",
        &format!("/v1/approvals/{approval}/approve"),
        None,
    );
    assert_eq!(status, 200, "{approved}");
    approved["job"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the approval starts a job: {approved}"))
        .to_owned()
}

fn delete_case() -> JobCase {
    use Kill::*;
    let before = |op| Before { op, skip: 0 };
    let after = |op| AfterCommit { op, skip: 0 };
    let sent = "delete-cloud.delete-sent";
    JobCase {
        kind: "delete",
        job_kind: JobKind::DeleteOnCloud,
        kill_points: vec![
            kp0("job approved (pending)", AtSubmit),
            kp0("token request in flight", before(Op::Token)),
            kp0("token issued, answer not seen", after(Op::Token)),
            kp(sent, "key delete in flight", before(Op::DeleteKey)),
            kp(sent, "key deleted, answer lost", after(Op::DeleteKey)),
            kp(
                "delete-cloud.deleted",
                "key deleted and recorded",
                Journalled,
            ),
            kp(
                "delete-cloud.deleted",
                "waiting until the deleted key is listed",
                before(Op::GetDeletedKey),
            ),
            kp(
                "delete-cloud.purge-sent",
                "purge in flight",
                before(Op::PurgeDeletedKey),
            ),
            kp(
                "delete-cloud.purge-sent",
                "purged, answer lost",
                after(Op::PurgeDeletedKey),
            ),
        ],
        prepare: pushed_group,
        start: start_delete,
        check: check_delete,
    }
}

/// Delete on cloud on a vault without soft-delete: the typed `no-soft-delete` step is what
/// tells a restarted job that a key it no longer finds was deleted for good.
fn delete_no_soft_delete_case() -> JobCase {
    use Kill::*;
    let sent = "delete-cloud.delete-sent";
    JobCase {
        kind: "delete-nsd",
        job_kind: JobKind::DeleteOnCloud,
        kill_points: vec![
            kp0("job approved (pending)", AtSubmit),
            kp(
                "delete-cloud.no-soft-delete",
                "recovery level read",
                Journalled,
            ),
            kp(
                sent,
                "key delete in flight",
                Before {
                    op: Op::DeleteKey,
                    skip: 0,
                },
            ),
            kp(
                sent,
                "key deleted for good, answer lost",
                AfterCommit {
                    op: Op::DeleteKey,
                    skip: 0,
                },
            ),
        ],
        prepare: |rig, group| pushed_group_in(rig, group, VAULT_NO_SOFT_DELETE),
        start: start_delete,
        check: check_delete_no_soft_delete,
    }
}

/// After a delete on cloud on a vault without soft-delete: no version left, live or deleted,
/// and the local key intact with its version forgotten.
fn check_delete_no_soft_delete(rig: &Rig, group: &str, before: &Value, job: &Value) {
    assert_eq!(job["state"], "succeeded", "{group}: {job}");
    let vault = VAULT_NO_SOFT_DELETE;
    assert!(rig.emu.live_keks(vault).is_empty(), "{group}: {job}");
    let now = local_key_intact(&rig.daemon, group, &before["keys"][0]);
    assert!(
        rig.emu.key_versions(vault, group).is_empty(),
        "{group}: Azure key still live: {job}"
    );
    assert!(
        rig.emu.deleted_keys(vault).iter().all(|k| k.name != group),
        "{group}: a vault without soft-delete keeps no deleted key: {job}"
    );
    assert!(
        now["version"].is_null(),
        "{group}: a version deleted for good is forgotten: {now}"
    );
}

/// After a delete on cloud (on a vault that allows purging): no live version, no deleted key
/// left, the local key intact with its purged version forgotten.
fn check_delete(rig: &Rig, group: &str, before: &Value, job: &Value) {
    check_end(group, job);
    assert!(rig.emu.live_keks(VAULT).is_empty(), "{group}: {job}");
    let now = local_key_intact(&rig.daemon, group, &before["keys"][0]);
    let live = rig.emu.key_versions(VAULT, group);
    let deleted = rig.emu.deleted_keys(VAULT);
    let soft_deleted = deleted.iter().any(|k| k.name == group);
    if job["state"] == "succeeded" {
        assert!(live.is_empty(), "{group}: Azure key still live: {job}");
        assert!(
            !soft_deleted,
            "{group}: the vault allows purging, so the deleted key is purged: {job}"
        );
        assert!(
            now["version"].is_null(),
            "{group}: a purged version is forgotten: {now}"
        );
    } else {
        assert!(
            !live.is_empty() || soft_deleted || now["version"].is_null(),
            "{group}: purged but the local key still names its version: {now}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// "Check cloud state".

fn check_case() -> JobCase {
    use Kill::*;
    JobCase {
        kind: "check",
        job_kind: JobKind::CheckCloud,
        kill_points: vec![
            kp0("job accepted (pending)", AtSubmit),
            kp0(
                "token request in flight",
                Before {
                    op: Op::Token,
                    skip: 0,
                },
            ),
            kp0(
                "version listing in flight",
                Before {
                    op: Op::GetKeyVersions,
                    skip: 0,
                },
            ),
            kp(
                "check-cloud.listed",
                "versions listed, public keys being compared",
                Journalled,
            ),
        ],
        prepare: pushed_group,
        start: |rig, group| start_job(&rig.daemon, &["group", "check", group]),
        check: check_check,
    }
}

/// After a check of cloud state: it found no drift (Azure matches), and Azure and the local
/// key are as before: a check changes nothing, also when restarted.
fn check_check(rig: &Rig, group: &str, before: &Value, job: &Value) {
    assert_eq!(job["state"], "succeeded", "{group}: {job}");
    let now = local_key_intact(&rig.daemon, group, &before["keys"][0]);
    assert_eq!(now["version"], before["keys"][0]["version"], "{group}");
    assert_eq!(rig.emu.key_versions(VAULT, group).len(), 1, "{group}");
    assert!(rig.emu.live_keks(VAULT).is_empty(), "{group}: {job}");
    let (_, g) = rig.daemon.ctl_json(OPERATOR, &["group", "show", group]);
    assert_eq!(
        g["drift"]["findings"].as_array().map(Vec::len),
        Some(0),
        "{group}: the check recorded its report, with no drift: {g}"
    );
    assert_eq!(
        g["drift"]["job"].as_u64().map(|j| j.to_string()).as_deref(),
        job["id"].as_str(),
        "{group}: the report is this job's: {g}"
    );
}

// ---------------------------------------------------------------------------------------------
// "Recover key material on cloud".

/// A pushed group whose Azure key was deleted behind byokd's back (soft-deleted, recoverable).
fn deleted_group(rig: &Rig, group: &str) -> Value {
    let before = pushed_group(rig, group);
    rig.emu.delete_key_now(VAULT, group).unwrap();
    assert!(rig.emu.key_versions(VAULT, group).is_empty());
    assert!(rig.emu.deleted_keys(VAULT).iter().any(|k| k.name == group));
    before
}

fn recover_case() -> JobCase {
    use Kill::*;
    let op = Op::RecoverDeletedKey;
    let sent = "recover.recover-sent";
    JobCase {
        kind: "recover",
        job_kind: JobKind::Recover,
        kill_points: vec![
            kp0("job accepted (pending)", AtSubmit),
            kp0(
                "token request in flight",
                Before {
                    op: Op::Token,
                    skip: 0,
                },
            ),
            kp(sent, "recover in flight", Before { op, skip: 0 }),
            kp(sent, "recovered, answer lost", AfterCommit { op, skip: 0 }),
        ],
        prepare: deleted_group,
        start: |rig, group| start_job(&rig.daemon, &["group", "recover", group]),
        check: check_recover,
    }
}

/// After a recover: the key is live again with its one version (the one the local key
/// records), no deleted key is left, and the local key is intact.
fn check_recover(rig: &Rig, group: &str, before: &Value, job: &Value) {
    assert_eq!(job["state"], "succeeded", "{group}: {job}");
    let now = local_key_intact(&rig.daemon, group, &before["keys"][0]);
    let live = rig.emu.key_versions(VAULT, group);
    assert_eq!(live.len(), 1, "{group}: {job}");
    assert_eq!(
        now["version"].as_str(),
        Some(live[0].version.as_str()),
        "{group}: the recovered version is the recorded one"
    );
    assert!(
        rig.emu.deleted_keys(VAULT).iter().all(|k| k.name != group),
        "{group}: the deleted key is recovered: {job}"
    );
}

#[test]
fn a_recover_killed_at_every_journalled_step_recovers_the_key_once() {
    run_cases(&[recover_case()]);
}

// ---------------------------------------------------------------------------------------------
// "Purge key material on cloud".

fn purge_case() -> JobCase {
    use Kill::*;
    let op = Op::PurgeDeletedKey;
    let sent = "purge.purge-sent";
    JobCase {
        kind: "purge",
        job_kind: JobKind::Purge,
        kill_points: vec![
            // No kill point on the token request: the request-time check (purge_possible) asks
            // for the token first, so a hold on it would stop the request, not the job.
            kp0("job approved (pending)", AtSubmit),
            kp(sent, "purge in flight", Before { op, skip: 0 }),
            kp(sent, "purged, answer lost", AfterCommit { op, skip: 0 }),
        ],
        prepare: deleted_group,
        start: |rig, group| start_approved(rig, "purge", group),
        check: check_purge,
    }
}

/// After a purge: Azure holds neither a live nor a deleted key of that name, and the local key
/// is intact with its purged version forgotten (so it can be pushed again).
fn check_purge(rig: &Rig, group: &str, before: &Value, job: &Value) {
    assert_eq!(job["state"], "succeeded", "{group}: {job}");
    let now = local_key_intact(&rig.daemon, group, &before["keys"][0]);
    assert!(rig.emu.key_versions(VAULT, group).is_empty(), "{group}");
    assert!(
        rig.emu.deleted_keys(VAULT).iter().all(|k| k.name != group),
        "{group}: the deleted key is purged: {job}"
    );
    assert!(
        now["version"].is_null(),
        "{group}: a purged version is forgotten: {now}"
    );
}

#[test]
fn a_purge_killed_at_every_journalled_step_purges_the_key() {
    run_cases(&[purge_case()]);
}

// ---------------------------------------------------------------------------------------------
// Cancel.

fn cancel(d: &Daemon, id: &str) -> (i32, Value) {
    d.ctl_json(OPERATOR, &["job", "cancel", id])
}

#[test]
fn a_pending_job_cancels_at_once_and_a_running_one_at_the_next_safe_point() {
    // Two imports in flight per vault: with both held, the job's other keys wait for a slot.
    let rig = start_with("vault_concurrent_imports = 2\n", "");
    let d = &rig.daemon;
    group_with_keys(&rig, "runs", 4);
    group_with_keys(&rig, "waits", 1);
    let holds = rig.emu.holds();
    rig.emu.inject_fault(FaultRule::next(
        Op::ImportKey,
        2,
        FaultAction::Delay { ms: 5000 },
    ));
    let runs = start_job(d, &["group", "sync", "runs"]);
    wait_holds(&rig, &runs, holds + 2);
    // One job per vault at a time: this one waits, pending.
    let waits = start_job(d, &["group", "sync", "waits"]);
    assert_eq!(job(d, &waits, 0)["state"], "pending");
    let (code, v) = cancel(d, &waits);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["state"], "cancelled", "{v}");
    assert_eq!(v["cancel_requested"], OPERATOR);
    // The running job takes the request, finishes the imports in flight, starts no other.
    let (code, v) = cancel(d, &runs);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["cancel_requested"], OPERATOR, "{v}");
    assert!(
        !is_final(&v),
        "a running job is not cancelled mid-step: {v}"
    );
    let end = wait_final(d, &runs);
    assert_eq!(end["state"], "cancelled", "{end}");
    assert!(end["steps"].to_string().contains("Cancelled by operator"));
    let states: Vec<&str> = end["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    // Which two keys went first depends on the order of their wraps in the HSM.
    for (state, count) in [("imported", 2), ("pending", 2)] {
        assert_eq!(
            states.iter().filter(|s| **s == state).count(),
            count,
            "{end}"
        );
    }
    assert_eq!(rig.emu.key_versions(VAULT, "runs").len(), 2);
    assert!(rig.emu.live_keks(VAULT).is_empty(), "the KEK is cleaned up");
    assert!(
        rig.emu
            .deleted_keys(VAULT)
            .iter()
            .all(|k| !k.name.starts_with("byokd-kek")),
        "and purged"
    );
    // The pending job never ran.
    let w = job(d, &waits, 0);
    assert_eq!(w["state"], "cancelled");
    assert!(w["started"].is_null(), "{w}");
    assert!(rig.emu.key_versions(VAULT, "waits").is_empty());
    // A finished job cannot be cancelled: conflict, exit 5.
    let (code, v) = cancel(d, &runs);
    assert_eq!(code, 5, "{v}");
    // Auditors may not cancel.
    let out = d.ctl(control_rig::AUDITOR, &["job", "cancel", &runs]);
    assert_eq!(out.status.code(), Some(3));
    // The remaining keys can still be pushed by a new job.
    let again = start_job(d, &["group", "sync", "runs"]);
    assert_eq!(wait_final(d, &again)["state"], "succeeded");
    assert_eq!(rig.emu.key_versions(VAULT, "runs").len(), 4);
}

#[test]
fn a_cancel_survives_a_crash_and_settles_the_imports_whose_answers_were_lost() {
    let mut rig = start_with("vault_concurrent_imports = 2\n", "");
    group_with_keys(&rig, "lost", 3);
    let holds = rig.emu.holds();
    rig.emu.inject_fault(FaultRule::next(
        Op::ImportKey,
        2,
        FaultAction::CommitThenHold { ms: HOLD_MS },
    ));
    let id = start_job(&rig.daemon, &["group", "sync", "lost"]);
    // Two imports committed with their answers held; the third key waits for a slot.
    wait_holds(&rig, &id, holds + 2);
    let (code, v) = cancel(&rig.daemon, &id);
    assert_eq!(code, 0, "{v}");
    rig.daemon.kill9();
    rig.emu.clear_faults();
    rig.daemon.spawn();
    let end = wait_final(&rig.daemon, &id);
    assert_eq!(end["state"], "cancelled", "{end}");
    // Azure committed two imports: byokd found both by their tags and recorded them; the key
    // that waited for a slot was never started.
    let versions = rig.emu.key_versions(VAULT, "lost");
    assert_eq!(versions.len(), 2);
    let keys = end["keys"].as_array().unwrap();
    let imported: Vec<&Value> = keys.iter().filter(|k| k["state"] == "imported").collect();
    assert_eq!(imported.len(), 2, "{end}");
    assert_eq!(
        keys.iter().filter(|k| k["state"] == "pending").count(),
        1,
        "{end}"
    );
    for k in imported {
        let version = k["version"].as_str().unwrap();
        assert!(versions.iter().any(|v| v.version == version), "{end}");
        let name = k["key"].as_str().unwrap();
        let (_, shown) = rig
            .daemon
            .ctl_json(OPERATOR, &["key", "show", "lost", name]);
        assert_eq!(shown["version"], version);
    }
    assert!(rig.emu.live_keks(VAULT).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Waiting for a retry.

#[test]
fn a_job_backing_off_shows_waiting_retry_and_can_be_cancelled_then() {
    use byokd_emulator::{RetryHeader, ThrottleConfig};
    // Two imports in flight per vault, both backing off; the third key waits for a slot.
    let rig = start_with("vault_concurrent_imports = 2\n", "");
    let d = &rig.daemon;
    group_with_keys(&rig, "slow", 3);
    rig.emu.set_throttling(ThrottleConfig {
        enabled: false,
        header: RetryHeader::RetryAfterSeconds,
        ..ThrottleConfig::default()
    });
    rig.emu
        .inject_fault(FaultRule::next(Op::ImportKey, 5, FaultAction::Throttle));
    let id = start_job(d, &["group", "sync", "slow"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiting = loop {
        let v = job(d, &id, 0);
        let sent = journal_codes(&v)
            .iter()
            .filter(|c| **c == "push.import-sent")
            .count();
        if (v["state"] == "waiting-retry" && sent == 2) || is_final(&v) || Instant::now() > deadline
        {
            break v;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(waiting["state"], "waiting-retry", "{waiting}");
    assert!(
        waiting["steps"]
            .to_string()
            .contains("Azure answered status 429; retrying in"),
        "{waiting}"
    );
    // Cancelled while backing off: the imports in flight finish, the next key is not started.
    let (code, v) = cancel(d, &id);
    assert_eq!(code, 0, "{v}");
    let end = wait_final(d, &id);
    assert_eq!(end["state"], "cancelled", "{end}");
    let states: Vec<&str> = end["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "imported").count(),
        2,
        "{end}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "pending").count(),
        1,
        "{end}"
    );
    assert_eq!(rig.emu.key_versions(VAULT, "slow").len(), 2);
    assert!(rig.emu.live_keks(VAULT).is_empty());
    let steps = end["steps"].to_string();
    assert_eq!(steps.matches("retrying in").count(), 5, "{steps}");
}

// ---------------------------------------------------------------------------------------------
// Retention.

/// The ids `byokctl job list` shows.
fn listed_jobs(d: &Daemon) -> BTreeSet<String> {
    let (_, list) = d.ctl_json(OPERATOR, &["job", "list"]);
    list["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn finished_jobs_beyond_the_retention_count_are_pruned() {
    let rig = start("\n[jobs]\nretain_count = 2\nretain_days = 30\n");
    let d = &rig.daemon;
    let mut ids = vec![];
    for g in ["r1", "r2", "r3"] {
        group_with_keys(&rig, g, 1);
        let id = start_job(d, &["group", "sync", g]);
        assert_eq!(wait_final(d, &id)["state"], "succeeded");
        ids.push(id);
    }
    assert_eq!(
        listed_jobs(d),
        BTreeSet::from([ids[1].clone(), ids[2].clone()])
    );
    let out = d.ctl(OPERATOR, &["job", "show", &ids[0]]);
    assert_eq!(out.status.code(), Some(4), "the oldest job is gone");
    // An unfinished job is kept even when it would be beyond the count.
    group_with_keys(&rig, "r4", 1);
    let holds = rig.emu.holds();
    rig.emu.inject_fault(FaultRule::next(
        Op::CreateKey,
        1,
        FaultAction::Delay { ms: 6000 },
    ));
    let held = start_job(d, &["group", "sync", "r4"]);
    wait_hold(&rig, &held, holds);
    group_with_keys(&rig, "r5", 1);
    let queued = start_job(d, &["group", "sync", "r5"]);
    assert_eq!(listed_jobs(d).len(), 4);
    assert_eq!(wait_final(d, &held)["state"], "succeeded");
    assert_eq!(wait_final(d, &queued)["state"], "succeeded");
    assert_eq!(listed_jobs(d), BTreeSet::from([held, queued]));
}

// ---------------------------------------------------------------------------------------------
// Kill points inside group commits.

/// The /proc directory of the daemon's store writer (its `byokd-store` thread).
fn store_writer(pid: u32) -> std::path::PathBuf {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| t.path())
        .find(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == "byokd-store"))
        .expect("the daemon runs a byokd-store thread")
}

/// What the store writer is doing, from /proc: `None` while it waits for work on its queue (a
/// futex wait), else the system call it is in (`running` when on the CPU). Anything but the
/// wait is inside a group commit: applying records, writing pages, syncing. No hook in the
/// daemon.
fn store_writer_busy(task: &std::path::Path) -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    const FUTEX: &str = "202";
    #[cfg(target_arch = "aarch64")]
    const FUTEX: &str = "98";
    let syscall = std::fs::read_to_string(task.join("syscall")).ok()?;
    let nr = syscall.split_whitespace().next()?.to_owned();
    (nr != FUTEX).then_some(nr)
}

/// The names of a group's keys, as `key list` shows them.
fn key_names(d: &Daemon, group: &str) -> BTreeSet<String> {
    let (code, v) = d.ctl_json(OPERATOR, &["key", "list", group]);
    assert_eq!(code, 0, "key list {group}: {v}");
    v.as_array()
        .or_else(|| v["keys"].as_array())
        .unwrap_or_else(|| panic!("key list {group}: {v}"))
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect()
}

/// kill -9 of the real daemon while its store writer is inside a group commit of many
/// concurrent records: two sync jobs journalling imports on two vaults (up to four imports in
/// flight each) and eight clients creating keys at once. After each restart: every key whose
/// creation was acknowledged is there and whole, no key appears that was never asked for, each
/// job's journal is consistent with its keys, and each job ends `succeeded` with every key
/// imported exactly once (an import whose intent was acknowledged but lost would be sent twice).
#[test]
fn a_kill_inside_a_group_commit_of_concurrent_jobs_and_keys_loses_nothing_acknowledged() {
    const JOB_KEYS: usize = 8;
    const CLIENTS: usize = 8;
    let mut rig = start("");
    let mut inside = Vec::new();
    for round in 0..3 {
        let pushes = [
            (format!("push-{round}-a"), VAULT),
            (format!("push-{round}-b"), VAULT_NO_SOFT_DELETE),
        ];
        for (group, vault) in &pushes {
            group_with_keys_in(&rig, group, JOB_KEYS, vault);
        }
        let burst = format!("burst-{round}");
        group_with_keys(&rig, &burst, 0);
        rig.emu.set_rtt_delay(Duration::from_millis(30));
        let ids: Vec<String> = pushes
            .iter()
            .map(|(g, _)| start_job(&rig.daemon, &["group", "sync", g]))
            .collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let pid = rig.daemon.pid().unwrap();
        let (acked, asked, busy) = std::thread::scope(|s| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (d, burst, stop) = (&rig.daemon, &burst, &stop);
                    s.spawn(move || {
                        let (mut acked, mut asked) = (BTreeSet::new(), BTreeSet::new());
                        for i in 0.. {
                            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                                break;
                            }
                            let name = format!("c{c}-{i}");
                            asked.insert(name.clone());
                            let body = format!("{{\"name\":\"{name}\"}}");
                            let path = format!("/v1/groups/{burst}/keys");
                            match d.curl(Some(OPERATOR), "POST", &path, Some(&body)).0 {
                                201 => acked.insert(name),
                                // The daemon is gone: nothing more is acknowledged.
                                0 => break,
                                other => panic!("creating {name}: HTTP {other}"),
                            };
                        }
                        (acked, asked)
                    })
                })
                .collect();
            // Let the jobs and the clients get going, then kill the daemon the moment its
            // writer is seen inside a commit.
            std::thread::sleep(Duration::from_millis(400 + 300 * round as u64));
            let deadline = Instant::now() + Duration::from_secs(20);
            let writer = store_writer(pid);
            let busy = loop {
                if let Some(nr) = store_writer_busy(&writer) {
                    break Some(nr);
                }
                if Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_micros(100));
            };
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut acked = BTreeSet::new();
            let mut asked = BTreeSet::new();
            for c in clients {
                let (a, q) = c.join().unwrap();
                acked.extend(a);
                asked.extend(q);
            }
            (acked, asked, busy)
        });
        rig.daemon.kill9();
        inside.push(busy.clone());
        rig.emu.set_rtt_delay(Duration::ZERO);
        // The store opens (nothing half-written is refused or skipped), and holds every key
        // acknowledged and none never asked for, each whole.
        rig.daemon.spawn();
        let d = &rig.daemon;
        let present = key_names(d, &burst);
        let lost: Vec<_> = acked.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "round {round} (writer in {busy:?}): acknowledged keys lost: {lost:?}"
        );
        let unknown: Vec<_> = present.difference(&asked).collect();
        assert!(
            unknown.is_empty(),
            "round {round}: keys never asked for: {unknown:?}"
        );
        for name in &present {
            let (code, key) = d.ctl_json(OPERATOR, &["key", "show", &burst, name]);
            assert_eq!(code, 0, "round {round}: {burst}/{name}: {key}");
            assert!(
                key["hsm_id"].is_string() && key["check_digits"].is_string(),
                "round {round}: {burst}/{name} is not whole: {key}"
            );
        }
        // Each job's journal as it was loaded is consistent with its keys: a key imported or
        // sent has its journal entries, in order.
        for id in &ids {
            let j = job(d, id, 0);
            let journal = j["journal"].as_array().unwrap();
            let at = |step: &str, key: &str| {
                journal
                    .iter()
                    .position(|e| e["step"] == step && e["key"] == key)
            };
            for k in j["keys"].as_array().unwrap() {
                let key = k["key"].as_str().unwrap();
                match k["state"].as_str().unwrap() {
                    "imported" => {
                        let sent = at("push.import-sent", key);
                        let done = at("push.imported", key);
                        assert!(
                            sent.is_some() && done.is_some() && sent < done,
                            "round {round}: job {id}: {key} imported without its journal: {j}"
                        );
                    }
                    "import-sent" => assert!(
                        at("push.import-sent", key).is_some(),
                        "round {round}: job {id}: {key} sent without its journal: {j}"
                    ),
                    _ => {}
                }
            }
            assert!(
                j["steps"].as_array().unwrap().len() >= journal.len(),
                "round {round}: job {id}: fewer step messages than journal entries: {j}"
            );
        }
        for ((group, vault), id) in pushes.iter().zip(&ids) {
            let end = wait_final(d, id);
            assert_eq!(end["state"], "succeeded", "round {round}: {end}");
            let versions = rig.emu.key_versions(vault, group);
            let tags: BTreeSet<&String> = versions
                .iter()
                .filter_map(|v| v.tags.get("byokd-fingerprint"))
                .collect();
            assert_eq!(
                (versions.len(), tags.len()),
                (JOB_KEYS, JOB_KEYS),
                "round {round}: {group}: every key imported exactly once: {end}"
            );
        }
        eprintln!(
            "round {round}: killed with the store writer in {busy:?}; {} of {} key creations acknowledged, {} present",
            acked.len(),
            asked.len(),
            present.len()
        );
    }
    assert!(
        inside.iter().any(Option::is_some),
        "no kill landed while the store writer was inside a commit: {inside:?}"
    );
}
