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

/// Creates KEK `kek-1` in the pool.
async fn create_kek(c: &Client, token: &str) -> Resp {
    on_pool(
        c,
        "POST",
        "/keys/kek-1/create?api-version=7.5",
        token,
        Some(json!({"kty":"RSA-HSM","key_size":2048,"key_ops":["import"],"attributes":{"exp": now() + 3600}})),
    )
    .await
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
    let r = create_kek(&c, &t).await;
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

/// A pool imports an AES key (oct-HSM) by BYOK: unwrapped strictly, its KCV computed and
/// compared with the `byokd-check-digits` the import states; the raw key only (a PKCS#8 or a
/// wrong length is refused), the AES usages only, and no key material in the answer.
#[tokio::test]
async fn a_pool_imports_oct_hsm_keys_strictly_and_checks_their_kcv() {
    let (emu, c) = start().await;
    emu.add_vault(POOL, pool(RecoveryLevel::RecoverablePurgeable))
        .unwrap();
    let t = hsm_token(&c).await;
    let kek = create_kek(&c, &t).await;
    let (kid, n, e) = kek_parts(&kek);
    let raw: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(7) ^ 0xa5).collect();
    let kcv = byokd_emulator::aes_kcv(&raw).unwrap();
    let import = |plaintext: Vec<u8>, tag: String, ops: serde_json::Value| {
        let body = json!({"key": {"kty": "oct-HSM", "key_ops": ops, "key_hsm": key_hsm(&kid, &n, &e, &plaintext)},
            "attributes": {"enabled": true}, "tags": {"byokd-check-digits": tag}});
        let c = &c;
        let t = &t;
        async move { on_pool(c, "PUT", "/keys/aes?api-version=7.5", t, Some(body)).await }
    };
    let ops = json!(["encrypt", "decrypt", "wrapKey", "unwrapKey"]);
    let r = import(raw.clone(), kcv.clone(), ops.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["key"]["kty"], "oct-HSM");
    assert!(r.body["key"].get("k").is_none() && r.body["key"].get("n").is_none());
    let versions = emu.key_versions(POOL, "aes");
    assert_eq!(
        versions[0].public_key,
        byokd_emulator::PublicKey::Oct {
            bits: 256,
            kcv: kcv.clone()
        }
    );
    // Another key than the one stated, a PKCS#8, a wrong length, a sign usage: refused.
    let r = import(raw.clone(), "000000".into(), ops.clone()).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another key")
    );
    for bad in [vec![0x30u8; 67], raw[..20].to_vec()] {
        let r = import(bad, kcv.clone(), ops.clone()).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("raw AES key"),
            "{:?}",
            r.body
        );
    }
    let r = import(raw.clone(), kcv.clone(), json!(["sign"])).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(emu.key_versions(POOL, "aes").len(), 1);
}
