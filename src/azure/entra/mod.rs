//! Entra ID (Azure AD) client-credentials tokens for the cloud's Key Vault or Managed HSM scope.
//!
//! Owns the token request (`POST https://{login}/{tenant}/oauth2/v2.0/token`, form-encoded), the
//! token cache (per credential and scope), the mapping of Entra's error codes to operator hints
//! (docs/byok-protocol.md#entra-id-errors), the client-assertion JWT for certificate credentials (signed by an
//! [`AssertionSigner`], in the HSM), and the parsing of Key Vault's `WWW-Authenticate` challenge.
//!
//! It must never echo a client secret, an assertion or a token: the secret is only ever copied
//! into a zeroizing request buffer that is dropped right after the request is sent, and the token
//! is an [`AccessToken`] whose `Debug` is redacted. The token request goes over a connection of
//! its own, closed when the response is read ([`HttpRequest::single_use`]), so no pooled
//! connection keeps the body in its buffers. A client assertion is treated as a secret too:
//! it is a bearer proof of the app's identity that Entra accepts from anyone until its `exp`
//!
//! Files: `token` (the access token and the parse of Entra's answer), `auth` (the client's
//! proof: secret or signed assertion, and the form body), `errors` (Entra's codes mapped to
//! operator hints), `challenge` (Key Vault's `WWW-Authenticate`), `tests`; this file holds the
//! client and its per-credential cache.

mod auth;
mod challenge;
mod errors;
#[cfg(test)]
mod tests;
mod token;

pub use auth::{AssertionSigner, ClientAuth, build_client_assertion};
pub use challenge::Challenge;
pub use errors::EntraError;
pub use token::{AccessToken, EXPIRY_MARGIN};

use super::endpoints::CloudEndpoints;
use super::http::{HttpClient, HttpRequest};
use super::{AzureError, Clock};
use crate::model::TargetKind;
use crate::secret::SecretBytes;
use auth::form_body;
use errors::map_error;
use http::Method;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use token::{parse_token, renew_at};

/// (credential, tenant, client id, scope kind): a Key Vault token is never handed out for a
/// Managed HSM, nor the other way round.
type CacheKey = (String, String, String, TargetKind);

/// Proof that Entra ID accepted a credential's sign-in once ([`Entra::verify`]): made nowhere
/// else, so a credential can only be recorded as verified after a real sign-in.
#[derive(Debug)]
pub struct SignInProof(());

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

    /// A token for `kind`'s scope (Key Vault or Managed HSM) for a client-secret credential,
    /// from the cache when still valid.
    pub async fn token(
        &self,
        credential: &str,
        tenant: &str,
        client_id: &str,
        kind: TargetKind,
        secret: &SecretBytes,
    ) -> Result<AccessToken, AzureError> {
        self.token_with(
            credential,
            tenant,
            client_id,
            kind,
            ClientAuth::Secret(secret),
        )
        .await
    }

    /// A token for `kind`'s scope for any credential kind, from the cache when still valid.
    pub async fn token_with(
        &self,
        credential: &str,
        tenant: &str,
        client_id: &str,
        kind: TargetKind,
        auth: ClientAuth<'_>,
    ) -> Result<AccessToken, AzureError> {
        check_id(credential, "tenant id", tenant)?;
        check_id(credential, "client id", client_id)?;
        let key = (
            credential.to_string(),
            tenant.to_ascii_lowercase(),
            client_id.to_ascii_lowercase(),
            kind,
        );
        let now = self.clock.now_system();
        if let Some(t) = self.lock().get(&key)
            && renew_at(t) > now
        {
            return Ok(t.clone());
        }
        let token = self
            .request(credential, tenant, client_id, kind, auth, now)
            .await?;
        self.lock().insert(key, token.clone());
        Ok(token)
    }

    /// Signs in once, bypassing and not filling the cache: proves a credential (before byokd
    /// stores it, or before a group uses it). Entra's refusal comes back as its typed error
    /// (AADSTS code and hint).
    pub async fn sign_in_once(
        &self,
        credential: &str,
        tenant: &str,
        client_id: &str,
        kind: TargetKind,
        auth: ClientAuth<'_>,
    ) -> Result<(AccessToken, SignInProof), AzureError> {
        check_id(credential, "tenant id", tenant)?;
        check_id(credential, "client id", client_id)?;
        let now = self.clock.now_system();
        self.request(credential, tenant, client_id, kind, auth, now)
            .await
            .map(|t| (t, SignInProof(())))
    }

    /// The cached, still valid token of a credential for `kind`'s scope, if any: lets a
    /// certificate credential skip signing an assertion in the HSM when it would not be sent.
    pub fn cached(
        &self,
        credential: &str,
        tenant: &str,
        client_id: &str,
        kind: TargetKind,
    ) -> Option<AccessToken> {
        let key = (
            credential.to_string(),
            tenant.to_ascii_lowercase(),
            client_id.to_ascii_lowercase(),
            kind,
        );
        let now = self.clock.now_system();
        self.lock().get(&key).filter(|t| renew_at(t) > now).cloned()
    }

    /// Forgets the cached tokens of a credential (after a 401, or when its secret changes).
    pub fn invalidate(&self, credential: &str) {
        self.lock().retain(|(c, _, _, _), _| c != credential);
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
        kind: TargetKind,
        auth: ClientAuth<'_>,
        now: SystemTime,
    ) -> Result<AccessToken, AzureError> {
        let url = self.endpoints.token_url(tenant);
        let body = form_body(client_id, &self.endpoints.scope(kind)?, &auth);
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
