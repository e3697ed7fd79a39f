//! Unit tests of the form body, the redacted types, the challenge and the client assertion.

use super::*;
use crate::config::Cloud;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[test]
fn form_body_url_encodes_the_secret_and_scope() {
    let secret = SecretBytes::new(b"a+b&c=d/e~".to_vec());
    let body = form_body(
        "app-1",
        "https://vault.azure.net/.default",
        &ClientAuth::Secret(&secret),
    );
    let text = std::str::from_utf8(&body).unwrap();
    assert_eq!(
        text,
        "grant_type=client_credentials&client_id=app-1&scope=https%3A%2F%2Fvault.azure.net%2F.default&client_secret=a%2Bb%26c%3Dd%2Fe%7E"
    );
    let parsed: HashMap<String, String> = form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(parsed["client_secret"], "a+b&c=d/e~");
}

#[test]
fn access_token_and_client_auth_debug_are_redacted() {
    let t = AccessToken::new(
        "eyJ0eXAiOiJKV1Qi.secret-token".into(),
        SystemTime::UNIX_EPOCH,
    );
    assert!(!format!("{t:?}").contains("secret-token"));
    let s = SecretBytes::new(b"hunter2".to_vec());
    assert!(!format!("{:?}", ClientAuth::Secret(&s)).contains("hunter2"));
}

#[test]
fn challenge_is_parsed_and_honoured_only_for_the_cloud_vault_resource() {
    let c = Challenge::parse(
        r#"Bearer authorization="https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net""#,
    )
    .unwrap();
    assert_eq!(
        c.tenant().as_deref(),
        Some("72f988bf-86f1-41af-91ab-2d7cd011db47")
    );
    assert!(
        c.check_cloud(
            &CloudEndpoints::of(Cloud::Public),
            crate::model::TargetKind::KeyVault
        )
        .is_ok()
    );
    assert!(matches!(
        c.check_cloud(
            &CloudEndpoints::of(Cloud::China),
            crate::model::TargetKind::KeyVault
        ),
        Err(EntraError::ChallengeMismatch { .. })
    ));
    let evil_authority = Challenge::parse(r#"Bearer authorization="https://login.evil.example/t", resource="https://vault.azure.net""#).unwrap();
    assert!(matches!(
        evil_authority.check_cloud(
            &CloudEndpoints::of(Cloud::Public),
            crate::model::TargetKind::KeyVault
        ),
        Err(EntraError::ChallengeAuthorityMismatch { .. })
    ));
    let evil = Challenge::parse(r#"Bearer authorization="https://login.windows.net/t", resource="https://vault.azure.net.evil.example""#).unwrap();
    assert!(
        evil.check_cloud(
            &CloudEndpoints::of(Cloud::Public),
            crate::model::TargetKind::KeyVault
        )
        .is_err()
    );
    let scoped = Challenge::parse(r#"Bearer authorization="https://login.microsoftonline.us/t", scope="https://vault.usgovcloudapi.net/.default""#).unwrap();
    assert!(
        scoped
            .check_cloud(
                &CloudEndpoints::of(Cloud::Usgov),
                crate::model::TargetKind::KeyVault
            )
            .is_ok()
    );
    assert!(Challenge::parse("Basic realm=x").is_none());
}

struct FakeSigner;
impl AssertionSigner for FakeSigner {
    fn algorithm(&self) -> &'static str {
        "PS256"
    }
    fn certificate_der(&self) -> &[u8] {
        b"cert"
    }
    fn sign<'a>(
        &'a self,
        input: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, AzureError>> + Send + 'a>> {
        Box::pin(async move { Ok(sha2::Sha256::digest(input).to_vec()) })
    }
}

#[tokio::test]
async fn client_assertion_has_the_documented_header_and_claims() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let url = "https://login.microsoftonline.com/t/oauth2/v2.0/token";
    let jwt = build_client_assertion(&FakeSigner, url, "app-1", now)
        .await
        .unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "PS256");
    assert_eq!(
        header["x5t#S256"],
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(b"cert"))
    );
    assert_eq!(claims["aud"], url);
    assert_eq!(claims["iss"], "app-1");
    assert_eq!(claims["sub"], "app-1");
    assert_eq!(claims["nbf"], 1_700_000_000);
    assert_eq!(claims["exp"], 1_700_000_600);
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert_eq!(
        sig,
        sha2::Sha256::digest(format!("{}.{}", parts[0], parts[1]).as_bytes()).to_vec()
    );
}
