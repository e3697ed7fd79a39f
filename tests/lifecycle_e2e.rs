//! Key lifecycle end to end with the real daemon on a SoftHSM token and the Azure emulator over
//! real TLS: forced rotation (new current version, `nbf`/`exp` from the policy, `last_rotated`
//! only on success, grace record), delete on cloud under dual control on all three recovery
//! levels (a job waiting in `waiting-approval` until approved, rejected, expired, cancelled or
//! restarted; a lost delete answer on a vault without soft-delete), purge through Azure's 409
//! window, recover, the drift check (every finding), and the designated-device refusals. The
//! Managed HSM lifecycles (RSA and AES) run again on a kryoptic token, where `two-step` wraps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod control_rig;
mod emulator_rig;

use byokd_emulator::{EmulatorHandle, FaultAction, FaultRule, ForeignKeyType, Op, RecoveryLevel};
use control_rig::{ADMIN, ADMIN2, AUDITOR, Daemon, ExternalToken, OPERATOR, Options};
use emulator_rig::EmulatorRig;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b";
const SECRET: &str = "Qv8~life.KnownSecret-For_Grep-0042";
/// Soft-delete off: a delete is final.
const V_PURGEABLE: &str = "life-nosoft";
/// Soft-delete, purge allowed.
const V_SOFT: &str = "life-soft";
/// Soft-delete with purge protection.
const V_PROTECTED: &str = "life-protected";
/// A vault nothing answers for: its host resolves to a closed local port.
const V_UNREACHABLE: &str = "life-nowhere";
/// A Managed HSM pool: soft-delete always on, purge allowed.
const P_SOFT: &str = "life-mhsm";
/// A Managed HSM pool with purge protection.
const P_PROTECTED: &str = "life-mhsm-protected";

struct Rig {
    rt: tokio::runtime::Runtime,
    emu: EmulatorHandle,
    daemon: Daemon,
    _ca_dir: tempfile::TempDir,
}

fn start() -> Rig {
    start_with(Options::default().approval_window_secs)
}

/// A rig whose dual-control approvals expire after `approval_window_secs`.
fn start_with(approval_window_secs: u64) -> Rig {
    start_on(approval_window_secs, "allow_host_wrap = true\n", None)
}

/// The rig with the daemon on kryoptic `token`, without host wrap (`two-step` only).
fn start_kryoptic(token: &common::kryoptic::KryopticToken) -> Rig {
    let rig = start_on(
        Options::default().approval_window_secs,
        "allow_host_wrap = false\n",
        Some(ExternalToken {
            module: token.module.clone(),
            label: token.label.clone(),
            user_pin: token.user_pin.clone(),
        }),
    );
    let (_, status) = rig.daemon.ctl_json(OPERATOR, &["status"]);
    assert_eq!(
        status["health"]["hsm"]["wrap_strategy"], "two-step",
        "{status}"
    );
    rig
}

/// The rig on the daemon's SoftHSM token, or on `token`, with `hsm_extra` in `[hsm]`.
fn start_on(approval_window_secs: u64, hsm_extra: &str, token: Option<ExternalToken>) -> Rig {
    // Azure's "being deleted" window: GET /deletedkeys answers 404, a purge 409.
    let azure = emulator_rig::start(
        (TENANT, CLIENT, SECRET),
        &[
            (V_PURGEABLE, RecoveryLevel::Purgeable),
            (V_SOFT, RecoveryLevel::RecoverablePurgeable),
            (V_PROTECTED, RecoveryLevel::Recoverable),
        ],
        700,
    );
    let pools = azure.add_managed_hsm(P_SOFT, RecoveryLevel::RecoverablePurgeable)
        + &azure.add_managed_hsm(P_PROTECTED, RecoveryLevel::Recoverable);
    let sections = azure.sections(
        &[V_PURGEABLE, V_SOFT, V_PROTECTED],
        "",
        &format!(
            "{pools}\"{V_UNREACHABLE}.vault.azure.net\" = \"127.0.0.1:9\"\n[lifecycle]\ngrace_days = 7\ndrift_check_hours = 0\n"
        ),
    );
    let EmulatorRig {
        rt, emu, ca_dir, ..
    } = azure;
    let daemon = Daemon::start_with(Options {
        hsm_extra: hsm_extra.into(),
        sections,
        approval_window_secs,
        token,
        ..Options::default()
    });
    let secret_file = daemon.path("client-secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    ok(
        &daemon,
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
    std::fs::remove_file(&secret_file).unwrap();
    Rig {
        rt,
        emu,
        daemon,
        _ca_dir: ca_dir,
    }
}

fn ok(d: &Daemon, who: &str, args: &[&str]) -> String {
    let out = d.ctl(who, args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}\n--- daemon log\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A group with one key, pushed.
fn pushed_group(d: &Daemon, group: &str, vault: &str, extra: &[&str]) -> String {
    pushed_group_in(d, group, ("--vault", vault), extra)
}

/// A group with one key, pushed, in `target` (`--vault` or `--managed-hsm` and the name).
fn pushed_group_in(d: &Daemon, group: &str, target: (&str, &str), extra: &[&str]) -> String {
    let mut kind = vec!["--key-type", "EC-P256", "--key-ops", "sign,verify"];
    kind.extend_from_slice(extra);
    pushed_group_of(d, group, target, &kind)
}

/// Like `pushed_group_in`, with the key type (and any other arguments) given.
fn pushed_group_of(d: &Daemon, group: &str, (flag, name): (&str, &str), kind: &[&str]) -> String {
    let mut args = vec!["group", "create", group, "--credential", "app", flag, name];
    args.extend_from_slice(kind);
    ok(d, ADMIN, &args);
    ok(d, OPERATOR, &["key", "create", group, "k1"]);
    ok(d, OPERATOR, &["key", "sync", group, "k1"]);
    let (_, k) = d.ctl_json(OPERATOR, &["key", "show", group, "k1"]);
    k["version"].as_str().expect("pushed version").to_owned()
}

fn group_show(d: &Daemon, group: &str) -> Value {
    let (code, g) = d.ctl_json(AUDITOR, &["group", "show", group]);
    assert_eq!(code, 0, "{g}");
    g
}

fn job(d: &Daemon, id: &str) -> Value {
    let (_, j) = d.ctl_json(AUDITOR, &["job", "show", id]);
    j
}

fn last_job(d: &Daemon, kind: &str, group: &str) -> Value {
    let (_, jobs) = d.ctl_json(AUDITOR, &["job", "list"]);
    let list = jobs["jobs"].as_array().cloned().unwrap_or_default();
    list.into_iter()
        .filter(|j| j["kind"] == kind && j["group"] == group)
        .max_by_key(|j| j["id"].as_str().unwrap().parse::<u64>().unwrap())
        .unwrap_or_else(|| panic!("no {kind} job for {group}: {jobs}"))
}

fn steps(j: &Value) -> String {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["message"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Requests a dual-control action as ADMIN, checks that neither ADMIN nor an operator can
/// approve it, approves as ADMIN2 and returns the approve answer's status and body.
fn dual_control_code(d: &Daemon, args: &[&str]) -> (u16, Value) {
    let (code, pending) = d.ctl_json(ADMIN, args);
    assert_eq!(code, 0, "{args:?}: {pending}");
    let id = pending["approval"]["id"].as_str().unwrap().to_owned();
    assert!(
        pending["approval"]["summary"]
            .as_str()
            .unwrap()
            .contains("local keys are untouched"),
        "{pending}"
    );
    let path = format!("/v1/approvals/{id}/approve");
    let (status, refused) = d.curl(Some(ADMIN), "POST", &path, None);
    assert_eq!(status, 403, "self-approval must be refused: {refused}");
    assert_eq!(refused["error"]["code"], "self_approval");
    let (status, refused) = d.curl(Some(OPERATOR), "POST", &path, None);
    assert_eq!(status, 403, "an operator cannot approve: {refused}");
    d.curl(Some(ADMIN2), "POST", &path, None)
}

fn dual_control(d: &Daemon, args: &[&str]) -> Value {
    let (status, approved) = dual_control_code(d, args);
    assert_eq!(status, 200, "{args:?}: {approved}\n{}", d.log());
    approved
}

fn wait_job(d: &Daemon, id: &str) -> Value {
    let out = d.ctl(AUDITOR, &["job", "watch", id]);
    let j = job(d, id);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(6),
        "job watch {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    j
}

#[test]
fn forced_rotation_pushes_a_new_current_version_with_policy_dates_and_records_the_grace() {
    let rig = start();
    let d = &rig.daemon;
    let first = pushed_group(
        d,
        "rot",
        V_SOFT,
        &[
            "--rotation",
            "on",
            "--rotate-every",
            "1",
            "--keep-valid",
            "3",
        ],
    );
    let before = group_show(d, "rot");
    assert!(before["last_rotated"].is_null(), "{before}");
    assert!(unix(&before["next_rotation"]).is_some(), "{before}");

    // A push that fails (every import refused with 503) leaves last_rotated alone.
    rig.emu.inject_fault(FaultRule::every(
        Op::ImportKey,
        FaultAction::Status { status: 503 },
    ));
    let out = d.ctl(OPERATOR, &["group", "rotate", "rot"]);
    assert_eq!(out.status.code(), Some(6), "the rotation job must fail");
    rig.emu.clear_faults();
    let failed = last_job(d, "rotate", "rot");
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("last rotation unchanged"),
        "{failed}"
    );
    let after_fail = group_show(d, "rot");
    assert!(after_fail["last_rotated"].is_null(), "{after_fail}");
    assert!(after_fail["pending_grace"].is_null(), "{after_fail}");
    assert_eq!(rig.emu.key_versions(V_SOFT, "rot").len(), 1);
    assert!(rig.emu.live_keks(V_SOFT).is_empty(), "KEK left behind");

    // Forced rotation succeeds.
    let t0 = time::OffsetDateTime::now_utc().unix_timestamp();
    ok(d, OPERATOR, &["group", "rotate", "rot"]);
    let t1 = time::OffsetDateTime::now_utc().unix_timestamp();
    let rotated = last_job(d, "rotate", "rot");
    assert_eq!(rotated["state"], "succeeded", "{rotated}");
    assert_eq!(rotated["title"], "Rotate key material");
    let g = group_show(d, "rot");
    let last = unix(&g["last_rotated"]).expect("last_rotated set");
    assert!((t0..=t1).contains(&last), "{g}");
    // The next rotation is one calendar month after it.
    let last_t = time::OffsetDateTime::from_unix_timestamp(last).unwrap();
    assert_eq!(
        unix(&g["next_rotation"]).unwrap(),
        byokd::model::add_months(last_t, 1).unix_timestamp()
    );

    // The new key is named from the group and a UTC timestamp and is the current version.
    let (_, keys) = d.ctl_json(AUDITOR, &["key", "list", "rot"]);
    let keys = keys["keys"].as_array().unwrap().clone();
    assert_eq!(
        keys.len(),
        3,
        "k1, the failed rotation's key and the new one: {keys:?}"
    );
    let new_key = keys
        .iter()
        .filter(|k| k["name"].as_str().unwrap().starts_with("rot-2"))
        .find(|k| k["version"].is_string())
        .expect("the rotated key is pushed");
    let new_version = new_key["version"].as_str().unwrap();
    let versions = rig.emu.key_versions(V_SOFT, "rot");
    assert_eq!(versions.len(), 2, "exactly one new Azure version");
    let current = versions.last().unwrap();
    assert_eq!(current.version, new_version, "the new version is current");
    // nbf = now, exp = nbf + keep_valid (3 calendar months).
    let nbf = current.nbf.expect("nbf set");
    assert!(
        (t0..=t1).contains(&nbf),
        "nbf {nbf} not within the rotation"
    );
    let nbf_t = time::OffsetDateTime::from_unix_timestamp(nbf).unwrap();
    assert_eq!(
        current.exp,
        Some(byokd::model::add_months(nbf_t, 3).unix_timestamp()),
        "exp must be keep-valid months after nbf"
    );
    // The previous version waits out the 7-day grace period, still enabled.
    assert_eq!(g["pending_grace"]["versions"], serde_json::json!([first]));
    assert_eq!(g["pending_grace"]["new_version"], new_version);
    assert_eq!(unix(&g["pending_grace"]["due"]).unwrap(), last + 7 * 86_400);
    assert!(
        versions[0].enabled,
        "the previous version stays enabled during the grace period"
    );
    assert!(rig.emu.live_keks(V_SOFT).is_empty(), "KEK left behind");
    let log = d.log();
    assert!(
        log.contains("rotation.succeeded"),
        "no rotation event in the log"
    );
    assert!(
        log.contains("rotation.failed"),
        "no failure event in the log"
    );
}

#[test]
fn delete_on_cloud_needs_two_admins_and_purges_only_where_the_recovery_level_allows() {
    let rig = start();
    let d = &rig.daemon;
    for (group, vault) in [
        ("del-a", V_PURGEABLE),
        ("del-b", V_SOFT),
        ("del-c", V_PROTECTED),
    ] {
        pushed_group(d, group, vault, &[]);
        assert_eq!(rig.emu.key_versions(vault, group).len(), 1);
        // An operator may not even ask.
        assert_eq!(
            d.ctl(OPERATOR, &["group", "delete-cloud", group])
                .status
                .code(),
            Some(3)
        );
        assert_eq!(
            rig.emu.key_versions(vault, group).len(),
            1,
            "nothing happens before approval"
        );
        rig.emu.clear_requests();
        let approved = dual_control(d, &["group", "delete-cloud", group]);
        let id = approved["job"]["id"]
            .as_str()
            .expect("approve starts a job")
            .to_owned();
        let j = wait_job(d, &id);
        assert_eq!(j["state"], "succeeded", "{group}: {j}\n{}", d.log());
        assert_eq!(j["title"], "Delete key material on cloud");
        assert!(
            rig.emu.key_versions(vault, group).is_empty(),
            "{group}: Azure key still live"
        );
        // Local keys are untouched.
        let (_, keys) = d.ctl_json(AUDITOR, &["key", "list", group]);
        assert_eq!(
            keys["keys"].as_array().unwrap().len(),
            1,
            "{group}: local key lost"
        );
        let (status, _) = d.curl(
            Some(AUDITOR),
            "GET",
            &format!("/v1/groups/{group}/keys/k1/public"),
            None,
        );
        assert_eq!(status, 200, "{group}: the HSM key must still be there");
        let deleted = rig.emu.deleted_keys(vault);
        let log_steps = steps(&j);
        let gets: Vec<u16> = rig
            .emu
            .requests()
            .iter()
            .filter(|r| r.op == Op::GetDeletedKey)
            .map(|r| r.status)
            .collect();
        match vault {
            V_PURGEABLE => {
                assert!(deleted.iter().all(|k| k.name != group), "{deleted:?}");
                assert!(log_steps.contains("no soft-delete"), "{log_steps}");
            }
            V_SOFT => {
                assert!(
                    deleted.iter().all(|k| k.name != group),
                    "soft-delete vault: the key must be purged: {deleted:?}"
                );
                assert!(log_steps.contains("purged"), "{log_steps}");
                // The 404 window was waited out before the purge.
                assert_eq!(gets.first(), Some(&404), "no 404 window seen: {gets:?}");
                assert_eq!(gets.last(), Some(&200), "{gets:?}");
                let (_, k) = d.ctl_json(AUDITOR, &["key", "show", group, "k1"]);
                assert!(k["version"].is_null(), "a purged version is forgotten: {k}");
            }
            _ => {
                let dk = deleted
                    .iter()
                    .find(|k| k.name == group)
                    .expect("purge protection: the key stays soft-deleted");
                assert!(log_steps.contains("not purged"), "{log_steps}");
                let date = time::OffsetDateTime::from_unix_timestamp(dk.scheduled_purge_date)
                    .unwrap()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
                assert!(
                    log_steps.contains(&date),
                    "scheduled purge date {date} not said: {log_steps}"
                );
                // A purge is refused there at request time, with the reason, before a
                // second admin is asked.
                let (status, refused) = d.curl(
                    Some(ADMIN),
                    "POST",
                    &format!("/v1/groups/{group}/purge"),
                    None,
                );
                assert_eq!(status, 409, "{refused}");
                assert_eq!(refused["error"]["code"], "cloud_state", "{refused}");
                assert!(
                    refused.to_string().contains("purge protection")
                        && refused.to_string().contains("Azure purges"),
                    "{refused}"
                );
                let (_, shown) = d.ctl_json(AUDITOR, &["approval", "list"]);
                assert!(!shown.to_string().contains("purge key group"), "{shown}");
                assert_eq!(
                    rig.emu
                        .deleted_keys(vault)
                        .iter()
                        .filter(|k| k.name == group)
                        .count(),
                    1
                );
                // Recover brings every version back.
                let out = ok(d, OPERATOR, &["group", "recover", group]);
                assert!(out.contains("recovered"), "{out}");
                assert_eq!(rig.emu.key_versions(vault, group).len(), 1);
                assert_eq!(
                    d.ctl(AUDITOR, &["group", "recover", group]).status.code(),
                    Some(3)
                );
                // Nothing left to recover: the job fails saying so, exit 6.
                let again = d.ctl(OPERATOR, &["group", "recover", group]);
                assert_eq!(again.status.code(), Some(6));
                let said = format!(
                    "{}{}",
                    String::from_utf8_lossy(&again.stdout),
                    String::from_utf8_lossy(&again.stderr)
                );
                assert!(said.contains("nothing to recover"), "{said}");
            }
        }
    }
    // Each cloud step left its audit record, with the identity of both admins; the protected
    // vault's skipped purge says why and when Azure purges it.
    let log = d.log();
    for event in [
        "azure.key.deleted",
        "azure.key.purged",
        "azure.key.not_purged",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("event=\"{event}\""))
                    && l.contains("identity=\"admin (approved by admin2)\"")),
            "{event} missing:\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("event=\"azure.key.not_purged\"")
                && l.contains("purge protection")
                && l.contains("Azure purges it on 20")),
        "{log}"
    );
}

#[test]
fn a_purge_inside_azures_delete_window_retries_the_409_and_succeeds() {
    let rig = start();
    let d = &rig.daemon;
    pushed_group(d, "win", V_SOFT, &[]);
    // Deleted behind byokd's back, still "being deleted" for a while.
    rig.emu
        .delete_key_pending(V_SOFT, "win", Duration::from_millis(1500))
        .unwrap();
    rig.emu.clear_requests();
    let approved = dual_control(d, &["group", "purge", "win"]);
    assert_eq!(approved["status"], "approved", "{approved}\n{}", d.log());
    // The approval starts the purge job; its answer never waits for Azure.
    assert_eq!(approved["job"]["kind"], "purge", "{approved}");
    let id = approved["job"]["id"].as_str().unwrap().to_owned();
    let end = wait_job(d, &id);
    assert_eq!(end["state"], "succeeded", "{end}\n{}", d.log());
    assert!(
        end["steps"].to_string().contains("purged for good"),
        "{end}"
    );
    assert!(
        end["journal"].to_string().contains("purge.purge-sent"),
        "{end}"
    );
    let purges: Vec<(u16, Option<String>)> = rig
        .emu
        .requests()
        .iter()
        .filter(|r| r.op == Op::PurgeDeletedKey)
        .map(|r| (r.status, r.error_code.clone()))
        .collect();
    assert!(
        purges.iter().any(|(s, _)| *s == 409),
        "the purge met no 409 ObjectIsBeingDeleted: {purges:?}"
    );
    assert_eq!(purges.last().map(|p| p.0), Some(204), "{purges:?}");
    assert!(rig.emu.deleted_keys(V_SOFT).iter().all(|k| k.name != "win"));
}

#[test]
fn the_drift_check_reports_each_change_made_behind_byokds_back() {
    let rig = start();
    let d = &rig.daemon;
    let v1 = pushed_group(d, "drift", V_SOFT, &[]);
    ok(d, OPERATOR, &["key", "create", "drift", "k2"]);
    ok(d, OPERATOR, &["key", "sync", "drift", "k2"]);
    let (_, k2) = d.ctl_json(OPERATOR, &["key", "show", "drift", "k2"]);
    let v2 = k2["version"].as_str().unwrap().to_owned();

    // Clean to begin with.
    ok(d, OPERATOR, &["group", "check", "drift"]);
    let g = group_show(d, "drift");
    assert_eq!(g["drift"]["findings"], serde_json::json!([]), "{g}");
    assert_eq!(g["drift"]["azure_versions"], 2);

    // An extra version imported elsewhere, and k1's version disabled.
    let foreign = rig
        .rt
        .block_on(rig.emu.import_foreign_version(
            V_SOFT,
            "drift",
            ForeignKeyType::Ec {
                crv: byokd_emulator::Curve::P256,
            },
            BTreeMap::new(),
        ))
        .unwrap();
    rig.emu
        .set_version_enabled(V_SOFT, "drift", &v1, false)
        .unwrap();
    ok(d, OPERATOR, &["group", "check", "drift"]);
    let g = group_show(d, "drift");
    let findings = g["drift"]["findings"].as_array().unwrap();
    let has = |code: &str, version: &str| {
        findings
            .iter()
            .any(|f| f["code"] == code && f["version"] == version)
    };
    assert!(has("unknown-version", &foreign.version), "{g}");
    assert!(has("disabled-version", &v1), "{g}");
    assert!(!findings.iter().any(|f| f["version"] == v2.as_str()), "{g}");
    // The byokctl table view shows them too.
    let shown = ok(d, AUDITOR, &["group", "show", "drift"]);
    assert!(
        shown.contains("unknown-version") || shown.contains(&foreign.version),
        "{shown}"
    );

    // The whole key deleted.
    rig.emu.delete_key_now(V_SOFT, "drift").unwrap();
    ok(d, OPERATOR, &["group", "check", "drift"]);
    let g = group_show(d, "drift");
    let codes: Vec<&str> = g["drift"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["key-missing"], "{g}");
    let log = d.log();
    for code in ["unknown-version", "disabled-version", "key-missing"] {
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains("drift.found") && l.contains(code)),
            "no WARN drift.found {code} in the log"
        );
    }
}

#[test]
fn a_managed_hsm_group_rotates_checks_drift_deletes_recovers_and_purges() {
    let rig = start();
    managed_hsm_lifecycle(&rig, &["--key-type", "EC-P256", "--key-ops", "sign,verify"]);
}

/// Managed HSM groups of keys of `kind` (`--key-type` and any other `group create` arguments):
/// rotated, drift-checked, deleted on the cloud and purged, deleted and recovered in a
/// purge-protected pool, purged explicitly; no vault touched.
fn managed_hsm_lifecycle(rig: &Rig, kind: &[&str]) {
    let d = &rig.daemon;
    // Rotation: a new current version in the pool, the KEK made there and gone.
    let first = pushed_group_of(d, "hsm-rot", ("--managed-hsm", P_SOFT), kind);
    ok(d, OPERATOR, &["group", "rotate", "hsm-rot"]);
    let rotated = last_job(d, "rotate", "hsm-rot");
    assert_eq!(rotated["state"], "succeeded", "{rotated}");
    let versions = rig.emu.key_versions(P_SOFT, "hsm-rot");
    assert_eq!(versions.len(), 2, "one new version in the pool");
    let g = group_show(d, "hsm-rot");
    assert_eq!(g["pending_grace"]["versions"], serde_json::json!([first]));
    assert_eq!(
        g["pending_grace"]["new_version"],
        versions.last().unwrap().version
    );
    assert!(rig.emu.live_keks(P_SOFT).is_empty(), "KEK left in the pool");

    // The drift check reads the pool: clean, then a version disabled behind byokd's back.
    ok(d, OPERATOR, &["group", "check", "hsm-rot"]);
    let g = group_show(d, "hsm-rot");
    assert_eq!(g["drift"]["findings"], serde_json::json!([]), "{g}");
    assert_eq!(g["drift"]["azure_versions"], 2);
    rig.emu
        .set_version_enabled(P_SOFT, "hsm-rot", &first, false)
        .unwrap();
    ok(d, OPERATOR, &["group", "check", "hsm-rot"]);
    let g = group_show(d, "hsm-rot");
    assert!(
        g["drift"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "disabled-version" && f["version"] == first.as_str()),
        "{g}"
    );

    // Delete on cloud in the soft-delete pool: deleted, then purged.
    let approved = dual_control(d, &["group", "delete-cloud", "hsm-rot"]);
    let j = wait_job(d, approved["job"]["id"].as_str().unwrap());
    assert_eq!(j["state"], "succeeded", "{j}\n{}", d.log());
    assert!(rig.emu.key_versions(P_SOFT, "hsm-rot").is_empty());
    assert!(
        rig.emu
            .deleted_keys(P_SOFT)
            .iter()
            .all(|k| k.name != "hsm-rot"),
        "the key must be purged from the pool"
    );
    assert!(steps(&j).contains("purged"), "{}", steps(&j));

    // In the purge-protected pool: deleted and kept, recovered, and a purge refused up front.
    pushed_group_of(d, "hsm-prot", ("--managed-hsm", P_PROTECTED), kind);
    let approved = dual_control(d, &["group", "delete-cloud", "hsm-prot"]);
    let j = wait_job(d, approved["job"]["id"].as_str().unwrap());
    assert_eq!(j["state"], "succeeded", "{j}\n{}", d.log());
    assert!(steps(&j).contains("not purged"), "{}", steps(&j));
    // The job names the pool as a pool, never as a vault.
    assert!(
        steps(&j).contains("the pool's recovery level") && !steps(&j).contains("the vault"),
        "{}",
        steps(&j)
    );
    assert_eq!(
        rig.emu
            .deleted_keys(P_PROTECTED)
            .iter()
            .filter(|k| k.name == "hsm-prot")
            .count(),
        1
    );
    let (status, refused) = d.curl(Some(ADMIN), "POST", "/v1/groups/hsm-prot/purge", None);
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "cloud_state", "{refused}");
    let why = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!(
            "Managed HSM pool {P_PROTECTED} does not allow a purge"
        )),
        "{refused}"
    );
    let out = ok(d, OPERATOR, &["group", "recover", "hsm-prot"]);
    assert!(out.contains("recovered"), "{out}");
    assert_eq!(rig.emu.key_versions(P_PROTECTED, "hsm-prot").len(), 1);

    // An explicit purge in the soft-delete pool, under dual control, after a delete.
    pushed_group_of(d, "hsm-purge", ("--managed-hsm", P_SOFT), kind);
    deleted_then_purged(rig, P_SOFT, "hsm-purge");
    // Nothing of this reached a vault.
    for v in [V_PURGEABLE, V_SOFT, V_PROTECTED] {
        assert!(rig.emu.all_keys(v).is_empty(), "{v} was touched");
    }
}

/// Deletes `group`'s key in `pool` behind byokd's back, then purges it under dual control.
fn deleted_then_purged(rig: &Rig, pool: &str, group: &str) {
    let d = &rig.daemon;
    rig.emu.delete_key_now(pool, group).unwrap();
    let approved = dual_control(d, &["group", "purge", group]);
    let j = wait_job(d, approved["job"]["id"].as_str().unwrap());
    assert_eq!(j["state"], "succeeded", "{j}\n{}", d.log());
    assert!(
        rig.emu.deleted_keys(pool).iter().all(|k| k.name != group),
        "{group} purged from {pool}"
    );
}

/// The KCV the emulator computed from the unwrapped AES key of each version of `group` in
/// `pool`, checked against byokd's check digits of the key that version belongs to.
fn assert_kcvs_match(rig: &Rig, pool: &str, group: &str) {
    let d = &rig.daemon;
    let (_, keys) = d.ctl_json(AUDITOR, &["key", "list", group]);
    for k in keys["keys"].as_array().unwrap() {
        let Some(version) = k["version"].as_str() else {
            continue;
        };
        let azure = rig
            .emu
            .key_versions(pool, group)
            .into_iter()
            .find(|v| v.version == version)
            .unwrap_or_else(|| panic!("{group}: version {version} not in {pool}"));
        let byokd_emulator::PublicKey::Oct { kcv, bits } = &azure.public_key else {
            panic!("{group}: not an oct key: {:?}", azure.public_key);
        };
        assert_eq!(Some(kcv.as_str()), k["check_digits"].as_str(), "{k}");
        assert_eq!(
            Some(*bits),
            k["algorithm"]
                .as_str()
                .and_then(|a| a.strip_prefix("AES-"))
                .and_then(|b| b.parse().ok()),
            "{k}"
        );
    }
}

/// AES keys (oct-HSM) in Managed HSM groups: pushed (every blob unwrapped strictly by the
/// emulator, its KCV compared with the HSM's), rotated, drift-checked (the key material is not
/// comparable, and the report says so without calling it drift), deleted on the cloud and
/// purged, recovered in a purge-protected pool, and purged explicitly.
#[test]
fn aes_keys_in_a_managed_hsm_rotate_check_delete_recover_and_purge() {
    aes_lifecycle(&start());
}

/// The lifecycle of AES keys (128, 192, 256 bits) in Managed HSM groups of `rig`, and the
/// refusal of an AES group on a Key Vault.
fn aes_lifecycle(rig: &Rig) {
    let d = &rig.daemon;
    let aes = |bits: &'static str| ["--key-type", bits];
    pushed_group_of(d, "aes-rot", ("--managed-hsm", P_SOFT), &aes("AES-256"));
    ok(d, OPERATOR, &["group", "rotate", "aes-rot"]);
    let rotated = last_job(d, "rotate", "aes-rot");
    assert_eq!(rotated["state"], "succeeded", "{rotated}\n{}", d.log());
    let versions = rig.emu.key_versions(P_SOFT, "aes-rot");
    assert_eq!(versions.len(), 2, "one new version in the pool");
    assert!(versions.iter().all(|v| v.kty == "oct-HSM"), "{versions:?}");
    assert_kcvs_match(rig, P_SOFT, "aes-rot");
    assert!(rig.emu.live_keks(P_SOFT).is_empty(), "KEK left in the pool");

    // Drift: nothing differs, and each version says its key material is not comparable.
    let out = ok(d, OPERATOR, &["group", "check", "aes-rot"]);
    let g = group_show(d, "aes-rot");
    let findings = g["drift"]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{g}");
    assert!(
        findings
            .iter()
            .all(|f| f["code"] == "key-material-not-comparable"
                && f["message"].as_str().unwrap().contains("not drift")),
        "{g}"
    );
    let check = last_job(d, "check-cloud", "aes-rot");
    assert!(
        steps(&check).contains("no drift") && steps(&check).contains("checked by type only"),
        "{}\n{out}",
        steps(&check)
    );

    // Delete on cloud in the soft-delete pool: deleted, then purged.
    let approved = dual_control(d, &["group", "delete-cloud", "aes-rot"]);
    let j = wait_job(d, approved["job"]["id"].as_str().unwrap());
    assert_eq!(j["state"], "succeeded", "{j}\n{}", d.log());
    assert!(rig.emu.key_versions(P_SOFT, "aes-rot").is_empty());
    assert!(steps(&j).contains("purged"), "{}", steps(&j));

    // Purge-protected pool: deleted and kept, then recovered.
    pushed_group_of(
        d,
        "aes-prot",
        ("--managed-hsm", P_PROTECTED),
        &aes("AES-128"),
    );
    assert_kcvs_match(rig, P_PROTECTED, "aes-prot");
    let approved = dual_control(d, &["group", "delete-cloud", "aes-prot"]);
    let j = wait_job(d, approved["job"]["id"].as_str().unwrap());
    assert_eq!(j["state"], "succeeded", "{j}\n{}", d.log());
    assert!(steps(&j).contains("not purged"), "{}", steps(&j));
    let out = ok(d, OPERATOR, &["group", "recover", "aes-prot"]);
    assert!(out.contains("recovered"), "{out}");
    assert_kcvs_match(rig, P_PROTECTED, "aes-prot");

    // An explicit purge, under dual control, after a delete.
    pushed_group_of(d, "aes-purge", ("--managed-hsm", P_SOFT), &aes("AES-192"));
    assert_kcvs_match(rig, P_SOFT, "aes-purge");
    deleted_then_purged(rig, P_SOFT, "aes-purge");
    // A Key Vault group of AES keys is refused, saying why.
    let (status, refused) = d.curl(
        Some(ADMIN),
        "POST",
        "/v1/groups",
        Some(&format!(
            r#"{{"name":"aes-kv","credential":"app","vault":"{V_SOFT}","key_type":"AES-256","verify":false}}"#
        )),
    );
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["field"], "key_type", "{refused}");
}

/// The Managed HSM lifecycles on kryoptic, whose one wrap strategy is `two-step`: a group of
/// RSA keys and groups of AES keys pushed (every blob unwrapped strictly by the emulator, AES
/// KCVs compared with the HSM's), rotated, drift-checked, deleted, recovered and purged. An EC
/// group is refused at `group create` there (kryoptic's EC PKCS#8 does not conform), naming
/// the way out.
#[test]
fn kryoptic_managed_hsm_groups_of_rsa_and_aes_rotate_check_delete_recover_and_purge() {
    common::kryoptic::isolated_blocking(
        "kryoptic_managed_hsm_groups_of_rsa_and_aes_rotate_check_delete_recover_and_purge",
        |token| {
            let rig = start_kryoptic(&token);
            let d = &rig.daemon;
            let out = d.ctl(
                ADMIN,
                &[
                    "group",
                    "create",
                    "hsm-ec",
                    "--credential",
                    "app",
                    "--managed-hsm",
                    P_SOFT,
                    "--key-type",
                    "EC-P256",
                    "--key-ops",
                    "sign,verify",
                ],
            );
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(!out.status.success(), "{text}");
            assert!(
                text.contains("EC-P256") && text.contains("hsm.allow_host_wrap = true"),
                "{text}"
            );
            assert!(rig.emu.all_keys(P_SOFT).is_empty(), "{text}");
            managed_hsm_lifecycle(&rig, &["--key-type", "RSA-2048"]);
            aes_lifecycle(&rig);
            assert!(
                rig.emu.schema_violations().is_empty(),
                "byokd sent a request the spec does not allow"
            );
            let log = d.log();
            assert!(
                !log.contains("strategy=\"host\"") && !log.contains("strategy=host"),
                "no host wrap on kryoptic"
            );
        },
    );
}

/// Creates group `name` on a vault that cannot be reached (staged: `--no-verify`, since the
/// vault check at creation would refuse it).
fn unreachable_group(d: &Daemon, name: &str) {
    ok(
        d,
        ADMIN,
        &[
            "group",
            "create",
            name,
            "--credential",
            "app",
            "--vault",
            V_UNREACHABLE,
            "--key-type",
            "EC-P256",
            "--key-ops",
            "sign,verify",
            "--no-verify",
        ],
    );
}

/// A recover calls Azure in a job: where the vault cannot be reached, the request is still
/// accepted (202 with the job, never a 5xx), and the job fails saying what to check.
#[test]
fn a_recover_on_an_unreachable_vault_is_accepted_and_its_job_fails_saying_why() {
    let rig = start();
    let d = &rig.daemon;
    unreachable_group(d, "lost");
    let (status, started) = d.curl(Some(OPERATOR), "POST", "/v1/groups/lost/recover", None);
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["job"]["kind"], "recover", "{started}");
    let id = started["job"]["id"].as_str().unwrap().to_owned();
    let end = wait_job(d, &id);
    assert_eq!(end["state"], "failed", "{end}");
    let error = end["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not recovered")
            && error.contains(V_UNREACHABLE)
            && error.contains("could not be reached"),
        "{end}"
    );
    // byokctl waits for the job and exits 6 with the reason.
    let out = d.ctl(OPERATOR, &["group", "recover", "lost"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not recovered"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("azure.key.recover_failed")
            && l.contains(OPERATOR)
            && l.contains("lost")),
        "the failure is audited with the identity"
    );
}

/// A purge calls Azure in a job: where the vault cannot be reached, the request and the second
/// admin's approval still answer (202, then 200 with the started job, never a 5xx), and the
/// job fails saying what to check.
#[test]
fn an_approved_purge_on_an_unreachable_vault_fails_its_job_saying_why() {
    let rig = start();
    let d = &rig.daemon;
    unreachable_group(d, "gone");
    let (status, requested) = d.curl(Some(ADMIN), "POST", "/v1/groups/gone/purge", None);
    assert_eq!(status, 202, "{requested}");
    assert_eq!(requested["job"]["kind"], "purge", "{requested}");
    assert_eq!(requested["job"]["state"], "waiting-approval", "{requested}");
    let approval = requested["approval"]["id"].as_str().unwrap();
    let path = format!("/v1/approvals/{approval}/approve");
    let (status, approved) = d.curl(Some(ADMIN2), "POST", &path, None);
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["job"]["id"], requested["job"]["id"], "{approved}");
    let id = approved["job"]["id"].as_str().unwrap().to_owned();
    let end = wait_job(d, &id);
    assert_eq!(end["state"], "failed", "{end}");
    let error = end["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not purged")
            && error.contains(V_UNREACHABLE)
            && error.contains("could not be reached"),
        "{end}"
    );
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("azure.key.purge_failed")
            && l.contains(ADMIN)
            && l.contains("gone")),
        "the failure is audited with the identity"
    );
}

#[test]
fn a_non_designated_daemon_refuses_cloud_jobs_but_still_checks() {
    let rig = start();
    let d = &rig.daemon;
    pushed_group(d, "nd", V_SOFT, &[]);
    ok(d, ADMIN, &["designated", "set", "false"]);
    assert!(
        d.log()
            .lines()
            .any(|l| l.contains("config.designated_changed") && l.contains(ADMIN)),
        "the switch is logged with the admin's identity"
    );
    for (who, args) in [
        (OPERATOR, vec!["group", "rotate", "nd"]),
        (OPERATOR, vec!["group", "sync", "nd"]),
        (OPERATOR, vec!["group", "recover", "nd"]),
        (ADMIN, vec!["group", "delete-cloud", "nd"]),
        (ADMIN, vec!["group", "purge", "nd"]),
    ] {
        let (s, body) = d.curl(
            Some(who),
            "POST",
            &format!("/v1/groups/nd/{}", args[1]),
            None,
        );
        assert_eq!(s, 409, "{args:?}: {body}");
        assert_eq!(body["error"]["code"], "not_designated", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("designated"),
            "the refusal names the setting: {body}"
        );
    }
    assert_eq!(
        rig.emu.key_versions(V_SOFT, "nd").len(),
        1,
        "nothing changed in Azure"
    );
    // The read-only check runs anywhere.
    ok(d, OPERATOR, &["group", "check", "nd"]);
    assert_eq!(
        group_show(d, "nd")["drift"]["findings"],
        serde_json::json!([])
    );
}

/// Requests a delete on cloud as ADMIN; returns the approval id and the waiting job.
fn request_delete(d: &Daemon, group: &str) -> (String, Value) {
    let (code, pending) = d.ctl_json(ADMIN, &["group", "delete-cloud", group]);
    assert_eq!(code, 0, "a recorded request is a success: {pending}");
    let approval = pending["approval"]["id"].as_str().unwrap().to_owned();
    let job = pending["job"].clone();
    assert_eq!(job["state"], "waiting-approval", "{pending}");
    assert_eq!(job["approval"], approval.as_str(), "{pending}");
    assert_eq!(
        pending["approval"]["job_id"], job["id"],
        "the approval names its job: {pending}"
    );
    (approval, job)
}

/// The second admin approves `approval`; the answer's status and body.
fn approve_as_admin2(d: &Daemon, approval: &str) -> (u16, Value) {
    d.curl(
        Some(ADMIN2),
        "POST",
        &format!("/v1/approvals/{approval}/approve"),
        None,
    )
}

fn job_state(d: &Daemon, id: &str) -> Value {
    let (status, j) = d.curl(Some(AUDITOR), "GET", &format!("/v1/jobs/{id}"), None);
    assert_eq!(status, 200, "{j}");
    j
}

#[test]
fn a_delete_on_cloud_waits_in_waiting_approval_until_approved_and_ends_cancelled_otherwise() {
    let mut rig = start();
    for group in ["wa", "wb"] {
        pushed_group(&rig.daemon, group, V_SOFT, &[]);
    }
    let d = &rig.daemon;

    // Requested: the job exists at once, durably, waiting; nothing happens in Azure.
    let (approval, job) = request_delete(d, "wa");
    let id = job["id"].as_str().unwrap().to_owned();
    let (_, listed) = d.curl(
        Some(AUDITOR),
        "GET",
        "/v1/jobs?state=waiting-approval",
        None,
    );
    let waiting: Vec<&Value> = listed["jobs"].as_array().unwrap().iter().collect();
    assert_eq!(waiting.len(), 1, "{listed}");
    assert_eq!(waiting[0]["id"], id.as_str());
    assert_eq!(waiting[0]["approval"], approval.as_str());
    let (_, shown) = d.ctl_json(AUDITOR, &["job", "show", &id]);
    assert_eq!(shown["state"], "waiting-approval", "{shown}");
    assert!(
        steps(&shown).contains(&approval),
        "the step names the approval: {shown}"
    );
    assert_eq!(rig.emu.key_versions(V_SOFT, "wa").len(), 1);

    // Rejected by a second admin: cancelled with the reason.
    let (status, rejected) = d.curl(
        Some(ADMIN2),
        "POST",
        &format!("/v1/approvals/{approval}/reject"),
        None,
    );
    assert_eq!(status, 200, "{rejected}");
    let j = job_state(d, &id);
    assert_eq!(j["state"], "cancelled", "{j}");
    assert!(
        j["error"].as_str().unwrap().contains("rejected by admin2"),
        "{j}"
    );
    assert_eq!(rig.emu.key_versions(V_SOFT, "wa").len(), 1);

    // Cancelling the waiting job withdraws its approval, which can then not be approved.
    let (approval, job) = request_delete(d, "wa");
    let id = job["id"].as_str().unwrap().to_owned();
    let out = d.ctl(OPERATOR, &["job", "cancel", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = job_state(d, &id);
    assert_eq!(j["state"], "cancelled", "{j}");
    assert!(steps(&j).contains("withdrawn"), "{j}");
    let (_, a) = d.curl(
        Some(AUDITOR),
        "GET",
        &format!("/v1/approvals/{approval}"),
        None,
    );
    assert_eq!(a["status"], "rejected", "{a}");
    assert!(a["outcome"].as_str().unwrap().contains("withdrawn"), "{a}");
    let (status, refused) = approve_as_admin2(d, &approval);
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("approval_decided"))
    );
    assert_eq!(rig.emu.key_versions(V_SOFT, "wa").len(), 1);

    // Approved by a second admin: the same job leaves waiting-approval and runs.
    let (approval, job) = request_delete(d, "wa");
    let id = job["id"].as_str().unwrap().to_owned();
    let (status, approved) = approve_as_admin2(d, &approval);
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["job"]["id"], id.as_str(), "{approved}");
    let j = wait_job(d, &id);
    assert_eq!(j["state"], "succeeded", "{j}\n{}", d.log());
    assert_eq!(j["started_by"], "admin (approved by admin2)");
    assert!(steps(&j).contains("Approved by admin2"), "{j}");
    assert!(rig.emu.key_versions(V_SOFT, "wa").is_empty());

    // A restart forgets pending approvals: the waiting job ends cancelled, nothing runs.
    let (approval, job) = request_delete(&rig.daemon, "wb");
    let id = job["id"].as_str().unwrap().to_owned();
    rig.daemon.stop();
    rig.daemon.spawn();
    let d = &rig.daemon;
    let j = job_state(d, &id);
    assert_eq!(j["state"], "cancelled", "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("approval did not survive the daemon's restart"),
        "{j}"
    );
    assert!(
        j["error"].as_str().unwrap().contains("request again"),
        "{j}"
    );
    let (status, _) = d.curl(
        Some(AUDITOR),
        "GET",
        &format!("/v1/approvals/{approval}"),
        None,
    );
    assert_eq!(status, 404, "pending approvals live in memory only");
    assert_eq!(rig.emu.key_versions(V_SOFT, "wb").len(), 1);
    // The group may be asked for again.
    let (_, again) = request_delete(d, "wb");
    assert_ne!(again["id"], id.as_str());
}

#[test]
fn a_delete_on_cloud_whose_approval_expires_ends_cancelled() {
    let rig = start_with(2);
    let d = &rig.daemon;
    pushed_group(d, "exp", V_SOFT, &[]);
    let (approval, job) = request_delete(d, "exp");
    let id = job["id"].as_str().unwrap().to_owned();
    let mut j = job_state(d, &id);
    for _ in 0..100 {
        if j["state"] != "waiting-approval" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        j = job_state(d, &id);
    }
    assert_eq!(j["state"], "cancelled", "{j}");
    let error = j["error"].as_str().unwrap();
    assert!(
        error.contains(&approval) && error.contains("expired"),
        "{j}"
    );
    assert_eq!(rig.emu.key_versions(V_SOFT, "exp").len(), 1);
    let (status, refused) = approve_as_admin2(d, &approval);
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("approval_expired"))
    );
    assert_eq!(rig.emu.key_versions(V_SOFT, "exp").len(), 1);
}

#[test]
fn a_delete_without_soft_delete_whose_answer_is_lost_succeeds_without_waiting() {
    let rig = start();
    let d = &rig.daemon;
    pushed_group(d, "lost", V_PURGEABLE, &[]);
    // The vault deletes the key, then the connection drops before the answer: the client's
    // retry meets a 404.
    rig.emu.inject_fault(FaultRule::next(
        Op::DeleteKey,
        1,
        FaultAction::CommitThenReset,
    ));
    rig.emu.clear_requests();
    let approved = dual_control(d, &["group", "delete-cloud", "lost"]);
    let id = approved["job"]["id"].as_str().unwrap().to_owned();
    let j = wait_job(d, &id);
    assert_eq!(j["state"], "succeeded", "{j}\n{}", d.log());
    let said = steps(&j);
    assert!(said.contains("no soft-delete"), "{said}");
    assert!(said.contains("answer was lost"), "{said}");
    assert!(said.contains("nothing to purge"), "{said}");
    let deletes: Vec<u16> = rig
        .emu
        .requests()
        .iter()
        .filter(|r| r.op == Op::DeleteKey)
        .map(|r| r.status)
        .collect();
    assert_eq!(
        deletes.last(),
        Some(&404),
        "the retried delete met the 404: {deletes:?}"
    );
    assert!(deletes.len() >= 2, "{deletes:?}");
    // It did not wait for a deleted key that a vault without soft-delete never lists.
    assert!(
        !rig.emu.requests().iter().any(|r| r.op == Op::GetDeletedKey),
        "no waiting for a deleted key"
    );
    assert!(rig.emu.key_versions(V_PURGEABLE, "lost").is_empty());
    assert!(
        rig.emu
            .deleted_keys(V_PURGEABLE)
            .iter()
            .all(|k| k.name != "lost")
    );
    let (_, k) = d.ctl_json(AUDITOR, &["key", "show", "lost", "k1"]);
    assert!(k["version"].is_null(), "the gone version is forgotten: {k}");
}

#[test]
fn a_forced_rotation_with_the_schedule_off_still_sets_exp_from_keep_valid() {
    let rig = start();
    let d = &rig.daemon;
    pushed_group(
        d,
        "offrot",
        V_SOFT,
        &["--rotation", "off", "--keep-valid", "5"],
    );
    let pushed = rig.emu.key_versions(V_SOFT, "offrot");
    assert_eq!(
        pushed[0].exp, None,
        "a plain sync with rotation off sets no exp"
    );
    let t0 = time::OffsetDateTime::now_utc().unix_timestamp();
    ok(d, OPERATOR, &["group", "rotate", "offrot"]);
    let t1 = time::OffsetDateTime::now_utc().unix_timestamp();
    let versions = rig.emu.key_versions(V_SOFT, "offrot");
    assert_eq!(versions.len(), 2);
    let current = versions.last().unwrap();
    let nbf = current.nbf.expect("nbf set");
    assert!(
        (t0..=t1).contains(&nbf),
        "nbf {nbf} not within the rotation"
    );
    let nbf_t = time::OffsetDateTime::from_unix_timestamp(nbf).unwrap();
    assert_eq!(
        current.exp,
        Some(byokd::model::add_months(nbf_t, 5).unix_timestamp()),
        "exp must be keep-valid months after nbf"
    );
    let g = group_show(d, "offrot");
    assert!(g["next_rotation"].is_null(), "the schedule stays off: {g}");
}

#[test]
fn the_drift_check_reports_a_public_key_mismatch_and_an_expired_version() {
    let rig = start();
    let d = &rig.daemon;
    let v1 = pushed_group(d, "pk", V_SOFT, &[]);
    ok(d, OPERATOR, &["key", "create", "pk", "k2"]);
    ok(d, OPERATOR, &["key", "sync", "pk", "k2"]);
    let (_, k1) = d.ctl_json(OPERATOR, &["key", "show", "pk", "k1"]);
    let (_, k2) = d.ctl_json(OPERATOR, &["key", "show", "pk", "k2"]);
    let v2 = k2["version"].as_str().unwrap().to_owned();
    ok(d, OPERATOR, &["group", "check", "pk"]);
    assert_eq!(
        group_show(d, "pk")["drift"]["findings"],
        serde_json::json!([])
    );

    // Behind byokd's back: k1's version answers with k2's public key, and k2's version expired.
    rig.emu
        .copy_version_material(V_SOFT, "pk", &v2, &v1)
        .unwrap();
    let past = time::OffsetDateTime::now_utc().unix_timestamp() - 3600;
    rig.emu
        .set_version_exp(V_SOFT, "pk", &v2, Some(past))
        .unwrap();
    ok(d, OPERATOR, &["group", "check", "pk"]);

    let (status, api) = d.curl(Some(AUDITOR), "GET", "/v1/groups/pk", None);
    assert_eq!(status, 200, "{api}");
    for g in [group_show(d, "pk"), api] {
        let findings = g["drift"]["findings"].as_array().unwrap().clone();
        assert_eq!(findings.len(), 2, "{g}");
        let mismatch = findings
            .iter()
            .find(|f| f["code"] == "public-key-mismatch")
            .unwrap_or_else(|| panic!("no public-key-mismatch: {g}"));
        assert_eq!(mismatch["key"], "k1");
        assert_eq!(mismatch["version"], v1.as_str());
        let message = mismatch["message"].as_str().unwrap();
        // Azure's check digits are k2's, the HSM's k1's.
        let (c1, c2) = (
            k1["check_digits"].as_str().unwrap(),
            k2["check_digits"].as_str().unwrap(),
        );
        assert_ne!(c1, c2);
        assert!(
            message.contains(&format!("check digits {c2}"))
                && message.contains(&format!("has {c1}")),
            "{message}"
        );
        let expired = findings
            .iter()
            .find(|f| f["code"] == "expired-version")
            .unwrap_or_else(|| panic!("no expired-version: {g}"));
        assert_eq!(expired["key"], "k2");
        assert_eq!(expired["version"], v2.as_str());
        // The expiry is shown as a date (RFC 3339, UTC), like every time in the API.
        let past_date = time::OffsetDateTime::from_unix_timestamp(past)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        assert!(
            expired["message"].as_str().unwrap().contains(&past_date),
            "{expired}"
        );
    }
    let table = ok(d, AUDITOR, &["group", "show", "pk"]);
    for code in ["public-key-mismatch", "expired-version"] {
        assert!(
            table.contains(code),
            "{code} not in the table view:\n{table}"
        );
    }
    let log = d.log();
    for code in ["public-key-mismatch", "expired-version"] {
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains("drift.found") && l.contains(code)),
            "no WARN drift.found {code} in the log"
        );
    }
}

#[test]
fn a_delete_without_soft_delete_killed_with_its_answer_lost_succeeds_after_the_restart() {
    let mut rig = start();
    pushed_group(&rig.daemon, "lost2", V_PURGEABLE, &[]);
    // The vault deletes the key and holds the answer; the daemon dies waiting for it.
    rig.emu.inject_fault(FaultRule::next(
        Op::DeleteKey,
        1,
        FaultAction::CommitThenHold { ms: 3_600_000 },
    ));
    let holds = rig.emu.holds();
    let approved = dual_control(&rig.daemon, &["group", "delete-cloud", "lost2"]);
    let id = approved["job"]["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while rig.emu.holds() == holds {
        assert!(
            std::time::Instant::now() < deadline,
            "the delete was never sent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rig.daemon.kill9();
    rig.emu.clear_faults();
    assert!(rig.emu.key_versions(V_PURGEABLE, "lost2").is_empty());
    rig.emu.clear_requests();
    rig.daemon.spawn();
    let j = wait_job(&rig.daemon, &id);
    assert_eq!(j["state"], "succeeded", "{j}\n{}", rig.daemon.log());
    let said = steps(&j);
    assert!(
        said.contains("answer was lost") && said.contains("nothing to purge"),
        "{said}"
    );
    assert!(
        !rig.emu.requests().iter().any(|r| r.op == Op::GetDeletedKey),
        "no waiting for a deleted key that a vault without soft-delete never lists"
    );
}

/// An API time (RFC 3339, UTC) as Unix seconds.
fn unix(v: &serde_json::Value) -> Option<i64> {
    let t = v.as_str()?;
    assert!(t.ends_with('Z'), "API times are UTC: {t}");
    byokd::contract::Timestamp::parse(t).map(|t| t.unix())
}
