//! How every Key Vault and Managed HSM call is sent: the target's host and URL, the key name and version checks,
//! and the one path from a request to a decoded answer or a mapped error.

use super::errors::{KvOp, map_error};
use super::{API_VERSION, KeyVault};
use crate::azure::AzureError;
use crate::azure::entra::AccessToken;
use crate::azure::http::{HttpRequest, HttpResponse};
use crate::model::Target;
use http::Method;
use serde::de::DeserializeOwned;

fn valid_key_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_version(v: &str) -> bool {
    v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric())
}
impl KeyVault {
    /// The target's host on this cloud (refused on a cloud without Managed HSM).
    pub(super) fn host(&self, target: &Target) -> Result<String, AzureError> {
        self.endpoints.host(target)
    }

    pub(super) fn url(&self, target: &Target, path: &str) -> Result<String, AzureError> {
        Ok(format!(
            "https://{}{path}?api-version={API_VERSION}",
            self.host(target)?
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
        op: KvOp,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotent: bool,
    ) -> Result<T, AzureError> {
        let url = self.url(target, path)?;
        self.call_url(token, target, name, op, method, &url, body, idempotent)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call_url<T: DeserializeOwned>(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
        op: KvOp,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        idempotent: bool,
    ) -> Result<T, AzureError> {
        let resp = self.send(token, method, url, body, idempotent).await?;
        if !resp.status.is_success() {
            return Err(map_error(&self.endpoints, target, name, op, &resp));
        }
        serde_json::from_slice(&resp.body).map_err(|e| AzureError::Decode {
            host: self
                .host(target)
                .unwrap_or_else(|_| target.name().to_owned()),
            status: resp.status.as_u16(),
            detail: format!("{op}: the response is not the expected JSON: {e}"),
        })
    }

    pub(super) async fn send(
        &self,
        token: &AccessToken,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        idempotent: bool,
    ) -> Result<HttpResponse, AzureError> {
        let mut req = HttpRequest::new(method, url, idempotent)?.bearer(token)?;
        if let Some(b) = body {
            req = req.json(b)?;
        }
        self.http.send(&req).await
    }
}
pub(super) fn key_name(name: &str) -> Result<&str, AzureError> {
    if valid_key_name(name) {
        Ok(name)
    } else {
        Err(AzureError::InvalidName {
            kind: "key",
            name: name.to_string(),
        })
    }
}

pub(super) fn version_part(version: &str) -> Result<&str, AzureError> {
    if valid_version(version) {
        Ok(version)
    } else {
        Err(AzureError::InvalidName {
            kind: "key version",
            name: version.to_string(),
        })
    }
}
