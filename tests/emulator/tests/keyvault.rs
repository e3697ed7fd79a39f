//! Key Vault data plane: api-version, auth challenge, names, KEK rules, get/versions/update, RBAC.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use std::collections::BTreeMap;

use byokd_emulator::{Permission, Sku, VaultOptions};
use serde_json::json;

#[tokio::test]
async fn api_version_7_5_is_required() {
    let (_emu, c) = start().await;
    let t = c.token().await;
    let r = c.kv("GET", VAULT, "/keys/k1", Some(&t), None).await;
    assert_eq!((r.status, r.code()), (400, Some("BadParameter")));
    let r = c
        .kv("GET", VAULT, "/keys/k1?api-version=7.4", Some(&t), None)
        .await;
    assert_eq!((r.status, r.code()), (400, Some("BadParameter")));
    let r = c
        .kv("GET", VAULT, "/keys/k1?api-version=7.5", Some(&t), None)
        .await;
    assert_eq!((r.status, r.code()), (404, Some("KeyNotFound")));
}

#[tokio::test]
async fn missing_or_bad_token_gets_401_challenge() {
    let (emu, c) = start().await;
    let r = c
        .kv("GET", VAULT, "/keys/k1?api-version=7.5", None, None)
        .await;
    assert_eq!((r.status, r.code()), (401, Some("Unauthorized")));
    let www = r.headers.get("www-authenticate").unwrap().to_str().unwrap();
    assert_eq!(
        www,
        format!(
            "Bearer authorization=\"https://login.windows.net/{TENANT}\", resource=\"https://vault.azure.net\""
        )
    );
    let r = c
        .kv(
            "GET",
            VAULT,
            "/keys/k1?api-version=7.5",
            Some("forged"),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let t = c.token().await;
    emu.expire_tokens();
    let r = c
        .kv("GET", VAULT, "/keys/k1?api-version=7.5", Some(&t), None)
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn invalid_key_names_are_bad_parameter() {
    let (_emu, c) = start().await;
    let t = c.token().await;
    for name in ["bad_name", "a.b", &"x".repeat(128)] {
        let r = c
            .kv(
                "POST",
                VAULT,
                &format!("/keys/{name}/create?api-version=7.5"),
                Some(&t),
                Some(json!({"kty":"RSA-HSM"})),
            )
            .await;
        assert_eq!((r.status, r.code()), (400, Some("BadParameter")), "{name}");
    }
}

#[tokio::test]
async fn kek_rules_are_enforced() {
    let (emu, c) = start().await;
    let t = c.token().await;
    let create = |body: serde_json::Value| {
        let c = c.clone();
        let t = t.clone();
        async move {
            c.kv(
                "POST",
                VAULT,
                "/keys/kek1/create?api-version=7.5",
                Some(&t),
                Some(body),
            )
            .await
        }
    };
    let r = create(json!({"kty":"RSA-HSM","key_size":2048,"key_ops":["import","wrapKey"]})).await;
    assert_eq!((r.status, r.code()), (400, Some("BadParameter")));
    let r = create(json!({"kty":"RSA","key_size":2048,"key_ops":["import"]})).await;
    assert_eq!((r.status, r.code()), (400, Some("BadParameter")));
    let r = create(json!({"kty":"EC-HSM","crv":"P-256","key_ops":["import"]})).await;
    assert_eq!((r.status, r.code()), (400, Some("BadParameter")));
    let r = create(json!({"kty":"RSA-HSM","key_size":1024,"key_ops":["import"]})).await;
    assert_eq!((r.status, r.code()), (400, Some("BadParameter")));
    assert!(emu.all_keys(VAULT).is_empty());

    let r = create(json!({"kty":"RSA-HSM","key_size":2048,"key_ops":["import"],"attributes":{"exp": now()+3600}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let key = &r.body["key"];
    assert_eq!(key["kty"], "RSA-HSM");
    assert_eq!(key["key_ops"], json!(["import"]));
    assert_eq!(
        key["e"], "AAEAAQ",
        "RSA-HSM e carries a leading zero byte, as real Azure"
    );
    assert_eq!(unb64(key["n"].as_str().unwrap()).len(), 256);
    let kid = key["kid"].as_str().unwrap();
    let version = kid.rsplit('/').next().unwrap();
    assert_eq!(
        kid,
        format!("https://{VAULT}.vault.azure.net/keys/kek1/{version}")
    );
    assert!(
        version.len() == 32
            && version
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        r.body["attributes"]["recoveryLevel"],
        "Recoverable+Purgeable"
    );
    assert_eq!(r.body["attributes"]["recoverableDays"], 90);
    assert!(r.body["attributes"]["created"].is_i64());
    assert_eq!(emu.live_keks(VAULT).len(), 1);
    assert_eq!(emu.counters(VAULT).creates, 1);
}

#[tokio::test]
async fn standard_vault_refuses_hsm_keys() {
    let (emu, c) = start().await;
    emu.add_vault(
        "std-vault",
        VaultOptions {
            sku: Sku::Standard,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let t = c.token().await;
    let r = c
        .kv(
            "POST",
            "std-vault",
            "/keys/kek/create?api-version=7.5",
            Some(&t),
            Some(json!({"kty":"RSA-HSM","key_size":2048,"key_ops":["import"]})),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, Some("BadParameter")));
}

#[tokio::test]
async fn get_latest_versions_paging_and_update() {
    let (_emu, c) = start().await;
    let t = c.token().await;
    let mut kids = Vec::new();
    for _ in 0..5 {
        let r = c
            .kv(
                "POST",
                VAULT,
                "/keys/multi/create?api-version=7.5",
                Some(&t),
                Some(json!({"kty":"EC-HSM","crv":"P-256","tags":{"n":"x"}})),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(unb64(r.body["key"]["x"].as_str().unwrap()).len(), 32);
        kids.push(r.body["key"]["kid"].as_str().unwrap().to_owned());
    }
    for path in [
        "/keys/multi/?api-version=7.5",
        "/keys/multi?api-version=7.5",
    ] {
        let r = c.kv("GET", VAULT, path, Some(&t), None).await;
        assert_eq!(r.body["key"]["kid"], kids[4].as_str(), "{path}");
        assert_eq!(r.body["tags"]["n"], "x");
    }
    let v0 = kids[0].rsplit('/').next().unwrap();
    let r = c
        .kv(
            "GET",
            VAULT,
            &format!("/keys/multi/{v0}?api-version=7.5"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.body["key"]["kid"], kids[0].as_str());
    let r = c
        .kv(
            "GET",
            VAULT,
            &format!("/keys/multi/{}?api-version=7.5", "0".repeat(32)),
            Some(&t),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (404, Some("KeyNotFound")));

    // Paging: follow nextLink (absolute, carries api-version and $skiptoken).
    let mut seen = Vec::new();
    let mut url =
        format!("https://{VAULT}.vault.azure.net/keys/multi/versions?api-version=7.5&maxresults=2");
    let auth = format!("Bearer {t}");
    loop {
        let r = c
            .send("GET", &url, &[("authorization", &auth)], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        let page = r.body["value"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|i| i["kid"].as_str().unwrap().to_owned()));
        match r.body["nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.contains("api-version=7.5") && next.contains("$skiptoken="),
                    "{next}"
                );
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(seen, kids);
    let r = c
        .kv(
            "GET",
            VAULT,
            "/keys/multi/versions?api-version=7.5&maxresults=26",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 400);

    // Update: disable the first version, set exp, replace tags.
    let r = c
        .kv(
            "PATCH",
            VAULT,
            &format!("/keys/multi/{v0}?api-version=7.5"),
            Some(&t),
            Some(
                json!({"attributes":{"enabled":false,"exp": now()+60},"tags":{"state":"retired"}}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["attributes"]["enabled"], false);
    assert_eq!(r.body["tags"], json!({"state":"retired"}));
    let r = c
        .kv(
            "GET",
            VAULT,
            &format!("/keys/multi/{v0}?api-version=7.5"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.body["attributes"]["enabled"], false);
    let r = c
        .kv(
            "PATCH",
            VAULT,
            &format!("/keys/multi/{v0}?api-version=7.5"),
            Some(&t),
            Some(json!({"key_ops":["sign","decrypt"]})),
        )
        .await;
    assert_eq!(r.status, 400, "EC keys only sign/verify");
}

#[tokio::test]
async fn rbac_denial_is_403_forbidden_by_rbac() {
    let (emu, c) = start().await;
    let mut access = BTreeMap::new();
    access.insert(APP.to_owned(), vec![Permission::Get, Permission::List]);
    emu.set_access(VAULT, Some(access)).unwrap();
    let t = c.token().await;
    let r = c
        .kv(
            "POST",
            VAULT,
            "/keys/kek/create?api-version=7.5",
            Some(&t),
            Some(json!({"kty":"RSA-HSM","key_ops":["import"]})),
        )
        .await;
    assert_eq!(
        (r.status, r.code(), r.inner()),
        (403, Some("Forbidden"), Some("ForbiddenByRbac"))
    );
    let r = c
        .kv(
            "GET",
            VAULT,
            "/keys/kek/versions?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn() {
    let (_emu, c) = start().await;
    let r = c
        .send_on(
            true,
            "GET",
            &format!("https://{VAULT}.vault.azure.net/keys?api-version=7.5"),
            &[],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn sovereign_cloud_tokens_only_work_on_their_own_vaults() {
    let (emu, c) = start().await;
    emu.add_vault(
        "cn-vault",
        VaultOptions {
            cloud: byokd_emulator::Cloud::China,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let form = format!(
        "grant_type=client_credentials&client_id={APP}&client_secret={}&scope=https%3A%2F%2Fvault.azure.cn%2F.default",
        enc(SECRET)
    );
    let r = c
        .send(
            "POST",
            &format!("https://login.chinacloudapi.cn/{TENANT}/oauth2/v2.0/token"),
            &[("content-type", "application/x-www-form-urlencoded")],
            form.into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let cn_token = r.body["access_token"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {cn_token}");
    let r = c
        .send(
            "GET",
            "https://cn-vault.vault.azure.cn/keys?api-version=7.5",
            &[("authorization", &auth)],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The public-cloud vault refuses the China token, and vice versa.
    let r = c
        .kv("GET", VAULT, "/keys?api-version=7.5", Some(&cn_token), None)
        .await;
    assert_eq!(r.status, 401);
    let public_token = c.token().await;
    let auth = format!("Bearer {public_token}");
    let r = c
        .send(
            "GET",
            "https://cn-vault.vault.azure.cn/keys?api-version=7.5",
            &[("authorization", &auth)],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource=\"https://vault.azure.cn\"")
    );
}

#[tokio::test]
async fn tokens_from_another_tenant_are_refused_by_a_tenant_bound_vault() {
    let (emu, c) = start().await;
    emu.add_app(byokd_emulator::AppConfig::with_secret(
        "other-tenant",
        "other-app",
        "pw",
    ))
    .unwrap();
    emu.add_vault(
        "bound",
        VaultOptions {
            tenant: Some(TENANT.into()),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let r = c
        .token_form("other-tenant", "grant_type=client_credentials&client_id=other-app&client_secret=pw&scope=https%3A%2F%2Fvault.azure.net%2F.default")
        .await;
    let other = r.body["access_token"].as_str().unwrap().to_owned();
    let r = c
        .kv("GET", "bound", "/keys?api-version=7.5", Some(&other), None)
        .await;
    assert_eq!((r.status, r.code()), (401, Some("Unauthorized")));
    let own = c.token().await;
    assert_eq!(
        c.kv("GET", "bound", "/keys?api-version=7.5", Some(&own), None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn arm_vault_lookup_reports_sku_and_soft_delete() {
    let (emu, c) = start().await;
    emu.add_vault(
        "prot",
        VaultOptions {
            recovery_level: byokd_emulator::RecoveryLevel::Recoverable,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let form = format!(
        "grant_type=client_credentials&client_id={APP}&client_secret={}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default",
        enc(SECRET)
    );
    let arm = c.token_form(TENANT, &form).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = |v: &str| {
        format!(
            "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/byokd-rg/providers/Microsoft.KeyVault/vaults/{v}?api-version=2023-07-01"
        )
    };
    let auth = format!("Bearer {arm}");
    let r = c
        .send("GET", &url("prot"), &[("authorization", &auth)], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["properties"]["sku"]["name"], "premium");
    assert_eq!(r.body["properties"]["enableSoftDelete"], true);
    assert_eq!(r.body["properties"]["enablePurgeProtection"], true);
    let r = c
        .send("GET", &url(VAULT), &[("authorization", &auth)], vec![])
        .await
        .unwrap();
    assert!(r.body["properties"].get("enablePurgeProtection").is_none());
    let r = c
        .send("GET", &url("nope"), &[("authorization", &auth)], vec![])
        .await
        .unwrap();
    assert_eq!((r.status, r.code()), (404, Some("ResourceNotFound")));
    // Tokens do not cross audiences.
    let vault_token = c.token().await;
    let r = c
        .send(
            "GET",
            &url("prot"),
            &[("authorization", &format!("Bearer {vault_token}"))],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.code()),
        (401, Some("InvalidAuthenticationTokenAudience"))
    );
    let r = c
        .kv("GET", VAULT, "/keys?api-version=7.5", Some(&arm), None)
        .await;
    assert_eq!(r.status, 401);
}
