//! Key Vault keys API, api-version 7.5: the KEK, the BYOK import and the key lifecycle calls.
//!
//! Owns the typed requests and responses (matching `keyvault-spec/keyvault-7.5/keys.json`) and the
//! mapping of Key Vault errors — by status, then `error.code`, then `innererror.code`, never by
//! message text — into [`KeyVaultError`], whose text tells the operator what to do.
//!
//! It must never build or look inside the transfer blob (`key_hsm` arrives encoded), never send a
//! request outside the allowlist (every URL, `nextLink` included, goes through `azure::http`), and
//! never log the bearer token.

use super::AzureError;
use super::budget::CreateBudget;
use super::endpoints::{CloudEndpoints, valid_vault_name};
use super::entra::{AccessToken, Challenge};
use super::http::{HttpClient, HttpRequest, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The pinned data-plane API version.
pub const API_VERSION: &str = "7.5";
/// Page size asked for when listing versions.
pub const PAGE_SIZE: u32 = 25;
/// Most `nextLink` pages followed for one listing (bounded everything).
pub const MAX_PAGES: usize = 400;

/// A JSON Web Key as Key Vault sends and takes it. Binary members are base64url strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonWebKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hsm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

impl JsonWebKey {
    /// Decodes a base64url member (`n`, `e`, `x`, `y`).
    pub fn decode(value: Option<&str>) -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(value?.trim_end_matches('=')).ok()
    }
}

/// Key attributes (times are Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing)]
    pub created: Option<i64>,
    #[serde(default, skip_serializing)]
    pub updated: Option<i64>,
    #[serde(default, rename = "recoverableDays", skip_serializing)]
    pub recoverable_days: Option<i64>,
    #[serde(default, rename = "recoveryLevel", skip_serializing)]
    pub recovery_level: Option<RecoveryLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
}

/// A key and its attributes (`KeyBundle`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct KeyBundle {
    #[serde(default)]
    pub key: JsonWebKey,
    #[serde(default)]
    pub attributes: KeyAttributes,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub managed: Option<bool>,
}

impl KeyBundle {
    /// The versioned key id, e.g. `https://v.vault.azure.net/keys/name/0123…`.
    pub fn kid(&self) -> &str {
        self.key.kid.as_deref().unwrap_or("")
    }

    /// The version: the last path segment of the kid.
    pub fn version(&self) -> &str {
        version_of(self.kid())
    }
}

/// A deleted key (`DeletedKeyBundle`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DeletedKeyBundle {
    #[serde(flatten)]
    pub bundle: KeyBundle,
    #[serde(default, rename = "recoveryId")]
    pub recovery_id: Option<String>,
    #[serde(default, rename = "scheduledPurgeDate")]
    pub scheduled_purge_date: Option<i64>,
    #[serde(default, rename = "deletedDate")]
    pub deleted_date: Option<i64>,
}

/// One entry of a versions listing (`KeyItem`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct KeyItem {
    #[serde(default)]
    pub kid: String,
    #[serde(default)]
    pub attributes: KeyAttributes,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub managed: Option<bool>,
}

impl KeyItem {
    pub fn version(&self) -> &str {
        version_of(&self.kid)
    }
}

#[derive(Deserialize)]
struct KeyListResult {
    #[serde(default)]
    value: Vec<KeyItem>,
    #[serde(default, rename = "nextLink")]
    next_link: Option<String>,
}

fn version_of(kid: &str) -> &str {
    kid.rsplit('/').next().unwrap_or("")
}

/// `attributes.recoveryLevel` (azure-byok.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RecoveryLevel {
    /// Soft-delete off: delete is final.
    Purgeable,
    RecoverablePurgeable,
    CustomizedRecoverablePurgeable,
    /// Soft-delete with purge protection.
    Recoverable,
    CustomizedRecoverable,
    RecoverableProtectedSubscription,
    CustomizedRecoverableProtectedSubscription,
    /// A value this build does not know; treated as "do not purge".
    Other(String),
}

impl From<String> for RecoveryLevel {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Purgeable" => Self::Purgeable,
            "Recoverable+Purgeable" => Self::RecoverablePurgeable,
            "CustomizedRecoverable+Purgeable" => Self::CustomizedRecoverablePurgeable,
            "Recoverable" => Self::Recoverable,
            "CustomizedRecoverable" => Self::CustomizedRecoverable,
            "Recoverable+ProtectedSubscription" => Self::RecoverableProtectedSubscription,
            "CustomizedRecoverable+ProtectedSubscription" => {
                Self::CustomizedRecoverableProtectedSubscription
            }
            _ => Self::Other(s),
        }
    }
}

impl From<RecoveryLevel> for String {
    fn from(r: RecoveryLevel) -> Self {
        r.as_str().to_string()
    }
}

impl RecoveryLevel {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Purgeable => "Purgeable",
            Self::RecoverablePurgeable => "Recoverable+Purgeable",
            Self::CustomizedRecoverablePurgeable => "CustomizedRecoverable+Purgeable",
            Self::Recoverable => "Recoverable",
            Self::CustomizedRecoverable => "CustomizedRecoverable",
            Self::RecoverableProtectedSubscription => "Recoverable+ProtectedSubscription",
            Self::CustomizedRecoverableProtectedSubscription => {
                "CustomizedRecoverable+ProtectedSubscription"
            }
            Self::Other(s) => s,
        }
    }

    /// Whether a deleted key lingers as a deleted (recoverable) key.
    pub fn soft_delete(&self) -> bool {
        !matches!(self, Self::Purgeable)
    }

    /// Whether byokd should purge after a delete: soft-delete on and purge allowed. `false` for
    /// `Purgeable` (nothing to purge), for purge protection, and for unknown values.
    pub fn purge_allowed(&self) -> bool {
        matches!(
            self,
            Self::RecoverablePurgeable | Self::CustomizedRecoverablePurgeable
        )
    }

    /// Purge protection: Azure purges only after `recoverableDays`.
    pub fn purge_protected(&self) -> bool {
        matches!(
            self,
            Self::Recoverable
                | Self::CustomizedRecoverable
                | Self::RecoverableProtectedSubscription
                | Self::CustomizedRecoverableProtectedSubscription
        )
    }
}

impl fmt::Display for RecoveryLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A freshly created key exchange key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kek {
    /// The versioned kid, as the blob header needs it.
    pub kid: String,
    pub version: String,
    /// Modulus, big-endian, no leading zero bytes.
    pub n: Vec<u8>,
    /// Public exponent, big-endian, leading zero bytes stripped (RSA-HSM sends `AAEAAQ`).
    pub e: Vec<u8>,
    pub recovery_level: Option<RecoveryLevel>,
}

/// What a BYOK import sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportRequest {
    /// `RSA-HSM` or `EC-HSM` (or `oct-HSM` on Managed HSM).
    pub kty: String,
    /// `P-256`, `P-384`, `P-521` or `P-256K` for EC.
    pub crv: Option<String>,
    pub key_ops: Vec<String>,
    /// base64url (no padding) of the transfer blob JSON.
    pub key_hsm: String,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub tags: BTreeMap<String, String>,
}

/// A PATCH of one version's attributes and tags; `None` leaves a member unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUpdate {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// The operation an error happened in, with the permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOp {
    CreateKek,
    Import,
    ListVersions,
    Get,
    Update,
    Delete,
    GetDeleted,
    Purge,
    Recover,
}

impl KvOp {
    /// The access-policy key permission (and RBAC data action) the operation needs.
    pub fn permission(self) -> &'static str {
        match self {
            KvOp::CreateKek => "Create",
            KvOp::Import => "Import",
            KvOp::ListVersions => "List",
            KvOp::Get => "Get",
            KvOp::Update => "Update",
            KvOp::Delete => "Delete",
            KvOp::GetDeleted => "Get (deleted keys: List)",
            KvOp::Purge => "Purge",
            KvOp::Recover => "Recover",
        }
    }

    fn deleted(self) -> bool {
        matches!(self, KvOp::GetDeleted | KvOp::Purge | KvOp::Recover)
    }
}

impl fmt::Display for KvOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvOp::CreateKek => "create the key exchange key",
            KvOp::Import => "import the key",
            KvOp::ListVersions => "list key versions",
            KvOp::Get => "read the key",
            KvOp::Update => "update the key",
            KvOp::Delete => "delete the key",
            KvOp::GetDeleted => "read the deleted key",
            KvOp::Purge => "purge the deleted key",
            KvOp::Recover => "recover the deleted key",
        })
    }
}

/// Key Vault errors, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    #[error("vault {vault} did not accept the access token (401); byokd will fetch a new token{}", tenant.as_ref().map(|t| format!(" (the vault expects tenant {t})")).unwrap_or_default())]
    Unauthorized {
        vault: String,
        tenant: Option<String>,
    },
    #[error("the application may not {op} in vault {vault} ({inner}): give it the '{perm}' key permission — with Azure RBAC assign 'Key Vault Crypto Officer' on the vault, with access policies add '{perm}' to its key permissions; a new grant can take a few minutes to apply", perm = op.permission())]
    PermissionDenied {
        vault: String,
        op: KvOp,
        inner: String,
    },
    #[error(
        "vault {vault}'s firewall refused byokd ({inner}): allow the appliance's public address under the vault's Networking settings, or a private endpoint"
    )]
    Firewall { vault: String, inner: String },
    #[error(
        "vault {vault} has purge protection: {name} cannot be purged and Azure deletes it after the retention period; nothing to do"
    )]
    PurgeProtected { vault: String, name: String },
    #[error("vault {vault} refused to {op} (403 {code}{}): check the app's permissions and the vault's networking", inner.as_ref().map(|i| format!("/{i}")).unwrap_or_default())]
    Forbidden {
        vault: String,
        op: KvOp,
        code: String,
        inner: Option<String>,
    },
    #[error(
        "the name {name} in vault {vault} belongs to a deleted key that can still be recovered: recover it (`byokctl` cloud recover) or purge it first, then repeat"
    )]
    SoftDeleted { vault: String, name: String },
    #[error("key {name} in vault {vault} is still being deleted; try again in a few seconds")]
    BeingDeleted { vault: String, name: String },
    #[error("{} {name} was not found in vault {vault}", if *deleted { "deleted key" } else { "key" })]
    NotFound {
        vault: String,
        name: String,
        deleted: bool,
    },
    #[error("vault {vault} rejected the request to {op} as a bad parameter: {message}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    BadParameter {
        vault: String,
        op: KvOp,
        message: String,
        hint: Option<&'static str>,
    },
    #[error(
        "vault {vault} is throttling requests (429) to {op} and retries ran out; pace jobs for this vault and retry later"
    )]
    Throttled { vault: String, op: KvOp },
    #[error("vault {vault} answered {status} to {op} ({code}{})", inner.as_ref().map(|i| format!("/{i}")).unwrap_or_default())]
    Service {
        vault: String,
        op: KvOp,
        status: u16,
        code: String,
        inner: Option<String>,
    },
    #[error("the KEK from vault {vault} is unusable: {detail}")]
    BadKek { vault: String, detail: String },
}

impl KeyVaultError {
    /// Whether the same call may succeed later without operator action.
    pub fn is_retryable(&self) -> bool {
        match self {
            KeyVaultError::BeingDeleted { .. } | KeyVaultError::Throttled { .. } => true,
            KeyVaultError::Service { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ErrorDetail>,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    innererror: Option<Box<ErrorDetail>>,
}

/// The Key Vault data-plane client.
pub struct KeyVault {
    http: Arc<HttpClient>,
    endpoints: CloudEndpoints,
    budget: Arc<CreateBudget>,
}

fn valid_key_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_version(v: &str) -> bool {
    v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl KeyVault {
    /// A client without CREATE pacing; see [`KeyVault::with_budget`].
    pub fn new(http: Arc<HttpClient>, endpoints: CloudEndpoints) -> Self {
        Self {
            http,
            endpoints,
            budget: Arc::new(CreateBudget::new(0, std::time::Duration::from_secs(10))),
        }
    }

    /// Paces key creates and imports within each vault's CREATE budget (azure-byok.md §5).
    pub fn with_budget(mut self, budget: Arc<CreateBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// `POST /keys/{name}/create`: an RSA-HSM key with `key_ops` exactly `["import"]`. Like the
    /// import, a lost response or a 5xx is [`AzureError::ResponseLost`] (a key may have been made).
    pub async fn create_kek(
        &self,
        token: &AccessToken,
        vault: &str,
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
        self.budget.acquire(&self.vault_host(vault)?).await;
        let bundle: KeyBundle = self
            .call(
                token,
                vault,
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
                vault: vault.to_string(),
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
            vault,
            kid = bundle.kid(),
            size_bits,
            "created key exchange key"
        );
        Ok(Kek {
            kid: bundle.kid().to_string(),
            version: bundle.version().to_string(),
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
        vault: &str,
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
        self.budget.acquire(&self.vault_host(vault)?).await;
        let bundle: KeyBundle = self
            .call(
                token,
                vault,
                name,
                KvOp::Import,
                Method::PUT,
                &path,
                Some(&body),
                false,
            )
            .await?;
        tracing::info!(vault, kid = bundle.kid(), "imported key version");
        Ok(bundle)
    }

    /// `GET /keys/{name}/versions`, following every `nextLink` (each re-checked by the allowlist
    /// and required to stay on the same vault host).
    pub async fn list_versions(
        &self,
        token: &AccessToken,
        vault: &str,
        name: &str,
    ) -> Result<Vec<KeyItem>, AzureError> {
        let host = self.vault_host(vault)?;
        let mut url = format!(
            "https://{host}/keys/{}/versions?maxresults={PAGE_SIZE}&api-version={API_VERSION}",
            key_name(name)?
        );
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: KeyListResult = self
                .call_url(
                    token,
                    vault,
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
            let target = self.http.allowlist().check_str(&next)?;
            if target.host != host {
                tracing::error!(host = %target.host, vault, reason = "nextLink leaves the vault", "nextLink refused");
                return Err(AzureError::NotAllowed {
                    host: target.host,
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
        vault: &str,
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
            vault,
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
        vault: &str,
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
            vault,
            name,
            KvOp::Update,
            Method::PATCH,
            &path,
            Some(&body),
            true,
        )
        .await
    }

    /// `DELETE /keys/{name}`: deletes every version.
    pub async fn delete_key(
        &self,
        token: &AccessToken,
        vault: &str,
        name: &str,
    ) -> Result<DeletedKeyBundle, AzureError> {
        let path = format!("/keys/{}", key_name(name)?);
        let deleted: DeletedKeyBundle = self
            .call(
                token,
                vault,
                name,
                KvOp::Delete,
                Method::DELETE,
                &path,
                None,
                true,
            )
            .await?;
        tracing::info!(vault, kid = deleted.bundle.kid(), "deleted key");
        Ok(deleted)
    }

    /// `GET /deletedkeys/{name}` (404 for a while right after a delete).
    pub async fn get_deleted_key(
        &self,
        token: &AccessToken,
        vault: &str,
        name: &str,
    ) -> Result<DeletedKeyBundle, AzureError> {
        let path = format!("/deletedkeys/{}", key_name(name)?);
        self.call(
            token,
            vault,
            name,
            KvOp::GetDeleted,
            Method::GET,
            &path,
            None,
            true,
        )
        .await
    }

    /// `DELETE /deletedkeys/{name}`: 204. A 409 is [`KeyVaultError::BeingDeleted`] (retry later); a
    /// 403 without a permission code is [`KeyVaultError::PurgeProtected`].
    pub async fn purge_deleted_key(
        &self,
        token: &AccessToken,
        vault: &str,
        name: &str,
    ) -> Result<(), AzureError> {
        let path = format!("/deletedkeys/{}", key_name(name)?);
        let url = self.url(vault, &path)?;
        let resp = self.send(token, Method::DELETE, &url, None, true).await?;
        if resp.status.is_success() {
            tracing::info!(vault, key = name, "purged deleted key");
            return Ok(());
        }
        Err(map_error(&self.endpoints, vault, name, KvOp::Purge, &resp))
    }

    /// `POST /deletedkeys/{name}/recover`.
    pub async fn recover_deleted_key(
        &self,
        token: &AccessToken,
        vault: &str,
        name: &str,
    ) -> Result<KeyBundle, AzureError> {
        let path = format!("/deletedkeys/{}/recover", key_name(name)?);
        self.call(
            token,
            vault,
            name,
            KvOp::Recover,
            Method::POST,
            &path,
            None,
            false,
        )
        .await
    }

    fn vault_host(&self, vault: &str) -> Result<String, AzureError> {
        if !valid_vault_name(vault) {
            return Err(AzureError::InvalidName {
                kind: "vault",
                name: vault.to_string(),
            });
        }
        Ok(self.endpoints.vault_host(vault))
    }

    fn url(&self, vault: &str, path: &str) -> Result<String, AzureError> {
        Ok(format!(
            "https://{}{path}?api-version={API_VERSION}",
            self.vault_host(vault)?
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn call<T: DeserializeOwned>(
        &self,
        token: &AccessToken,
        vault: &str,
        name: &str,
        op: KvOp,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotent: bool,
    ) -> Result<T, AzureError> {
        let url = self.url(vault, path)?;
        self.call_url(token, vault, name, op, method, &url, body, idempotent)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_url<T: DeserializeOwned>(
        &self,
        token: &AccessToken,
        vault: &str,
        name: &str,
        op: KvOp,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        idempotent: bool,
    ) -> Result<T, AzureError> {
        let resp = self.send(token, method, url, body, idempotent).await?;
        if !resp.status.is_success() {
            return Err(map_error(&self.endpoints, vault, name, op, &resp));
        }
        serde_json::from_slice(&resp.body).map_err(|e| AzureError::Decode {
            host: self.endpoints.vault_host(vault),
            status: resp.status.as_u16(),
            detail: format!("{op}: the response is not the expected JSON: {e}"),
        })
    }

    async fn send(
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

fn key_name(name: &str) -> Result<&str, AzureError> {
    if valid_key_name(name) {
        Ok(name)
    } else {
        Err(AzureError::InvalidName {
            kind: "key",
            name: name.to_string(),
        })
    }
}

fn version_part(version: &str) -> Result<&str, AzureError> {
    if valid_version(version) {
        Ok(version)
    } else {
        Err(AzureError::InvalidName {
            kind: "key version",
            name: version.to_string(),
        })
    }
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// Status, then `error.code`, then `innererror.code`; the message is only shown, never matched.
fn map_error(
    endpoints: &CloudEndpoints,
    vault: &str,
    name: &str,
    op: KvOp,
    resp: &HttpResponse,
) -> AzureError {
    let body: ErrorBody = serde_json::from_slice(&resp.body).unwrap_or_default();
    let detail = body.error.unwrap_or_default();
    let code = detail.code.clone().unwrap_or_default();
    let inner = detail.innererror.as_ref().and_then(|i| i.code.clone());
    let message = detail.message.clone().unwrap_or_default();
    let (vault, name) = (vault.to_string(), name.to_string());
    tracing::warn!(vault = %vault, status = resp.status.as_u16(), code = %code, inner = ?inner, op = %op, "Key Vault refused a request");
    let err = match resp.status {
        StatusCode::UNAUTHORIZED => {
            let challenge = resp
                .headers
                .get(http::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse);
            let tenant = match &challenge {
                Some(c) => {
                    if let Err(e) = c.check_cloud(endpoints) {
                        return e.into();
                    }
                    c.tenant()
                }
                None => None,
            };
            KeyVaultError::Unauthorized { vault, tenant }
        }
        StatusCode::FORBIDDEN => match (code.as_str(), inner.as_deref()) {
            (_, Some(i @ ("ForbiddenByRbac" | "ForbiddenByPolicy"))) => {
                KeyVaultError::PermissionDenied {
                    vault,
                    op,
                    inner: i.to_string(),
                }
            }
            (c @ ("ForbiddenByFirewall" | "ForbiddenByConnection"), _)
            | (_, Some(c @ ("ForbiddenByFirewall" | "ForbiddenByConnection"))) => {
                KeyVaultError::Firewall {
                    vault,
                    inner: c.to_string(),
                }
            }
            _ if op == KvOp::Purge => KeyVaultError::PurgeProtected { vault, name },
            _ => KeyVaultError::Forbidden {
                vault,
                op,
                code,
                inner,
            },
        },
        StatusCode::NOT_FOUND => KeyVaultError::NotFound {
            vault,
            name,
            deleted: op.deleted(),
        },
        StatusCode::CONFLICT => match inner.as_deref() {
            Some("ObjectIsBeingDeleted") => KeyVaultError::BeingDeleted { vault, name },
            Some("ObjectIsDeletedButRecoverable") => KeyVaultError::SoftDeleted { vault, name },
            _ => KeyVaultError::Service {
                vault,
                op,
                status: 409,
                code,
                inner,
            },
        },
        StatusCode::BAD_REQUEST => {
            let hint = bad_parameter_hint(op, &message);
            KeyVaultError::BadParameter {
                vault,
                op,
                message: truncate(&message, 1024),
                hint,
            }
        }
        StatusCode::TOO_MANY_REQUESTS => KeyVaultError::Throttled { vault, op },
        status => KeyVaultError::Service {
            vault,
            op,
            status: status.as_u16(),
            code,
            inner,
        },
    };
    err.into()
}

/// What a 400 most likely means. Azure gives both a Standard-tier refusal and a blob it cannot
/// open as 400 `BadParameter`, so only the message tells them apart ("... is not supported by
/// this vault ... Premium" against "The specified key_hsm could not be unwrapped"); it picks
/// the hint, never the handling. An import's KEK was created in the same vault, so the tier
/// is blamed there only when the message names it and not the blob; a message that names
/// neither gets a hint that leads with the blob.
fn bad_parameter_hint(op: KvOp, message: &str) -> Option<&'static str> {
    const TIER: &str =
        "HSM-protected keys need a Premium vault or a Managed HSM; a Standard vault refuses them";
    const BLOB: &str = "the vault could not open the transfer blob: its tier is not the cause; check the wrap report in `byokctl status` (which strategy wraps this key type, and whether its blobs passed the conformance self-test) and that the KEK belongs to this vault";
    const IMPORT: &str = "the vault refused the import request: check the wrap report in `byokctl status` (whether this key type's blobs passed the conformance self-test) and the key's type and operations; the KEK was made in this vault, so its tier accepts HSM-protected keys";
    let m = message.to_ascii_lowercase();
    let names = |words: &[&str]| words.iter().any(|w| m.contains(w));
    let tier = names(&[
        "standard vault",
        "premium",
        "sku",
        "not supported by this vault",
    ]);
    let blob = names(&["key_hsm", "unwrap", "transfer blob", "ciphertext"]);
    match op {
        KvOp::CreateKek => Some(TIER),
        KvOp::Import if blob => Some(BLOB),
        KvOp::Import if tier => Some(TIER),
        KvOp::Import => Some(IMPORT),
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_levels_follow_the_reference_table() {
        let lv = |s: &str| RecoveryLevel::from(s.to_string());
        assert!(!lv("Purgeable").soft_delete() && !lv("Purgeable").purge_allowed());
        assert!(lv("Recoverable+Purgeable").purge_allowed());
        assert!(lv("CustomizedRecoverable+Purgeable").purge_allowed());
        for p in [
            "Recoverable",
            "CustomizedRecoverable",
            "Recoverable+ProtectedSubscription",
            "CustomizedRecoverable+ProtectedSubscription",
        ] {
            assert!(
                !lv(p).purge_allowed() && lv(p).purge_protected() && lv(p).soft_delete(),
                "{p}"
            );
        }
        assert!(!lv("Something+New").purge_allowed());
        assert_eq!(
            lv("Recoverable+Purgeable").as_str(),
            "Recoverable+Purgeable"
        );
    }

    #[test]
    fn leading_zero_bytes_of_the_exponent_are_stripped() {
        let e = JsonWebKey::decode(Some("AAEAAQ")).unwrap();
        assert_eq!(strip_leading_zeros(e), vec![1, 0, 1]);
    }

    #[test]
    fn key_bundle_example_from_the_spec_parses() {
        let json = r#"{"key":{"kid":"https://myvault.vault.azure.net/keys/CreateSoftKeyTest/78deebed173b48e48f55abf87ed4cf71","kty":"RSA","key_ops":["encrypt","decrypt"],"n":"2HJAE5fU","e":"AQAB"},"attributes":{"enabled":true,"created":1493942451,"updated":1493942451,"recoveryLevel":"Recoverable+Purgeable"},"tags":{"purpose":"unit test"}}"#;
        let b: KeyBundle = serde_json::from_str(json).unwrap();
        assert_eq!(b.version(), "78deebed173b48e48f55abf87ed4cf71");
        assert_eq!(
            b.attributes.recovery_level,
            Some(RecoveryLevel::RecoverablePurgeable)
        );
        let attrs = serde_json::to_value(KeyAttributes {
            enabled: Some(false),
            exp: Some(5),
            ..b.attributes
        })
        .unwrap();
        assert_eq!(
            attrs,
            serde_json::json!({"enabled": false, "exp": 5}),
            "read-only members are never sent"
        );
    }
}
