//! The outbound client: allowlist before DNS, TLS names, redirects, keep-alive and retries.
//! Each test spins up its own loopback HTTPS server with a test CA.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod azure_support;

use azure_support::*;
use byokd::azure::{AzureError, HttpRequest, KeyVaultError};
use http::Method;
use std::time::{Duration, Instant};

fn get(url: &str) -> HttpRequest {
    HttpRequest::new(Method::GET, url, true).unwrap()
}

#[tokio::test]
async fn a_host_outside_the_allowlist_never_connects_even_with_a_resolve_entry() {
    let pki = Pki::new();
    let server =
        Server::start(pki.server_config(&["othervault.vault.azure.net", VAULT_HOST])).await;
    let az = azure(
        &pki,
        &[
            ("othervault.vault.azure.net", server.addr),
            (VAULT_HOST, server.addr),
        ],
        &[VAULT],
        fast_options(),
    );
    let err = az
        .http()
        .send(&get("https://othervault.vault.azure.net/keys/k"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AzureError::NotAllowed { host, .. } if host == "othervault.vault.azure.net"),
        "{err:?}"
    );
    assert!(err.to_string().contains("othervault.vault.azure.net"));
    // The same through the typed Key Vault call.
    let err = az
        .keyvault()
        .get_key(&token(), &vault_target("othervault"), "k", None)
        .await
        .unwrap_err();
    assert!(matches!(err, AzureError::NotAllowed { .. }), "{err:?}");
    assert_eq!(
        server.connection_count(),
        0,
        "a refused host must never be connected to"
    );
    assert_eq!(az.metrics().refused, 2);

    // Adding the vault at run time opens it.
    az.allowlist().set_vaults([VAULT, "othervault"]).unwrap();
    az.http()
        .send(&get("https://othervault.vault.azure.net/keys/k"))
        .await
        .unwrap();
    assert_eq!(server.connection_count(), 1);
}

#[tokio::test]
async fn a_refused_host_is_refused_before_any_dns_lookup() {
    let (_pki, server, az) = rig().await;
    // `.invalid` can never resolve: a DNS attempt would give a DNS error, not the allowlist one.
    for url in [
        "https://nosuchhost.invalid/",
        "https://kv-unknown.vault.azure.net/keys/x",
    ] {
        let err = az.http().send(&get(url)).await.unwrap_err();
        assert!(
            matches!(err, AzureError::NotAllowed { .. }),
            "{url}: {err:?}"
        );
    }
    assert_eq!(server.connection_count(), 0);
}

#[tokio::test]
async fn other_ports_schemes_and_ip_literals_are_refused() {
    let (_pki, server, az) = rig().await;
    for url in [
        "https://myvault.vault.azure.net:8443/keys",
        "http://myvault.vault.azure.net/keys",
        "https://127.0.0.1/keys",
        "https://user:pw@myvault.vault.azure.net/keys",
    ] {
        let err = az.http().send(&get(url)).await.unwrap_err();
        assert!(
            matches!(err, AzureError::NotAllowed { .. }),
            "{url}: {err:?}"
        );
    }
    assert_eq!(server.connection_count(), 0);
}

#[tokio::test]
async fn a_redirect_to_another_host_is_refused_not_followed() {
    let (_pki, server, az) = rig().await;
    server.push(with_header(
        json(302, serde_json::json!({})),
        "location",
        "https://evil.example/steal",
    ));
    let err = az
        .http()
        .send(&get("https://myvault.vault.azure.net/keys/k"))
        .await
        .unwrap_err();
    match &err {
        AzureError::Redirect {
            status,
            location_host,
            ..
        } => {
            assert_eq!((*status, location_host.as_str()), (302, "evil.example"));
        }
        other => panic!("expected a redirect refusal, got {other:?}"),
    }
    assert!(err.to_string().contains("evil.example"));
    assert_eq!(
        server.request_count(),
        1,
        "the redirect is not followed or retried"
    );
}

#[tokio::test]
async fn a_certificate_for_the_wrong_name_is_refused() {
    let pki = Pki::new();
    let server = Server::start(pki.server_config(&["wrong.example"])).await;
    let az = azure(&pki, &[(VAULT_HOST, server.addr)], &[VAULT], fast_options());
    let err = az
        .http()
        .send(&get("https://myvault.vault.azure.net/keys/k"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AzureError::Tls { host, .. } if host == VAULT_HOST),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 0);
    assert_eq!(
        server.connection_count(),
        1,
        "a certificate failure is not retried"
    );
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let trusted = Pki::new();
    let other = Pki::new();
    let server = Server::start(other.server_config(&[VAULT_HOST])).await;
    let az = azure(
        &trusted,
        &[(VAULT_HOST, server.addr)],
        &[VAULT],
        fast_options(),
    );
    let err = az
        .http()
        .send(&get("https://myvault.vault.azure.net/keys/k"))
        .await
        .unwrap_err();
    assert!(matches!(err, AzureError::Tls { .. }), "{err:?}");
}

#[tokio::test]
async fn connections_are_kept_alive_and_reused() {
    let (_pki, server, az) = rig().await;
    for _ in 0..3 {
        let r = az
            .http()
            .send(&get("https://myvault.vault.azure.net/keys/k"))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(server.request_count(), 3);
    assert_eq!(server.connection_count(), 1);
    assert_eq!(az.metrics().connections, 1);
    assert_eq!(
        server.recorded()[0].host,
        VAULT_HOST,
        "the Host header keeps the real name"
    );
}

#[tokio::test]
async fn a_429_with_retry_after_seconds_is_honoured() {
    let (_pki, server, az) = rig().await;
    server.push(with_header(
        json(429, serde_json::json!({})),
        "retry-after",
        "1",
    ));
    let start = Instant::now();
    let r = az
        .http()
        .send(&get("https://myvault.vault.azure.net/keys/k"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(server.request_count(), 2);
    let m = az.metrics();
    assert_eq!((m.throttled, m.retries), (1, 1));
}

#[tokio::test]
async fn x_ms_retry_after_ms_wins_over_retry_after() {
    let (_pki, server, az) = rig().await;
    for _ in 0..3 {
        let r = with_header(
            json(429, serde_json::json!({})),
            "x-ms-retry-after-ms",
            "30",
        );
        server.push(with_header(r, "retry-after", "30"));
    }
    let start = Instant::now();
    let r = az
        .http()
        .send(&get("https://myvault.vault.azure.net/keys/k"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_eq!(server.request_count(), 4);
    assert_eq!(az.metrics().throttled, 3);
}

#[tokio::test]
async fn a_429_without_hints_backs_off_exponentially() {
    let (_pki, server, az) = rig().await;
    for _ in 0..3 {
        server.push(json(
            429,
            serde_json::json!({"error": {"code": "Throttled"}}),
        ));
    }
    let start = Instant::now();
    let r = az
        .http()
        .send(&get("https://myvault.vault.azure.net/keys/k"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // 10 + 20 + 40 ms nominal, jitter at most -25 %.
    assert!(
        start.elapsed() >= Duration::from_millis(52),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(server.request_count(), 4);
}

#[tokio::test]
async fn a_429_storm_gives_up_after_the_attempt_cap_as_throttled() {
    let (_pki, server, az) = rig().await;
    server.set_fallback(json(
        429,
        serde_json::json!({"error": {"code": "Throttled", "message": "slow down"}}),
    ));
    let err = az
        .keyvault()
        .get_key(&token(), &vault_target(VAULT), "k", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AzureError::KeyVault(KeyVaultError::Throttled { .. })),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(server.request_count(), 5, "max_attempts bounds the storm");
    assert_eq!(az.metrics().throttled, 5);
}

#[tokio::test]
async fn a_retry_hint_beyond_the_wait_cap_is_not_slept() {
    let (_pki, server, az) = rig().await;
    server.set_fallback(with_header(
        json(429, serde_json::json!({})),
        "retry-after",
        "3600",
    ));
    let start = Instant::now();
    let r = az
        .http()
        .send(&get("https://myvault.vault.azure.net/keys/k"))
        .await
        .unwrap();
    assert_eq!(r.status, 429);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn a_503_then_success_is_retried() {
    let (_pki, server, az) = rig().await;
    server.push(json(503, serde_json::json!({})));
    server.push(json(500, serde_json::json!({})));
    let r = az
        .http()
        .send(&get("https://myvault.vault.azure.net/keys/k"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(server.request_count(), 3);
    assert_eq!(az.metrics().retries, 2);
}

#[tokio::test]
async fn a_reset_before_the_response_is_retried_for_an_idempotent_get() {
    let (_pki, server, az) = rig().await;
    server.push(Reply::Drop);
    let r = az
        .http()
        .send(&get("https://myvault.vault.azure.net/keys/k"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(server.request_count(), 2);
    assert_eq!(server.connection_count(), 2);
}

#[tokio::test]
async fn a_lost_response_to_a_non_idempotent_request_is_not_retried() {
    let (_pki, server, az) = rig().await;
    server.push(Reply::Drop);
    let req = HttpRequest::new(
        Method::PUT,
        "https://myvault.vault.azure.net/keys/k?api-version=7.5",
        false,
    )
    .unwrap()
    .json(&serde_json::json!({"key": {}}))
    .unwrap();
    let err = az.http().send(&req).await.unwrap_err();
    assert!(
        matches!(&err, AzureError::ResponseLost { method, .. } if method == "PUT"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(server.request_count(), 1, "no second request");
    assert_eq!(az.metrics().response_lost, 1);
}

#[tokio::test]
async fn a_read_time_out_on_a_non_idempotent_request_is_a_lost_response() {
    let pki = Pki::new();
    // A server that accepts TLS, reads the request, and never answers.
    let server = Server::start(pki.server_config(&[VAULT_HOST])).await;
    server.set_fallback(Reply::Hang);
    let mut opts = fast_options();
    opts.connect_timeout = Duration::from_millis(700);
    opts.read_timeout = Duration::from_millis(300);
    let az = azure(&pki, &[(VAULT_HOST, server.addr)], &[VAULT], opts);
    let req = HttpRequest::new(
        Method::POST,
        "https://myvault.vault.azure.net/keys/k/create",
        false,
    )
    .unwrap();
    let start = Instant::now();
    let err = az.http().send(&req).await.unwrap_err();
    assert!(matches!(err, AzureError::ResponseLost { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "bounded by the time-outs: {:?}",
        start.elapsed()
    );
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn an_unreachable_allowed_host_fails_after_bounded_attempts() {
    let (pki, _server, _az) = rig().await;
    // Bind then drop a listener: its port refuses connections.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let az = azure(&pki, &[(VAULT_HOST, addr)], &[VAULT], fast_options());
    // Connect failures are never "sent", so even a non-idempotent request is retried.
    let req = HttpRequest::new(
        Method::POST,
        "https://myvault.vault.azure.net/keys/k/create",
        false,
    )
    .unwrap();
    let err = az.http().send(&req).await.unwrap_err();
    assert!(
        matches!(&err, AzureError::Unreachable { attempts: 5, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

/// A misspelt vault: the name is not in the `[azure.resolve]` map (the rig's DNS), so it does
/// not exist. One attempt, a typed error that says what to check, no retries.
#[tokio::test]
async fn a_vault_name_that_does_not_resolve_fails_at_once_without_retries() {
    let pki = Pki::new();
    let server = Server::start(pki.server_config(&[VAULT_HOST, LOGIN_HOST])).await;
    let az = azure(
        &pki,
        &[(VAULT_HOST, server.addr), (LOGIN_HOST, server.addr)],
        &[VAULT, "myvualt"],
        fast_options(),
    );
    let err = az
        .keyvault()
        .get_key(&token(), &vault_target("myvualt"), "k", None)
        .await
        .unwrap_err();
    match &err {
        AzureError::NameDoesNotResolve { host, .. } => {
            assert_eq!(host, "myvualt.vault.azure.net")
        }
        other => panic!("expected a name that does not resolve, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "vault myvualt: name does not resolve; check the vault name and azure.cloud"
    );
    assert!(!err.is_retryable());
    let m = az.metrics();
    assert_eq!((m.requests, m.retries), (1, 0), "{m:?}");
    assert_eq!(server.connection_count(), 0);
}
