//! End to end "Cloud → Synchronize": the real daemon on a SoftHSM token, driven with `byokctl`,
//! pushes keys of every type into the Azure emulator over real TLS under the real host names.
//! The emulator unwraps every blob with its KEK private key and parses it strictly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod control_rig;

use byokd_emulator::{
    AppConfig, Emulator, EmulatorConfig, EmulatorHandle, KeyPoolConfig, RecoveryLevel, VaultOptions,
};
use control_rig::{ADMIN, AUDITOR, Daemon, OPERATOR, Options};
use serde_json::Value;
use sha2::Digest;
use std::path::Path;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b";
const SECRET: &str = "Qv8~e2e.KnownSecret-For_Grep-0042";
const VAULT: &str = "byokd-e2e";
const VAULT_PP: &str = "byokd-e2e-protected";
/// A vault in another tenant than the credentials'.
const VAULT_OTHER: &str = "byokd-e2e-other";
const OTHER_TENANT: &str = "3c3c3c3c-4d4d-4e4e-8f8f-909090909090";
/// A Managed HSM pool (soft-delete always on, purge allowed).
const POOL: &str = "byokd-e2e-mhsm";

struct Rig {
    _rt: tokio::runtime::Runtime,
    emu: EmulatorHandle,
    daemon: Daemon,
    _ca_dir: tempfile::TempDir,
}

fn start() -> Rig {
    start_with_azure("")
}

/// Starts the emulator and the daemon on SoftHSM with the `host` wrap strategy allowed;
/// `azure_extra` adds lines to the `[azure]` section.
fn start_with_azure(azure_extra: &str) -> Rig {
    start_rig(azure_extra, "allow_host_wrap = true\n", None)
}

/// Starts the emulator and the daemon (on `token`, else the rig's SoftHSM token) and adds the
/// client-secret credential `azure-app`.
fn start_rig(azure_extra: &str, hsm_extra: &str, token: Option<control_rig::ExternalToken>) -> Rig {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("emulator-ca.pem");
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig {
            ca_out: Some(ca_path.clone()),
            key_pool: KeyPoolConfig {
                rsa2048: 2,
                rsa3072: 0,
                rsa4096: 0,
            },
            delete_pending_ms: 300,
            request_log_file: Some(ca_dir.path().join("requests.jsonl")),
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
    emu.add_vault(
        VAULT_PP,
        VaultOptions {
            recovery_level: RecoveryLevel::Recoverable,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    emu.add_vault(
        VAULT_OTHER,
        VaultOptions {
            tenant: Some(OTHER_TENANT.into()),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    emu.add_vault(
        POOL,
        VaultOptions {
            managed_hsm: true,
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
{azure_extra}

[azure.resolve]
"login.microsoftonline.com" = "{addr}"
"{VAULT}.vault.azure.net" = "{addr}"
"{VAULT_PP}.vault.azure.net" = "{addr}"
"{VAULT_OTHER}.vault.azure.net" = "{addr}"
"{POOL}.managedhsm.azure.net" = "{addr}"
"#,
        ca = ca_path.display()
    );
    let daemon = Daemon::start_with(Options {
        hsm_extra: hsm_extra.into(),
        sections,
        token,
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
        "credential add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&secret_file).unwrap();
    Rig {
        _rt: rt,
        emu,
        daemon,
        _ca_dir: ca_dir,
    }
}

fn spki_sha256_of_azure_key(v: &byokd_emulator::VersionView) -> String {
    use rsa::pkcs8::EncodePublicKey;
    let der = match &v.public_key {
        byokd_emulator::PublicKey::Rsa { n, e } => {
            #[allow(deprecated)]
            let k = rsa::RsaPublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(n),
                rsa::BoxedUint::from_be_slice_vartime(e),
            )
            .unwrap();
            k.to_public_key_der().unwrap().as_bytes().to_vec()
        }
        byokd_emulator::PublicKey::Oct { .. } => panic!("an AES key has no SPKI"),
        byokd_emulator::PublicKey::Ec { crv, x, y } => {
            let oid = match crv {
                byokd_emulator::Curve::P256 => "1.2.840.10045.3.1.7",
                byokd_emulator::Curve::P384 => "1.3.132.0.34",
                byokd_emulator::Curve::P521 => "1.3.132.0.35",
                byokd_emulator::Curve::P256K => "1.3.132.0.10",
            };
            let mut point = vec![4u8];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            let info = spki::SubjectPublicKeyInfoOwned {
                algorithm: spki::AlgorithmIdentifierOwned {
                    oid: "1.2.840.10045.2.1".parse().unwrap(),
                    parameters: Some(der::Any::from(
                        der::asn1::ObjectIdentifier::new(oid).unwrap(),
                    )),
                },
                subject_public_key: der::asn1::BitString::from_bytes(&point).unwrap(),
            };
            der::Encode::to_der(&info).unwrap()
        }
    };
    hex::encode(sha2::Sha256::digest(der))
}

/// `byokctl group create` of a `kt` group with credential `azure-app` in `target` (`--vault`
/// or `--managed-hsm` and the name); EC keys sign and verify.
fn create_group(
    d: &Daemon,
    group: &str,
    (flag, name): (&str, &str),
    kt: &str,
) -> std::process::Output {
    let mut args = vec![
        "group",
        "create",
        group,
        "--credential",
        "azure-app",
        flag,
        name,
        "--key-type",
        kt,
    ];
    if kt.starts_with("EC") {
        args.extend(["--key-ops", "sign,verify"]);
    }
    d.ctl(ADMIN, &args)
}

/// Creates key `k` in `group` and pushes it: its version lands in vault or pool `place` with
/// the HSM's public key.
fn push_key_k(rig: &Rig, group: &str, place: &str, kt: &str) {
    let d = &rig.daemon;
    assert!(
        d.ctl(OPERATOR, &["key", "create", group, "k"])
            .status
            .success()
    );
    sync_and_wait(d, group, "k");
    let (_, shown) = d.ctl_json(OPERATOR, &["key", "show", group, "k"]);
    let version = shown["version"]
        .as_str()
        .unwrap_or_else(|| panic!("{kt}: no version: {shown}\n{}", d.log()));
    let versions = rig.emu.key_versions(place, group);
    let azure = versions
        .iter()
        .find(|v| v.version == version)
        .unwrap_or_else(|| panic!("{kt}: version {version} not in {place}"));
    assert_eq!(
        &spki_sha256_of_azure_key(azure),
        azure.tags.get("byokd-fingerprint").unwrap(),
        "{kt}: the key in {place} is the HSM key"
    );
}

/// After a push to soft-delete vault or pool `place`: no KEK is left, live or deleted.
fn assert_kek_gone(emu: &EmulatorHandle, place: &str, what: &str) {
    assert!(
        emu.live_keks(place).is_empty(),
        "after {what}: a KEK was left in {place}"
    );
    assert!(
        emu.deleted_keys(place)
            .iter()
            .all(|dk| !dk.name.starts_with("byokd-kek")),
        "after {what}: the KEK was not purged from {place}"
    );
}

fn sync_and_wait(d: &Daemon, group: &str, key: &str) -> Value {
    let out = d.ctl(OPERATOR, &["key", "sync", group, key]);
    assert!(
        out.status.success(),
        "key sync {group}/{key}: {}\n{}\n--- daemon log\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let (_, jobs) = d.ctl_json(OPERATOR, &["job", "list"]);
    jobs
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if std::fs::read(&p)
            .unwrap_or_default()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            hits.push(p.display().to_string());
        }
    }
    hits
}

#[test]
fn keys_of_every_type_are_pushed_and_match_the_hsm() {
    let rig = start();
    let d = &rig.daemon;
    let types = [
        "RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384", "EC-P521", "EC-P256K",
    ];
    for (i, kt) in types.iter().enumerate() {
        let group = format!("e2e-{}", kt.to_ascii_lowercase());
        let out = create_group(d, &group, ("--vault", VAULT), kt);
        assert!(
            out.status.success(),
            "group create {kt}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Several RSA-2048 keys cover several PKCS#8 lengths, most not multiples of 8.
        let count = if *kt == "RSA-2048" { 4 } else { 1 };
        for k in 0..count {
            let key = format!("k{k}");
            let out = d.ctl(OPERATOR, &["key", "create", &group, &key]);
            assert!(
                out.status.success(),
                "key create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            sync_and_wait(d, &group, &key);
            let (_, shown) = d.ctl_json(OPERATOR, &["key", "show", &group, &key]);
            let version = shown["version"]
                .as_str()
                .unwrap_or_else(|| panic!("{kt}: no version after sync: {shown}\n{}", d.log()))
                .to_owned();
            let versions = rig.emu.key_versions(VAULT, &group);
            let azure = versions
                .iter()
                .find(|v| v.version == version)
                .unwrap_or_else(|| panic!("{kt}: version {version} not in Azure"));
            let fp = azure
                .tags
                .get("byokd-fingerprint")
                .expect("fingerprint tag");
            assert_eq!(
                &spki_sha256_of_azure_key(azure),
                fp,
                "{kt}: the public key in Azure differs from the HSM public key"
            );
            assert_eq!(
                fp[..4].to_ascii_uppercase(),
                shown["check_digits"].as_str().unwrap(),
                "{kt}: check digits"
            );
            assert_eq!(
                versions.len(),
                k + 1,
                "{kt}: exactly one version per pushed key"
            );
        }
        assert_kek_gone(&rig.emu, VAULT, &format!("{kt} ({i})"));
    }
    // Pushing a pushed key again is a no-op that reports the version.
    let before = rig.emu.key_versions(VAULT, "e2e-ec-p256").len();
    sync_and_wait(d, "e2e-ec-p256", "k0");
    assert_eq!(
        rig.emu.key_versions(VAULT, "e2e-ec-p256").len(),
        before,
        "a second sync must not import again"
    );
    assert!(
        rig.emu.schema_violations().is_empty(),
        "byokd sent a request the spec does not allow"
    );
    // Twenty CREATEs (a KEK and an import per key) against the emulator's strict window of 10
    // per 10 s, at byokd's default budget: paced, never throttled.
    assert_eq!(
        rig.emu.counters(VAULT).creates + rig.emu.counters(VAULT).imports,
        20
    );
    assert_eq!(
        rig.emu.throttled_total(),
        0,
        "byokd's pacing drew 429s from the strict window"
    );
    // The secret appears nowhere: daemon log, state directory, emulator request log.
    let log = d.log();
    assert!(!log.contains(SECRET), "secret in the daemon log");
    assert!(
        files_containing(&d.path("state"), SECRET.as_bytes()).is_empty(),
        "secret in state"
    );
    assert!(
        files_containing(rig._ca_dir.path(), SECRET.as_bytes()).is_empty(),
        "secret in the emulator request log"
    );
    assert!(
        log.contains("host") && log.contains("WARN"),
        "host wrap use must be logged at WARN:\n{log}"
    );
}

#[test]
fn the_kek_is_not_purged_on_a_purge_protected_vault_and_that_is_said_at_info() {
    let rig = start();
    let d = &rig.daemon;
    let out = d.ctl(
        ADMIN,
        &[
            "group",
            "create",
            "pp-group",
            "--credential",
            "azure-app",
            "--vault",
            VAULT_PP,
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
    assert!(
        d.ctl(OPERATOR, &["key", "create", "pp-group", "k1"])
            .status
            .success()
    );
    sync_and_wait(d, "pp-group", "k1");
    let (_, shown) = d.ctl_json(OPERATOR, &["key", "show", "pp-group", "k1"]);
    assert!(shown["version"].is_string(), "{shown}\n{}", d.log());
    assert!(
        rig.emu.live_keks(VAULT_PP).is_empty(),
        "the KEK must be deleted"
    );
    let deleted = rig.emu.deleted_keys(VAULT_PP);
    assert!(
        deleted.iter().any(|k| k.name.starts_with("byokd-kek")),
        "under purge protection the deleted KEK stays until Azure purges it"
    );
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("INFO") && l.contains("not purged")),
        "an INFO line must say the KEK was not purged:\n{log}"
    );
    // The service log says so as a WARN record, with why and who.
    let (code, v) = d.ctl_json(
        AUDITOR,
        &["log", "show", "--service", "azure", "--level", "warn"],
    );
    assert_eq!(code, 0, "{v}");
    let notes: Vec<&Value> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "azure.kek.not_purged")
        .collect();
    assert_eq!(notes.len(), 1, "{v:#}");
    let note = notes[0];
    assert_eq!(note["level"], "WARN");
    assert_eq!(note["vault"], VAULT_PP);
    assert_eq!(note["identity"], OPERATOR);
    assert!(note["job"].is_u64(), "{note}");
    let why = note["message"].as_str().unwrap();
    assert!(
        why.contains("not purged")
            && why.contains("purge protection")
            && why.contains("Azure purges it on"),
        "{why}"
    );
    assert!(
        note["kid"]
            .as_str()
            .unwrap()
            .contains(&format!("{VAULT_PP}.vault.azure.net/keys/byokd-kek-")),
        "{note}"
    );
}

// ---------------------------------------------------------------------------------------------
// Failures: each ends with a clear job error, or success after a retry, and never with a live
// KEK left in the vault, a lost local key, or a duplicate version.

use byokd_emulator::{FaultAction, FaultRule, Op, Permission, RetryHeader, ThrottleConfig};

/// Creates an EC-P256 group `g` with key `k` and runs a sync; returns the job view.
fn sync_job(rig: &Rig, group: &str, vault: &str) -> Value {
    sync_job_as(rig, group, vault, "azure-app")
}

/// [`sync_job`] with the group using `credential`.
fn sync_job_as(rig: &Rig, group: &str, vault: &str, credential: &str) -> Value {
    let d = &rig.daemon;
    let out = d.ctl(
        ADMIN,
        &[
            "group",
            "create",
            "--no-verify",
            group,
            "--credential",
            credential,
            "--vault",
            vault,
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
    assert!(
        d.ctl(OPERATOR, &["key", "create", group, "k"])
            .status
            .success()
    );
    let out = d.ctl(OPERATOR, &["--output", "json", "key", "sync", group, "k"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let job: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "job JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.success(),
        job["state"] == "succeeded",
        "exit code tells a failed job apart: {job}"
    );
    if job["state"] == "failed" {
        assert_eq!(out.status.code(), Some(6), "a failed job exits 6");
    }
    job
}

/// The invariants every failure case must keep.
fn assert_clean(rig: &Rig, group: &str, vault: &str, versions: usize) {
    assert!(
        rig.emu.live_keks(vault).is_empty(),
        "{group}: a live KEK was left behind"
    );
    assert_eq!(
        rig.emu.key_versions(vault, group).len(),
        versions,
        "{group}: wrong number of Azure versions"
    );
    let (_, key) = rig.daemon.ctl_json(OPERATOR, &["key", "show", group, "k"]);
    assert_eq!(
        key["name"], "k",
        "{group}: the local key must survive: {key}"
    );
    assert_eq!(
        key["version"].is_string(),
        versions > 0,
        "{group}: local version record: {key}"
    );
}

fn failed_with(job: &Value, words: &[&str]) {
    assert_eq!(job["state"], "failed", "{job}");
    let err = job["error"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    for w in words {
        assert!(
            err.contains(&w.to_ascii_lowercase()),
            "the job error must say {w:?}: {err}"
        );
    }
    assert!(
        !err.contains(&SECRET.to_ascii_lowercase()),
        "the secret leaked into the job error"
    );
}

#[test]
fn sign_in_failures_fail_the_job_with_a_hint_and_touch_nothing() {
    let rig = start();
    rig.emu.set_secret_expired(CLIENT, true);
    let job = sync_job(&rig, "expired", VAULT);
    failed_with(&job, &["expired"]);
    assert_clean(&rig, "expired", VAULT, 0);
    rig.emu.set_secret_expired(CLIENT, false);
    // A credential with a wrong secret, and one in an unknown tenant.
    let d = &rig.daemon;
    let wrong = d.path("wrong.txt");
    std::fs::write(&wrong, "not-the-secret").unwrap();
    assert!(
        d.ctl(
            ADMIN,
            &[
                "credential",
                "add",
                "--no-verify",
                "wrong-secret",
                "--tenant-id",
                TENANT,
                "--client-id",
                CLIENT,
                "--secret-file",
                wrong.to_str().unwrap()
            ]
        )
        .status
        .success()
    );
    assert!(
        d.ctl(
            ADMIN,
            &[
                "credential",
                "add",
                "--no-verify",
                "wrong-tenant",
                "--tenant-id",
                "99999999-9999-9999-9999-999999999999",
                "--client-id",
                CLIENT,
                "--secret-file",
                wrong.to_str().unwrap()
            ]
        )
        .status
        .success()
    );
    for (cred, words) in [
        ("wrong-secret", &["secret"][..]),
        ("wrong-tenant", &["tenant"][..]),
    ] {
        let group = format!("g-{cred}");
        assert!(
            d.ctl(
                ADMIN,
                &[
                    "group",
                    "create",
                    "--no-verify",
                    &group,
                    "--credential",
                    cred,
                    "--vault",
                    VAULT,
                    "--key-type",
                    "EC-P256",
                    "--key-ops",
                    "sign,verify"
                ]
            )
            .status
            .success()
        );
        assert!(
            d.ctl(OPERATOR, &["key", "create", &group, "k"])
                .status
                .success()
        );
        let out = d.ctl(OPERATOR, &["--output", "json", "key", "sync", &group, "k"]);
        let job: Value = serde_json::from_slice(&out.stdout).unwrap();
        failed_with(&job, words);
        assert_clean(&rig, &group, VAULT, 0);
    }
}

#[test]
fn missing_permissions_fail_cleanly_and_name_the_permission() {
    let rig = start();
    let all_but = |missing: Permission| {
        let perms: Vec<Permission> = Permission::ALL
            .iter()
            .copied()
            .filter(|p| *p != missing)
            .collect();
        Some(std::collections::BTreeMap::from([(
            CLIENT.to_owned(),
            perms,
        )]))
    };
    rig.emu
        .set_access(VAULT, all_but(Permission::Create))
        .unwrap();
    let job = sync_job(&rig, "no-create", VAULT);
    failed_with(&job, &["Create"]);
    assert_clean(&rig, "no-create", VAULT, 0);

    rig.emu
        .set_access(VAULT, all_but(Permission::Import))
        .unwrap();
    let job = sync_job(&rig, "no-import", VAULT);
    failed_with(&job, &["Import"]);
    assert_clean(&rig, "no-import", VAULT, 0);
    assert!(
        rig.emu
            .deleted_keys(VAULT)
            .iter()
            .all(|k| !k.name.starts_with("byokd-kek")),
        "the KEK of the failed import is purged"
    );

    rig.emu
        .set_access(VAULT, all_but(Permission::Purge))
        .unwrap();
    let job = sync_job(&rig, "no-purge", VAULT);
    failed_with(&job, &["Purge"]);
    // The key made it; the KEK is deleted (not live) and waits in deleted keys for a purge.
    assert_clean(&rig, "no-purge", VAULT, 1);
    assert!(
        rig.emu
            .deleted_keys(VAULT)
            .iter()
            .any(|k| k.name.starts_with("byokd-kek"))
    );
}

#[test]
fn a_soft_deleted_key_name_fails_with_recover_or_purge_advice() {
    let rig = start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(rig.emu.import_foreign_version(
        VAULT,
        "gone",
        byokd_emulator::ForeignKeyType::Ec {
            crv: byokd_emulator::Curve::P256,
        },
        Default::default(),
    ))
    .unwrap();
    rig.emu.delete_key_now(VAULT, "gone").unwrap();
    let job = sync_job(&rig, "gone", VAULT);
    failed_with(&job, &["recover", "purge"]);
    assert!(rig.emu.live_keks(VAULT).is_empty());
}

#[test]
fn throttling_and_server_errors_are_retried_to_success_without_duplicates() {
    let rig = start();
    // A 429 storm on import with Retry-After, then one without any hint.
    rig.emu.set_throttling(ThrottleConfig {
        enabled: false,
        header: RetryHeader::RetryAfterSeconds,
        ..ThrottleConfig::default()
    });
    rig.emu
        .inject_fault(FaultRule::next(Op::ImportKey, 3, FaultAction::Throttle));
    let job = sync_job(&rig, "storm-hinted", VAULT);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_clean(&rig, "storm-hinted", VAULT, 1);
    rig.emu.set_throttling(ThrottleConfig {
        enabled: false,
        header: RetryHeader::None,
        ..ThrottleConfig::default()
    });
    rig.emu
        .inject_fault(FaultRule::next(Op::ImportKey, 3, FaultAction::Throttle));
    let job = sync_job(&rig, "storm-bare", VAULT);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_clean(&rig, "storm-bare", VAULT, 1);
    // 5xx on the KEK create (answer may have been lost: byokd looks, then creates).
    rig.emu.inject_fault(FaultRule::next(
        Op::CreateKey,
        1,
        FaultAction::Status { status: 503 },
    ));
    let job = sync_job(&rig, "create-503", VAULT);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_clean(&rig, "create-503", VAULT, 1);
    // 5xx on reads is retried.
    rig.emu.inject_fault(FaultRule::next(
        Op::GetDeletedKey,
        2,
        FaultAction::Status { status: 500 },
    ));
    let job = sync_job(&rig, "read-500", VAULT);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_clean(&rig, "read-500", VAULT, 1);
}

#[test]
fn a_lost_import_answer_never_makes_a_second_version() {
    let rig = start();
    // Reset before Azure acted: byokd finds no version by tag and imports once more.
    rig.emu
        .inject_fault(FaultRule::next(Op::ImportKey, 1, FaultAction::Reset));
    let job = sync_job(&rig, "reset-import", VAULT);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_clean(&rig, "reset-import", VAULT, 1);
    // Azure committed, then the connection dropped: byokd finds the version by its tag.
    rig.emu.inject_fault(FaultRule::next(
        Op::ImportKey,
        1,
        FaultAction::CommitThenReset,
    ));
    let job = sync_job(&rig, "lost-after-commit", VAULT);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_clean(&rig, "lost-after-commit", VAULT, 1);
    let steps = job["steps"].to_string();
    assert!(
        steps.contains("found key k as version"),
        "the job says it found the import by fingerprint: {steps}"
    );
    // A 504 after the import was sent is treated as possibly committed, too.
    rig.emu.inject_fault(FaultRule::next(
        Op::ImportKey,
        1,
        FaultAction::Status { status: 504 },
    ));
    let job = sync_job(&rig, "import-504", VAULT);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_clean(&rig, "import-504", VAULT, 1);
}

// ---------------------------------------------------------------------------------------------
// Certificate credentials: the key is generated in the HSM, the assertion is signed there.

const CERT_CLIENT: &str = "5b1e7c3d-2f4a-4b8e-9c6d-1a2b3c4d5e6f";

/// `byokctl credential add NAME --certificate`, then exports its certificate to a PEM file.
fn create_certificate_credential(d: &Daemon, name: &str) -> std::path::PathBuf {
    let (code, view) = d.ctl_json(
        ADMIN,
        &[
            "credential",
            "add",
            name,
            "--tenant-id",
            TENANT,
            "--client-id",
            CERT_CLIENT,
            "--certificate",
            "--validity-days",
            "90",
        ],
    );
    assert_eq!(code, 0, "credential add --certificate: {view}\n{}", d.log());
    assert_eq!(view["kind"], "certificate", "{view}");
    let pem = d.path(&format!("{name}.cert.pem"));
    let out = d.ctl(
        OPERATOR,
        &[
            "credential",
            "certificate",
            name,
            "-f",
            pem.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "credential certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The thumbprint shown is the SHA-1 of the exported certificate, as the portal shows it.
    let der = pem_der(&pem);
    assert_eq!(
        view["fingerprint"].as_str().unwrap(),
        hex::encode_upper(sha1::Sha1::digest(&der))
    );
    pem
}

fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes()).unwrap();
    assert_eq!(pem.label, "CERTIFICATE");
    pem.contents
}

fn openssl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl")
}

/// The private-key objects as `pkcs11-tool` (OpenSC, not byokd) reads them from the token.
fn pkcs11_tool(d: &Daemon, extra: &[&str]) -> std::process::Output {
    std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", d.path("softhsm2.conf"))
        .args([
            "--module",
            control_rig::MODULE,
            "--token-label",
            "ctl-test",
            "--login",
            "--pin",
            "1234",
        ])
        .args(extra)
        .output()
        .expect("pkcs11-tool (apt-get install opensc)")
}

fn group_with_key(d: &Daemon, group: &str, credential: &str) {
    let out = d.ctl(
        ADMIN,
        &[
            "group",
            "create",
            group,
            "--credential",
            credential,
            "--vault",
            VAULT,
            "--key-type",
            "RSA-2048",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.ctl(OPERATOR, &["key", "create", group, "k"])
            .status
            .success()
    );
}

#[test]
fn a_certificate_credential_signs_ps256_in_the_hsm_and_syncs() {
    let rig = start();
    let d = &rig.daemon;
    let pem = create_certificate_credential(d, "cert-app");

    // The certificate: RSA-3072, self-signed with sha256WithRSAEncryption by the HSM key.
    let der = pem_der(&pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let public = rsa::PublicKey::from_public_key_der(cert.tbs_certificate.subject_pki.raw).unwrap();
    assert_eq!(public.n().bit_width(), 3072);
    assert_eq!(
        cert.signature_algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.11"
    );
    public
        .pkcs1v15_verify::<sha2::Sha256>(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .expect("the self-signature verifies");
    assert_eq!(cert.subject(), cert.issuer());
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert!((90..=91).contains(&days), "validity {days} days");

    // The CSR is signed by the same key (OpenSSL checks the signature) and names it.
    let csr = d.path("cert-app.csr.pem");
    let out = d.ctl(
        OPERATOR,
        &[
            "credential",
            "certificate",
            "cert-app",
            "--csr",
            "--file",
            csr.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = openssl(&["req", "-in", csr.to_str().unwrap(), "-noout", "-verify"]);
    assert!(
        verify.status.success(),
        "openssl req -verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let csr_key = openssl(&["req", "-in", csr.to_str().unwrap(), "-noout", "-pubkey"]);
    let cert_key = openssl(&["x509", "-in", pem.to_str().unwrap(), "-noout", "-pubkey"]);
    assert!(csr_key.status.success() && !csr_key.stdout.is_empty());
    assert_eq!(
        csr_key.stdout, cert_key.stdout,
        "CSR and certificate name one key"
    );

    // The private key is in the token, sensitive and never extractable (read by OpenSC).
    let listed = pkcs11_tool(d, &["--list-objects", "--type", "privkey"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    let block = text
        .split("Private Key Object")
        .find(|b| b.contains("byokd-cred/cert-app"))
        .unwrap_or_else(|| panic!("no signing key on the token:\n{text}"));
    assert!(block.contains("never extractable"), "{block}");
    assert!(block.contains("always sensitive"), "{block}");
    assert!(
        !block.contains("decrypt"),
        "a signing key only signs: {block}"
    );
    let access = block
        .lines()
        .find(|l| l.trim_start().starts_with("Access:"))
        .unwrap_or_else(|| panic!("no Access line: {block}"));
    assert!(
        access.split(',').map(str::trim).all(|a| a != "extractable"),
        "{access}"
    );

    // Upload the exported certificate to the app registration, then sync.
    rig.emu
        .add_app(AppConfig {
            tenant: TENANT.into(),
            client_id: CERT_CLIENT.into(),
            certificate_pem_file: Some(pem.clone()),
            ..AppConfig::default()
        })
        .unwrap();
    rig.emu.clear_requests();
    let job = sync_job_as(&rig, "cert-group", VAULT, "cert-app");
    assert_eq!(job["state"], "succeeded", "{job}\n{}", d.log());
    assert_clean(&rig, "cert-group", VAULT, 1);
    let auths: Vec<String> = rig
        .emu
        .requests()
        .into_iter()
        .filter_map(|r| r.client_auth)
        .collect();
    assert_eq!(auths, ["client_assertion:PS256"], "one PS256 sign-in");

    // A certificate the app registration does not hold: Entra's (and the emulator's)
    // AADSTS700027, with the certificate hint.
    create_certificate_credential(d, "cert-unregistered");
    let job = sync_job_as(&rig, "cert-bad", VAULT, "cert-unregistered");
    failed_with(
        &job,
        &[
            "client assertion",
            "cert-unregistered",
            "AADSTS700027",
            "certificate uploaded",
        ],
    );
    assert_clean(&rig, "cert-bad", VAULT, 0);

    // Deleting an unused certificate credential (dual control) destroys its HSM key.
    create_certificate_credential(d, "cert-doomed");
    let (status, pending) = d.curl(Some(ADMIN), "DELETE", "/v1/credentials/cert-doomed", None);
    assert_eq!(status, 202, "{pending}");
    let id = pending["approval"]["id"]
        .to_string()
        .trim_matches('"')
        .to_owned();
    let out = d.ctl(control_rig::ADMIN2, &["approval", "approve", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = pkcs11_tool(d, &["--list-objects", "--type", "privkey"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{text}");
    assert!(!text.contains("byokd-cred/cert-doomed"), "{text}");
    assert!(text.contains("byokd-cred/cert-app"), "{text}");
}

#[test]
fn the_rs256_fallback_signs_with_an_x5t_header_and_syncs() {
    let rig = start_with_azure("assertion_alg = \"RS256\"\n");
    let d = &rig.daemon;
    let pem = create_certificate_credential(d, "cert-rs");
    rig.emu
        .add_app(AppConfig {
            tenant: TENANT.into(),
            client_id: CERT_CLIENT.into(),
            certificate_pem_file: Some(pem),
            ..AppConfig::default()
        })
        .unwrap();
    rig.emu.clear_requests();
    group_with_key(d, "rs-group", "cert-rs");
    sync_and_wait(d, "rs-group", "k");
    let (_, shown) = d.ctl_json(OPERATOR, &["key", "show", "rs-group", "k"]);
    assert!(shown["version"].is_string(), "{shown}\n{}", d.log());
    let auths: Vec<String> = rig
        .emu
        .requests()
        .into_iter()
        .filter_map(|r| r.client_auth)
        .collect();
    // The vault check at `group create` signs in too; every sign-in is an RS256 assertion.
    assert!(
        !auths.is_empty() && auths.iter().all(|a| a == "client_assertion:RS256"),
        "{auths:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Key Vault 401: the cached token is dropped and renewed once.

/// (status, path) of every request after `clear_requests`, and how token requests authenticated.
fn traffic(rig: &Rig) -> Vec<(u16, String)> {
    rig.emu
        .requests()
        .into_iter()
        .map(|r| (r.status, r.path))
        .collect()
}

#[test]
fn a_refused_token_is_renewed_once_and_the_sync_resumes() {
    let rig = start();
    let d = &rig.daemon;
    group_with_key(d, "renew", "azure-app");
    sync_and_wait(d, "renew", "k");
    for (n, (how, revoke)) in [("expired", false), ("revoked", true)]
        .into_iter()
        .enumerate()
    {
        // The daemon still caches a token that Key Vault no longer takes.
        if revoke {
            rig.emu.revoke_tokens();
        } else {
            rig.emu.expire_tokens();
        }
        let key = format!("k-{how}");
        assert!(
            d.ctl(OPERATOR, &["key", "create", "renew", &key])
                .status
                .success()
        );
        rig.emu.clear_requests();
        let out = d.ctl(
            OPERATOR,
            &["--output", "json", "key", "sync", "renew", &key],
        );
        let job: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(job["state"], "succeeded", "{how}: {job}\n{}", d.log());
        let seen = traffic(&rig);
        let first = seen.first().expect("requests");
        assert_eq!(
            first.0, 401,
            "{how}: the cached token was used first: {seen:?}"
        );
        let token_requests: Vec<_> = seen.iter().filter(|(_, p)| p.ends_with("/token")).collect();
        assert_eq!(
            token_requests.len(),
            1,
            "{how}: exactly one new token: {seen:?}"
        );
        assert_eq!(token_requests[0].0, 200);
        assert_eq!(
            seen.iter().filter(|(s, _)| *s == 401).count(),
            1,
            "{how}: one 401, then the new token works: {seen:?}"
        );
        let steps = job["steps"].to_string();
        assert!(
            steps.contains("401"),
            "{how}: the job says why it signed in again: {steps}"
        );
        assert_eq!(rig.emu.key_versions(VAULT, "renew").len(), n + 2);
        assert!(rig.emu.live_keks(VAULT).is_empty());
    }
}

#[test]
fn a_challenge_for_another_tenant_fails_clearly_without_a_retry() {
    let rig = start();
    rig.emu.clear_requests();
    let job = sync_job(&rig, "foreign", VAULT_OTHER);
    failed_with(
        &job,
        &[
            OTHER_TENANT,
            TENANT,
            "azure-app",
            "credential of the vault's tenant",
        ],
    );
    let seen = traffic(&rig);
    assert_eq!(
        seen.iter().filter(|(_, p)| p.ends_with("/token")).count(),
        1,
        "no second sign-in for a tenant mismatch: {seen:?}"
    );
    // The KEK create is refused, and so is the clean-up's delete of the journalled KEK name.
    assert!(
        seen.iter().all(|(s, p)| *s == 401 || p.ends_with("/token")),
        "{seen:?}"
    );
    assert_clean(&rig, "foreign", VAULT_OTHER, 0);
}

// ---------------------------------------------------------------------------------------------
// The same flow through the daemon on kryoptic, whose RFC 5649 wrap conforms: `two-step` for
// RSA. kryoptic's PKCS#8 of EC keys drops a scalar's leading zero bytes, so EC pushes are
// refused up front, naming the encoding; secp256k1, which it cannot generate, is refused at
// `group create`.

#[test]
fn kryoptic_daemon_syncs_rsa_with_two_step_and_refuses_ec_up_front() {
    common::kryoptic::isolated_blocking(
        "kryoptic_daemon_syncs_rsa_with_two_step_and_refuses_ec_up_front",
        kryoptic_flow,
    );
}

/// Pushes a key of each of `key_types` to the Managed HSM pool through a group created with
/// `--managed-hsm` (checked with Azure first): each lands in the pool, not in a vault, with
/// the HSM's public key, and the KEK made in the pool is gone afterwards. Then a principal the
/// pool's local RBAC only lets read fails a push with the role and the permission to grant.
fn managed_hsm_flow(rig: &Rig, key_types: &[&str]) {
    let d = &rig.daemon;
    for kt in key_types {
        let group = format!("mhsm-{}", kt.to_ascii_lowercase());
        let out = create_group(d, &group, ("--managed-hsm", POOL), kt);
        assert!(
            out.status.success(),
            "group create {kt}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.log()
        );
        let (_, shown) = d.ctl_json(OPERATOR, &["group", "show", &group]);
        assert_eq!(shown["target"], "managed_hsm", "{shown}");
        assert_eq!(shown["managed_hsm"], POOL, "{shown}");
        assert!(shown["vault"].is_null(), "{shown}");
        push_key_k(rig, &group, POOL, kt);
        assert!(
            rig.emu.key_versions(VAULT, &group).is_empty(),
            "{kt}: not in a vault"
        );
        assert_kek_gone(&rig.emu, POOL, kt);
    }
    assert!(
        rig.emu.schema_violations().is_empty(),
        "byokd sent a request the spec does not allow"
    );
    // Local RBAC grants the app read only: the push fails before anything is made, naming
    // the role and the data action.
    rig.emu
        .set_access(
            POOL,
            Some(std::collections::BTreeMap::from([(
                CLIENT.to_string(),
                vec![Permission::Get, Permission::List],
            )])),
        )
        .unwrap();
    let group = format!("mhsm-{}", key_types[0].to_ascii_lowercase());
    assert!(
        d.ctl(OPERATOR, &["key", "create", &group, "k2"])
            .status
            .success()
    );
    let out = d.ctl(OPERATOR, &["--output", "json", "key", "sync", &group, "k2"]);
    let job: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    failed_with(
        &job,
        &["Managed HSM Crypto User", "keys/create", POOL, "--hsm-name"],
    );
    assert!(rig.emu.live_keks(POOL).is_empty());
    rig.emu.set_access(POOL, None).unwrap();
}

#[test]
fn rsa_and_ec_keys_are_pushed_to_a_managed_hsm_with_host_wrap() {
    let rig = start();
    managed_hsm_flow(&rig, &["RSA-2048", "EC-P256"]);
}

#[test]
fn kryoptic_daemon_pushes_rsa_to_a_managed_hsm_with_two_step() {
    on_kryoptic_rig(
        "kryoptic_daemon_pushes_rsa_to_a_managed_hsm_with_two_step",
        |rig| {
            let (_, status) = rig.daemon.ctl_json(OPERATOR, &["status"]);
            assert_eq!(status["health"]["hsm"]["wrap_strategy"], "two-step");
            managed_hsm_flow(rig, &["RSA-2048"]);
        },
    );
}

/// Pushes AES-128, -192 and -256 keys to the Managed HSM pool: the emulator unwraps each blob
/// strictly (RSA-OAEP, RFC 5649 with its integrity check, exactly the raw key) and refuses a
/// key whose KCV is not the check digits byokd states; here the KCV it computed must be the
/// check digits byokd shows for the key. `byokctl` refuses an AES group on a Key Vault.
fn aes_managed_hsm_flow(rig: &Rig) {
    let d = &rig.daemon;
    for (kt, bits) in [("AES-128", 128), ("AES-192", 192), ("AES-256", 256)] {
        let group = format!("mhsm-{}", kt.to_ascii_lowercase());
        let out = create_group(d, &group, ("--managed-hsm", POOL), kt);
        assert!(
            out.status.success(),
            "group create {kt}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.log()
        );
        assert!(
            d.ctl(OPERATOR, &["key", "create", &group, "k"])
                .status
                .success()
        );
        sync_and_wait(d, &group, "k");
        let (_, shown) = d.ctl_json(OPERATOR, &["key", "show", &group, "k"]);
        let version = shown["version"]
            .as_str()
            .unwrap_or_else(|| panic!("{kt}: no version: {shown}\n{}", d.log()));
        let check_digits = shown["check_digits"].as_str().unwrap();
        assert_eq!(check_digits.len(), 6, "{kt}: a KCV: {shown}");
        let azure = rig
            .emu
            .key_versions(POOL, &group)
            .into_iter()
            .find(|v| v.version == version)
            .unwrap_or_else(|| panic!("{kt}: version {version} not in {POOL}"));
        assert_eq!(azure.kty, "oct-HSM");
        assert_eq!(
            azure.public_key,
            byokd_emulator::PublicKey::Oct {
                bits,
                kcv: check_digits.to_owned()
            },
            "{kt}: the key the pool unwrapped is the HSM's"
        );
        let mut ops = azure.key_ops.clone();
        ops.sort();
        assert_eq!(ops, ["decrypt", "encrypt", "unwrapKey", "wrapKey"], "{kt}");
        assert_kek_gone(&rig.emu, POOL, kt);
        // An AES key has no public key to download.
        let out = d.ctl(OPERATOR, &["key", "public", &group, "k"]);
        assert!(!out.status.success(), "{kt}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no public key"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = create_group(d, "kv-aes", ("--vault", VAULT), "AES-256");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Managed HSM"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rig.emu.schema_violations().is_empty(),
        "byokd sent a request the spec does not allow"
    );
}

#[test]
fn aes_keys_are_pushed_to_a_managed_hsm_with_host_wrap() {
    let rig = start();
    aes_managed_hsm_flow(&rig);
}

#[test]
fn kryoptic_daemon_pushes_aes_to_a_managed_hsm_with_two_step() {
    on_kryoptic_rig(
        "kryoptic_daemon_pushes_aes_to_a_managed_hsm_with_two_step",
        |rig| {
            let (_, status) = rig.daemon.ctl_json(OPERATOR, &["status"]);
            let aes = status["health"]["hsm"]["wrap_report"]["key_types"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["key_type"] == "AES")
                .cloned()
                .unwrap();
            assert_eq!(aes["strategy"], "two-step", "{aes}");
            aes_managed_hsm_flow(rig);
        },
    );
}

/// Runs `body` on the rig's daemon on a fresh kryoptic token (two-step only), in the token's
/// child process; `test_name` is the calling test's name.
fn on_kryoptic_rig(test_name: &str, body: impl FnOnce(&Rig) + Send + 'static) {
    common::kryoptic::isolated_blocking(test_name, |token| body(&start_kryoptic_rig(&token)));
}

/// The rig's daemon on kryoptic `token`, without host wrap (two-step only).
fn start_kryoptic_rig(token: &common::kryoptic::KryopticToken) -> Rig {
    start_rig(
        "",
        "allow_host_wrap = false\n",
        Some(control_rig::ExternalToken {
            module: token.module.clone(),
            label: token.label.clone(),
            user_pin: token.user_pin.clone(),
        }),
    )
}

fn kryoptic_flow(token: common::kryoptic::KryopticToken) {
    let rig = start_kryoptic_rig(&token);
    let d = &rig.daemon;
    let (code, status) = d.ctl_json(OPERATOR, &["status"]);
    assert_eq!(code, 0, "{status}");
    assert_eq!(
        status["health"]["hsm"]["wrap_strategy"],
        "two-step",
        "{status}\n{}",
        d.log()
    );
    let table = d.ctl(OPERATOR, &["status"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("two-step"),
        "byokctl status names the strategy"
    );
    let create_group = |group: &str, kt: &str| create_group(d, group, ("--vault", VAULT), kt);
    // secp256k1: refused at group create, naming the curve and the mechanism.
    let out = create_group("kry-k1", "EC-P256K");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("P-256K") && text.contains("CKM_EC_KEY_PAIR_GEN"),
        "{text}"
    );
    assert!(!text.contains("hsm_unavailable"), "{text}");
    // EC-P384: no usable strategy (two-step only) wraps it conformingly, so the group is
    // refused at create, naming the failed encoding class and what to change.
    let out = create_group("kry-ec", "EC-P384");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("EC-P384 keys made on this token could not be pushed")
            && text.contains("two-step: class")
            && text.contains("47 bytes")
            && text.contains("hsm.allow_host_wrap = true")
            && text.contains("key_type"),
        "{text}\n{}",
        d.log()
    );
    assert!(!text.contains("hsm_unavailable"), "{text}");
    let (_, groups) = d.ctl_json(OPERATOR, &["group", "list"]);
    assert!(!groups.to_string().contains("kry-ec"), "{groups}");
    let (_, status) = d.ctl_json(OPERATOR, &["status"]);
    assert!(
        status["health"]["hsm"]["wrap_summary"]
            .as_str()
            .is_some_and(|s| s.contains("EC-P384 on two-step: non-conforming blob")),
        "{status}"
    );
    for kt in ["RSA-2048", "RSA-3072"] {
        let group = format!("kry-{}", kt.to_ascii_lowercase());
        let out = create_group(&group, kt);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        push_key_k(&rig, &group, VAULT, kt);
        assert!(rig.emu.live_keks(VAULT).is_empty(), "{kt}: KEK left behind");
    }
    let log = d.log();
    assert!(log.contains("two-step"), "the log names the strategy");
    assert!(
        !log.contains("strategy=\"host\"") && !log.contains("strategy=host"),
        "no host wrap on kryoptic:\n{log}"
    );
    non_conforming_group_after_a_config_change(rig);
}

/// A group made while `host` served its key type (allow_host_wrap = true), then the daemon
/// restarted without it: a sync is refused before any KEK exists and a rotation before any
/// key is generated, each naming the failed encoding class, in the job and in the log.
fn non_conforming_group_after_a_config_change(mut rig: Rig) {
    let set_host = |rig: &mut Rig, from: &str, to: &str| {
        rig.daemon.stop();
        let config = std::fs::read_to_string(&rig.daemon.config).unwrap();
        assert!(config.contains(from), "{config}");
        std::fs::write(&rig.daemon.config, config.replace(from, to)).unwrap();
        rig.daemon.spawn();
    };
    set_host(
        &mut rig,
        "allow_host_wrap = false",
        "allow_host_wrap = true",
    );
    let d = &rig.daemon;
    let out = d.ctl(
        ADMIN,
        &[
            "group",
            "create",
            "kry-ec",
            "--credential",
            "azure-app",
            "--vault",
            VAULT,
            "--key-type",
            "EC-P384",
            "--key-ops",
            "sign,verify",
        ],
    );
    assert!(
        out.status.success(),
        "host serves EC-P384: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert!(
        d.ctl(OPERATOR, &["key", "create", "kry-ec", "k"])
            .status
            .success()
    );
    set_host(
        &mut rig,
        "allow_host_wrap = true",
        "allow_host_wrap = false",
    );
    let d = &rig.daemon;
    let keys_before = d.ctl_json(OPERATOR, &["key", "list", "kry-ec"]).1;
    let out = d.ctl(OPERATOR, &["key", "sync", "kry-ec", "k"]);
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("EC-P384 keys are not pushed") && text.contains("47 bytes"),
        "{text}\n{}",
        d.log()
    );
    assert!(
        rig.emu.live_keks(VAULT).is_empty(),
        "no KEK for a refused push"
    );
    // A rotation is refused before it generates a key.
    let out = d.ctl(OPERATOR, &["--output", "json", "group", "rotate", "kry-ec"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    let job: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "job JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    failed_with(
        &job,
        &[
            "EC-P384 keys are not pushed",
            "47 bytes",
            "last rotation unchanged",
        ],
    );
    let steps = job["steps"].to_string();
    assert!(
        !steps.contains("Generating key"),
        "no key generated: {steps}"
    );
    assert_eq!(
        d.ctl_json(OPERATOR, &["key", "list", "kry-ec"]).1,
        keys_before,
        "the rotation made no key"
    );
    assert!(rig.emu.key_versions(VAULT, "kry-ec").is_empty());
    assert!(rig.emu.live_keks(VAULT).is_empty());
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("jobs.failed")
            && l.contains("EC-P384 keys are not pushed")
            && l.contains("47 bytes")),
        "the log says why the sync failed:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("rotation.failed")
            && l.contains("EC-P384 keys are not pushed")
            && l.contains("47 bytes")),
        "the log says why the rotation failed:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// No client secret and no private key bytes in the daemon's log, its state or the request log.

/// Every encoding of `bytes` a leak could take: raw, hex (both cases), base64 and base64url
/// (padded and not), plus raw and hex 16-byte windows, which find partial copies too.
fn encodings(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut out = vec![
        ("raw".to_owned(), bytes.to_vec()),
        ("hex".to_owned(), hex::encode(bytes).into_bytes()),
        ("HEX".to_owned(), hex::encode_upper(bytes).into_bytes()),
        ("base64".to_owned(), STANDARD.encode(bytes).into_bytes()),
        (
            "base64-nopad".to_owned(),
            STANDARD_NO_PAD.encode(bytes).into_bytes(),
        ),
        ("base64url".to_owned(), URL_SAFE.encode(bytes).into_bytes()),
        (
            "base64url-nopad".to_owned(),
            URL_SAFE_NO_PAD.encode(bytes).into_bytes(),
        ),
    ];
    for start in (0..bytes.len().saturating_sub(16)).step_by(bytes.len() / 4 + 1) {
        let w = &bytes[start..start + 16];
        out.push((format!("raw[{start}..+16]"), w.to_vec()));
        out.push((format!("hex[{start}..+16]"), hex::encode(w).into_bytes()));
    }
    out
}

/// The secret part of a PKCS#8: the RSA private exponent or the EC private scalar.
fn private_value(pkcs8_der: &[u8]) -> Vec<u8> {
    use der::Decode;
    let info = pkcs8::PrivateKeyInfoRef::from_der(pkcs8_der).unwrap();
    if info.algorithm.oid.to_string() == "1.2.840.113549.1.1.1" {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::traits::PrivateKeyParts;
        let k = rsa::PrivateKey::from_pkcs8_der(pkcs8_der).unwrap();
        k.d().to_be_bytes().to_vec()
    } else {
        let ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).unwrap();
        ec.private_key.to_vec()
    }
}

#[test]
fn no_secret_or_private_key_bytes_in_logs_state_or_request_log() {
    let rig = start();
    let d = &rig.daemon;
    rig.emu.retain_imported_private_keys(true);
    for kt in ["RSA-2048", "RSA-3072", "EC-P256", "EC-P521"] {
        let group = format!("grep-{}", kt.to_ascii_lowercase());
        let mut args = vec![
            "group",
            "create",
            &group,
            "--credential",
            "azure-app",
            "--vault",
            VAULT,
            "--key-type",
            kt,
        ];
        if kt.starts_with("EC") {
            args.extend(["--key-ops", "sign,verify"]);
        }
        assert!(d.ctl(ADMIN, &args).status.success());
        assert!(
            d.ctl(OPERATOR, &["key", "create", &group, "k"])
                .status
                .success()
        );
        sync_and_wait(d, &group, "k");
    }
    let imported = rig.emu.imported_private_keys();
    assert_eq!(
        imported.len(),
        4,
        "the emulator learned every pushed key: {imported:?}"
    );

    let mut needles = encodings(SECRET.as_bytes());
    for k in &imported {
        let value = private_value(&k.pkcs8);
        assert!(value.len() >= 32, "{}: private value too short", k.name);
        for (how, n) in encodings(&k.pkcs8) {
            needles.push((format!("{} PKCS#8 {how}", k.name), n));
        }
        for (how, n) in encodings(&value) {
            needles.push((format!("{} private value {how}", k.name), n));
        }
    }
    // The search itself finds a planted copy (so an empty result means something).
    let planted = tempfile::tempdir().unwrap();
    let sample = &needles[needles.len() - 1];
    let mut text = b"prefix ".to_vec();
    text.extend_from_slice(&sample.1);
    std::fs::write(planted.path().join("x.log"), text).unwrap();
    assert_eq!(files_containing(planted.path(), &sample.1).len(), 1);

    let log_path = d.path("byokd.log");
    let in_memory = serde_json::to_vec(&rig.emu.requests()).unwrap();
    let mut found = vec![];
    for (what, needle) in &needles {
        for hit in files_containing(&d.path("state"), needle) {
            found.push(format!("{what} in state file {hit}"));
        }
        for hit in files_containing(rig._ca_dir.path(), needle) {
            found.push(format!("{what} in emulator file {hit}"));
        }
        let log = std::fs::read(&log_path).unwrap();
        if log.windows(needle.len()).any(|w| w == needle.as_slice()) {
            found.push(format!("{what} in the daemon log"));
        }
        if in_memory
            .windows(needle.len())
            .any(|w| w == needle.as_slice())
        {
            found.push(format!("{what} in the emulator's request records"));
        }
    }
    assert!(found.is_empty(), "leaks: {found:#?}");
    assert!(
        std::fs::metadata(rig._ca_dir.path().join("requests.jsonl"))
            .unwrap()
            .len()
            > 0,
        "the request log was written"
    );
}
