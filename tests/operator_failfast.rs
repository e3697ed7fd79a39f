//! Fail fast, fail clear: `credential add` signs in once and refuses a secret Entra ID refuses
//! (AADSTS7000215), `group create` checks that the vault exists and that the credential may read
//! it (naming the missing permission), `--no-verify` stages both, and a vault name that does not
//! resolve fails a sync at once instead of after a minute of retries. Against the Azure emulator
//! over real TLS, with `byokctl` driving a real daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod control_rig;

use byokd_emulator::Permission;
use control_rig::{ADMIN, CLIENT, Daemon, OPERATOR, TENANT};
use serde_json::Value;
use std::collections::BTreeMap;

const SECRET: &str = "Qv8~failfast.Known-Secret-0077";
const VAULT: &str = "byokd-ff";

struct Rig {
    _rt: tokio::runtime::Runtime,
    emu: byokd_emulator::EmulatorHandle,
    daemon: Daemon,
    _ca: tempfile::TempDir,
}

fn start() -> Rig {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca = tempfile::tempdir().unwrap();
    let (emu, options) = control_rig::emulator_and_options(
        &rt,
        &ca.path().join("emulator-ca.pem"),
        (TENANT, CLIENT, SECRET),
        VAULT,
    );
    let daemon = Daemon::start_with(options);
    Rig {
        _rt: rt,
        emu,
        daemon,
        _ca: ca,
    }
}

fn add_credential(d: &Daemon, name: &str, secret: &str, extra: &[&str]) -> std::process::Output {
    let file = d.path(&format!("{name}.secret"));
    std::fs::write(&file, secret).unwrap();
    let mut args = vec![
        "--output",
        "json",
        "credential",
        "add",
        name,
        "--tenant-id",
        TENANT,
        "--client-id",
        CLIENT,
        "--secret-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    d.ctl(ADMIN, &args)
}

fn create_group(d: &Daemon, name: &str, vault: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "group",
        "create",
        name,
        "--credential",
        "app",
        "--vault",
        vault,
        "--key-type",
        "EC-P256",
    ];
    args.extend_from_slice(extra);
    d.ctl(OPERATOR, &args)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn credential(d: &Daemon, name: &str) -> Value {
    let (code, v) = d.ctl_json(ADMIN, &["credential", "show", name]);
    assert_eq!(code, 0, "{v}");
    v
}

#[test]
fn a_wrong_secret_is_refused_at_add_with_entras_reason_and_no_verify_stages_it() {
    let rig = start();
    let d = &rig.daemon;
    let out = add_credential(d, "wrong", "not-the-secret", &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("AADSTS7000215") && err.contains("credential wrong was not added"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"), "the secret leaked: {err}");
    let (code, _) = d.ctl_json(ADMIN, &["credential", "show", "wrong"]);
    assert_eq!(code, 4, "a refused credential is not stored");

    // Staged without a sign-in: stored, and shown as unverified.
    let out = add_credential(d, "staged", "not-the-secret", &["--no-verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(credential(d, "staged")["verified"], false);
    let table = String::from_utf8_lossy(&d.ctl(ADMIN, &["credential", "list"]).stdout).into_owned();
    assert!(table.contains("VERIFIED"), "{table}");

    // The right secret signs in and is recorded as verified.
    let out = add_credential(d, "app", SECRET, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(credential(d, "app")["verified"], true);
    assert!(
        d.log().contains("credential.refused"),
        "the refusal is in the service log"
    );
}

#[test]
fn group_create_checks_the_vault_and_names_the_missing_permission() {
    let rig = start();
    let d = &rig.daemon;
    assert!(add_credential(d, "app", SECRET, &[]).status.success());

    // A misspelt vault: its name does not resolve (it is not in the rig's resolve map).
    let out = create_group(d, "typo", "byokd-fff", &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "vault byokd-fff: name does not resolve; check the vault name and azure.cloud"
        ),
        "{err}"
    );
    assert_eq!(
        d.ctl(OPERATOR, &["group", "show", "typo"]).status.code(),
        Some(4)
    );

    // Without List, then without Get: refused, naming the permission.
    for (missing, word) in [(Permission::List, "'List'"), (Permission::Get, "'Get'")] {
        let perms: Vec<Permission> = Permission::ALL
            .iter()
            .copied()
            .filter(|p| *p != missing)
            .collect();
        rig.emu
            .set_access(VAULT, Some(BTreeMap::from([(CLIENT.to_owned(), perms)])))
            .unwrap();
        let out = create_group(d, "g1", VAULT, &[]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains(word) && err.contains("key permission"),
            "{err}"
        );
    }
    rig.emu.set_access(VAULT, None).unwrap();
    let out = create_group(d, "g1", VAULT, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        rig.emu.all_keys(VAULT).is_empty(),
        "the checks change nothing in the vault"
    );
}

#[test]
fn a_sync_to_a_vault_that_does_not_resolve_fails_at_once_without_retries() {
    let rig = start();
    let d = &rig.daemon;
    assert!(add_credential(d, "app", SECRET, &[]).status.success());
    // Staged without the check, as an appliance set up before it can reach Azure.
    let out = create_group(d, "typo", "byokd-fff", &["--no-verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        d.ctl(OPERATOR, &["key", "create", "typo", "k"])
            .status
            .success()
    );
    let out = d.ctl(OPERATOR, &["--output", "json", "key", "sync", "typo", "k"]);
    let job: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let text = format!("{job} {}", stderr(&out));
    assert!(
        text.contains(
            "vault byokd-fff: name does not resolve; check the vault name and azure.cloud"
        ),
        "{text}"
    );
    // One attempt: no retry was waited for (the client logs each one as azure.retry).
    assert!(!text.contains("retried"), "{text}");
    assert!(
        !d.log().contains("azure.retry"),
        "a name that does not resolve is not retried:\n{}",
        d.log()
    );
}

/// The designated rule: byokd.toml sets the default, a different value set through the API
/// overrides it and `status` says so, `check-config` warns about the disagreement, and setting
/// the file's value through the API returns to the file.
#[test]
fn the_designated_setting_says_where_it_comes_from_and_check_config_warns_on_disagreement() {
    let mut d = Daemon::start(); // byokd.toml: designated = true
    let source = |d: &Daemon| {
        let (code, v) = d.ctl_json(OPERATOR, &["status"]);
        assert_eq!(code, 0, "{v}");
        (
            v["health"]["designated"].clone(),
            v["health"]["designated_source"].clone(),
        )
    };
    assert_eq!(source(&d), (Value::Bool(true), Value::from("file")));
    let line = String::from_utf8_lossy(&d.ctl(OPERATOR, &["status"]).stdout).into_owned();
    assert!(line.contains("designated  yes (from byokd.toml)"), "{line}");

    assert!(
        d.ctl(ADMIN, &["designated", "set", "false"])
            .status
            .success()
    );
    assert_eq!(source(&d), (Value::Bool(false), Value::from("api")));
    let line = String::from_utf8_lossy(&d.ctl(OPERATOR, &["status"]).stdout).into_owned();
    assert!(
        line.contains(
            "designated  no (set through the API; overrides designated = true in byokd.toml)"
        ),
        "{line}"
    );

    // check-config (with the daemon stopped, so it can read the state) warns but passes.
    d.stop();
    let config = d.config.clone();
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_byokd"))
            .args(["--config", config.to_str().unwrap(), "check-config"])
            .output()
            .unwrap()
    };
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: designated = true in byokd.toml is overridden by the value set through the API (false)"),
        "{err}"
    );

    // The file's value set through the API clears the override.
    d.spawn();
    assert!(
        d.ctl(ADMIN, &["designated", "set", "true"])
            .status
            .success()
    );
    assert_eq!(source(&d), (Value::Bool(true), Value::from("file")));
    d.stop();
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("warning"), "{err}");
}
