//! Entra ID tokens: the request on the wire, caching, expiry and the error-code hints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod azure_support;

use azure_support::*;
use byokd::azure::{AzureError, EntraError, KeyVaultError};
use byokd::clock::ManualClock;
use byokd::secret::SecretBytes;
use std::sync::Arc;

const SECRET: &str = "s3cr+t/with&specials=~";

fn token_ok(value: &str) -> Reply {
    json(
        200,
        serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": value}),
    )
}

#[tokio::test]
async fn a_token_is_requested_as_documented_and_then_served_from_the_cache() {
    let (_pki, server, az) = rig().await;
    server.push(token_ok("tok-1"));
    let secret = SecretBytes::new(SECRET.as_bytes().to_vec());
    let t = az
        .entra()
        .token(
            "cred-a",
            "tenant-1",
            "app-1",
            byokd::model::TargetKind::KeyVault,
            &secret,
        )
        .await
        .unwrap();
    assert_eq!(t.expose_secret(), "tok-1");
    assert!(!format!("{t:?}").contains("tok-1"));

    let rec = &server.recorded()[0];
    assert_eq!(
        (rec.method.as_str(), rec.path.as_str()),
        ("POST", "/tenant-1/oauth2/v2.0/token")
    );
    assert_eq!(rec.host, LOGIN_HOST);
    assert_eq!(
        rec.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&rec.body).into_owned().collect();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "app-1");
    assert_eq!(form["scope"], "https://vault.azure.net/.default");
    assert_eq!(form["client_secret"], SECRET);

    let again = az
        .entra()
        .token(
            "cred-a",
            "tenant-1",
            "app-1",
            byokd::model::TargetKind::KeyVault,
            &secret,
        )
        .await
        .unwrap();
    assert_eq!(again.expose_secret(), "tok-1");
    assert_eq!(
        server.request_count(),
        1,
        "the second call is served from the cache"
    );

    // Another credential has its own cache entry.
    server.push(token_ok("tok-2"));
    let other = az
        .entra()
        .token(
            "cred-b",
            "tenant-1",
            "app-1",
            byokd::model::TargetKind::KeyVault,
            &secret,
        )
        .await
        .unwrap();
    assert_eq!(other.expose_secret(), "tok-2");
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_cached_token_is_renewed_shortly_before_it_expires() {
    let start = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let clock = ManualClock::new(start);
    let (_pki, server, az) = rig_clocked(Arc::new(clock.clone())).await;
    let secret = SecretBytes::new(SECRET.as_bytes().to_vec());
    server.push(token_ok("tok-1"));
    server.push(token_ok("tok-2"));
    az.entra()
        .token("c", "t", "a", byokd::model::TargetKind::KeyVault, &secret)
        .await
        .unwrap();
    clock.set(start + time::Duration::seconds(3599 - 301));
    assert_eq!(
        az.entra()
            .token("c", "t", "a", byokd::model::TargetKind::KeyVault, &secret)
            .await
            .unwrap()
            .expose_secret(),
        "tok-1"
    );
    clock.set(start + time::Duration::seconds(3599 - 299));
    assert_eq!(
        az.entra()
            .token("c", "t", "a", byokd::model::TargetKind::KeyVault, &secret)
            .await
            .unwrap()
            .expose_secret(),
        "tok-2"
    );
    assert_eq!(server.request_count(), 2);

    az.entra().invalidate("c");
    server.push(token_ok("tok-3"));
    assert_eq!(
        az.entra()
            .token("c", "t", "a", byokd::model::TargetKind::KeyVault, &secret)
            .await
            .unwrap()
            .expose_secret(),
        "tok-3"
    );
}

#[tokio::test]
async fn each_entra_error_code_maps_to_an_operator_hint_without_the_secret() {
    let (_pki, server, az) = rig().await;
    let secret = SecretBytes::new(SECRET.as_bytes().to_vec());
    type Case = (u64, &'static str, fn(&EntraError) -> bool, &'static str);
    let cases: [Case; 10] = [
        (
            7000215,
            "invalid_client",
            |e| matches!(e, EntraError::WrongSecret { .. }),
            "Value",
        ),
        (
            7000222,
            "invalid_client",
            |e| matches!(e, EntraError::SecretExpired { .. }),
            "new secret",
        ),
        (
            700016,
            "unauthorized_client",
            |e| matches!(e, EntraError::AppNotInTenant { .. }),
            "app-1",
        ),
        (
            90002,
            "invalid_request",
            |e| matches!(e, EntraError::TenantNotFound { .. }),
            "tenant-1",
        ),
        (
            50012,
            "invalid_client",
            |e| matches!(e, EntraError::BadAssertion { code: 50012, .. }),
            "certificate",
        ),
        // Entra's other certificate and assertion codes get the same kind of hint.
        (
            700027,
            "invalid_client",
            |e| matches!(e, EntraError::BadAssertion { code: 700027, .. }),
            "certificate uploaded to the app registration",
        ),
        (
            7000274,
            "invalid_client",
            |e| matches!(e, EntraError::BadAssertion { code: 7000274, .. }),
            "upload it again",
        ),
        (
            700024,
            "invalid_client",
            |e| matches!(e, EntraError::BadAssertion { code: 700024, .. }),
            "clock",
        ),
        (
            700023,
            "invalid_client",
            |e| matches!(e, EntraError::BadAssertion { code: 700023, .. }),
            "tenant id",
        ),
        (
            700021,
            "invalid_client",
            |e| matches!(e, EntraError::BadAssertion { code: 700021, .. }),
            "client id",
        ),
    ];
    for (code, error, is, hint) in cases {
        server.push(json(
            400,
            serde_json::json!({
                "error": error,
                "error_description": format!("AADSTS{code}: something. Trace ID: x"),
                "error_codes": [code], "trace_id": "tr", "correlation_id": "co"
            }),
        ));
        let err = az
            .entra()
            .token(
                &format!("cred-{code}"),
                "tenant-1",
                "app-1",
                byokd::model::TargetKind::KeyVault,
                &secret,
            )
            .await
            .unwrap_err();
        match &err {
            AzureError::Entra(e) => assert!(is(e), "code {code}: {e:?}"),
            other => panic!("code {code}: {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(hint), "code {code}: {text}");
        assert!(!text.contains(SECRET) && !format!("{err:?}").contains(SECRET));
    }
    // An unknown code keeps the error and codes, still without the secret.
    server.push(json(
        401,
        serde_json::json!({"error": "invalid_grant", "error_codes": [12345]}),
    ));
    let err = az
        .entra()
        .token(
            "cred-x",
            "tenant-1",
            "app-1",
            byokd::model::TargetKind::KeyVault,
            &secret,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AzureError::Entra(EntraError::Other { status: 401, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("invalid_grant"));
}

#[tokio::test]
async fn tenant_and_client_ids_cannot_inject_into_the_token_url() {
    let (_pki, server, az) = rig().await;
    let secret = SecretBytes::new(b"x".to_vec());
    let err = az
        .entra()
        .token(
            "c",
            "../evil",
            "app",
            byokd::model::TargetKind::KeyVault,
            &secret,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AzureError::Entra(EntraError::InvalidId { .. })
    ));
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn a_key_vault_challenge_is_honoured_only_for_this_clouds_vault_resource() {
    let (_pki, server, az) = rig().await;
    server.push(with_header(
        json(401, serde_json::json!({"error": {"code": "Unauthorized", "message": "AKV10000"}})),
        "www-authenticate",
        r#"Bearer authorization="https://login.windows.net/tenant-9", resource="https://vault.azure.net""#,
    ));
    let err = az
        .keyvault()
        .get_key(&token(), &vault_target(VAULT), "k", None)
        .await
        .unwrap_err();
    match err {
        AzureError::KeyVault(KeyVaultError::Unauthorized { tenant, .. }) => {
            assert_eq!(tenant.as_deref(), Some("tenant-9"))
        }
        other => panic!("{other:?}"),
    }
    server.push(with_header(
        json(401, serde_json::json!({"error": {"code": "Unauthorized"}})),
        "www-authenticate",
        r#"Bearer authorization="https://login.chinacloudapi.cn/t", resource="https://vault.azure.cn""#,
    ));
    let err = az
        .keyvault()
        .get_key(&token(), &vault_target(VAULT), "k", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AzureError::Entra(EntraError::ChallengeMismatch { .. })),
        "{err:?}"
    );
}
