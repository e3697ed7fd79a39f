//! `attributes.recoveryLevel` and what each level allows (soft delete, purge).

use serde::{Deserialize, Serialize};
use std::fmt;

/// `attributes.recoveryLevel` (docs/byok-protocol.md#recovery-levels).
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
