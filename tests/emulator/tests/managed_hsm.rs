//! Managed HSM mode: the pool's host name over the test CA, the Managed HSM token audience
//! checked both ways, local RBAC refusals as Managed HSM sends them, soft-delete always on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use std::collections::BTreeMap;

use byokd_emulator::{Permission, RecoveryLevel, VaultOptions};
use serde_json::json;

const POOL: &str = "byokd-pool";

fn pool(level: RecoveryLevel) -> VaultOptions {
    VaultOptions {
        managed_hsm: true,
        recovery_level: level,
        ..VaultOptions::default()
    }
}

/// A Managed HSM token.
async fn hsm_token(c: &Client) -> String {
    c.token_for("https://managedhsm.azure.net/.default").await
}

/// A call on the pool; `path` includes the query.
async fn on_pool(
    c: &Client,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> Resp {
    let auth = format!("Bearer {token}");
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    c.send(
        method,
        &format!("https://{POOL}.managedhsm.azure.net{path}"),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        body,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_pool_answers_under_its_host_and_takes_only_managed_hsm_tokens() {
    let (emu, c) = start().await;
    emu.add_vault(POOL, pool(RecoveryLevel::RecoverablePurgeable))
        .unwrap();
    assert_eq!(
        emu.vault_host(POOL).unwrap(),
        "byokd-pool.managedhsm.azure.net"
    );
    let kv_token = c.token().await;
    let r = on_pool(&c, "GET", "/keys/k1?api-version=7.5", &kv_token, None).await;
    assert_eq!((r.status, r.code()), (401, Some("Unauthorized")));
    let www = r.headers.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(
        www.ends_with("resource=\"https://managedhsm.azure.net\""),
        "{www}"
    );
    let t = hsm_token(&c).await;
    let r = on_pool(&c, "GET", "/keys/k1?api-version=7.5", &t, None).await;
    assert_eq!((r.status, r.code()), (404, Some("KeyNotFound")));
    // And a Managed HSM token is no good on a vault.
    let r = c
        .kv("GET", VAULT, "/keys/k1?api-version=7.5", Some(&t), None)
        .await;
    assert_eq!(r.status, 401);
    // The KEK made in the pool names the pool's host.
    let r = on_pool(
        &c,
        "POST",
        "/keys/kek-1/create?api-version=7.5",
        &t,
        Some(json!({"kty":"RSA-HSM","key_size":2048,"key_ops":["import"],"attributes":{"exp": now() + 3600}})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.body["key"]["kid"]
            .as_str()
            .unwrap()
            .starts_with("https://byokd-pool.managedhsm.azure.net/keys/kek-1/"),
        "{:?}",
        r.body
    );
    assert!(
        r.body["attributes"]["recoveryLevel"]
            .as_str()
            .unwrap()
            .contains("Recoverable")
    );
}

#[tokio::test]
async fn local_rbac_refuses_with_access_denied_naming_the_data_action() {
    let (emu, c) = start().await;
    emu.add_vault(POOL, pool(RecoveryLevel::RecoverablePurgeable))
        .unwrap();
    emu.set_access(
        POOL,
        Some(BTreeMap::from([(APP.to_string(), vec![Permission::Get])])),
    )
    .unwrap();
    let t = hsm_token(&c).await;
    let r = on_pool(
        &c,
        "PUT",
        "/keys/app-key?api-version=7.5",
        &t,
        Some(json!({"key": {"kty": "RSA-HSM", "key_hsm": "eA"}})),
    )
    .await;
    assert_eq!((r.status, r.code()), (403, Some("AccessDenied")));
    assert!(
        r.inner().is_none(),
        "Managed HSM sends no innererror: {:?}",
        r.body
    );
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Microsoft.KeyVault/managedHsm/keys/import/action on /keys/app-key"),
        "{message}"
    );
}

#[tokio::test]
async fn a_pool_always_keeps_deleted_keys() {
    let (emu, _c) = start().await;
    let err = emu
        .add_vault(POOL, pool(RecoveryLevel::Purgeable))
        .unwrap_err();
    assert!(
        err.to_string().contains("soft-delete is always on"),
        "{err}"
    );
    assert!(
        emu.add_vault(POOL, pool(RecoveryLevel::Recoverable))
            .is_ok()
    );
}
