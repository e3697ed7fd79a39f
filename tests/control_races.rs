//! The control plane against concurrent clients, with the real daemon on a SoftHSM token and the
//! Azure emulator over real TLS (imports slowed down so that they are in flight): deletes of
//! keys, groups and credentials and group updates raced against syncs, rotations and deletes on
//! cloud; every version Azure holds is one byokd records, and nothing destructive happens
//! without the approvals it needs. Also: one admin cannot fill the approval table, a purge the
//! vault forbids is refused before a second admin is asked, and every mutating route of the
//! control API writes its service-log record with identity and target.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod control_rig;
mod emulator_rig;

use byokd::control::routes::ROUTES;
use byokd::dual_control::MAX_PENDING_PER_REQUESTER;
use byokd_emulator::{EmulatorHandle, FaultAction, FaultRule, Op as EmuOp, RecoveryLevel};
use control_rig::{ADMIN, ADMIN2, AUDITOR, Daemon, OPERATOR, Options};
use emulator_rig::EmulatorRig;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b";
const SECRET: &str = "Qv8~race.KnownSecret-For_Grep-0042";
/// Soft-delete, purge allowed.
const V_SOFT: &str = "race-soft";
/// Soft-delete with purge protection.
const V_PROTECTED: &str = "race-protected";
/// Another vault with soft-delete, purge allowed.
const V_OTHER: &str = "race-other";
/// How long each import is held in the emulator while a test races it.
const SLOW_IMPORT_MS: u64 = 3000;

struct Rig {
    _rt: tokio::runtime::Runtime,
    emu: EmulatorHandle,
    daemon: Daemon,
    _ca_dir: tempfile::TempDir,
}

fn start() -> Rig {
    let azure = emulator_rig::start(
        (TENANT, CLIENT, SECRET),
        &[
            (V_SOFT, RecoveryLevel::RecoverablePurgeable),
            (V_PROTECTED, RecoveryLevel::Recoverable),
            (V_OTHER, RecoveryLevel::RecoverablePurgeable),
        ],
        300,
    );
    let sections = azure.sections(
        &[V_SOFT, V_PROTECTED, V_OTHER],
        "vault_concurrent_imports = 2\n",
        "[lifecycle]\ngrace_days = 0\ndrift_check_hours = 0\n",
    );
    let daemon = Daemon::start_with(Options {
        hsm_extra: "allow_host_wrap = true\n".into(),
        sections,
        ..Options::default()
    });
    let body = json!({"name": "app", "tenant_id": TENANT, "client_id": CLIENT, "secret": SECRET});
    expect(&daemon, ADMIN, "POST", "/v1/credentials", Some(body), 201);
    let EmulatorRig {
        rt, emu, ca_dir, ..
    } = azure;
    Rig {
        _rt: rt,
        emu,
        daemon,
        _ca_dir: ca_dir,
    }
}

/// A request as `who` that must answer `status`; the body.
fn expect(
    d: &Daemon,
    who: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let text = body.map(|b| b.to_string());
    let (got, v) = d.curl(Some(who), method, path, text.as_deref());
    assert_eq!(
        got,
        status,
        "{who} {method} {path}: {v}\n--- daemon log\n{}",
        d.log()
    );
    v
}

fn group(d: &Daemon, name: &str, vault: &str, keys: &[&str]) {
    let body = json!({"name": name, "credential": "app", "vault": vault, "key_type": "EC-P256",
        "key_ops": ["sign", "verify"]});
    expect(d, OPERATOR, "POST", "/v1/groups", Some(body), 201);
    for k in keys {
        let path = format!("/v1/groups/{name}/keys");
        expect(d, OPERATOR, "POST", &path, Some(json!({ "name": k })), 201);
    }
}

fn job(d: &Daemon, id: &str) -> Value {
    expect(d, AUDITOR, "GET", &format!("/v1/jobs/{id}"), None, 200)
}

fn steps(j: &Value) -> String {
    j["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|m| m["message"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Waits (bounded) until the job's steps say `what`; the job then.
fn wait_step(d: &Daemon, id: &str, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = job(d, id);
        if steps(&j).contains(what) {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never said {what:?}: {j}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the job to end; the job.
fn wait_end(d: &Daemon, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = expect(
            d,
            AUDITOR,
            "GET",
            &format!("/v1/jobs/{id}?wait=5"),
            None,
            200,
        );
        if matches!(
            j["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} never ended: {j}");
    }
}

/// Starts a job with a body-less POST as `who`; its id.
fn started(d: &Daemon, who: &str, path: &str) -> String {
    job_id(&expect(d, who, "POST", path, None, 202))
}

/// Runs a job to its end; the job.
fn run(d: &Daemon, who: &str, path: &str) -> Value {
    wait_end(d, &started(d, who, path))
}

fn job_id(v: &Value) -> String {
    v["job"]["id"].as_str().expect("a job id").to_owned()
}

/// A refusal because job `id` is unfinished: 409 `job_in_progress` naming it.
fn assert_busy(v: &Value, id: &str) {
    assert_eq!(v["error"]["code"], "job_in_progress", "{v}");
    assert_eq!(v["error"]["job"], id, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("job {id}")),
        "{v}"
    );
}

/// The Azure versions of the group's key, and the versions byokd records for its keys: every
/// version in the emulator must be one byokd records.
fn assert_every_version_recorded(rig: &Rig, group: &str, vault: &str) -> usize {
    let d = &rig.daemon;
    let keys = expect(
        d,
        AUDITOR,
        "GET",
        &format!("/v1/groups/{group}/keys"),
        None,
        200,
    );
    let recorded: BTreeSet<String> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["version"].as_str().map(str::to_owned))
        .collect();
    let in_azure: BTreeSet<String> = rig
        .emu
        .key_versions(vault, group)
        .into_iter()
        .map(|v| v.version)
        .collect();
    let unknown: Vec<_> = in_azure.difference(&recorded).collect();
    assert!(
        unknown.is_empty(),
        "versions in Azure that byokd does not record: {unknown:?} (recorded {recorded:?})"
    );
    in_azure.len()
}

/// Nothing destructive happened without its approval, as the service log tells: every delete
/// of a pushed key or a credential names its approval, and every delete or purge in Azure was
/// done by a requester with a second admin's approval.
fn assert_no_unapproved_destruction(d: &Daemon) {
    let all = expect(d, AUDITOR, "GET", "/v1/logs?limit=1000", None, 200);
    for r in all["records"].as_array().unwrap() {
        let event = r["event"].as_str().unwrap();
        let approved = r["approval"].is_string();
        match event {
            "key.deleted" if r["version"].is_string() => assert!(approved, "{r}"),
            "credential.deleted" => assert!(approved, "{r}"),
            "azure.key.deleted" | "azure.key.purged" => assert!(
                r["identity"]
                    .as_str()
                    .is_some_and(|i| i.contains("(approved by ")),
                "{r}"
            ),
            _ => {}
        }
    }
}

fn slow_imports(rig: &Rig) {
    rig.emu.inject_fault(FaultRule::every(
        EmuOp::ImportKey,
        FaultAction::Delay { ms: SLOW_IMPORT_MS },
    ));
}

/// Everything that would change what the running job `id` on `group` works on is refused, by
/// an operator and by an admin alike (the rotation policy where it shapes the job's imports).
fn assert_all_refused(d: &Daemon, group: &str, keys: &[&str], id: &str, imports: bool) {
    for who in [OPERATOR, ADMIN] {
        for k in keys {
            let path = format!("/v1/groups/{group}/keys/{k}");
            assert_busy(&expect(d, who, "DELETE", &path, None, 409), id);
        }
        let path = format!("/v1/groups/{group}");
        assert_busy(&expect(d, who, "DELETE", &path, None, 409), id);
        if imports {
            let patch = json!({"rotation": {"keep_valid_months": 7}});
            assert_busy(&expect(d, who, "PATCH", &path, Some(patch), 409), id);
        }
    }
    // The credential the job signs in with stays (its group uses it).
    let refused = expect(d, ADMIN, "DELETE", "/v1/credentials/app", None, 409);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(group),
        "{refused}"
    );
}

#[test]
fn deletes_and_updates_are_refused_while_a_sync_has_imports_in_flight() {
    let rig = start();
    let d = &rig.daemon;
    let keys = ["k1", "k2", "k3", "k4", "k5"];
    group(d, "g", V_SOFT, &keys);
    slow_imports(&rig);
    let id = started(d, OPERATOR, "/v1/groups/g/sync");
    wait_step(d, &id, "Importing key");
    // The reproduction: an operator deletes a key being imported (or wrapped, or queued).
    assert_all_refused(d, "g", &keys, &id, true);
    let j = wait_end(d, &id);
    assert_eq!(j["state"], "succeeded", "{j}");
    rig.emu.clear_faults();
    assert_eq!(assert_every_version_recorded(&rig, "g", V_SOFT), keys.len());
    // Now pushed: an operator may not delete, an admin needs a second admin.
    let refused = expect(d, OPERATOR, "DELETE", "/v1/groups/g/keys/k1", None, 403);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("second admin")
    );
    let pending = expect(d, ADMIN, "DELETE", "/v1/groups/g/keys/k1", None, 202);
    let approval = pending["approval"]["id"].as_str().unwrap().to_owned();
    // A rotation starts before the second admin approves: the approved delete re-checks under
    // the state lock and refuses, and the key stays.
    slow_imports(&rig);
    let rotation = started(d, OPERATOR, "/v1/groups/g/rotate");
    let path = format!("/v1/approvals/{approval}/approve");
    let refused = expect(d, ADMIN2, "POST", &path, None, 409);
    assert_busy(&refused, &rotation);
    let a = expect(
        d,
        AUDITOR,
        "GET",
        &format!("/v1/approvals/{approval}"),
        None,
        200,
    );
    assert_eq!(a["status"], "failed", "{a}");
    expect(d, AUDITOR, "GET", "/v1/groups/g/keys/k1", None, 200);
    assert_eq!(wait_end(d, &rotation)["state"], "succeeded");
    rig.emu.clear_faults();
    assert_eq!(
        assert_every_version_recorded(&rig, "g", V_SOFT),
        keys.len() + 1
    );
    assert_no_unapproved_destruction(d);
}

#[test]
fn a_rotation_and_a_delete_on_cloud_hold_their_group_until_they_end() {
    let rig = start();
    let d = &rig.daemon;
    group(d, "r", V_SOFT, &["a"]);
    run(d, OPERATOR, "/v1/groups/r/keys/a/sync");

    slow_imports(&rig);
    let rotation = started(d, OPERATOR, "/v1/groups/r/rotate");
    wait_step(d, &rotation, "Importing key");
    assert_all_refused(d, "r", &["a"], &rotation, true);
    // The rotation's own new key is held too.
    let j = job(d, &rotation);
    let new_key = j["keys"][0]["key"].as_str().unwrap().to_owned();
    let path = format!("/v1/groups/r/keys/{new_key}");
    assert_busy(&expect(d, ADMIN, "DELETE", &path, None, 409), &rotation);
    assert_eq!(wait_end(d, &rotation)["state"], "succeeded");
    rig.emu.clear_faults();
    assert_eq!(assert_every_version_recorded(&rig, "r", V_SOFT), 2);

    // Delete on cloud: held from the request (waiting for approval) until the job ends.
    let requested = expect(d, ADMIN, "POST", "/v1/groups/r/delete-cloud", None, 202);
    let del = job_id(&requested);
    assert_all_refused(d, "r", &["a"], &del, false);
    let approval = requested["approval"]["id"].as_str().unwrap().to_owned();
    rig.emu.inject_fault(FaultRule::every(
        EmuOp::DeleteKey,
        FaultAction::Delay { ms: SLOW_IMPORT_MS },
    ));
    let path = format!("/v1/approvals/{approval}/approve");
    expect(d, ADMIN2, "POST", &path, None, 200);
    assert_all_refused(d, "r", &["a"], &del, false);
    assert_eq!(wait_end(d, &del)["state"], "succeeded");
    rig.emu.clear_faults();
    // Purged: the versions are forgotten, so the keys may go without a second admin.
    assert_eq!(assert_every_version_recorded(&rig, "r", V_SOFT), 0);
    expect(d, OPERATOR, "DELETE", "/v1/groups/r/keys/a", None, 200);
    assert_no_unapproved_destruction(d);
}

#[test]
fn every_import_azure_accepted_is_recorded_when_the_sync_is_cancelled() {
    let rig = start();
    let d = &rig.daemon;
    let keys = ["c1", "c2", "c3", "c4", "c5", "c6"];
    group(d, "c", V_SOFT, &keys);
    slow_imports(&rig);
    let id = started(d, OPERATOR, "/v1/groups/c/sync");
    wait_step(d, &id, "Importing key");
    expect(
        d,
        OPERATOR,
        "POST",
        &format!("/v1/jobs/{id}/cancel"),
        None,
        200,
    );
    let j = wait_end(d, &id);
    assert_eq!(j["state"], "cancelled", "{j}");
    rig.emu.clear_faults();
    let n = assert_every_version_recorded(&rig, "c", V_SOFT);
    assert!(
        n >= 1,
        "the imports in flight at the cancel were recorded: {j}"
    );
    // The keys without a version may be deleted at once; the others need two admins.
    let listed = expect(d, AUDITOR, "GET", "/v1/groups/c/keys", None, 200);
    for k in listed["keys"].as_array().unwrap() {
        let path = format!("/v1/groups/c/keys/{}", k["name"].as_str().unwrap());
        let status = if k["version"].is_null() { 200 } else { 403 };
        expect(d, OPERATOR, "DELETE", &path, None, status);
    }
    assert_no_unapproved_destruction(d);
}

#[test]
fn an_import_whose_answer_a_failed_sync_never_saw_is_recorded_by_the_next_sync() {
    let rig = start();
    let d = &rig.daemon;
    group(d, "l", V_SOFT, &["a"]);
    // Azure commits the import but the answer is lost, and the versions cannot be listed: the
    // job fails without knowing whether Azure has the key.
    rig.emu.inject_fault(FaultRule::next(
        EmuOp::ImportKey,
        1,
        FaultAction::CommitThenReset,
    ));
    rig.emu.inject_fault(FaultRule::every(
        EmuOp::GetKeyVersions,
        FaultAction::Status { status: 503 },
    ));
    let failed = run(d, OPERATOR, "/v1/groups/l/sync");
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["keys"][0]["state"], "import-sent", "{failed}");
    assert_eq!(rig.emu.key_versions(V_SOFT, "l").len(), 1);
    rig.emu.clear_faults();
    // The next sync finds that version by its fingerprint tag and records it: no second import.
    let j = run(d, OPERATOR, "/v1/groups/l/sync");
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(assert_every_version_recorded(&rig, "l", V_SOFT), 1);
    let k = expect(d, AUDITOR, "GET", "/v1/groups/l/keys/a", None, 200);
    assert!(k["version"].is_string(), "{k}");
    // Nothing left to synchronize, said at once.
    let none = expect(d, OPERATOR, "POST", "/v1/groups/l/sync", None, 409);
    assert_eq!(none["error"]["code"], "nothing_to_sync", "{none}");
}

#[test]
fn a_purge_the_vault_forbids_is_refused_before_a_second_admin_is_asked() {
    let rig = start();
    let d = &rig.daemon;
    group(d, "p", V_PROTECTED, &["a"]);
    let j = run(d, OPERATOR, "/v1/groups/p/keys/a/sync");
    assert_eq!(j["state"], "succeeded", "{j}");
    // Nothing deleted yet: nothing to purge, said at once.
    let none = expect(d, ADMIN, "POST", "/v1/groups/p/purge", None, 409);
    assert_eq!(none["error"]["code"], "cloud_state", "{none}");
    let requested = expect(d, ADMIN, "POST", "/v1/groups/p/delete-cloud", None, 202);
    let approval = requested["approval"]["id"].as_str().unwrap().to_owned();
    expect(
        d,
        ADMIN2,
        "POST",
        &format!("/v1/approvals/{approval}/approve"),
        None,
        200,
    );
    assert_eq!(wait_end(d, &job_id(&requested))["state"], "succeeded");
    // Soft-deleted under purge protection: the purge is refused with the reason, no approval.
    let refused = expect(d, ADMIN, "POST", "/v1/groups/p/purge", None, 409);
    assert_eq!(refused["error"]["code"], "cloud_state", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Recoverable") && message.contains("purge protection"),
        "{message}"
    );
    let pending = expect(d, AUDITOR, "GET", "/v1/approvals?status=pending", None, 200);
    assert_eq!(pending["approvals"], json!([]), "{pending}");
}

#[test]
fn one_admin_cannot_fill_the_approval_table() {
    let rig = start();
    let d = &rig.daemon;
    let mut last = Value::Null;
    let mut accepted = 0;
    for i in 0..40 {
        let name = format!("cred{i}");
        let body =
            json!({"name": name, "tenant_id": TENANT, "client_id": CLIENT, "secret": SECRET});
        expect(d, ADMIN2, "POST", "/v1/credentials", Some(body), 201);
        let (status, v) = d.curl(
            Some(ADMIN),
            "DELETE",
            &format!("/v1/credentials/{name}"),
            None,
        );
        if status == 202 {
            accepted += 1;
            continue;
        }
        last = v;
        assert_eq!(status, 429, "{last}");
        break;
    }
    assert_eq!(
        last["error"]["code"], "too_many_pending_approvals",
        "{last}"
    );
    assert_eq!(accepted, MAX_PENDING_PER_REQUESTER);
    // Another admin is not locked out by it.
    expect(d, ADMIN2, "DELETE", "/v1/credentials/cred0", None, 409);
    let body = json!({"name": "other", "tenant_id": TENANT, "client_id": CLIENT, "secret": SECRET});
    expect(d, ADMIN, "POST", "/v1/credentials", Some(body), 201);
    expect(d, ADMIN2, "DELETE", "/v1/credentials/other", None, 202);
}

/// The service-log records with `event`, newest last.
fn records(d: &Daemon, event: &str) -> Vec<Value> {
    let v = expect(d, AUDITOR, "GET", "/v1/logs?limit=1000", None, 200);
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == event)
        .cloned()
        .collect()
}

/// Whether a record names `identity`: exactly, or as the requester of an approved action
/// ("admin (approved by admin2)"); never another identity whose name merely begins the same.
fn by(r: &Value, identity: &str) -> bool {
    r["identity"].as_str().is_some_and(|i| {
        i == identity
            || i.strip_prefix(identity)
                .is_some_and(|rest| rest.starts_with(" (approved by "))
    })
}

/// Asserts that a record with `event`, by `identity`, whose field `field` is `target`, exists.
/// A job id is compared as text, whichever JSON type the record gives it.
fn assert_recorded(d: &Daemon, event: &str, identity: &str, field: &str, target: &str) {
    let found = records(d, event);
    let is = |v: &Value| v == target || v.as_u64().is_some_and(|n| n.to_string() == target);
    assert!(
        found.iter().any(|r| by(r, identity) && is(&r[field])),
        "no {event} record by {identity} with {field}={target}: {found:#?}"
    );
}

/// Calls routes by their template (`{name}` filled from `args`) and remembers which it called.
struct Walk<'a> {
    d: &'a Daemon,
    done: BTreeSet<String>,
}

impl Walk<'_> {
    fn call(
        &mut self,
        who: &str,
        method: &str,
        template: &str,
        args: &[&str],
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let route = ROUTES
            .iter()
            .find(|r| r.method.as_str() == method && r.path == template)
            .unwrap_or_else(|| panic!("no route {method} {template}"));
        self.done.insert(format!("{:?}", route.op));
        let mut path = template.to_owned();
        for a in args {
            let open = path.find('{').expect("a parameter to fill");
            let close = open + path[open..].find('}').unwrap();
            path.replace_range(open..=close, a);
        }
        expect(self.d, who, method, &path, body, status)
    }

    /// Runs a job-starting route, checks that this very job's creation is recorded with the
    /// caller and the group, and waits for the job to end.
    fn job(&mut self, who: &str, template: &str, args: &[&str]) -> Value {
        let started = self.call(who, "POST", template, args, None, 202);
        let id = job_id(&started);
        assert_recorded(self.d, "job.created", who, "job", &id);
        assert_recorded(self.d, "job.created", who, "group", args[0]);
        wait_end(self.d, &id)
    }

    /// The second admin approves; the answer.
    fn approve(&mut self, approval: &str) -> Value {
        let t = "/v1/approvals/{approval}/approve";
        self.call(ADMIN2, "POST", t, &[approval], None, 200)
    }
}

fn approval_id(v: &Value) -> String {
    v["approval"]["id"]
        .as_str()
        .expect("an approval")
        .to_owned()
}

/// The offline transfer's routes on the pushed key au/k1: an export refused for its KEK file, one
/// requested, approved and downloaded by its requester; k1's version recorded as a manual import
/// after Azure showed it.
fn offline_transfer(w: &mut Walk<'_>, key: &str) {
    use rsa::pkcs8::EncodePublicKey as _;
    let d = w.d;
    let export = format!("{key}/export-byok");
    let kid = format!("https://{V_SOFT}.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef");
    let bad = json!({"kek_pem": "not a key", "kek_kid": kid});
    let refused = w.call(ADMIN, "POST", &export, &["au", "k1"], Some(bad), 400);
    assert_eq!(refused["error"]["field"], "kek_pem", "{refused}");
    assert_recorded(d, "key.byok_export.refused", ADMIN, "key", "k1");
    let kek = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
    let pem = kek
        .to_public_key()
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    let good = json!({"kek_pem": pem, "kek_kid": kid});
    let approval = approval_id(&w.call(ADMIN, "POST", &export, &["au", "k1"], Some(good), 202));
    assert_recorded(d, "key.byok_export.requested", ADMIN, "approval", &approval);
    w.approve(&approval);
    assert_recorded(d, "key.byok_export.approved", ADMIN2, "approval", &approval);
    assert_recorded(d, "key.byok_exported", ADMIN, "approval", &approval);
    let t = "/v1/approvals/{approval}/byok-file";
    let file = w.call(ADMIN, "GET", t, &[&approval], None, 200);
    assert_eq!(file["kek_kid"], kid.as_str(), "{file}");
    assert_recorded(d, "key.byok_downloaded", ADMIN, "approval", &approval);
    let k1 = expect(d, AUDITOR, "GET", "/v1/groups/au/keys/k1", None, 200);
    let version = k1["version"].as_str().unwrap();
    let record = format!("{key}/record-import");
    let body = Some(json!({ "version": version }));
    w.call(OPERATOR, "POST", &record, &["au", "k1"], body, 200);
    assert_recorded(d, "key.import_recorded", OPERATOR, "version", version);
}

#[test]
fn every_mutating_route_writes_its_record_with_identity_and_target() {
    let rig = start();
    let d = &rig.daemon;
    let mut w = Walk {
        d,
        done: BTreeSet::new(),
    };
    let secret = |name: &str| json!({"name": name, "tenant_id": TENANT, "client_id": CLIENT, "secret": SECRET});
    let (cred, one) = ("/v1/credentials/{credential}", "/v1/groups/{group}");
    let key = "/v1/groups/{group}/keys/{key}";

    // Credentials: add, expiry, delete under dual control.
    w.call(
        ADMIN,
        "POST",
        "/v1/credentials",
        &[],
        Some(secret("spare")),
        201,
    );
    assert_recorded(d, "credential.added", ADMIN, "credential", "spare");
    let expires = json!({"expires": "2096-10-02T07:06:40Z"});
    w.call(ADMIN, "PATCH", cred, &["spare"], Some(expires), 200);
    assert_recorded(d, "credential.expiry_changed", ADMIN, "credential", "spare");
    let approval = approval_id(&w.call(ADMIN, "DELETE", cred, &["spare"], None, 202));
    assert_recorded(d, "approval.requested", ADMIN, "approval", &approval);
    assert_recorded(d, "approval.requested", ADMIN, "credential", "spare");
    w.approve(&approval);
    assert_recorded(d, "approval.approved", ADMIN2, "approval", &approval);
    assert_recorded(d, "credential.deleted", ADMIN, "approval", &approval);
    assert_recorded(d, "credential.deleted", ADMIN, "credential", "spare");

    // Groups and keys.
    let new_group = json!({"name": "au", "credential": "app", "vault": V_SOFT,
        "key_type": "EC-P256", "key_ops": ["sign", "verify"]});
    w.call(OPERATOR, "POST", "/v1/groups", &[], Some(new_group), 201);
    assert_recorded(d, "group.created", OPERATOR, "group", "au");
    for k in ["k1", "k2", "k3"] {
        let t = "/v1/groups/{group}/keys";
        w.call(
            OPERATOR,
            "POST",
            t,
            &["au"],
            Some(json!({ "name": k })),
            201,
        );
    }
    assert_recorded(d, "key.created", OPERATOR, "key", "k1");
    let policy = json!({"rotation": {"keep_valid_months": 6}});
    w.call(OPERATOR, "PATCH", one, &["au"], Some(policy), 200);
    assert_recorded(d, "group.updated", OPERATOR, "group", "au");
    w.call(OPERATOR, "DELETE", key, &["au", "k3"], None, 200);
    assert_recorded(d, "key.deleted", OPERATOR, "key", "k3");

    // Jobs.
    w.job(
        OPERATOR,
        "/v1/groups/{group}/keys/{key}/sync",
        &["au", "k1"],
    );
    assert_recorded(d, "job.created", OPERATOR, "group", "au");
    offline_transfer(&mut w, key);
    w.job(OPERATOR, "/v1/groups/{group}/sync", &["au"]);
    w.job(ADMIN, "/v1/groups/{group}/rotate", &["au"]);
    assert_recorded(d, "job.created", ADMIN, "group", "au");
    w.job(OPERATOR, "/v1/groups/{group}/check", &["au"]);
    slow_imports(&rig);
    let t = "/v1/groups/{group}/keys";
    w.call(
        OPERATOR,
        "POST",
        t,
        &["au"],
        Some(json!({"name": "k4"})),
        201,
    );
    let slow = job_id(&w.call(
        OPERATOR,
        "POST",
        &format!("{key}/sync"),
        &["au", "k4"],
        None,
        202,
    ));
    w.call(
        OPERATOR,
        "POST",
        "/v1/jobs/{job}/cancel",
        &[&slow],
        None,
        200,
    );
    wait_end(d, &slow);
    rig.emu.clear_faults();
    assert_recorded(d, "job.cancel", OPERATOR, "job", &slow);

    // Dual control on the cloud: request and reject, request and approve.
    let delete_cloud = "/v1/groups/{group}/delete-cloud";
    let approval = approval_id(&w.call(ADMIN, "POST", delete_cloud, &["au"], None, 202));
    assert_recorded(d, "approval.requested", ADMIN, "group", "au");
    w.call(
        ADMIN2,
        "POST",
        "/v1/approvals/{approval}/reject",
        &[&approval],
        None,
        200,
    );
    assert_recorded(d, "approval.rejected", ADMIN2, "approval", &approval);
    let approval = approval_id(&w.call(ADMIN, "POST", delete_cloud, &["au"], None, 202));
    let approved = w.approve(&approval);
    wait_end(d, approved["job"]["id"].as_str().unwrap());
    assert_recorded(d, "approval.executed", ADMIN, "approval", &approval);
    // Deleted and purged (the vault allows it): a recover job has nothing to recover; it fails
    // saying so, and the failure is in the log with the identity.
    let recovered = w.job(OPERATOR, "/v1/groups/{group}/recover", &["au"]);
    assert_eq!(recovered["state"], "failed", "{recovered}");
    assert!(
        recovered["error"]
            .as_str()
            .is_some_and(|e| e.contains("nothing to recover")),
        "{recovered}"
    );
    assert_recorded(d, "azure.key.recover_failed", OPERATOR, "group", "au");
    // A purge asks a second admin once Azure holds a deleted key (deleted behind byokd's back).
    w.job(OPERATOR, "/v1/groups/{group}/sync", &["au"]);
    rig.emu.delete_key_now(V_SOFT, "au").unwrap();
    let purge = "/v1/groups/{group}/purge";
    let requested = w.call(ADMIN, "POST", purge, &["au"], None, 202);
    let approval = approval_id(&requested);
    assert_eq!(requested["job"]["state"], "waiting-approval", "{requested}");
    assert_recorded(d, "approval.requested", ADMIN, "approval", &approval);
    let job = requested["job"]["id"].as_str().unwrap().to_owned();
    assert_recorded(d, "job.created", ADMIN, "job", &job);
    let approved = w.approve(&approval);
    assert_eq!(approved["job"]["id"], job.as_str(), "{approved}");
    assert_eq!(wait_end(d, &job)["state"], "succeeded");
    assert_recorded(d, "azure.key.purged", ADMIN, "group", "au");
    assert_recorded(d, "approval.executed", ADMIN, "approval", &approval);

    // Group delete (its keys first) and the designated setting.
    let listed = expect(d, AUDITOR, "GET", "/v1/groups/au/keys", None, 200);
    for k in listed["keys"].as_array().unwrap() {
        w.call(
            OPERATOR,
            "DELETE",
            key,
            &["au", k["name"].as_str().unwrap()],
            None,
            200,
        );
    }
    w.call(OPERATOR, "DELETE", one, &["au"], None, 200);
    assert_recorded(d, "group.deleted", OPERATOR, "group", "au");
    let on = json!({"designated": true});
    w.call(ADMIN, "PUT", "/v1/config/designated", &[], Some(on), 200);
    let changed = records(d, "config.designated_changed");
    assert!(
        changed.iter().any(|r| r["identity"] == ADMIN),
        "{changed:#?}"
    );

    // An online backup, streamed to the admin, is recorded with who took it.
    w.call(ADMIN, "POST", "/v1/backup", &[], None, 200);
    let backups = records(d, "backup.created");
    assert!(backups.iter().any(|r| by(r, ADMIN)), "{backups:#?}");

    // Every route that is not a read was called above.
    let mutating: BTreeSet<String> = ROUTES
        .iter()
        .filter(|r| r.method != http::Method::GET)
        .map(|r| format!("{:?}", r.op))
        .collect();
    let missing: Vec<_> = mutating.difference(&w.done).collect();
    assert!(
        missing.is_empty(),
        "mutating routes without an audit check: {missing:?}"
    );
    assert_no_unapproved_destruction(d);
}

#[test]
fn an_approved_key_delete_never_deletes_another_key_of_the_same_name() {
    let rig = start();
    let d = &rig.daemon;
    group(d, "b", V_SOFT, &["k"]);
    let sync = "/v1/groups/b/keys/k/sync";
    wait_end(d, &job_id(&expect(d, OPERATOR, "POST", sync, None, 202)));
    let first = expect(d, AUDITOR, "GET", "/v1/groups/b/keys/k", None, 200);
    assert!(first["version"].is_string(), "{first}");
    // The delete of the pushed key waits for a second admin.
    let pending = expect(d, ADMIN, "DELETE", "/v1/groups/b/keys/k", None, 202);
    let pending = approval_id(&pending);
    // Meanwhile the Azure key is deleted and purged (approved), which makes k unpushed: an
    // operator deletes it, creates another k and pushes that.
    let cloud = expect(d, ADMIN, "POST", "/v1/groups/b/delete-cloud", None, 202);
    let approve = |id: &str| {
        let path = format!("/v1/approvals/{id}/approve");
        expect(d, ADMIN2, "POST", &path, None, 200)
    };
    let done = approve(&approval_id(&cloud));
    wait_end(d, done["job"]["id"].as_str().unwrap());
    expect(d, OPERATOR, "DELETE", "/v1/groups/b/keys/k", None, 200);
    let new = Some(json!({ "name": "k" }));
    expect(d, OPERATOR, "POST", "/v1/groups/b/keys", new, 201);
    wait_end(d, &job_id(&expect(d, OPERATOR, "POST", sync, None, 202)));
    let second = expect(d, AUDITOR, "GET", "/v1/groups/b/keys/k", None, 200);
    assert_ne!(second["hsm_id"], first["hsm_id"]);
    // The old approval is for the old key: approving it now deletes nothing.
    let path = format!("/v1/approvals/{pending}/approve");
    let refused = expect(d, ADMIN2, "POST", &path, None, 409);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request the delete again"),
        "{refused}"
    );
    let late = expect(
        d,
        AUDITOR,
        "GET",
        &format!("/v1/approvals/{pending}"),
        None,
        200,
    );
    assert_eq!(late["status"], "failed", "{late}");
    let still = expect(d, AUDITOR, "GET", "/v1/groups/b/keys/k", None, 200);
    assert_eq!(still["hsm_id"], second["hsm_id"]);
    assert_eq!(still["version"], second["version"]);
}

#[test]
fn an_approved_purge_never_purges_in_another_vault() {
    let rig = start();
    let d = &rig.daemon;
    let approve = |id: &str, status: u16| {
        let path = format!("/v1/approvals/{id}/approve");
        expect(d, ADMIN2, "POST", &path, None, status)
    };
    // Group p's key is pushed to V_SOFT and deleted there: a purge waits for a second admin.
    group(d, "p", V_SOFT, &["k"]);
    let sync = "/v1/groups/p/keys/k/sync";
    wait_end(d, &job_id(&expect(d, OPERATOR, "POST", sync, None, 202)));
    rig.emu.delete_key_now(V_SOFT, "p").unwrap();
    let requested = expect(d, ADMIN, "POST", "/v1/groups/p/purge", None, 202);
    let purge = approval_id(&requested);
    let job = requested["job"]["id"].as_str().unwrap().to_owned();
    // The waiting purge job holds group p: its key and the group cannot go under it.
    let held = expect(d, ADMIN, "DELETE", "/v1/groups/p/keys/k", None, 409);
    assert_eq!(held["error"]["job"], job.as_str(), "{held}");
    expect(d, OPERATOR, "DELETE", "/v1/groups/p", None, 409);
    // Its job cancelled (the approval id still in hand), group p is deleted (its key first,
    // approved) and created again on V_OTHER, whose key p is then deleted too.
    let cancel = format!("/v1/jobs/{job}/cancel");
    expect(d, OPERATOR, "POST", &cancel, None, 200);
    let key = expect(d, ADMIN, "DELETE", "/v1/groups/p/keys/k", None, 202);
    approve(&approval_id(&key), 200);
    expect(d, OPERATOR, "DELETE", "/v1/groups/p", None, 200);
    group(d, "p", V_OTHER, &["k"]);
    wait_end(d, &job_id(&expect(d, OPERATOR, "POST", sync, None, 202)));
    rig.emu.delete_key_now(V_OTHER, "p").unwrap();
    // The purge was requested for V_SOFT: approving it now purges nothing in V_OTHER.
    approve(&purge, 409);
    let ended = wait_end(d, &job);
    assert_eq!(ended["state"], "cancelled", "{ended}");
    let deleted = rig.emu.deleted_keys(V_OTHER);
    assert!(deleted.iter().any(|k| k.name == "p"), "{deleted:?}");
}
