//! The Azure client against the byokd-emulator: every Key Vault call, paging, errors and retries
//! as a faithful Azure answers them, over real TLS with the real host names.
//!
//! Kept fast: 2048-bit KEKs from a small pre-generated pool, a 100 ms "being deleted" window and a
//! 10 ms back-off base (`azure.retry_base_ms`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aes_kw::KwpAes256;
use aes_kw::cipher::KeyInit as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use byokd::azure::{
    AccessToken, Allowlist, Azure, AzureError, AzureMetrics, EntraError, ImportRequest, Kek,
    KeyUpdate, KeyVaultError, KvOp,
};
use byokd::config::{AzureSection, Cloud};
use byokd::model::{Target, TargetKind};
use byokd::secret::SecretBytes;
use byokd_emulator::{
    AppConfig, Curve, Emulator, EmulatorConfig, EmulatorHandle, FaultAction, FaultRule,
    ForeignKeyType, KeyPoolConfig, Op, Permission, RecoveryLevel as EmuRecovery, RetryHeader,
    ThrottleConfig, VaultOptions,
};
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::pkcs8::EncodePrivateKey as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const TENANT: &str = "tenant-1";
const APP: &str = "app-1";
const SECRET: &str = "emu-s3cret+/=";
const KEK_EXP: i64 = 4_000_000_000;

/// The Key Vault named `name`, as the client's calls take it.
fn vault_target(name: &str) -> Target {
    Target::KeyVault(name.parse().unwrap())
}

/// The Managed HSM pool named `name`.
fn pool_target(name: &str) -> Target {
    Target::ManagedHsm(name.parse().unwrap())
}

struct Rig {
    emu: EmulatorHandle,
    az: Azure,
    _dir: tempfile::TempDir,
}

async fn rig(vaults: &[(&str, VaultOptions)]) -> Rig {
    let cfg = EmulatorConfig {
        delete_pending_ms: 100,
        key_pool: KeyPoolConfig {
            rsa2048: 2,
            rsa3072: 0,
            rsa4096: 0,
        },
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(cfg).await.unwrap();
    emu.add_app(AppConfig::with_secret(TENANT, APP, SECRET))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("emu-ca.pem");
    std::fs::write(&ca, emu.ca_pem()).unwrap();
    let mut resolve = BTreeMap::from([("login.microsoftonline.com".to_string(), emu.addr())]);
    for (name, opts) in vaults {
        emu.add_vault(name, opts.clone()).unwrap();
        resolve.insert(emu.vault_host(name).unwrap(), emu.addr());
    }
    let section = AzureSection {
        cloud: Cloud::Public,
        resolve,
        extra_ca: vec![ca],
        retry_base_ms: 10,
        max_attempts: 5,
        max_retry_wait_ms: 5_000,
        total_timeout_ms: 20_000,
        kek_size: 2048,
        ..AzureSection::default()
    };
    let allowlist = Arc::new(Allowlist::new(Cloud::Public, std::iter::empty::<&str>()).unwrap());
    let targets: Vec<Target> = vaults
        .iter()
        .map(|(n, o)| {
            if o.managed_hsm {
                pool_target(n)
            } else {
                vault_target(n)
            }
        })
        .collect();
    allowlist.set_targets(&targets);
    let az = Azure::new(
        &section,
        allowlist,
        AzureMetrics::new(),
        byokd::clock::SystemClock::shared(),
    )
    .unwrap();
    Rig { emu, az, _dir: dir }
}

async fn token(az: &Azure) -> AccessToken {
    token_for(az, TargetKind::KeyVault).await
}

/// A token for `kind`'s scope (Key Vault or Managed HSM).
async fn token_for(az: &Azure, kind: TargetKind) -> AccessToken {
    let secret = SecretBytes::new(SECRET.as_bytes().to_vec());
    az.entra()
        .token("cred-1", TENANT, APP, kind, &secret)
        .await
        .unwrap()
}

/// A Managed HSM pool: soft-delete always on, `Recoverable` is purge protection.
fn pool(level: EmuRecovery) -> VaultOptions {
    VaultOptions {
        managed_hsm: true,
        recovery_level: level,
        ..VaultOptions::default()
    }
}

fn vault(level: EmuRecovery) -> VaultOptions {
    VaultOptions {
        recovery_level: level,
        ..VaultOptions::default()
    }
}

/// Requests the emulator saw for one operation (faulted ones included).
fn seen(emu: &EmulatorHandle, op: Op) -> Vec<byokd_emulator::RequestRecord> {
    emu.requests().into_iter().filter(|q| q.op == op).collect()
}

fn b64(d: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(d)
}

/// A fresh P-256 key as a BYOK import for `kek`: RSA-OAEP-SHA1(KEK, AES-256) || AES-KWP(PKCS#8),
/// in the transfer blob JSON. Returns the request (tagged with `tag`) and the public point (x, y).
fn ec_import(kek: &Kek, tag: &str) -> (ImportRequest, Vec<u8>, Vec<u8>) {
    let sk = loop {
        // A uniformly random scalar; the rare value outside [1, n) is drawn again.
        if let Ok(sk) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
            break sk;
        }
    };
    let pkcs8 = sk.to_pkcs8_der().unwrap();
    let point = sk.public_key().as_affine().to_sec1_point(false);
    let (x, y) = (point.x().unwrap().to_vec(), point.y().unwrap().to_vec());

    let n = rsa::BoxedUint::from_be_slice_vartime(&kek.n);
    let e = rsa::BoxedUint::from_be_slice_vartime(&kek.e);
    let public = rsa::PublicKey::new(n, e).unwrap();
    let aes: [u8; 32] = rand::random();
    let mut ciphertext = public.oaep_encrypt::<sha1::Sha1>(&aes).unwrap();
    let plaintext = pkcs8.as_bytes();
    let mut buf = vec![0u8; plaintext.len().div_ceil(8) * 8 + 8];
    let wrapped = KwpAes256::new_from_slice(&aes)
        .unwrap()
        .wrap_key(plaintext, &mut buf)
        .unwrap();
    ciphertext.extend_from_slice(wrapped);
    let blob = serde_json::json!({
        "schema_version": "1.0.0",
        "header": {"kid": kek.kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
        "ciphertext": b64(&ciphertext),
        "generator": "byokd azure_emulator tests",
    });
    let req = ImportRequest {
        kty: "EC-HSM".into(),
        crv: Some("P-256".into()),
        key_ops: vec!["sign".into(), "verify".into()],
        key_hsm: b64(blob.to_string().as_bytes()),
        enabled: true,
        tags: BTreeMap::from([("byokd-fp".to_string(), tag.to_string())]),
        ..Default::default()
    };
    (req, x, y)
}

#[tokio::test]
async fn the_kek_lifecycle_runs_against_the_emulator() {
    let r = rig(&[("kv-soft", vault(EmuRecovery::RecoverablePurgeable))]).await;
    // A window long enough that the first look right after the delete falls inside it.
    r.emu.set_delete_pending(Duration::from_millis(400));
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    let kek = kv
        .create_kek(&t, &vault_target("kv-soft"), "kek-job-1", 2048, KEK_EXP)
        .await
        .unwrap();
    assert_eq!(kek.e, vec![1, 0, 1]);
    assert_eq!(kek.n.len(), 256);
    assert_eq!(
        kek.kid,
        format!(
            "https://kv-soft.vault.azure.net/keys/kek-job-1/{}",
            kek.version
        )
    );
    assert_eq!(
        kek.recovery_level.as_ref().map(|l| l.as_str()),
        Some("Recoverable+Purgeable")
    );
    assert!(kek.recovery_level.as_ref().unwrap().purge_allowed());
    let live = r.emu.live_keks("kv-soft");
    assert_eq!(live.len(), 1);
    let versions = r.emu.key_versions("kv-soft", "kek-job-1");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].key_ops, vec!["import".to_string()]);
    assert_eq!(versions[0].exp, Some(KEK_EXP));

    let got = kv
        .get_key(&t, &vault_target("kv-soft"), "kek-job-1", None)
        .await
        .unwrap();
    assert_eq!(got.kid(), kek.kid);
    assert_eq!(
        got.key.key_ops.as_deref(),
        Some(&["import".to_string()][..])
    );
    let same = kv
        .get_key(
            &t,
            &vault_target("kv-soft"),
            "kek-job-1",
            Some(kek.version.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(same.kid(), kek.kid);

    let upd = KeyUpdate {
        tags: Some(BTreeMap::from([("k".into(), "v".into())])),
        ..Default::default()
    };
    let b = kv
        .update_key(
            &t,
            &vault_target("kv-soft"),
            "kek-job-1",
            kek.version.as_str(),
            &upd,
        )
        .await
        .unwrap();
    assert_eq!(b.tags.unwrap()["k"], "v");
    assert_eq!(r.emu.key_versions("kv-soft", "kek-job-1")[0].tags["k"], "v");

    let deleted = kv
        .delete_key(&t, &vault_target("kv-soft"), "kek-job-1")
        .await
        .unwrap();
    assert!(
        deleted
            .recovery_id
            .as_deref()
            .unwrap()
            .ends_with("/deletedkeys/kek-job-1")
    );
    assert!(r.emu.live_keks("kv-soft").is_empty());
    // Right after the delete the deleted key is not yet visible (404), and a purge is refused
    // as "being deleted" (409, retryable).
    let err = kv
        .get_deleted_key(&t, &vault_target("kv-soft"), "kek-job-1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AzureError::KeyVault(KeyVaultError::NotFound { deleted: true, .. })
        ),
        "{err:?}"
    );
    let err = kv
        .purge_deleted_key(&t, &vault_target("kv-soft"), "kek-job-1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AzureError::KeyVault(KeyVaultError::BeingDeleted { .. })
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // Visible in /deletedkeys after the window; poll with a bound.
    let mut found = None;
    for _ in 0..100 {
        match kv
            .get_deleted_key(&t, &vault_target("kv-soft"), "kek-job-1")
            .await
        {
            Ok(d) => {
                found = Some(d);
                break;
            }
            Err(AzureError::KeyVault(KeyVaultError::NotFound { deleted: true, .. })) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let found = found.expect("the deleted key shows up after the pending window");
    assert_eq!(found.bundle.kid(), kek.kid);
    assert!(found.scheduled_purge_date.is_some() && found.deleted_date.is_some());
    assert_eq!(r.emu.deleted_keys("kv-soft").len(), 1);

    kv.purge_deleted_key(&t, &vault_target("kv-soft"), "kek-job-1")
        .await
        .unwrap();
    assert!(r.emu.live_keks("kv-soft").is_empty());
    assert!(r.emu.deleted_keys("kv-soft").is_empty());
    let err = kv
        .get_deleted_key(&t, &vault_target("kv-soft"), "kek-job-1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AzureError::KeyVault(KeyVaultError::NotFound { deleted: true, .. })
        ),
        "{err:?}"
    );
    assert!(
        r.emu.schema_violations().is_empty(),
        "{:?}",
        r.emu.schema_violations()
    );
    assert_eq!(r.az.metrics().retries, 0);
}

#[tokio::test]
async fn a_soft_deleted_name_is_reported_and_can_be_recovered() {
    let r = rig(&[("kv-soft", vault(EmuRecovery::RecoverablePurgeable))]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    let kek = kv
        .create_kek(&t, &vault_target("kv-soft"), "kek-2", 2048, KEK_EXP)
        .await
        .unwrap();
    kv.delete_key(&t, &vault_target("kv-soft"), "kek-2")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let err = kv
        .create_kek(&t, &vault_target("kv-soft"), "kek-2", 2048, KEK_EXP)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AzureError::KeyVault(KeyVaultError::SoftDeleted { name, .. }) if name == "kek-2"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let creates = seen(&r.emu, Op::CreateKey);
    assert_eq!(creates.len(), 2, "a 409 is not retried");
    assert_eq!(creates[1].status, 409);
    assert!(r.emu.live_keks("kv-soft").is_empty());

    let back = kv
        .recover_deleted_key(&t, &vault_target("kv-soft"), "kek-2")
        .await
        .unwrap();
    assert_eq!(back.kid(), kek.kid, "recovery brings back the same version");
    assert!(r.emu.deleted_keys("kv-soft").is_empty());
    assert_eq!(r.emu.live_keks("kv-soft").len(), 1);
    let got = kv
        .get_key(&t, &vault_target("kv-soft"), "kek-2", None)
        .await
        .unwrap();
    assert_eq!(got.kid(), kek.kid);
}

#[tokio::test]
async fn purge_protection_is_told_apart_from_a_missing_permission() {
    let r = rig(&[("kv-prot", vault(EmuRecovery::Recoverable))]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    let kek = kv
        .create_kek(&t, &vault_target("kv-prot"), "kek-3", 2048, KEK_EXP)
        .await
        .unwrap();
    let level = kek.recovery_level.as_ref().unwrap();
    assert!(level.purge_protected() && !level.purge_allowed());
    kv.delete_key(&t, &vault_target("kv-prot"), "kek-3")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let err = kv
        .purge_deleted_key(&t, &vault_target("kv-prot"), "kek-3")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AzureError::KeyVault(KeyVaultError::PurgeProtected { .. })
        ),
        "{err:?}"
    );
    assert_eq!(r.emu.deleted_keys("kv-prot").len(), 1, "still there");

    r.emu
        .set_access(
            "kv-prot",
            Some(BTreeMap::from([(
                APP.to_string(),
                vec![Permission::Get, Permission::List],
            )])),
        )
        .unwrap();
    let err = kv
        .create_kek(&t, &vault_target("kv-prot"), "kek-4", 2048, KEK_EXP)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AzureError::KeyVault(KeyVaultError::PermissionDenied { op: KvOp::CreateKek, inner, .. }) if inner == "ForbiddenByRbac"),
        "{err:?}"
    );
    assert!(err.to_string().contains("'Create'"), "{err}");
    // The same 403 status on purge, but an RBAC refusal, not purge protection.
    let err = kv
        .purge_deleted_key(&t, &vault_target("kv-prot"), "kek-3")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AzureError::KeyVault(KeyVaultError::PermissionDenied { op: KvOp::Purge, inner, .. }) if inner == "ForbiddenByRbac"),
        "{err:?}"
    );
    assert!(err.to_string().contains("'Purge'"), "{err}");
    let purges = seen(&r.emu, Op::PurgeDeletedKey);
    assert_eq!(
        purges.iter().map(|q| q.status).collect::<Vec<_>>(),
        vec![403, 403]
    );
    assert!(r.emu.all_keys("kv-prot").is_empty());
}

#[tokio::test]
async fn list_versions_pages_through_next_link() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    for i in 0..30 {
        let tags = BTreeMap::from([("i".to_string(), i.to_string())]);
        r.emu
            .import_foreign_version(
                "kv-soft",
                "app-key",
                ForeignKeyType::Ec { crv: Curve::P256 },
                tags,
            )
            .await
            .unwrap();
    }
    let t = token(&r.az).await;
    let items =
        r.az.keyvault()
            .list_versions(&t, &vault_target("kv-soft"), "app-key")
            .await
            .unwrap();
    assert_eq!(items.len(), 30);
    let mut tags: Vec<u32> = items
        .iter()
        .map(|i| i.tags.as_ref().unwrap()["i"].parse().unwrap())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, (0..30).collect::<Vec<_>>());
    let mut versions: Vec<&str> = items.iter().map(|i| i.version()).collect();
    versions.sort_unstable();
    let mut expected: Vec<String> = r
        .emu
        .key_versions("kv-soft", "app-key")
        .into_iter()
        .map(|v| v.version)
        .collect();
    expected.sort_unstable();
    assert_eq!(versions, expected);
    let pages = seen(&r.emu, Op::GetKeyVersions);
    assert_eq!(pages.len(), 2);
    assert!(
        pages
            .iter()
            .all(|p| p.status == 200 && p.host == "kv-soft.vault.azure.net")
    );
    assert!(pages[0].query.as_deref().unwrap().contains("maxresults=25"));
    assert_ne!(
        pages[0].query, pages[1].query,
        "the second page follows nextLink"
    );
    assert!(
        pages[1]
            .query
            .as_deref()
            .unwrap()
            .contains("api-version=7.5")
    );

    // An unknown name lists as empty.
    assert!(
        r.az.keyvault()
            .list_versions(&t, &vault_target("kv-soft"), "no-such-key")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_import_lands_and_a_bad_blob_is_a_bad_parameter_with_azures_message() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    let kek = kv
        .create_kek(&t, &vault_target("kv-soft"), "kek-imp", 2048, KEK_EXP)
        .await
        .unwrap();
    let (req, x, y) = ec_import(&kek, "fp-1");
    let bundle = kv
        .import_key(&t, &vault_target("kv-soft"), "app-key", &req)
        .await
        .unwrap();
    assert_eq!(bundle.key.kty.as_deref(), Some("EC-HSM"));
    assert_eq!(bundle.key.crv.as_deref(), Some("P-256"));
    assert_eq!(bundle.key.x.as_deref(), Some(b64(&x).as_str()));
    assert_eq!(bundle.key.y.as_deref(), Some(b64(&y).as_str()));
    assert_eq!(bundle.tags.as_ref().unwrap()["byokd-fp"], "fp-1");
    assert_eq!(r.emu.key_versions("kv-soft", "app-key").len(), 1);

    let bad = ImportRequest {
        kty: "RSA-HSM".into(),
        key_ops: vec!["sign".into()],
        key_hsm: "bm90LWEtYmxvYg".into(),
        enabled: true,
        ..Default::default()
    };
    let err = kv
        .import_key(&t, &vault_target("kv-soft"), "app-key", &bad)
        .await
        .unwrap_err();
    match &err {
        AzureError::KeyVault(KeyVaultError::BadParameter {
            op: KvOp::Import,
            message,
            ..
        }) => {
            assert!(
                message.contains("key_hsm"),
                "Azure's message is passed on: {message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    let imports = seen(&r.emu, Op::ImportKey);
    assert_eq!(imports.len(), 2, "a 400 is not retried");
    assert_eq!(imports[1].status, 400);
    assert_eq!(imports[1].error_code.as_deref(), Some("BadParameter"));
    assert_eq!(
        r.emu.key_versions("kv-soft", "app-key").len(),
        1,
        "nothing new"
    );
    assert!(
        r.emu.schema_violations().is_empty(),
        "{:?}",
        r.emu.schema_violations()
    );
}

#[tokio::test]
async fn entra_errors_from_the_emulator_map_to_hints() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    r.emu
        .add_app(AppConfig::with_secret("tenant-2", "app-2", "other"))
        .unwrap();
    let secret = SecretBytes::new(SECRET.as_bytes().to_vec());

    let wrong = SecretBytes::new(b"wrong-secret".to_vec());
    let err =
        r.az.entra()
            .token(
                "c1",
                TENANT,
                APP,
                byokd::model::TargetKind::KeyVault,
                &wrong,
            )
            .await
            .unwrap_err();
    assert!(
        matches!(&err, AzureError::Entra(EntraError::WrongSecret { credential }) if credential == "c1"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("wrong-secret"));

    let err =
        r.az.entra()
            .token(
                "c2",
                "no-such-tenant",
                APP,
                byokd::model::TargetKind::KeyVault,
                &secret,
            )
            .await
            .unwrap_err();
    assert!(
        matches!(&err, AzureError::Entra(EntraError::TenantNotFound { tenant, .. }) if tenant == "no-such-tenant"),
        "{err:?}"
    );
    let err =
        r.az.entra()
            .token(
                "c2",
                "tenant-2",
                APP,
                byokd::model::TargetKind::KeyVault,
                &secret,
            )
            .await
            .unwrap_err();
    assert!(
        matches!(&err, AzureError::Entra(EntraError::AppNotInTenant { tenant, client_id, .. }) if tenant == "tenant-2" && client_id == APP),
        "{err:?}"
    );

    r.emu.set_secret_expired(APP, true);
    let err =
        r.az.entra()
            .token(
                "c3",
                TENANT,
                APP,
                byokd::model::TargetKind::KeyVault,
                &secret,
            )
            .await
            .unwrap_err();
    assert!(
        matches!(err, AzureError::Entra(EntraError::SecretExpired { .. })),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(SECRET));
    let tokens = seen(&r.emu, Op::Token);
    assert_eq!(tokens.len(), 4, "Entra refusals are not retried");
    assert!(
        tokens.iter().all(|q| q.status == 400 || q.status == 401),
        "{tokens:?}"
    );

    r.emu.set_secret_expired(APP, false);
    token(&r.az).await;
}

#[tokio::test]
async fn idempotent_calls_are_retried_through_503_and_resets() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    let kek = kv
        .create_kek(&t, &vault_target("kv-soft"), "kek-5", 2048, KEK_EXP)
        .await
        .unwrap();

    r.emu.inject_fault(FaultRule::next(
        Op::GetKey,
        1,
        FaultAction::Status { status: 503 },
    ));
    r.emu
        .inject_fault(FaultRule::next(Op::GetKey, 1, FaultAction::Reset));
    let got = kv
        .get_key(&t, &vault_target("kv-soft"), "kek-5", None)
        .await
        .unwrap();
    assert_eq!(got.kid(), kek.kid);
    let gets = seen(&r.emu, Op::GetKey);
    assert_eq!(
        gets.iter().map(|q| q.status).collect::<Vec<_>>(),
        vec![503, 0, 200]
    );
    assert_eq!(r.az.metrics().retries, 2);

    // DELETE is idempotent: a reset before the answer is retried (the first one was not applied).
    r.emu
        .inject_fault(FaultRule::next(Op::DeleteKey, 1, FaultAction::Reset));
    kv.delete_key(&t, &vault_target("kv-soft"), "kek-5")
        .await
        .unwrap();
    assert_eq!(seen(&r.emu, Op::DeleteKey).len(), 2);
    assert_eq!(r.az.metrics().response_lost, 0);
}

#[tokio::test]
async fn throttling_and_408_are_retried_even_for_creates_and_imports() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();

    // 429 with `Retry-After: 1`: the hint is honoured, then the create goes through once.
    r.emu
        .inject_fault(FaultRule::next(Op::CreateKey, 1, FaultAction::Throttle));
    let kek = kv
        .create_kek(&t, &vault_target("kv-soft"), "kek-6", 2048, KEK_EXP)
        .await
        .unwrap();
    let creates = seen(&r.emu, Op::CreateKey);
    assert_eq!(
        creates.iter().map(|q| q.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    let gap = creates[1].time_ms - creates[0].time_ms;
    assert!(gap >= 950, "Retry-After: 1 waited only {gap} ms");
    assert_eq!(r.emu.key_versions("kv-soft", "kek-6").len(), 1);

    // 429 without any hint, then 408: exponential back-off from the 10 ms base.
    r.emu.set_throttling(ThrottleConfig {
        header: RetryHeader::None,
        ..ThrottleConfig::default()
    });
    r.emu
        .inject_fault(FaultRule::next(Op::ImportKey, 1, FaultAction::Throttle));
    r.emu.inject_fault(FaultRule::next(
        Op::ImportKey,
        1,
        FaultAction::Status { status: 408 },
    ));
    let (req, _, _) = ec_import(&kek, "fp-throttle");
    kv.import_key(&t, &vault_target("kv-soft"), "app-key", &req)
        .await
        .unwrap();
    let imports = seen(&r.emu, Op::ImportKey);
    assert_eq!(
        imports.iter().map(|q| q.status).collect::<Vec<_>>(),
        vec![429, 408, 200]
    );
    let gap = imports[2].time_ms - imports[0].time_ms;
    assert!(
        gap < 900,
        "no hint: short back-off, not a one-second wait ({gap} ms)"
    );
    assert_eq!(
        r.emu.key_versions("kv-soft", "app-key").len(),
        1,
        "exactly one version"
    );

    let m = r.az.metrics();
    assert_eq!((m.retries, m.throttled, m.response_lost), (3, 2, 0));
}

#[tokio::test]
async fn a_5xx_to_an_import_or_create_is_reported_as_lost_not_repeated() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    let kek = kv
        .create_kek(&t, &vault_target("kv-soft"), "kek-7", 2048, KEK_EXP)
        .await
        .unwrap();
    let (req, _, _) = ec_import(&kek, "fp-5xx");

    for (i, status) in [500u16, 502, 503, 504].into_iter().enumerate() {
        r.emu.inject_fault(FaultRule::next(
            Op::ImportKey,
            1,
            FaultAction::Status { status },
        ));
        let err = kv
            .import_key(&t, &vault_target("kv-soft"), "app-key", &req)
            .await
            .unwrap_err();
        match &err {
            AzureError::ResponseLost {
                method,
                path,
                reason,
                ..
            } => {
                assert_eq!(method, "PUT");
                assert_eq!(path, "/keys/app-key");
                assert!(reason.contains(&status.to_string()), "{reason}");
            }
            other => panic!("{status}: {other:?}"),
        }
        assert!(!err.is_retryable());
        assert_eq!(
            seen(&r.emu, Op::ImportKey).len(),
            i + 1,
            "{status}: sent once, never repeated"
        );
    }
    assert!(r.emu.key_versions("kv-soft", "app-key").is_empty());

    // The same for the KEK create.
    r.emu.inject_fault(FaultRule::next(
        Op::CreateKey,
        1,
        FaultAction::Status { status: 503 },
    ));
    let err = kv
        .create_kek(&t, &vault_target("kv-soft"), "kek-8", 2048, KEK_EXP)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AzureError::ResponseLost { method, .. } if method == "POST"),
        "{err:?}"
    );
    assert_eq!(seen(&r.emu, Op::CreateKey).len(), 2);
    assert!(r.emu.key_versions("kv-soft", "kek-8").is_empty());

    let m = r.az.metrics();
    assert_eq!((m.response_lost, m.retries), (5, 0));

    // Having looked (nothing there), the caller may import again: exactly one version.
    assert!(
        kv.list_versions(&t, &vault_target("kv-soft"), "app-key")
            .await
            .unwrap()
            .is_empty()
    );
    kv.import_key(&t, &vault_target("kv-soft"), "app-key", &req)
        .await
        .unwrap();
    assert_eq!(r.emu.key_versions("kv-soft", "app-key").len(), 1);
}

#[tokio::test]
async fn commit_then_reset_is_a_lost_response_with_exactly_one_version() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    let kek = kv
        .create_kek(&t, &vault_target("kv-soft"), "kek-9", 2048, KEK_EXP)
        .await
        .unwrap();

    r.emu.inject_fault(FaultRule::next(
        Op::ImportKey,
        1,
        FaultAction::CommitThenReset,
    ));
    let (req, x, _) = ec_import(&kek, "fp-commit");
    let err = kv
        .import_key(&t, &vault_target("kv-soft"), "app-key", &req)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AzureError::ResponseLost { method, .. } if method == "PUT"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(seen(&r.emu, Op::ImportKey).len(), 1, "never repeated");
    let versions = r.emu.key_versions("kv-soft", "app-key");
    assert_eq!(versions.len(), 1, "committed exactly once");
    // What the push job does next: find the version by its tag instead of importing again.
    let items = kv
        .list_versions(&t, &vault_target("kv-soft"), "app-key")
        .await
        .unwrap();
    let found: Vec<_> = items
        .iter()
        .filter(|i| {
            i.tags
                .as_ref()
                .is_some_and(|t| t["byokd-fp"] == "fp-commit")
        })
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].version(), versions[0].version);
    let got = kv
        .get_key(
            &t,
            &vault_target("kv-soft"),
            "app-key",
            Some(found[0].version()),
        )
        .await
        .unwrap();
    assert_eq!(got.key.x.as_deref(), Some(b64(&x).as_str()));

    // A plain reset (not committed) looks the same to the client: lost, and nothing new.
    r.emu
        .inject_fault(FaultRule::next(Op::ImportKey, 1, FaultAction::Reset));
    let (req2, _, _) = ec_import(&kek, "fp-reset");
    let err = kv
        .import_key(&t, &vault_target("kv-soft"), "app-key", &req2)
        .await
        .unwrap_err();
    assert!(matches!(err, AzureError::ResponseLost { .. }), "{err:?}");
    assert_eq!(r.emu.key_versions("kv-soft", "app-key").len(), 1);

    // The KEK create too.
    r.emu.inject_fault(FaultRule::next(
        Op::CreateKey,
        1,
        FaultAction::CommitThenReset,
    ));
    let err = kv
        .create_kek(&t, &vault_target("kv-soft"), "kek-10", 2048, KEK_EXP)
        .await
        .unwrap_err();
    assert!(matches!(err, AzureError::ResponseLost { .. }), "{err:?}");
    assert_eq!(r.emu.key_versions("kv-soft", "kek-10").len(), 1);
    assert_eq!(
        seen(&r.emu, Op::CreateKey)
            .iter()
            .filter(|q| q.path.contains("kek-10"))
            .count(),
        1
    );
    assert_eq!(r.az.metrics().response_lost, 3);
    assert_eq!(r.az.metrics().retries, 0);
}

#[tokio::test]
async fn a_managed_hsm_takes_only_its_own_tokens_and_unwraps_a_byok_import_strictly() {
    let r = rig(&[
        ("kv-soft", vault(EmuRecovery::RecoverablePurgeable)),
        ("hsm-pool", pool(EmuRecovery::RecoverablePurgeable)),
    ])
    .await;
    let kv_token = token(&r.az).await;
    let hsm_token = token_for(&r.az, TargetKind::ManagedHsm).await;
    let kv = r.az.keyvault();
    let hsm = pool_target("hsm-pool");
    assert_eq!(
        r.emu.vault_host("hsm-pool").unwrap(),
        "hsm-pool.managedhsm.azure.net"
    );
    // Audiences are checked both ways: a Key Vault token is refused by the pool, a Managed HSM
    // token by the vault (each 401 names its own resource, which the client accepts).
    for (t, target) in [(&kv_token, &hsm), (&hsm_token, &vault_target("kv-soft"))] {
        let err = kv.get_key(t, target, "app-key", None).await.unwrap_err();
        assert!(
            matches!(
                err,
                AzureError::KeyVault(KeyVaultError::Unauthorized { .. })
            ),
            "{target}: {err:?}"
        );
    }
    // The KEK is made in the pool and an EC-HSM blob wrapped under it is unwrapped there.
    let kek = kv
        .create_kek(&hsm_token, &hsm, "kek-h1", 2048, KEK_EXP)
        .await
        .unwrap();
    assert!(
        kek.kid
            .starts_with("https://hsm-pool.managedhsm.azure.net/keys/kek-h1/"),
        "{}",
        kek.kid
    );
    let (req, x, y) = ec_import(&kek, "fp-h1");
    let bundle = kv
        .import_key(&hsm_token, &hsm, "app-key", &req)
        .await
        .unwrap();
    assert_eq!(bundle.key.x.as_deref(), Some(b64(&x).as_str()));
    assert_eq!(bundle.key.y.as_deref(), Some(b64(&y).as_str()));
    assert_eq!(r.emu.key_versions("hsm-pool", "app-key").len(), 1);
    // A blob that does not open is refused like a vault refuses it.
    let bad = ImportRequest {
        key_hsm: "bm90LWEtYmxvYg".into(),
        ..req
    };
    let err = kv
        .import_key(&hsm_token, &hsm, "app-key", &bad)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AzureError::KeyVault(KeyVaultError::BadParameter {
                op: KvOp::Import,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(r.emu.key_versions("hsm-pool", "app-key").len(), 1);
    assert!(
        r.emu.all_keys("kv-soft").is_empty(),
        "nothing went to the vault"
    );
    assert!(
        r.emu.schema_violations().is_empty(),
        "{:?}",
        r.emu.schema_violations()
    );
}

#[tokio::test]
async fn managed_hsm_local_rbac_denials_name_the_role_and_permission_to_grant() {
    let r = rig(&[("hsm-pool", pool(EmuRecovery::RecoverablePurgeable))]).await;
    let t = token_for(&r.az, TargetKind::ManagedHsm).await;
    let kv = r.az.keyvault();
    let hsm = pool_target("hsm-pool");
    kv.create_kek(&t, &hsm, "kek-r1", 2048, KEK_EXP)
        .await
        .unwrap();
    kv.delete_key(&t, &hsm, "kek-r1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The principal may only read: Managed HSM answers 403 AccessDenied.
    r.emu
        .set_access(
            "hsm-pool",
            Some(BTreeMap::from([(
                APP.to_string(),
                vec![Permission::Get, Permission::List],
            )])),
        )
        .unwrap();
    let err = kv
        .create_kek(&t, &hsm, "kek-r2", 2048, KEK_EXP)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AzureError::KeyVault(KeyVaultError::HsmPermissionDenied { op: KvOp::CreateKek, code, .. }) if code == "AccessDenied"),
        "{err:?}"
    );
    let text = err.to_string();
    for part in [
        "Managed HSM hsm-pool",
        "'keys/create'",
        "'Managed HSM Crypto User'",
        "--hsm-name hsm-pool",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    // Purging a deleted key needs Crypto Officer, and a local RBAC denial is not purge
    // protection.
    let err = kv.purge_deleted_key(&t, &hsm, "kek-r1").await.unwrap_err();
    assert!(
        matches!(
            &err,
            AzureError::KeyVault(KeyVaultError::HsmPermissionDenied {
                op: KvOp::Purge,
                ..
            })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("'keys/deletedKeys/delete'") && text.contains("'Managed HSM Crypto Officer'"),
        "{text}"
    );
    let denied = seen(&r.emu, Op::PurgeDeletedKey);
    assert_eq!(denied.last().unwrap().status, 403);
    assert_eq!(
        denied.last().unwrap().error_code.as_deref(),
        Some("AccessDenied")
    );
    assert_eq!(r.emu.deleted_keys("hsm-pool").len(), 1, "still there");
}

#[tokio::test]
async fn managed_hsm_soft_delete_is_always_on_and_purge_protection_holds() {
    let r = rig(&[
        ("hsm-soft", pool(EmuRecovery::RecoverablePurgeable)),
        ("hsm-prot", pool(EmuRecovery::Recoverable)),
    ])
    .await;
    // A pool cannot be made without soft-delete.
    assert!(
        r.emu
            .add_vault("hsm-none", pool(EmuRecovery::Purgeable))
            .is_err()
    );
    let t = token_for(&r.az, TargetKind::ManagedHsm).await;
    let kv = r.az.keyvault();
    for name in ["hsm-soft", "hsm-prot"] {
        let hsm = pool_target(name);
        let kek = kv
            .create_kek(&t, &hsm, "kek-d1", 2048, KEK_EXP)
            .await
            .unwrap();
        assert!(kek.recovery_level.as_ref().unwrap().soft_delete(), "{name}");
        kv.delete_key(&t, &hsm, "kek-d1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            kv.get_deleted_key(&t, &hsm, "kek-d1")
                .await
                .unwrap()
                .bundle
                .kid(),
            kek.kid
        );
        let back = kv.recover_deleted_key(&t, &hsm, "kek-d1").await.unwrap();
        assert_eq!(back.kid(), kek.kid, "{name}: recovered");
        tokio::time::sleep(Duration::from_millis(150)).await;
        kv.delete_key(&t, &hsm, "kek-d1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    kv.purge_deleted_key(&t, &pool_target("hsm-soft"), "kek-d1")
        .await
        .unwrap();
    assert!(r.emu.deleted_keys("hsm-soft").is_empty());
    let err = kv
        .purge_deleted_key(&t, &pool_target("hsm-prot"), "kek-d1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AzureError::KeyVault(KeyVaultError::PurgeProtected { .. })
        ),
        "{err:?}"
    );
    assert_eq!(r.emu.deleted_keys("hsm-prot").len(), 1);
}
