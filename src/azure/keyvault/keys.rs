//! The calls on live keys: create the KEK, import a key version, list versions, get and
//! update a key.

use super::errors::{KeyVaultError, KvOp};
use super::request::{key_name, version_part};
use super::types::{
    ImportRequest, JsonWebKey, Kek, KeyAttributes, KeyBundle, KeyItem, KeyListResult, KeyUpdate,
};
use super::{API_VERSION, KeyVault, MAX_PAGES, PAGE_SIZE};
use crate::azure::AzureError;
use crate::azure::entra::AccessToken;
use crate::model::Target;
use http::Method;

impl KeyVault {
    /// `POST /keys/{name}/create`: an RSA-HSM key with `key_ops` exactly `["import"]`. Like the
    /// import, a lost response or a 5xx is [`AzureError::ResponseLost`] (a key may have been made).
    pub async fn create_kek(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
        size_bits: u32,
        exp: i64,
    ) -> Result<Kek, AzureError> {
        if ![2048, 3072, 4096].contains(&size_bits) {
            return Err(AzureError::InvalidName {
                kind: "KEK size (2048, 3072 or 4096)",
                name: size_bits.to_string(),
            });
        }
        let body = serde_json::json!({
            "kty": "RSA-HSM", "key_size": size_bits, "key_ops": ["import"], "attributes": {"exp": exp},
        });
        let path = format!("/keys/{}/create", key_name(name)?);
        self.budget.acquire(&self.host(target)?).await;
        let bundle: KeyBundle = self
            .call(
                token,
                target,
                name,
                KvOp::CreateKek,
                Method::POST,
                &path,
                Some(&body),
                false,
            )
            .await?;
        let bad = |detail: &str| {
            AzureError::KeyVault(KeyVaultError::BadKek {
                vault: target.name().to_string(),
                detail: detail.into(),
            })
        };
        let n = strip_leading_zeros(
            JsonWebKey::decode(bundle.key.n.as_deref()).ok_or_else(|| bad("no modulus `n`"))?,
        );
        let e = strip_leading_zeros(
            JsonWebKey::decode(bundle.key.e.as_deref()).ok_or_else(|| bad("no exponent `e`"))?,
        );
        if n.len() * 8 != size_bits as usize {
            return Err(bad(&format!(
                "modulus is {} bits, asked for {size_bits}",
                n.len() * 8
            )));
        }
        if e.is_empty() || e.len() > 8 {
            return Err(bad("the public exponent is empty or too long"));
        }
        if bundle.kid().is_empty() || bundle.version().is_empty() {
            return Err(bad("no versioned kid"));
        }
        tracing::info!(
            vault = target.name(),
            kid = bundle.kid(),
            size_bits,
            "created key exchange key"
        );
        Ok(Kek {
            kid: bundle.kid().to_string(),
            version: bundle.azure_version(),
            n,
            e,
            recovery_level: bundle.attributes.recovery_level.clone(),
        })
    }

    /// `PUT /keys/{name}` with `key_hsm`: a new version of `name`. Never retried after a lost
    /// response or a 500/502/503/504 ([`AzureError::ResponseLost`]): look for the version by its
    /// tag first. 408 and 429 are retried (Azure did not process the request).
    pub async fn import_key(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
        req: &ImportRequest,
    ) -> Result<KeyBundle, AzureError> {
        let mut key =
            serde_json::json!({"kty": req.kty, "key_ops": req.key_ops, "key_hsm": req.key_hsm});
        if let Some(crv) = &req.crv {
            key["crv"] = serde_json::Value::String(crv.clone());
        }
        let attributes = KeyAttributes {
            enabled: Some(req.enabled),
            nbf: req.nbf,
            exp: req.exp,
            ..Default::default()
        };
        let body = serde_json::json!({"key": key, "attributes": attributes, "tags": req.tags});
        let path = format!("/keys/{}", key_name(name)?);
        self.budget.acquire(&self.host(target)?).await;
        let bundle: KeyBundle = self
            .call(
                token,
                target,
                name,
                KvOp::Import,
                Method::PUT,
                &path,
                Some(&body),
                false,
            )
            .await?;
        tracing::info!(
            vault = target.name(),
            kid = bundle.kid(),
            "imported key version"
        );
        Ok(bundle)
    }

    /// `GET /keys/{name}/versions`, following every `nextLink` (each re-checked by the allowlist
    /// and required to stay on the same vault host).
    pub async fn list_versions(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
    ) -> Result<Vec<KeyItem>, AzureError> {
        let host = self.host(target)?;
        let mut url = format!(
            "https://{host}/keys/{}/versions?maxresults={PAGE_SIZE}&api-version={API_VERSION}",
            key_name(name)?
        );
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: KeyListResult = self
                .call_url(
                    token,
                    target,
                    name,
                    KvOp::ListVersions,
                    Method::GET,
                    &url,
                    None,
                    true,
                )
                .await?;
            items.extend(page.value);
            let Some(next) = page.next_link.filter(|l| !l.is_empty()) else {
                return Ok(items);
            };
            let dest = self.http.allowlist().check_str(&next)?;
            if dest.host != host {
                tracing::error!(host = %dest.host, vault = target.name(), reason = "nextLink leaves the vault", "nextLink refused");
                return Err(AzureError::NotAllowed {
                    host: dest.host,
                    reason: "a nextLink must stay on the same vault",
                });
            }
            url = if next.contains("api-version=") {
                next
            } else {
                format!(
                    "{next}{}api-version={API_VERSION}",
                    if next.contains('?') { '&' } else { '?' }
                )
            };
        }
        Err(AzureError::Decode {
            host,
            status: 200,
            detail: format!("more than {MAX_PAGES} pages of versions; refusing to follow further"),
        })
    }

    /// `GET /keys/{name}/{version}`; `None` is the latest version.
    pub async fn get_key(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
        version: Option<&str>,
    ) -> Result<KeyBundle, AzureError> {
        let path = format!(
            "/keys/{}/{}",
            key_name(name)?,
            version_part(version.unwrap_or(""))?
        );
        self.call(
            token,
            target,
            name,
            KvOp::Get,
            Method::GET,
            &path,
            None,
            true,
        )
        .await
    }

    /// `PATCH /keys/{name}/{version}`: enable/disable, `nbf`/`exp`, tags.
    pub async fn update_key(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
        version: &str,
        update: &KeyUpdate,
    ) -> Result<KeyBundle, AzureError> {
        let attributes = KeyAttributes {
            enabled: update.enabled,
            nbf: update.nbf,
            exp: update.exp,
            ..Default::default()
        };
        let mut body = serde_json::json!({"attributes": attributes});
        if let Some(tags) = &update.tags {
            body["tags"] = serde_json::to_value(tags).map_err(|e| AzureError::Encode {
                what: "tags",
                detail: e.to_string(),
            })?;
        }
        let path = format!("/keys/{}/{}", key_name(name)?, version_part(version)?);
        self.call(
            token,
            target,
            name,
            KvOp::Update,
            Method::PATCH,
            &path,
            Some(&body),
            true,
        )
        .await
    }
}
pub(super) fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}
