//! Key Vault errors: the operation an error happened in, the typed errors worded for the
//! operator, and the mapping of an answer into them (status, then `error.code`, then
//! `innererror.code`; the message is only shown, never matched).

use crate::azure::AzureError;
use crate::azure::endpoints::CloudEndpoints;
use crate::azure::entra::Challenge;
use crate::azure::http::HttpResponse;
use crate::model::{Target, TargetKind};
use http::StatusCode;
use serde::Deserialize;
use std::fmt;

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
    /// Whether Azure counts the operation in the vault's CREATE budget (key create and import).
    pub fn is_create(self) -> bool {
        matches!(self, KvOp::CreateKek | KvOp::Import)
    }

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

    /// The Managed HSM local RBAC data action the operation needs, short form (`keys/import`);
    /// the full name is `Microsoft.KeyVault/managedHsm/<this>/action` (`keys/delete` and
    /// `keys/deletedKeys/delete` have no `/action`).
    pub fn hsm_permission(self) -> &'static str {
        match self {
            KvOp::CreateKek => "keys/create",
            KvOp::Import => "keys/import",
            KvOp::ListVersions | KvOp::Get => "keys/read",
            KvOp::Update => "keys/write",
            KvOp::Delete => "keys/delete",
            KvOp::GetDeleted => "keys/deletedKeys/read",
            KvOp::Purge => "keys/deletedKeys/delete",
            KvOp::Recover => "keys/deletedKeys/recover",
        }
    }

    /// The Managed HSM built-in role that grants [`KvOp::hsm_permission`]: Crypto User for the
    /// live keys, Crypto Officer for deleted keys (reading, recovering and purging them).
    pub fn hsm_role(self) -> &'static str {
        if self.deleted() {
            "Managed HSM Crypto Officer"
        } else {
            "Managed HSM Crypto User"
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

/// Key Vault and Managed HSM errors, worded for the operator. `vault` is the target as the
/// operator knows it: `Key Vault kv1` or `Managed HSM pool1`.
#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    #[error("{vault} did not accept the access token (401); byokd will fetch a new token{}", tenant.as_ref().map(|t| format!(" (it expects tenant {t})")).unwrap_or_default())]
    Unauthorized {
        vault: String,
        tenant: Option<String>,
    },
    #[error("the application may not {op} in {vault} ({inner}): give it the '{perm}' key permission — with Azure RBAC assign 'Key Vault Crypto Officer' on the vault, with access policies add '{perm}' to its key permissions; a new grant can take a few minutes to apply", perm = op.permission())]
    PermissionDenied {
        vault: String,
        op: KvOp,
        inner: String,
    },
    #[error("the application may not {op} in Managed HSM {pool} (403 {code}: local RBAC has no '{perm}' for it): grant it the '{role}' role with `az keyvault role assignment create --hsm-name {pool} --role \"{role}\" --scope /keys --assignee <the credential's client id>`; a new grant can take a few minutes to apply", perm = op.hsm_permission(), role = op.hsm_role())]
    HsmPermissionDenied {
        pool: String,
        op: KvOp,
        code: String,
    },
    #[error(
        "{vault}'s firewall refused byokd ({inner}): allow the appliance's public address under {}'s Networking settings, or a private endpoint", .kind.the()
    )]
    Firewall {
        vault: String,
        kind: TargetKind,
        inner: String,
    },
    #[error(
        "{vault} has purge protection: {name} cannot be purged and Azure deletes it after the retention period; nothing to do"
    )]
    PurgeProtected { vault: String, name: String },
    #[error("{vault} refused to {op} (403 {code}{}): check the app's permissions and {}'s networking", inner.as_ref().map(|i| format!("/{i}")).unwrap_or_default(), .kind.the())]
    Forbidden {
        vault: String,
        kind: TargetKind,
        op: KvOp,
        code: String,
        inner: Option<String>,
    },
    #[error(
        "the name {name} in {vault} belongs to a deleted key that can still be recovered: recover it (`byokctl` cloud recover) or purge it first, then repeat"
    )]
    SoftDeleted { vault: String, name: String },
    #[error("key {name} in {vault} is still being deleted; try again in a few seconds")]
    BeingDeleted { vault: String, name: String },
    #[error("{} {name} was not found in {vault}", if *deleted { "deleted key" } else { "key" })]
    NotFound {
        vault: String,
        name: String,
        deleted: bool,
    },
    #[error("{vault} rejected the request to {op} as a bad parameter: {message}{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    BadParameter {
        vault: String,
        op: KvOp,
        message: String,
        hint: Option<String>,
    },
    #[error(
        "{vault} is throttling requests (429) to {op} and retries ran out; pace jobs for this vault and retry later"
    )]
    Throttled { vault: String, op: KvOp },
    #[error("{vault} answered {status} to {op} ({code}{})", inner.as_ref().map(|i| format!("/{i}")).unwrap_or_default())]
    Service {
        vault: String,
        op: KvOp,
        status: u16,
        code: String,
        inner: Option<String>,
    },
    #[error("the KEK from {vault} is unusable: {detail}")]
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

/// Status, then `error.code`, then `innererror.code`; the message is only shown, never matched.
pub(super) fn map_error(
    endpoints: &CloudEndpoints,
    target: &Target,
    name: &str,
    op: KvOp,
    resp: &HttpResponse,
) -> AzureError {
    let body: ErrorBody = serde_json::from_slice(&resp.body).unwrap_or_default();
    let detail = body.error.unwrap_or_default();
    let code = detail.code.clone().unwrap_or_default();
    let inner = detail.innererror.as_ref().and_then(|i| i.code.clone());
    let message = detail.message.clone().unwrap_or_default();
    let (vault, name) = (target.to_string(), name.to_string());
    tracing::warn!(vault = target.name(), status = resp.status.as_u16(), code = %code, inner = ?inner, op = %op, "Key Vault refused a request");
    let err = match resp.status {
        StatusCode::UNAUTHORIZED => {
            let challenge = resp
                .headers
                .get(http::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse);
            let tenant = match &challenge {
                Some(c) => {
                    if let Err(e) = c.check_cloud(endpoints, target.kind()) {
                        return e.into();
                    }
                    c.tenant()
                }
                None => None,
            };
            KeyVaultError::Unauthorized { vault, tenant }
        }
        // Managed HSM's local RBAC refuses with 403 `AccessDenied` (its message names the data
        // action); a purge-protected pool answers another code, kept below.
        StatusCode::FORBIDDEN if target.is_managed_hsm() && code == "AccessDenied" => {
            KeyVaultError::HsmPermissionDenied {
                pool: target.name().to_owned(),
                op,
                code,
            }
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
                    kind: target.kind(),
                    inner: c.to_string(),
                }
            }
            _ if op == KvOp::Purge => KeyVaultError::PurgeProtected { vault, name },
            _ => KeyVaultError::Forbidden {
                vault,
                kind: target.kind(),
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
            let hint = bad_parameter_hint(op, &message, target.kind());
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
/// neither gets a hint that leads with the blob. The hint names the target's kind ("the vault"
/// or "the pool").
fn bad_parameter_hint(op: KvOp, message: &str, kind: TargetKind) -> Option<String> {
    const TIER: &str =
        "HSM-protected keys need a Premium vault or a Managed HSM; a Standard vault refuses them";
    let the = kind.the();
    let blob = || {
        format!(
            "{the} could not open the transfer blob: its tier is not the cause; check the wrap report in `byokctl status` (which strategy wraps this key type, and whether its blobs passed the conformance self-test) and that the KEK was made in {the}"
        )
    };
    let import = || {
        format!(
            "{the} refused the import request: check the wrap report in `byokctl status` (whether this key type's blobs passed the conformance self-test) and the key's type and operations; the KEK was made in {the}, so its tier accepts HSM-protected keys"
        )
    };
    let m = message.to_ascii_lowercase();
    let names = |words: &[&str]| words.iter().any(|w| m.contains(w));
    let tier = names(&[
        "standard vault",
        "premium",
        "sku",
        "not supported by this vault",
    ]);
    let names_blob = names(&["key_hsm", "unwrap", "transfer blob", "ciphertext"]);
    match op {
        KvOp::CreateKek => Some(TIER.to_owned()),
        KvOp::Import if names_blob => Some(blob()),
        KvOp::Import if tier => Some(TIER.to_owned()),
        KvOp::Import => Some(import()),
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
    fn hints_and_refusals_name_the_targets_kind() {
        let unwrap = "The specified key_hsm could not be unwrapped";
        let pool = bad_parameter_hint(KvOp::Import, unwrap, TargetKind::ManagedHsm);
        let pool = pool.unwrap_or_default();
        assert!(
            pool.starts_with("the pool could not open the transfer blob")
                && pool.ends_with("that the KEK was made in the pool"),
            "{pool}"
        );
        let vault = bad_parameter_hint(KvOp::Import, "Invalid parameter", TargetKind::KeyVault);
        let vault = vault.unwrap_or_default();
        assert!(
            vault.starts_with("the vault refused the import request"),
            "{vault}"
        );
        let firewall = KeyVaultError::Firewall {
            vault: "Managed HSM pool1".into(),
            kind: TargetKind::ManagedHsm,
            inner: "ForbiddenByFirewall".into(),
        };
        assert!(
            firewall
                .to_string()
                .contains("under the pool's Networking settings"),
            "{firewall}"
        );
    }
}
