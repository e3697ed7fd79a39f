//! A key: one HSM-generated key pair in a group, and the Azure version it became once pushed.

use super::{GroupName, KeyName, KeyType};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The stable CKA_ID byokd gives a key on the token: 16 random bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HsmKeyId(pub [u8; 16]);

impl HsmKeyId {
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for HsmKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HsmKeyId({})", self.to_hex())
    }
}

/// Where the key lives. byokd only makes HSM-protected keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Storage {
    Protected,
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protected")
    }
}

/// A key in a group. Its private half never leaves the HSM in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub name: KeyName,
    pub group: GroupName,
    pub hsm_id: HsmKeyId,
    /// First 4 hex digits (upper case) of SHA-256 over the public key's SPKI DER; for an AES
    /// key its key check value, 6 hex digits (the first 3 bytes of AES-ECB of a zero block).
    pub check_digits: String,
    pub key_type: KeyType,
    pub storage: Storage,
    /// Unix seconds, UTC.
    pub created: i64,
    /// The Azure version once pushed; `None` until then.
    pub azure_version: Option<super::AzureVersion>,
}
