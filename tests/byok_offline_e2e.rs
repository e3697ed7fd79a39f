//! Offline transfer end to end, with the real daemon on a SoftHSM token and the Azure emulator
//! over real TLS: `key export-byok` under dual control (refused for an operator, for a bad KEK
//! file, a non-RSA KEK and a kid of another host; self-approval refused; audited), the `.byok`
//! file unwrapped by Python `cryptography` (independent of byokd and of the emulator) to the HSM
//! key's public key, then imported into the emulator with the request the Azure CLI sends
//! (`az keyvault key import --byok-file`, here with curl), `key record-import` of the version
//! it made (a missing version and another key's version refused), a clean drift check, and a
//! rotation afterwards. The same for an AES-256 key of a Managed HSM group: the file unwrapped
//! to the raw key, whose KCV Python computes and compares with byokd's check digits, imported
//! as `az keyvault key import --hsm-name … --kty oct` does, recorded and drift-checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod control_rig;
mod emulator_rig;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use byokd_emulator::{EmulatorHandle, ForeignKeyType, RecoveryLevel};
use control_rig::{ADMIN, ADMIN2, AUDITOR, Daemon, OPERATOR};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b";
const SECRET: &str = "Qv8~byok.KnownSecret-For_Grep-0042";
const VAULT: &str = "offline-vault";
const GROUP: &str = "offline";
/// A Managed HSM pool (soft-delete on, purge allowed).
const POOL: &str = "offline-mhsm";
/// What the Azure CLI signs in for: Key Vault, and Managed HSM.
const VAULT_SCOPE: &str = "https://vault.azure.net/.default";
const MHSM_SCOPE: &str = "https://managedhsm.azure.net/.default";

struct Rig {
    rt: tokio::runtime::Runtime,
    emu: EmulatorHandle,
    daemon: Daemon,
    ca: PathBuf,
    _ca_dir: tempfile::TempDir,
}

/// The emulator with one vault and one Managed HSM pool, and the daemon (host-wrap SoftHSM
/// token) with credential `app`.
fn start() -> Rig {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("emulator-ca.pem");
    let (emu, mut options) =
        control_rig::emulator_and_options(&rt, &ca, (TENANT, CLIENT, SECRET), VAULT);
    // The sections end with `[azure.resolve]`: the pool's line goes there.
    options.sections +=
        &emulator_rig::add_managed_hsm(&emu, POOL, RecoveryLevel::RecoverablePurgeable);
    let daemon = Daemon::start_with(options);
    let credential =
        json!({"name": "app", "tenant_id": TENANT, "client_id": CLIENT, "secret": SECRET});
    let (status, answer) = daemon.curl(
        Some(ADMIN),
        "POST",
        "/v1/credentials",
        Some(&credential.to_string()),
    );
    assert_eq!(status, 201, "{answer}");
    Rig {
        rt,
        emu,
        daemon,
        ca,
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

/// `group create GROUP --credential app FLAG NAME KIND…` as ADMIN (`--vault` or `--managed-hsm`).
fn create_group(d: &Daemon, group: &str, (flag, name): (&str, &str), kind: &[&str]) {
    let mut all = vec!["group", "create", group, "--credential", "app", flag, name];
    all.extend_from_slice(kind);
    ok(d, ADMIN, &all);
}

/// Runs byokctl expecting exit `code`; returns its standard error.
fn refused(d: &Daemon, who: &str, args: &[&str], code: i32) -> String {
    let out = d.ctl(who, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    err
}

/// Runs a program of the test's own toolset (openssl, python3, curl); its standard output.
fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A key pair made with openssl (`genpkey -algorithm ALGORITHM -pkeyopt OPTION`): the private
/// key (PEM) and its public key as `az keyvault key download --encoding PEM` writes one.
fn openssl_key(dir: &Path, name: &str, algorithm: &str, option: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let p = private.to_str().unwrap();
    run(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            algorithm,
            "-pkeyopt",
            option,
            "-out",
            p,
        ],
    );
    run(
        "openssl",
        &[
            "pkey",
            "-in",
            p,
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    );
    (private, public)
}

/// The private key of `private` (PEM) as PKCS#8 DER.
fn pkcs8_der(private: &Path) -> Vec<u8> {
    let p = private.to_str().unwrap();
    run(
        "openssl",
        &["pkcs8", "-topk8", "-nocrypt", "-in", p, "-outform", "DER"],
    )
}

/// The service log's records with `event`.
fn records(d: &Daemon, event: &str) -> Vec<Value> {
    let (_, logged) = d.curl(Some(AUDITOR), "GET", "/v1/logs?limit=1000", None);
    logged["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == event)
        .cloned()
        .collect()
}

/// curl to `host` (port 443, connected to the emulator, its CA trusted): the JSON answer.
fn curl(rig: &Rig, host: &str, args: &[&str]) -> Value {
    let addr = rig.emu.addr();
    let to = format!("{host}:443:{}:{}", addr.ip(), addr.port());
    let ca = rig.ca.to_str().unwrap();
    let mut all = vec![
        "-sS",
        "--fail-with-body",
        "--cacert",
        ca,
        "--connect-to",
        &to,
    ];
    all.extend_from_slice(args);
    serde_json::from_slice(&run("curl", &all)).unwrap()
}

/// What the Azure CLI does for `az keyvault key import` to `host` (a vault or a Managed HSM,
/// signing in for `scope`) `--name NAME --byok-file FILE` with the key's `jwk` members (`kty`
/// already `-HSM`, as the CLI makes it, and any `crv`, `key_ops`): sign in, then PUT the key
/// with `key_hsm` the file's bytes (base64url). Returns the answer's kid.
fn az_key_import(
    rig: &Rig,
    (host, scope): (&str, &str),
    name: &str,
    jwk: Value,
    byok_file: &Path,
) -> String {
    let login = "login.microsoftonline.com";
    let token = curl(
        rig,
        login,
        &[
            "--data-urlencode",
            "grant_type=client_credentials",
            "--data-urlencode",
            &format!("client_id={CLIENT}"),
            "--data-urlencode",
            &format!("client_secret={SECRET}"),
            "--data-urlencode",
            &format!("scope={scope}"),
            &format!("https://{login}/{TENANT}/oauth2/v2.0/token"),
        ],
    );
    let bearer = token["access_token"].as_str().unwrap();
    let mut key = jwk;
    key["key_hsm"] = URL_SAFE_NO_PAD
        .encode(std::fs::read(byok_file).unwrap())
        .into();
    let body = json!({"key": key, "Hsm": true, "attributes": {"enabled": true}});
    let body_file = byok_file.with_extension("request.json");
    std::fs::write(&body_file, body.to_string()).unwrap();
    let answer = curl(
        rig,
        host,
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-H",
            &format!("Authorization: Bearer {bearer}"),
            "--data-binary",
            &format!("@{}", body_file.display()),
            &format!("https://{host}/keys/{name}?api-version=7.5"),
        ],
    );
    answer["key"]["kid"].as_str().unwrap().to_owned()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Starts `export` (a `byokctl key export-byok` of `key`) as ADMIN, which waits for a second
/// admin: the waiting byokctl and the approval it requested.
fn requested_export(d: &Daemon, export: &[&str], key: &str) -> (std::process::Child, String) {
    let mut waiting = d.ctl_command(ADMIN, export).spawn().unwrap();
    let approval = loop {
        if let Some(a) = approval_of(d, key) {
            break a;
        }
        assert!(waiting.try_wait().unwrap().is_none(), "byokctl ended early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    (waiting, approval)
}

/// The independent unwrap (`tests/byok_offline/unwrap_byok.py`) of `file` with `kek_private`,
/// expecting `kid`, with any `more` arguments: what it printed.
fn unwrap_independently(kek_private: &Path, file: &str, kid: &str, more: &[&str]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/byok_offline/unwrap_byok.py"
    );
    let mut all = vec![script, kek_private.to_str().unwrap(), file, kid];
    all.extend_from_slice(more);
    String::from_utf8(run("python3", &all)).unwrap()
}

fn approval_of(d: &Daemon, key: &str) -> Option<String> {
    let (_, list) = d.curl(Some(AUDITOR), "GET", "/v1/approvals?status=pending", None);
    list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"]["kind"] == "export_byok" && a["action"]["key"] == key)
        .map(|a| a["id"].as_str().unwrap().to_owned())
}

#[test]
fn an_offline_export_is_approved_unwrapped_independently_imported_recorded_and_rotated() {
    let rig = start();
    let d = &rig.daemon;
    let dir = tempfile::tempdir().unwrap();
    let ec = ["--key-type", "EC-P256", "--key-ops", "sign,verify"];
    create_group(d, GROUP, ("--vault", VAULT), &ec);
    ok(d, OPERATOR, &["key", "create", GROUP, "k1"]);
    // The officer made a KEK in the vault and downloaded its public key.
    let (kek_private, kek_public) = openssl_key(dir.path(), "kek", "RSA", "rsa_keygen_bits:2048");
    let kek = rig
        .emu
        .add_kek_from_pkcs8(VAULT, "kek1", &pkcs8_der(&kek_private))
        .unwrap();
    let kid = format!("https://{VAULT}.vault.azure.net/keys/kek1/{}", kek.version);
    let pem = kek_public.to_str().unwrap();
    let out = dir.path().join("k1.byok");
    let file = out.to_str().unwrap();
    let export = |pem: &str, kid: &str| -> Vec<String> {
        [
            "key",
            "export-byok",
            GROUP,
            "k1",
            "--kek-pem",
            pem,
            "--kek-kid",
            kid,
            "-f",
            file,
        ]
        .map(str::to_owned)
        .to_vec()
    };

    // Refusals: an operator (403), a file that is not a PEM public key, a non-RSA KEK, a kid of
    // another host; nothing is requested and nothing written.
    refused(d, OPERATOR, &args(&export(pem, &kid)), 3);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a public key\n").unwrap();
    let err = refused(d, ADMIN, &args(&export(garbage.to_str().unwrap(), &kid)), 2);
    assert!(err.contains("kek_pem"), "{err}");
    let (_, ec_public) = openssl_key(dir.path(), "ec", "EC", "ec_paramgen_curve:P-256");
    let err = refused(
        d,
        ADMIN,
        &args(&export(ec_public.to_str().unwrap(), &kid)),
        2,
    );
    assert!(err.contains("EC key") && err.contains("RSA"), "{err}");
    let other = kid.replace(VAULT, "someone-else");
    let err = refused(d, ADMIN, &args(&export(pem, &other)), 2);
    assert!(
        err.contains("kek_kid") && err.contains("someone-else"),
        "{err}"
    );
    assert!(!out.exists());
    let refusals = records(d, "key.byok_export.refused");
    assert_eq!(
        refusals.iter().filter(|r| r["identity"] == ADMIN).count(),
        3,
        "{refusals:#?}"
    );
    assert!(approval_of(d, "k1").is_none());
    // The file's one use is changing the cloud: an appliance that is not the designated device
    // refuses the export (5, not_designated), and recording an import too.
    ok(d, ADMIN, &["designated", "set", "false"]);
    let err = refused(d, ADMIN, &args(&export(pem, &kid)), 5);
    assert!(err.contains("not_designated"), "{err}");
    let version = "0123456789abcdef0123456789abcdef";
    let not_here = ["key", "record-import", GROUP, "k1", "--version", version];
    let err = refused(d, OPERATOR, &not_here, 5);
    assert!(err.contains("not_designated"), "{err}");
    ok(d, ADMIN, &["designated", "set", "true"]);
    assert!(approval_of(d, "k1").is_none());

    // The request waits for a second admin: byokctl waits with it.
    let (mut waiting, approval) = requested_export(d, &args(&export(pem, &kid)), "k1");
    // The requester cannot approve it, nor an operator; nor can the file be had before.
    let approve = ["approval", "approve", approval.as_str()];
    refused(d, ADMIN, &approve, 5);
    refused(d, OPERATOR, &approve, 3);
    let early = dir.path().join("early.byok");
    let fetch = [
        "approval",
        "byok-file",
        &approval,
        "-f",
        early.to_str().unwrap(),
    ];
    refused(d, ADMIN, &fetch, 4);
    assert!(!early.exists());
    ok(d, ADMIN2, &approve);
    let status = waiting.wait().unwrap();
    assert!(
        status.success(),
        "byokctl export-byok: {status}\n{}",
        d.log()
    );
    // Only the requester downloads it.
    refused(d, ADMIN2, &fetch, 3);

    // The file is Azure's .byok JSON; an independent implementation unwraps it to the HSM key.
    let text = std::fs::read_to_string(&out).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["header"]["kid"], kid.as_str(), "{text}");
    let spki_hex = unwrap_independently(&kek_private, file, &kid, &[]);
    let der = dir.path().join("k1.der");
    ok(
        d,
        AUDITOR,
        &[
            "key",
            "public",
            GROUP,
            "k1",
            "--format",
            "der",
            "-f",
            der.to_str().unwrap(),
        ],
    );
    assert_eq!(
        spki_hex,
        hex::encode(std::fs::read(&der).unwrap()),
        "the unwrapped key is not the HSM key"
    );

    // Audited: who asked, who approved, the wrap, the download.
    for (event, who) in [
        ("key.byok_export.requested", ADMIN),
        ("key.byok_export.approved", ADMIN2),
        ("key.byok_exported", "admin (approved by admin2)"),
        ("key.byok_downloaded", ADMIN),
    ] {
        let found = records(d, event);
        assert!(
            found
                .iter()
                .any(|r| r["identity"] == who && r["approval"] == approval.as_str()),
            "no {event} by {who} for {approval}: {found:#?}"
        );
    }

    // The officer imports it as the Azure CLI does; the emulator unwraps it strictly.
    let jwk = json!({"kty": "EC-HSM", "crv": "P-256", "key_ops": ["sign", "verify"]});
    let vault_host = format!("{VAULT}.vault.azure.net");
    let imported = az_key_import(&rig, (&vault_host, VAULT_SCOPE), GROUP, jwk, &out);
    let violations = rig.emu.schema_violations();
    assert!(violations.is_empty(), "{violations:#?}");
    let version = imported.rsplit('/').next().unwrap().to_owned();
    let (_, k1) = d.ctl_json(AUDITOR, &["key", "show", GROUP, "k1"]);
    assert!(k1["version"].is_null(), "{k1}");

    // Recording: a version Azure does not have (4) and another key's version (5) are refused.
    let missing = "0123456789abcdef0123456789abcdef";
    let record = |v: &str| ["key", "record-import", GROUP, "k1", "--version", v].map(str::to_owned);
    refused(d, OPERATOR, &args(&record(missing)), 4);
    let foreign = rig
        .rt
        .block_on(rig.emu.import_foreign_version(
            VAULT,
            GROUP,
            ForeignKeyType::Ec {
                crv: byokd_emulator::Curve::P256,
            },
            BTreeMap::new(),
        ))
        .unwrap();
    let err = refused(d, OPERATOR, &args(&record(&foreign.version)), 5);
    assert!(err.contains("public_key_mismatch"), "{err}");
    let (_, k1) = d.ctl_json(AUDITOR, &["key", "show", GROUP, "k1"]);
    assert!(k1["version"].is_null(), "{k1}");
    assert!(!records(d, "key.import_record.refused").is_empty());
    rig.emu
        .set_version_enabled(VAULT, GROUP, &foreign.version, false)
        .unwrap();

    // The real one is recorded; the key list shows it.
    let said = ok(d, OPERATOR, &args(&record(&version)));
    assert!(said.contains(&version), "{said}");
    let (_, k1) = d.ctl_json(AUDITOR, &["key", "show", GROUP, "k1"]);
    assert_eq!(k1["version"], version.as_str(), "{k1}");
    let recorded = records(d, "key.import_recorded");
    assert!(
        recorded
            .iter()
            .any(|r| r["identity"] == OPERATOR && r["version"] == version.as_str()),
        "{recorded:#?}"
    );

    // The drift check sees k1's version in sync (only the disabled foreign version is extra).
    ok(d, OPERATOR, &["group", "check", GROUP]);
    let (_, g) = d.ctl_json(AUDITOR, &["group", "show", GROUP]);
    let findings = g["drift"]["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .all(|f| f["version"] == foreign.version.as_str()),
        "{g}"
    );
    assert!(!findings.is_empty(), "the foreign version is reported: {g}");

    // A rotation works afterwards: a new key, pushed as a new current version.
    ok(d, OPERATOR, &["group", "rotate", GROUP]);
    let (_, keys) = d.ctl_json(AUDITOR, &["key", "list", GROUP]);
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let new = keys.iter().find(|k| k["name"] != "k1").unwrap();
    let new_version = new["version"].as_str().unwrap();
    assert_ne!(new_version, version);
    let versions = rig.emu.key_versions(VAULT, GROUP);
    assert_eq!(versions.last().unwrap().version, new_version);
}

/// An AES-256 key of a Managed HSM group, exported under dual control: Python unwraps the file
/// to the raw key and its KCV is byokd's check digits; imported as `az keyvault key import
/// --hsm-name POOL --name NAME --kty oct --byok-file FILE` does (the emulator unwraps it strictly
/// and computes the same KCV), recorded, and drift-checked.
#[test]
fn an_aes_key_of_a_managed_hsm_is_exported_unwrapped_independently_imported_and_recorded() {
    let rig = start();
    let d = &rig.daemon;
    let dir = tempfile::tempdir().unwrap();
    let group = "offline-aes";
    create_group(
        d,
        group,
        ("--managed-hsm", POOL),
        &["--key-type", "AES-256"],
    );
    ok(d, OPERATOR, &["key", "create", group, "k1"]);
    let (_, k1) = d.ctl_json(AUDITOR, &["key", "show", group, "k1"]);
    let check_digits = k1["check_digits"].as_str().unwrap().to_owned();
    assert_eq!(k1["algorithm"], "AES-256", "{k1}");
    assert!(k1["version"].is_null(), "never pushed: {k1}");
    // The officer made a KEK in the pool and downloaded its public key.
    let (kek_private, kek_public) = openssl_key(dir.path(), "kek", "RSA", "rsa_keygen_bits:2048");
    let kek = rig
        .emu
        .add_kek_from_pkcs8(POOL, "kek1", &pkcs8_der(&kek_private))
        .unwrap();
    let host = format!("{POOL}.managedhsm.azure.net");
    let kid = format!("https://{host}/keys/kek1/{}", kek.version);
    let out = dir.path().join("aes.byok");
    let file = out.to_str().unwrap();
    let export = [
        "key",
        "export-byok",
        group,
        "k1",
        "--kek-pem",
        kek_public.to_str().unwrap(),
        "--kek-kid",
        &kid,
        "-f",
        file,
    ];
    let (mut waiting, approval) = requested_export(d, &export, "k1");
    ok(d, ADMIN2, &["approval", "approve", &approval]);
    let status = waiting.wait().unwrap();
    assert!(
        status.success(),
        "byokctl export-byok: {status}\n{}",
        d.log()
    );
    let exported = records(d, "key.byok_exported");
    assert!(
        exported
            .iter()
            .any(|r| r["identity"] == "admin (approved by admin2)"
                && r["approval"] == approval.as_str()),
        "{exported:#?}"
    );

    // Python unwraps the raw AES-256 key; its KCV is the check digits the HSM computed.
    let unwrapped = unwrap_independently(&kek_private, file, &kid, &["aes"]);
    assert_eq!(unwrapped, format!("AES-256 {check_digits}"));

    // The officer imports it into the pool; the emulator unwraps it strictly, finds the KCV.
    let imported = az_key_import(
        &rig,
        (&host, MHSM_SCOPE),
        group,
        json!({"kty": "oct-HSM"}),
        &out,
    );
    let violations = rig.emu.schema_violations();
    assert!(violations.is_empty(), "{violations:#?}");
    let version = imported.rsplit('/').next().unwrap().to_owned();
    let azure = rig.emu.key_versions(POOL, group);
    assert_eq!(azure.len(), 1, "{azure:?}");
    assert_eq!(azure[0].version, version);
    assert_eq!(azure[0].kty, "oct-HSM");
    assert_eq!(
        azure[0].public_key,
        byokd_emulator::PublicKey::Oct {
            bits: 256,
            kcv: check_digits.clone()
        }
    );
    assert!(
        rig.emu.all_keys(VAULT).is_empty(),
        "nothing reached the vault"
    );

    // Recorded: the key list shows the version; the drift check finds nothing but the AES
    // material Azure never returns, said as such.
    let said = ok(
        d,
        OPERATOR,
        &["key", "record-import", group, "k1", "--version", &version],
    );
    assert!(said.contains(&version), "{said}");
    let (_, k1) = d.ctl_json(AUDITOR, &["key", "show", group, "k1"]);
    assert_eq!(k1["version"], version.as_str(), "{k1}");
    ok(d, OPERATOR, &["group", "check", group]);
    let (_, g) = d.ctl_json(AUDITOR, &["group", "show", group]);
    let findings = g["drift"]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{g}");
    assert_eq!(findings[0]["code"], "key-material-not-comparable", "{g}");
    assert_eq!(findings[0]["version"], version.as_str(), "{g}");
    assert_eq!(g["drift"]["azure_versions"], 1, "{g}");
}
