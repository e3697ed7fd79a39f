//! Key Vault calls against a scripted server: request shapes, response models, paging and the
//! mapping of every documented error to an operator-facing error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod azure_support;

use azure_support::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use byokd::azure::{AzureError, ImportRequest, KeyUpdate, KeyVaultError, RecoveryLevel};
use std::collections::BTreeMap;

const KID: &str = "https://myvault.vault.azure.net/keys/kek-1/0123456789abcdef0123456789abcdef";

fn kv_error(status: u16, code: &str, inner: Option<&str>, message: &str) -> Reply {
    let mut e = serde_json::json!({"code": code, "message": message});
    if let Some(i) = inner {
        e["innererror"] = serde_json::json!({"code": i});
    }
    json(status, serde_json::json!({"error": e}))
}

fn body(rec: &Recorded) -> serde_json::Value {
    serde_json::from_slice(&rec.body).unwrap()
}

#[tokio::test]
async fn create_kek_sends_an_import_only_rsa_hsm_key_and_strips_the_exponent() {
    let (_pki, server, az) = rig().await;
    let n = vec![0xC5u8; 512];
    server.push(json(200, serde_json::json!({
        "key": {"kid": KID, "kty": "RSA-HSM", "key_ops": ["import"], "n": URL_SAFE_NO_PAD.encode(&n), "e": "AAEAAQ"},
        "attributes": {"enabled": true, "exp": 1900000000, "created": 1, "updated": 1, "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}
    })));
    let kek = az
        .keyvault()
        .create_kek(&token(), &vault_target(VAULT), "kek-1", 4096, 1_900_000_000)
        .await
        .unwrap();
    assert_eq!(kek.kid, KID);
    assert_eq!(kek.version, "0123456789abcdef0123456789abcdef");
    assert_eq!(kek.e, vec![1, 0, 1]);
    assert_eq!(kek.n, n);
    assert!(
        kek.recovery_level
            .as_ref()
            .is_some_and(RecoveryLevel::purge_allowed)
    );

    let rec = &server.recorded()[0];
    assert_eq!(
        (rec.method.as_str(), rec.path.as_str()),
        ("POST", "/keys/kek-1/create?api-version=7.5")
    );
    assert_eq!(rec.headers["authorization"], "Bearer test-access-token");
    assert_eq!(
        body(rec),
        serde_json::json!({"kty": "RSA-HSM", "key_size": 4096, "key_ops": ["import"], "attributes": {"exp": 1900000000}})
    );
}

#[tokio::test]
async fn a_kek_of_the_wrong_size_is_rejected() {
    let (_pki, server, az) = rig().await;
    server.push(json(200, serde_json::json!({"key": {"kid": KID, "n": URL_SAFE_NO_PAD.encode([1u8; 256]), "e": "AQAB"}})));
    let err = az
        .keyvault()
        .create_kek(&token(), &vault_target(VAULT), "kek-1", 4096, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AzureError::KeyVault(KeyVaultError::BadKek { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn import_puts_key_hsm_with_attributes_and_tags() {
    let (_pki, server, az) = rig().await;
    server.push(json(200, serde_json::json!({
        "key": {"kid": "https://myvault.vault.azure.net/keys/app-key/aaaabbbbccccddddeeeeffff00001111", "kty": "EC-HSM", "crv": "P-256", "x": "AQ", "y": "Ag", "key_ops": ["sign", "verify"]},
        "attributes": {"enabled": true, "nbf": 10, "exp": 20, "recoveryLevel": "Recoverable"},
        "tags": {"byokd-fp": "abc"}
    })));
    let req = ImportRequest {
        kty: "EC-HSM".into(),
        crv: Some("P-256".into()),
        key_ops: vec!["sign".into(), "verify".into()],
        key_hsm: "eyJibG9iIjoxfQ".into(),
        enabled: true,
        nbf: Some(10),
        exp: Some(20),
        tags: BTreeMap::from([("byokd-fp".to_string(), "abc".to_string())]),
    };
    let b = az
        .keyvault()
        .import_key(&token(), &vault_target(VAULT), "app-key", &req)
        .await
        .unwrap();
    assert_eq!(b.version(), "aaaabbbbccccddddeeeeffff00001111");
    assert_eq!(b.key.crv.as_deref(), Some("P-256"));
    assert_eq!(b.tags.unwrap()["byokd-fp"], "abc");

    let rec = &server.recorded()[0];
    assert_eq!(
        (rec.method.as_str(), rec.path.as_str()),
        ("PUT", "/keys/app-key?api-version=7.5")
    );
    assert_eq!(
        body(rec),
        serde_json::json!({
            "key": {"kty": "EC-HSM", "crv": "P-256", "key_ops": ["sign", "verify"], "key_hsm": "eyJibG9iIjoxfQ"},
            "attributes": {"enabled": true, "nbf": 10, "exp": 20},
            "tags": {"byokd-fp": "abc"}
        })
    );
}

#[tokio::test]
async fn list_versions_follows_next_link_on_the_same_vault() {
    let (_pki, server, az) = rig().await;
    let item = |v: &str| serde_json::json!({"kid": format!("https://myvault.vault.azure.net/keys/k/{v}"), "attributes": {"enabled": true}, "tags": {"n": v}});
    server.push(json(200, serde_json::json!({
        "value": [item("v1"), item("v2")],
        "nextLink": "https://myvault.vault.azure.net:443/keys/k/versions?api-version=7.5&$skiptoken=abc&maxresults=25"
    })));
    server.push(json(
        200,
        serde_json::json!({"value": [item("v3")], "nextLink": null}),
    ));
    let items = az
        .keyvault()
        .list_versions(&token(), &vault_target(VAULT), "k")
        .await
        .unwrap();
    let versions: Vec<&str> = items.iter().map(|i| i.version()).collect();
    assert_eq!(versions, ["v1", "v2", "v3"]);
    let paths: Vec<String> = server.recorded().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths[0], "/keys/k/versions?maxresults=25&api-version=7.5");
    assert_eq!(
        paths[1],
        "/keys/k/versions?api-version=7.5&$skiptoken=abc&maxresults=25"
    );
}

#[tokio::test]
async fn a_next_link_off_the_allowlist_is_refused_without_connecting() {
    let (_pki, server, az) = rig().await;
    server.push(json(
        200,
        serde_json::json!({"value": [], "nextLink": "https://evil.example/keys/k/versions?x=1"}),
    ));
    let err = az
        .keyvault()
        .list_versions(&token(), &vault_target(VAULT), "k")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AzureError::NotAllowed { host, .. } if host == "evil.example"),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn get_update_delete_and_the_deleted_key_calls_use_the_documented_routes() {
    let (_pki, server, az) = rig().await;
    let bundle = serde_json::json!({"key": {"kid": KID}, "attributes": {"enabled": false, "recoveryLevel": "Recoverable+Purgeable"}});
    let deleted = serde_json::json!({"key": {"kid": KID}, "attributes": {}, "recoveryId": "https://myvault.vault.azure.net/deletedkeys/kek-1", "deletedDate": 5, "scheduledPurgeDate": 6});
    server.push(json(200, bundle.clone()));
    server.push(json(200, bundle.clone()));
    server.push(json(200, deleted.clone()));
    server.push(json(200, deleted));
    server.push(Reply::Respond {
        status: 204,
        headers: vec![],
        body: String::new(),
    });
    server.push(json(200, bundle));
    let t = token();
    let kv = az.keyvault();
    kv.get_key(&t, &vault_target(VAULT), "kek-1", None)
        .await
        .unwrap();
    let upd = KeyUpdate {
        enabled: Some(false),
        exp: Some(99),
        ..Default::default()
    };
    let b = kv
        .update_key(
            &t,
            &vault_target(VAULT),
            "kek-1",
            "0123456789abcdef0123456789abcdef",
            &upd,
        )
        .await
        .unwrap();
    assert_eq!(b.attributes.enabled, Some(false));
    let d = kv
        .delete_key(&t, &vault_target(VAULT), "kek-1")
        .await
        .unwrap();
    assert_eq!(d.scheduled_purge_date, Some(6));
    assert_eq!(d.bundle.kid(), KID);
    kv.get_deleted_key(&t, &vault_target(VAULT), "kek-1")
        .await
        .unwrap();
    kv.purge_deleted_key(&t, &vault_target(VAULT), "kek-1")
        .await
        .unwrap();
    kv.recover_deleted_key(&t, &vault_target(VAULT), "kek-1")
        .await
        .unwrap();
    let calls: Vec<(String, String)> = server
        .recorded()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let expect = [
        ("GET", "/keys/kek-1/?api-version=7.5"),
        (
            "PATCH",
            "/keys/kek-1/0123456789abcdef0123456789abcdef?api-version=7.5",
        ),
        ("DELETE", "/keys/kek-1?api-version=7.5"),
        ("GET", "/deletedkeys/kek-1?api-version=7.5"),
        ("DELETE", "/deletedkeys/kek-1?api-version=7.5"),
        ("POST", "/deletedkeys/kek-1/recover?api-version=7.5"),
    ];
    for (got, want) in calls.iter().zip(expect) {
        assert_eq!((got.0.as_str(), got.1.as_str()), want);
    }
    assert_eq!(
        body(&server.recorded()[1]),
        serde_json::json!({"attributes": {"enabled": false, "exp": 99}})
    );
}

#[tokio::test]
async fn key_vault_errors_are_branched_on_codes_and_tell_the_operator_what_to_do() {
    let (_pki, server, az) = rig().await;
    let t = token();
    let kv = az.keyvault();

    server.push(kv_error(
        403,
        "Forbidden",
        Some("ForbiddenByRbac"),
        "Caller is not authorized",
    ));
    let err = kv
        .create_kek(&t, &vault_target(VAULT), "kek-1", 4096, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AzureError::KeyVault(KeyVaultError::PermissionDenied { .. })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("'Create'") && err.to_string().contains("Crypto Officer"),
        "{err}"
    );

    server.push(kv_error(403, "Forbidden", Some("ForbiddenByPolicy"), "no"));
    let req = ImportRequest {
        kty: "RSA-HSM".into(),
        key_hsm: "x".into(),
        ..Default::default()
    };
    let err = kv
        .import_key(&t, &vault_target(VAULT), "k", &req)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("'Import'"), "{err}");

    server.push(kv_error(403, "Forbidden", Some("ForbiddenByRbac"), "no"));
    let err = kv
        .purge_deleted_key(&t, &vault_target(VAULT), "k")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("'Purge'"),
        "missing permission is not purge protection: {err}"
    );

    server.push(kv_error(
        403,
        "Forbidden",
        None,
        "Operation \"purge\" is not allowed because purge protection is enabled",
    ));
    let err = kv
        .purge_deleted_key(&t, &vault_target(VAULT), "k")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AzureError::KeyVault(KeyVaultError::PurgeProtected { .. })
        ),
        "{err:?}"
    );

    server.push(kv_error(
        403,
        "Forbidden",
        Some("ForbiddenByFirewall"),
        "Client address is not authorized",
    ));
    let err = kv
        .get_key(&t, &vault_target(VAULT), "k", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AzureError::KeyVault(KeyVaultError::Firewall { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("Networking"));

    server.push(kv_error(
        409,
        "Conflict",
        Some("ObjectIsDeletedButRecoverable"),
        "in a deleted but recoverable state",
    ));
    let err = kv
        .import_key(&t, &vault_target(VAULT), "k", &req)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AzureError::KeyVault(KeyVaultError::SoftDeleted { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("recover") && err.to_string().contains("purge"));
    assert!(!err.is_retryable());

    server.push(kv_error(
        409,
        "Conflict",
        Some("ObjectIsBeingDeleted"),
        "being deleted",
    ));
    let err = kv
        .purge_deleted_key(&t, &vault_target(VAULT), "k")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AzureError::KeyVault(KeyVaultError::BeingDeleted { .. })
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());

    server.push(kv_error(
        404,
        "KeyNotFound",
        None,
        "A key with (name/id) k was not found",
    ));
    let err = kv
        .get_key(&t, &vault_target(VAULT), "k", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AzureError::KeyVault(KeyVaultError::NotFound { deleted: false, .. })
        ),
        "{err:?}"
    );

    server.push(kv_error(404, "KeyNotFound", None, "Deleted Key not found"));
    let err = kv
        .get_deleted_key(&t, &vault_target(VAULT), "k")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AzureError::KeyVault(KeyVaultError::NotFound { deleted: true, .. })
        ),
        "{err:?}"
    );

    server.push(kv_error(
        400,
        "BadParameter",
        None,
        "The key type 'RSA-HSM' is not supported by this vault",
    ));
    let err = kv
        .create_kek(&t, &vault_target(VAULT), "kek-1", 4096, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AzureError::KeyVault(KeyVaultError::BadParameter { .. })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("is not supported by this vault") && text.contains("Premium"),
        "{text}"
    );

    // A blob the vault cannot open is not blamed on the tier: the hint points at the wrap
    // report. A tier refusal of an import still names the tier.
    server.push(kv_error(
        400,
        "BadParameter",
        None,
        "The specified key_hsm could not be unwrapped",
    ));
    let text = kv
        .import_key(&t, &vault_target(VAULT), "k", &req)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("wrap report") && text.contains("tier is not the cause"),
        "{text}"
    );
    assert!(!text.contains("Standard vault refuses"), "{text}");
    server.push(kv_error(
        400,
        "BadParameter",
        None,
        "Hardware key operation not allowed on standard vault",
    ));
    let text = kv
        .import_key(&t, &vault_target(VAULT), "k", &req)
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("Premium vault"), "{text}");
    // The blob is named before the tier when a message names both, and a message naming
    // neither still points at the wrap report, not at the tier.
    for (message, words) in [
        (
            "The specified key_hsm could not be unwrapped; a Premium vault is required for HSM keys",
            ["tier is not the cause", "wrap report"],
        ),
        (
            "Invalid parameter in request",
            ["wrap report", "its tier accepts HSM-protected keys"],
        ),
    ] {
        server.push(kv_error(400, "BadParameter", None, message));
        let text = kv
            .import_key(&t, &vault_target(VAULT), "k", &req)
            .await
            .unwrap_err()
            .to_string();
        assert!(words.iter().all(|w| text.contains(w)), "{message}: {text}");
        assert!(
            !text.contains("Standard vault refuses"),
            "{message}: {text}"
        );
    }
}

#[tokio::test]
async fn invalid_names_are_refused_before_sending() {
    let (_pki, server, az) = rig().await;
    let t = token();
    for name in ["", "a/b", "a?b", "x".repeat(128).as_str()] {
        let err = az
            .keyvault()
            .get_key(&t, &vault_target(VAULT), name, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AzureError::InvalidName { .. }),
            "{name}: {err:?}"
        );
    }
    // A vault or pool name that is not one cannot even be named: the client takes a Target.
    assert!("a.b".parse::<byokd::model::VaultName>().is_err());
    assert!("a.b".parse::<byokd::model::HsmPoolName>().is_err());
    assert_eq!(server.request_count(), 0);
}
