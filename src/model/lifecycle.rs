//! Lifecycle records kept per key group: the previous Azure versions that wait out the grace
//! period after a rotation, and the last drift check's findings.

use super::{AzureVersion, JobId};
use serde::{Deserialize, Serialize};

/// Previous Azure versions to disable once the grace period after a rotation ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingGrace {
    /// The versions that were current before the rotation.
    pub versions: Vec<AzureVersion>,
    /// Unix seconds, UTC: when to disable them.
    pub due: i64,
    /// The rotation's new version, which stays enabled.
    pub new_version: AzureVersion,
}

/// One difference between what byokd believes and what Azure holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriftFinding {
    /// The whole Azure key is gone (deleted or never there) while keys record versions.
    KeyMissing,
    /// A version in Azure that no local key of the group records (made elsewhere).
    UnknownVersion { version: AzureVersion },
    /// A version a local key records that Azure does not list.
    MissingVersion { key: String, version: AzureVersion },
    /// A version a local key records that Azure lists as disabled.
    DisabledVersion { key: String, version: AzureVersion },
    /// A version a local key records whose `exp` has passed.
    ExpiredVersion {
        key: String,
        version: AzureVersion,
        exp: i64,
    },
    /// A version whose public key differs from the HSM key (by check digits).
    PublicKeyMismatch {
        key: String,
        version: AzureVersion,
        hsm_check_digits: String,
        azure_check_digits: String,
    },
    /// Not drift: a version of an AES key, which Azure lists as an oct key but whose material
    /// Azure never returns, so its key check value cannot be compared with the HSM's. Last, so
    /// that reports written before it existed decode unchanged.
    KeyMaterialNotComparable {
        key: String,
        version: AzureVersion,
        hsm_check_digits: String,
    },
}

impl DriftFinding {
    /// A short code for logs and the API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::KeyMissing => "key-missing",
            Self::UnknownVersion { .. } => "unknown-version",
            Self::MissingVersion { .. } => "missing-version",
            Self::DisabledVersion { .. } => "disabled-version",
            Self::ExpiredVersion { .. } => "expired-version",
            Self::PublicKeyMismatch { .. } => "public-key-mismatch",
            Self::KeyMaterialNotComparable { .. } => "key-material-not-comparable",
        }
    }

    /// Whether this is a difference (every finding but `KeyMaterialNotComparable`, which says
    /// what could not be checked).
    pub fn is_drift(&self) -> bool {
        !matches!(self, Self::KeyMaterialNotComparable { .. })
    }

    /// The version the finding is about, if any.
    pub fn version(&self) -> Option<&str> {
        match self {
            Self::KeyMissing => None,
            Self::UnknownVersion { version }
            | Self::MissingVersion { version, .. }
            | Self::DisabledVersion { version, .. }
            | Self::ExpiredVersion { version, .. }
            | Self::PublicKeyMismatch { version, .. }
            | Self::KeyMaterialNotComparable { version, .. } => Some(version.as_str()),
        }
    }

    /// The local key the finding is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::KeyMissing | Self::UnknownVersion { .. } => None,
            Self::MissingVersion { key, .. }
            | Self::DisabledVersion { key, .. }
            | Self::ExpiredVersion { key, .. }
            | Self::PublicKeyMismatch { key, .. }
            | Self::KeyMaterialNotComparable { key, .. } => Some(key),
        }
    }

    /// What it means, in operator terms.
    pub fn describe(&self) -> String {
        match self {
            Self::KeyMissing => "the Azure key does not exist (deleted, or never pushed)".into(),
            Self::UnknownVersion { version } => {
                format!(
                    "Azure version {version} is not known to this appliance (created or imported elsewhere)"
                )
            }
            Self::MissingVersion { key, version } => {
                format!("key {key} records Azure version {version}, which Azure does not list")
            }
            Self::DisabledVersion { key, version } => {
                format!("Azure version {version} of key {key} is disabled")
            }
            Self::ExpiredVersion { key, version, exp } => {
                format!(
                    "Azure version {version} of key {key} expired at {}",
                    crate::clock::rfc3339(*exp)
                )
            }
            Self::PublicKeyMismatch {
                key,
                version,
                hsm_check_digits,
                azure_check_digits,
            } => format!(
                "Azure version {version} has check digits {azure_check_digits}, but HSM key {key} has {hsm_check_digits}"
            ),
            Self::KeyMaterialNotComparable {
                key,
                version,
                hsm_check_digits,
            } => format!(
                "Azure version {version} of AES key {key} is an oct-HSM key, but Azure never returns an oct key's material: its key check value cannot be compared with the HSM's ({hsm_check_digits}); not drift, not verified"
            ),
        }
    }
}

/// The last drift check of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Unix seconds, UTC.
    pub checked: i64,
    pub job: JobId,
    /// How many Azure versions were listed.
    pub azure_versions: usize,
    pub findings: Vec<DriftFinding>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_versions_keep_the_stored_form_of_grace_and_drift() {
        let grace = PendingGrace {
            versions: vec![AzureVersion::new("v1")],
            due: 7,
            new_version: AzureVersion::new("v2"),
        };
        let json = serde_json::to_string(&grace).unwrap();
        assert_eq!(json, r#"{"versions":["v1"],"due":7,"new_version":"v2"}"#);
        assert_eq!(serde_json::from_str::<PendingGrace>(&json).unwrap(), grace);
        let finding = DriftFinding::DisabledVersion {
            key: "k1".into(),
            version: AzureVersion::new("v1"),
        };
        let json = serde_json::to_string(&finding).unwrap();
        assert_eq!(json, r#"{"DisabledVersion":{"key":"k1","version":"v1"}}"#);
        assert_eq!(
            serde_json::from_str::<DriftFinding>(&json).unwrap(),
            finding
        );
    }
}
