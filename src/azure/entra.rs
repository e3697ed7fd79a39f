//! Entra ID (Azure AD) client-credentials tokens for the cloud's Key Vault scope.
//!
//! Owns the token request (`POST https://{login}/{tenant}/oauth2/v2.0/token`, form-encoded), the
//! per-credential token cache, the mapping of Entra's error codes to operator hints
//! (azure-byok.md §4), the client-assertion JWT for certificate credentials (signed by an
//! [`AssertionSigner`], in the HSM), and the parsing of Key Vault's `WWW-Authenticate` challenge.
//!
//! It must never echo a client secret, an assertion or a token: the secret is only ever copied
//! into a zeroizing request buffer that is dropped right after the request is sent, and the token
//! is an [`AccessToken`] whose `Debug` is redacted. The token request goes over a connection of
//! its own, closed when the response is read ([`HttpRequest::single_use`]), so no pooled
//! connection keeps the body in its buffers. A client assertion is treated as a secret too:
//! it is a bearer proof of the app's identity that Entra accepts from anyone until its `exp`
//! (10 minutes), so it travels the same way.

use super::endpoints::CloudEndpoints;
use super::http::{HttpClient, HttpRequest, HttpResponse};
use super::{AzureError, Clock};
use crate::secret::SecretBytes;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// A cached token is renewed this long before it expires.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// An OAuth access token. Cloning shares the same zeroizing storage; `Debug` is redacted.
#[derive(Clone)]
pub struct AccessToken {
    value: Arc<SecretString>,
    expires_at: SystemTime,
}

impl AccessToken {
    pub fn new(value: String, expires_at: SystemTime) -> Self {
        Self {
            value: Arc::new(SecretString::from(value)),
            expires_at,
        }
    }

    /// The token text, for the `Authorization` header only.
    pub fn expose_secret(&self) -> &str {
        self.value.expose_secret()
    }

    /// When Entra says the token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// How the application proves its identity.
pub enum ClientAuth<'a> {
    /// A client secret (unsealed by the caller, zeroized by it).
    Secret(&'a SecretBytes),
    /// A signed client-assertion JWT (see [`build_client_assertion`]).
    Assertion(Zeroizing<String>),
}

impl fmt::Debug for ClientAuth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Secret(_) => f.write_str("ClientAuth::Secret([REDACTED])"),
            ClientAuth::Assertion(_) => f.write_str("ClientAuth::Assertion([REDACTED])"),
        }
    }
}

/// Signs a client assertion with the certificate credential's private key. The implementation is
/// HSM-backed (the key never leaves the HSM); this layer only builds the JWT around it.
pub trait AssertionSigner: Send + Sync {
    /// `"PS256"` (preferred) or `"RS256"` (fallback, with a SHA-1 `x5t`).
    fn algorithm(&self) -> &'static str;
    /// The DER of the certificate uploaded to the app registration.
    fn certificate_der(&self) -> &[u8];
    /// Signs the JWT signing input (`b64(header).b64(claims)`) and returns the raw signature.
    fn sign<'a>(
        &'a self,
        signing_input: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, AzureError>> + Send + 'a>>;
}

/// Builds a client-assertion JWT: header `{alg, typ, x5t#S256}` (or `x5t` for RS256), claims
/// `aud` = token URL, `iss` = `sub` = client id, a fresh `jti`, `nbf` = now, `exp` = now + 10 min.
pub async fn build_client_assertion(
    signer: &dyn AssertionSigner,
    token_url: &str,
    client_id: &str,
    now: SystemTime,
) -> Result<Zeroizing<String>, AzureError> {
    let alg = signer.algorithm();
    let cert = signer.certificate_der();
    let header = if alg == "RS256" {
        let thumb = sha1::Sha1::digest(cert);
        serde_json::json!({"alg": alg, "typ": "JWT", "x5t": URL_SAFE_NO_PAD.encode(thumb)})
    } else {
        let thumb = sha2::Sha256::digest(cert);
        serde_json::json!({"alg": alg, "typ": "JWT", "x5t#S256": URL_SAFE_NO_PAD.encode(thumb)})
    };
    let now_s = unix_seconds(now);
    let claims = serde_json::json!({
        "aud": token_url, "iss": client_id, "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(), "nbf": now_s, "iat": now_s, "exp": now_s + 600,
    });
    let mut jwt = Zeroizing::new(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    ));
    let signature = signer.sign(jwt.as_bytes()).await?;
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jwt)
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Entra errors, with what the operator should do.
#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    #[error(
        "Entra ID rejected the client secret of credential {credential} (AADSTS7000215): the secret is wrong; paste the secret's Value, not its ID, from the app registration's 'Certificates & secrets'"
    )]
    WrongSecret { credential: String },
    #[error(
        "the client secret of credential {credential} has expired (AADSTS7000222): create a new secret in the app registration and update the credential"
    )]
    SecretExpired { credential: String },
    #[error(
        "application {client_id} was not found in tenant {tenant} (AADSTS700016): check the client id and tenant id of credential {credential}, and that the app is registered (or consented) in that tenant"
    )]
    AppNotInTenant {
        credential: String,
        tenant: String,
        client_id: String,
    },
    #[error(
        "tenant {tenant} was not found (AADSTS90002): check the tenant id of credential {credential} and the configured cloud"
    )]
    TenantNotFound { credential: String, tenant: String },
    #[error(
        "Entra ID rejected the client assertion of credential {credential} (AADSTS{code}): {hint}"
    )]
    BadAssertion {
        credential: String,
        /// The AADSTS code Entra gave.
        code: u64,
        /// What it means and what to do (`assertion_hint`).
        hint: &'static str,
    },
    #[error(
        "Entra ID refused a token for credential {credential}: HTTP {status}, {error} (codes {codes:?}, trace {trace_id})"
    )]
    Other {
        credential: String,
        status: u16,
        error: String,
        codes: Vec<u64>,
        trace_id: String,
    },
    #[error(
        "invalid {what} {value:?} for credential {credential}: only letters, digits, '-' and '.' are allowed"
    )]
    InvalidId {
        credential: String,
        what: &'static str,
        value: String,
    },
    #[error(
        "Key Vault's authentication challenge names resource {resource}, which is not this cloud's vault resource {expected}: refused"
    )]
    ChallengeMismatch { resource: String, expected: String },
    #[error(
        "Key Vault's authentication challenge names authority {authority}, which is not a sign-in host of this cloud ({expected}): refused; check azure.cloud"
    )]
    ChallengeAuthorityMismatch {
        authority: String,
        expected: &'static str,
    },
}

#[derive(serde::Deserialize)]
struct TokenOk {
    #[serde(default)]
    token_type: String,
    expires_in: serde_json::Value,
    access_token: String,
}

#[derive(serde::Deserialize, Default)]
struct TokenErr {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_codes: Vec<u64>,
    #[serde(default)]
    trace_id: String,
}

type CacheKey = (String, String, String);

/// Entra token client with a per-credential cache.
pub struct Entra {
    http: Arc<HttpClient>,
    endpoints: CloudEndpoints,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<CacheKey, AccessToken>>,
}

impl Entra {
    pub fn new(http: Arc<HttpClient>, endpoints: CloudEndpoints, clock: Arc<dyn Clock>) -> Self {
        Self {
            http,
            endpoints,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A Key Vault token for a client-secret credential, from the cache when still valid.
    pub async fn token(
        &self,
        credential: &str,
        tenant: &str,
        client_id: &str,
        secret: &SecretBytes,
    ) -> Result<AccessToken, AzureError> {
        self.token_with(credential, tenant, client_id, ClientAuth::Secret(secret))
            .await
    }

    /// A Key Vault token for any credential kind, from the cache when still valid.
    pub async fn token_with(
        &self,
        credential: &str,
        tenant: &str,
        client_id: &str,
        auth: ClientAuth<'_>,
    ) -> Result<AccessToken, AzureError> {
        check_id(credential, "tenant id", tenant)?;
        check_id(credential, "client id", client_id)?;
        let key = (
            credential.to_string(),
            tenant.to_ascii_lowercase(),
            client_id.to_ascii_lowercase(),
        );
        let now = self.clock.now_system();
        if let Some(t) = self.lock().get(&key)
            && renew_at(t) > now
        {
            return Ok(t.clone());
        }
        let token = self
            .request(credential, tenant, client_id, auth, now)
            .await?;
        self.lock().insert(key, token.clone());
        Ok(token)
    }

    /// The cached, still valid token of a credential, if any: lets a certificate credential skip
    /// signing an assertion in the HSM when it would not be sent.
    pub fn cached(&self, credential: &str, tenant: &str, client_id: &str) -> Option<AccessToken> {
        let key = (
            credential.to_string(),
            tenant.to_ascii_lowercase(),
            client_id.to_ascii_lowercase(),
        );
        let now = self.clock.now_system();
        self.lock().get(&key).filter(|t| renew_at(t) > now).cloned()
    }

    /// Forgets the cached tokens of a credential (after a 401, or when its secret changes).
    pub fn invalidate(&self, credential: &str) {
        self.lock().retain(|(c, _, _), _| c != credential);
    }

    /// The token endpoint URL for a tenant.
    pub fn token_url(&self, tenant: &str) -> String {
        self.endpoints.token_url(tenant)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, AccessToken>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn request(
        &self,
        credential: &str,
        tenant: &str,
        client_id: &str,
        auth: ClientAuth<'_>,
        now: SystemTime,
    ) -> Result<AccessToken, AzureError> {
        let url = self.endpoints.token_url(tenant);
        let body = form_body(client_id, &self.endpoints.vault_scope(), &auth);
        drop(auth);
        // The request (and with it the zeroizing body) is dropped right after sending.
        let resp = {
            // The body holds the client secret or a client assertion: never on a pooled
            // connection (see HttpRequest::single_use).
            let req = HttpRequest::new(Method::POST, &url, true)?
                .form(body)
                .single_use();
            self.http.send(&req).await?
        };
        if resp.status.is_success() {
            return parse_token(&resp, &self.endpoints, now);
        }
        Err(map_error(credential, tenant, client_id, &resp).into())
    }
}

/// `*t.expires_at - margin` (half the lifetime for very short tokens is handled at parse time).
fn renew_at(t: &AccessToken) -> SystemTime {
    t.expires_at
        .checked_sub(EXPIRY_MARGIN)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn check_id(credential: &str, what: &'static str, value: &str) -> Result<(), AzureError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(EntraError::InvalidId {
            credential: credential.to_string(),
            what,
            value: value.to_string(),
        }
        .into())
    }
}

fn extend<'a>(body: &mut Vec<u8>, parts: impl IntoIterator<Item = &'a str>) {
    for p in parts {
        body.extend_from_slice(p.as_bytes());
    }
}

/// The form body, built straight into a zeroizing buffer sized up front (no reallocation copies).
fn form_body(client_id: &str, scope: &str, auth: &ClientAuth<'_>) -> Zeroizing<Vec<u8>> {
    let secret_len = match auth {
        ClientAuth::Secret(s) => s.len(),
        ClientAuth::Assertion(a) => a.len() + 128,
    };
    let mut body = Zeroizing::new(Vec::with_capacity(
        256 + client_id.len() * 3 + scope.len() * 3 + secret_len * 3,
    ));
    extend(&mut body, ["grant_type=client_credentials&client_id="]);
    extend(
        &mut body,
        form_urlencoded::byte_serialize(client_id.as_bytes()),
    );
    extend(&mut body, ["&scope="]);
    extend(&mut body, form_urlencoded::byte_serialize(scope.as_bytes()));
    match auth {
        ClientAuth::Secret(secret) => {
            extend(&mut body, ["&client_secret="]);
            extend(
                &mut body,
                form_urlencoded::byte_serialize(secret.expose_secret()),
            );
        }
        ClientAuth::Assertion(jwt) => {
            extend(&mut body, ["&client_assertion_type="]);
            extend(
                &mut body,
                form_urlencoded::byte_serialize(
                    b"urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
            );
            extend(&mut body, ["&client_assertion="]);
            extend(&mut body, form_urlencoded::byte_serialize(jwt.as_bytes()));
        }
    }
    body
}

fn parse_token(
    resp: &HttpResponse,
    endpoints: &CloudEndpoints,
    now: SystemTime,
) -> Result<AccessToken, AzureError> {
    let decode = |detail: String| AzureError::Decode {
        host: endpoints.login_host.to_string(),
        status: resp.status.as_u16(),
        detail,
    };
    let ok: TokenOk = serde_json::from_slice(&resp.body).map_err(|e| {
        decode(format!(
            "token response is not the expected JSON ({})",
            e.classify_name()
        ))
    })?;
    if !ok.token_type.is_empty() && !ok.token_type.eq_ignore_ascii_case("bearer") {
        return Err(decode(format!(
            "token_type {:?} is not Bearer",
            ok.token_type
        )));
    }
    // Entra sends expires_in as a number; older endpoints sent a string.
    let secs = match &ok.expires_in {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| decode("expires_in is missing or not a number".into()))?;
    // For very short-lived tokens keep at least half of the lifetime usable.
    let lifetime = Duration::from_secs(secs);
    let usable = if lifetime > EXPIRY_MARGIN * 2 {
        lifetime
    } else {
        lifetime / 2 + EXPIRY_MARGIN
    };
    let expires_at = now + usable;
    Ok(AccessToken::new(ok.access_token, expires_at))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "missing or mistyped field",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// The codes Entra answers a bad client assertion (certificate credential) with, most specific
/// first, and what the operator should do about each.
const ASSERTION_CODES: [(u64, &str); 6] = [
    (
        700_027,
        "the assertion's signature does not verify with a certificate the app registration holds (unknown certificate or bad signature); check that the certificate uploaded to the app registration is this credential's (`byokctl credential show` gives its thumbprint), and upload it again if it was replaced",
    ),
    (
        7_000_274,
        "the app registration does not accept the certificate the assertion names; check that the certificate uploaded to the app registration is this credential's current one and has not expired there, and upload it again",
    ),
    (
        700_024,
        "the assertion is outside its valid time range; check the appliance clock (NTP): byokd makes assertions valid from now for a few minutes",
    ),
    (
        700_023,
        "the assertion's audience is not this tenant's token endpoint; check the credential's tenant id and azure.cloud",
    ),
    (
        700_021,
        "the assertion's issuer and subject are not the app's client id; check the credential's client id",
    ),
    (
        50_012,
        "check that the certificate uploaded to the app registration is the one byokd holds, and the appliance clock",
    ),
];

/// Branches on `error_codes` (then `error`), never on the description text.
fn map_error(credential: &str, tenant: &str, client_id: &str, resp: &HttpResponse) -> EntraError {
    let err: TokenErr = serde_json::from_slice(&resp.body).unwrap_or_default();
    let cred = credential.to_string();
    let has = |code: u64| err.error_codes.contains(&code);
    let mapped = if has(7_000_215) {
        EntraError::WrongSecret { credential: cred }
    } else if has(7_000_222) {
        EntraError::SecretExpired { credential: cred }
    } else if has(700_016) {
        EntraError::AppNotInTenant {
            credential: cred,
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
        }
    } else if has(90_002) {
        EntraError::TenantNotFound {
            credential: cred,
            tenant: tenant.to_string(),
        }
    } else if let Some((code, hint)) = ASSERTION_CODES.iter().find(|(code, _)| has(*code)).copied()
    {
        EntraError::BadAssertion {
            credential: cred,
            code,
            hint,
        }
    } else {
        EntraError::Other {
            credential: cred,
            status: resp.status.as_u16(),
            error: if err.error.is_empty() {
                "(no error code)".into()
            } else {
                err.error.clone()
            },
            codes: err.error_codes.clone(),
            trace_id: err.trace_id.clone(),
        }
    };
    tracing::error!(credential, tenant, status = resp.status.as_u16(), error = %err.error,
        codes = ?err.error_codes, trace_id = %err.trace_id, "Entra ID refused a token");
    mapped
}

/// A parsed `WWW-Authenticate: Bearer authorization="…", resource="…"` (or `scope="…"`) challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The authority URL, e.g. `https://login.windows.net/{tenant}`.
    pub authorization: Option<String>,
    /// The resource, e.g. `https://vault.azure.net`.
    pub resource: Option<String>,
    /// The scope form, e.g. `https://vault.azure.net/.default`.
    pub scope: Option<String>,
}

impl Challenge {
    /// Parses a Bearer challenge; `None` for other schemes or garbage.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut c = Challenge {
            authorization: None,
            resource: None,
            scope: None,
        };
        for part in split_params(rest) {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" | "authorization_uri" => c.authorization = Some(v),
                "resource" => c.resource = Some(v),
                "scope" => c.scope = Some(v),
                _ => {}
            }
        }
        Some(c)
    }

    /// The tenant named by the authority URL's first path segment.
    pub fn tenant(&self) -> Option<String> {
        let auth = self.authorization.as_deref()?;
        let uri = auth.parse::<http::Uri>().ok()?;
        let seg = uri.path().trim_matches('/').split('/').next()?.to_string();
        (!seg.is_empty()).then_some(seg)
    }

    /// The challenge's resource host (from `resource`, else `scope`), lower-case.
    pub fn resource_host(&self) -> Option<String> {
        let r = self.resource.as_deref().or(self.scope.as_deref())?;
        let uri = r.parse::<http::Uri>().ok()?;
        if uri.scheme_str() != Some("https") {
            return None;
        }
        uri.host().map(str::to_ascii_lowercase)
    }

    /// The authority's host (from `authorization`), lower-case.
    pub fn authorization_host(&self) -> Option<String> {
        let uri = self.authorization.as_deref()?.parse::<http::Uri>().ok()?;
        if uri.scheme_str() != Some("https") {
            return None;
        }
        uri.host().map(str::to_ascii_lowercase)
    }

    /// Honoured only when the resource host is this cloud's vault resource host and the
    /// authority (if named) is one of this cloud's sign-in hosts.
    pub fn check_cloud(&self, endpoints: &CloudEndpoints) -> Result<(), EntraError> {
        match self.resource_host() {
            Some(h) if h == endpoints.vault_suffix => {}
            other => {
                let resource = other.unwrap_or_else(|| "(none)".into());
                tracing::error!(host = %resource, expected = endpoints.vault_suffix,
                    reason = "challenge resource is not this cloud's vault resource", "challenge refused");
                return Err(EntraError::ChallengeMismatch {
                    resource,
                    expected: endpoints.vault_resource(),
                });
            }
        }
        if self.authorization.is_some() {
            let host = self.authorization_host();
            let known = host
                .as_deref()
                .is_some_and(|h| endpoints.authority_hosts().contains(&h));
            if !known {
                let authority = host.unwrap_or_else(|| "(none)".into());
                tracing::error!(host = %authority, expected = endpoints.login_host,
                    reason = "challenge authority is not this cloud's sign-in host", "challenge refused");
                return Err(EntraError::ChallengeAuthorityMismatch {
                    authority,
                    expected: endpoints.login_host,
                });
            }
        }
        Ok(())
    }
}

/// Splits `a="x, y", b=z` on commas outside quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, ch) in s.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cloud;

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
        assert!(c.check_cloud(&CloudEndpoints::of(Cloud::Public)).is_ok());
        assert!(matches!(
            c.check_cloud(&CloudEndpoints::of(Cloud::China)),
            Err(EntraError::ChallengeMismatch { .. })
        ));
        let evil_authority = Challenge::parse(r#"Bearer authorization="https://login.evil.example/t", resource="https://vault.azure.net""#).unwrap();
        assert!(matches!(
            evil_authority.check_cloud(&CloudEndpoints::of(Cloud::Public)),
            Err(EntraError::ChallengeAuthorityMismatch { .. })
        ));
        let evil = Challenge::parse(r#"Bearer authorization="https://login.windows.net/t", resource="https://vault.azure.net.evil.example""#).unwrap();
        assert!(
            evil.check_cloud(&CloudEndpoints::of(Cloud::Public))
                .is_err()
        );
        let scoped = Challenge::parse(r#"Bearer authorization="https://login.microsoftonline.us/t", scope="https://vault.usgovcloudapi.net/.default""#).unwrap();
        assert!(
            scoped
                .check_cloud(&CloudEndpoints::of(Cloud::Usgov))
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
}
