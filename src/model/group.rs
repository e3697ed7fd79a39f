//! A key group: one Azure key (its versions are the group's pushed keys) and how it rotates.

use super::{CredentialName, GroupName, KeyOp, KeyType, RotationPolicy, VaultName};
use serde::{Deserialize, Serialize};

/// One Azure key, named after the group, in one vault, reached with one credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroup {
    pub name: GroupName,
    pub credential: CredentialName,
    pub vault: VaultName,
    pub key_type: KeyType,
    pub key_ops: Vec<KeyOp>,
    pub rotation: RotationPolicy,
    /// Unix seconds, UTC, of the last successful rotation push.
    pub last_rotated: Option<i64>,
    /// Unix seconds, UTC.
    pub created: i64,
}
