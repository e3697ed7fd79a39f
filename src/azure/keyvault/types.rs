//! The Key Vault JSON bodies byokd sends and reads (`keyvault-spec/keyvault-7.5/keys.json`),
//! and the requests its callers fill in.

use super::RecoveryLevel;
use crate::model::AzureVersion;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

    /// The version, typed.
    pub fn azure_version(&self) -> AzureVersion {
        AzureVersion::new(self.version())
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

    /// The version, typed.
    pub fn azure_version(&self) -> AzureVersion {
        AzureVersion::new(self.version())
    }
}

#[derive(Deserialize)]
pub(super) struct KeyListResult {
    #[serde(default)]
    pub(super) value: Vec<KeyItem>,
    #[serde(default, rename = "nextLink")]
    pub(super) next_link: Option<String>,
}

fn version_of(kid: &str) -> &str {
    kid.rsplit('/').next().unwrap_or("")
}

/// A freshly created key exchange key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kek {
    /// The versioned kid, as the blob header needs it.
    pub kid: String,
    pub version: crate::model::AzureVersion,
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
