// PENDING: not compiled yet. Move to tests/azure_emulator.rs once `byokd-emulator = { path = "tests/emulator" }`
// is a [dev-dependencies] entry of byokd and the emulator crate compiles.
//! The Azure client against the byokd-emulator: every Key Vault call, paging, errors and retries
//! as a faithful Azure would answer them.

use byokd::azure::{
    AccessToken, Allowlist, Azure, AzureError, AzureMetrics, EntraError, HttpOptions, ImportRequest, KeyUpdate,
    KeyVaultError,
};
use byokd::config::{AzureSection, Cloud};
use byokd::secret::SecretBytes;
use byokd_emulator::{
    AppConfig, Curve, Emulator, EmulatorConfig, EmulatorHandle, FaultAction, FaultRule, ForeignKeyType, KeyPoolConfig,
    Op, Permission, RecoveryLevel as EmuRecovery, VaultOptions,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const TENANT: &str = "tenant-1";
const APP: &str = "app-1";
const SECRET: &str = "emu-s3cret+/=";

struct Rig {
    emu: EmulatorHandle,
    az: Azure,
    _dir: tempfile::TempDir,
}

async fn rig(vaults: &[(&str, VaultOptions)]) -> Rig {
    let cfg = EmulatorConfig {
        delete_pending_ms: 100,
        key_pool: KeyPoolConfig { rsa2048: 1, rsa3072: 0, rsa4096: 0 },
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(cfg).await.unwrap();
    emu.add_app(AppConfig::with_secret(TENANT, APP, SECRET)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("emu-ca.pem");
    std::fs::write(&ca, emu.ca_pem()).unwrap();
    let mut resolve = BTreeMap::from([("login.microsoftonline.com".to_string(), emu.addr())]);
    for (name, opts) in vaults {
        emu.add_vault(name, opts.clone()).unwrap();
        resolve.insert(format!("{name}.vault.azure.net"), emu.addr());
    }
    let section = AzureSection { cloud: Cloud::Public, resolve, extra_ca: vec![ca], ..AzureSection::default() };
    let opts = HttpOptions { backoff_base: Duration::from_millis(10), ..HttpOptions::from_config(&section) };
    let allowlist = Arc::new(Allowlist::new(Cloud::Public, vaults.iter().map(|(n, _)| *n)).unwrap());
    let az = Azure::with_options(&section, opts, allowlist, AzureMetrics::new()).unwrap();
    Rig { emu, az, _dir: dir }
}

async fn token(az: &Azure) -> AccessToken {
    let secret = SecretBytes::new(SECRET.as_bytes().to_vec());
    az.entra().token("cred-1", TENANT, APP, &secret).await.unwrap()
}

fn premium(level: EmuRecovery) -> VaultOptions {
    VaultOptions { recovery_level: level, ..VaultOptions::default() }
}

#[tokio::test]
async fn the_kek_lifecycle_runs_against_the_emulator() {
    let r = rig(&[("kv-soft", premium(EmuRecovery::RecoverablePurgeable))]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    let kek = kv.create_kek(&t, "kv-soft", "kek-job-1", 2048, 4_000_000_000).await.unwrap();
    assert_eq!(kek.e, vec![1, 0, 1]);
    assert_eq!(kek.n.len(), 256);
    assert!(kek.kid.starts_with("https://kv-soft.vault.azure.net/keys/kek-job-1/"));
    assert!(kek.recovery_level.as_ref().unwrap().purge_allowed());
    assert_eq!(r.emu.live_keks("kv-soft").len(), 1);

    let got = kv.get_key(&t, "kv-soft", "kek-job-1", None).await.unwrap();
    assert_eq!(got.kid(), kek.kid);
    assert_eq!(got.key.key_ops.as_deref(), Some(&["import".to_string()][..]));

    let upd = KeyUpdate { tags: Some(BTreeMap::from([("k".into(), "v".into())])), ..Default::default() };
    let b = kv.update_key(&t, "kv-soft", "kek-job-1", &kek.version, &upd).await.unwrap();
    assert_eq!(b.tags.unwrap()["k"], "v");

    let deleted = kv.delete_key(&t, "kv-soft", "kek-job-1").await.unwrap();
    assert!(deleted.recovery_id.is_some());
    // Visible in /deletedkeys only after the pending window; poll with a bound.
    let mut seen = false;
    for _ in 0..50 {
        match kv.get_deleted_key(&t, "kv-soft", "kek-job-1").await {
            Ok(_) => {
                seen = true;
                break;
            }
            Err(AzureError::KeyVault(KeyVaultError::NotFound { deleted: true, .. })) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(seen);
    kv.purge_deleted_key(&t, "kv-soft", "kek-job-1").await.unwrap();
    assert!(r.emu.live_keks("kv-soft").is_empty());
    assert!(r.emu.deleted_keys("kv-soft").is_empty());
    assert!(r.emu.schema_violations().is_empty(), "{:?}", r.emu.schema_violations());
}

#[tokio::test]
async fn a_soft_deleted_name_is_reported_and_can_be_recovered() {
    let r = rig(&[("kv-soft", premium(EmuRecovery::RecoverablePurgeable))]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    kv.create_kek(&t, "kv-soft", "kek-2", 2048, 4_000_000_000).await.unwrap();
    kv.delete_key(&t, "kv-soft", "kek-2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let err = kv.create_kek(&t, "kv-soft", "kek-2", 2048, 4_000_000_000).await.unwrap_err();
    assert!(matches!(err, AzureError::KeyVault(KeyVaultError::SoftDeleted { .. })), "{err:?}");
    let back = kv.recover_deleted_key(&t, "kv-soft", "kek-2").await.unwrap();
    assert!(back.kid().contains("/keys/kek-2/"));
}

#[tokio::test]
async fn purge_protection_is_told_apart_from_a_missing_permission() {
    let r = rig(&[("kv-prot", premium(EmuRecovery::Recoverable))]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    let kek = kv.create_kek(&t, "kv-prot", "kek-3", 2048, 4_000_000_000).await.unwrap();
    assert!(kek.recovery_level.as_ref().unwrap().purge_protected());
    kv.delete_key(&t, "kv-prot", "kek-3").await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let err = kv.purge_deleted_key(&t, "kv-prot", "kek-3").await.unwrap_err();
    assert!(matches!(err, AzureError::KeyVault(KeyVaultError::PurgeProtected { .. })), "{err:?}");

    r.emu
        .set_access("kv-prot", Some(BTreeMap::from([(APP.to_string(), vec![Permission::Get, Permission::List])])))
        .unwrap();
    let err = kv.create_kek(&t, "kv-prot", "kek-4", 2048, 4_000_000_000).await.unwrap_err();
    assert!(matches!(err, AzureError::KeyVault(KeyVaultError::PermissionDenied { .. })), "{err:?}");
    assert!(err.to_string().contains("'Create'"));
    let err = kv.purge_deleted_key(&t, "kv-prot", "kek-3").await.unwrap_err();
    assert!(matches!(err, AzureError::KeyVault(KeyVaultError::PermissionDenied { .. })), "{err:?}");
}

#[tokio::test]
async fn list_versions_pages_through_next_link() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    for i in 0..30 {
        let tags = BTreeMap::from([("i".to_string(), i.to_string())]);
        r.emu.import_foreign_version("kv-soft", "app-key", ForeignKeyType::Ec { crv: Curve::P256 }, tags).await.unwrap();
    }
    let t = token(&r.az).await;
    let items = r.az.keyvault().list_versions(&t, "kv-soft", "app-key").await.unwrap();
    assert_eq!(items.len(), 30);
    let mut tags: Vec<u32> = items.iter().map(|i| i.tags.as_ref().unwrap()["i"].parse().unwrap()).collect();
    tags.sort_unstable();
    assert_eq!(tags, (0..30).collect::<Vec<_>>());
    let pages = r.emu.requests().iter().filter(|q| q.op == Op::GetKeyVersions).count();
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn a_bad_blob_is_a_bad_parameter_with_azures_message() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    let t = token(&r.az).await;
    let req = ImportRequest {
        kty: "RSA-HSM".into(),
        key_ops: vec!["sign".into()],
        key_hsm: "bm90LWEtYmxvYg".into(),
        enabled: true,
        ..Default::default()
    };
    let err = r.az.keyvault().import_key(&t, "kv-soft", "app-key", &req).await.unwrap_err();
    match &err {
        AzureError::KeyVault(KeyVaultError::BadParameter { message, .. }) => assert!(!message.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn entra_errors_from_the_emulator_map_to_hints() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    let wrong = SecretBytes::new(b"wrong".to_vec());
    let err = r.az.entra().token("c1", TENANT, APP, &wrong).await.unwrap_err();
    assert!(matches!(err, AzureError::Entra(EntraError::WrongSecret { .. })), "{err:?}");
    let secret = SecretBytes::new(SECRET.as_bytes().to_vec());
    let err = r.az.entra().token("c2", "other-tenant", APP, &secret).await.unwrap_err();
    assert!(matches!(err, AzureError::Entra(EntraError::TenantNotFound { .. } | EntraError::AppNotInTenant { .. })), "{err:?}");
    r.emu.set_secret_expired(APP, true);
    let err = r.az.entra().token("c3", TENANT, APP, &secret).await.unwrap_err();
    assert!(matches!(err, AzureError::Entra(EntraError::SecretExpired { .. })), "{err:?}");
}

#[tokio::test]
async fn injected_faults_are_retried_or_reported_as_lost() {
    let r = rig(&[("kv-soft", VaultOptions::default())]).await;
    let t = token(&r.az).await;
    let kv = r.az.keyvault();
    r.emu.inject_fault(FaultRule::next(Op::CreateKey, 1, FaultAction::Status { status: 503 }));
    r.emu.inject_fault(FaultRule::next(Op::CreateKey, 1, FaultAction::Throttle));
    kv.create_kek(&t, "kv-soft", "kek-5", 2048, 4_000_000_000).await.unwrap();
    assert!(r.az.metrics().retries >= 2);

    r.emu.inject_fault(FaultRule::next(Op::GetKey, 1, FaultAction::Reset));
    kv.get_key(&t, "kv-soft", "kek-5", None).await.unwrap();

    r.emu.inject_fault(FaultRule::next(Op::CreateKey, 1, FaultAction::CommitThenReset));
    let err = kv.create_kek(&t, "kv-soft", "kek-6", 2048, 4_000_000_000).await.unwrap_err();
    assert!(matches!(err, AzureError::ResponseLost { .. }), "{err:?}");
    // The create was committed once and never repeated.
    assert_eq!(r.emu.key_versions("kv-soft", "kek-6").len(), 1);
}
