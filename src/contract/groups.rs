//! `/v1/groups`: creating a key group, changing its rotation policy, and what the API shows of
//! one (with its pending grace period and last drift check).

use super::Timestamp;
use crate::model::RotationPolicy;
use serde::{Deserialize, Serialize};

/// `POST /v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    pub name: String,
    pub credential: String,
    /// The Key Vault's name (`<vault>.vault.azure.net`); exactly one of `vault` and
    /// `managed_hsm` names the group's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// The Managed HSM pool's name (`<pool>.managedhsm.azure.net`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_hsm: Option<String>,
    /// e.g. `RSA-3072`, `EC-P384`.
    pub key_type: String,
    /// RSA only; 65537 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponent: Option<u32>,
    /// The key type's defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationPatch>,
    /// Check with Azure first that the vault or pool exists and that the credential signs in
    /// and may read it (the Get and List key permissions; on a Managed HSM the local RBAC
    /// `keys/read`), and refuse the group naming what is wrong (`byokctl group create` asks for
    /// this unless `--no-verify`). Create, Import, Delete and Purge cannot be checked without
    /// changing the vault: they show at first use.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify: bool,
}

/// A rotation policy, whole or in part: absent fields keep their current (or default) value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_every_months: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_valid_months: Option<u32>,
}

impl RotationPatch {
    /// The policy `base` with this patch's fields applied.
    pub fn over(self, base: RotationPolicy) -> RotationPolicy {
        RotationPolicy {
            enabled: self.enabled.unwrap_or(base.enabled),
            rotate_every_months: self.rotate_every_months.unwrap_or(base.rotate_every_months),
            keep_valid_months: self.keep_valid_months.unwrap_or(base.keep_valid_months),
        }
    }
}

/// `PATCH /v1/groups/{group}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    /// Absent: the policy is unchanged.
    #[serde(default)]
    pub rotation: RotationPatch,
}

/// A key group as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub credential: String,
    /// `key_vault` or `managed_hsm`: which of `vault` and `managed_hsm` names the target.
    pub target: String,
    /// The Key Vault's name, for a Key Vault group.
    pub vault: Option<String>,
    /// The Managed HSM pool's name, for a Managed HSM group.
    pub managed_hsm: Option<String>,
    pub key_type: String,
    pub algorithm: String,
    pub exponent: Option<u32>,
    pub key_ops: Vec<String>,
    pub rotation: RotationPolicy,
    pub last_rotated: Option<Timestamp>,
    pub created: Timestamp,
    /// How many keys it holds.
    pub keys: usize,
    /// When the next scheduled rotation is due, if rotation is on.
    pub next_rotation: Option<Timestamp>,
    /// Previous Azure versions waiting for the grace period to end, if any.
    pub pending_grace: Option<PendingGrace>,
    /// The last drift check ("Check cloud state") and its findings, if one ran.
    pub drift: Option<Drift>,
}

/// `GET /v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {
    pub groups: Vec<Group>,
}

/// The versions a rotation replaced, disabled in Azure once the grace period ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingGrace {
    pub versions: Vec<String>,
    /// When they are disabled.
    pub due: Timestamp,
    /// The rotation's new version, which stays enabled.
    pub new_version: String,
}

/// The last drift check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub checked: Timestamp,
    /// The check's job id.
    pub job: u64,
    /// How many versions the Azure key has.
    pub azure_versions: usize,
    pub findings: Vec<DriftFinding>,
}

/// One difference between what byokd believes and what Azure holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftFinding {
    pub code: String,
    pub key: Option<String>,
    pub version: Option<String>,
    pub message: String,
}
