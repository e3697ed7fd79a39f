//! `/v1/groups/{group}/keys`: creating a key, and what the API shows of one.

use super::Timestamp;
use serde::{Deserialize, Serialize};

/// `POST /v1/groups/{group}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
}

/// A key as the console lists it: Name, Key Group, Version, Storage, Key type, Algorithm,
/// Check Digits, plus creation time and its HSM object id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub name: String,
    pub group: String,
    /// The Azure version once pushed.
    pub version: Option<String>,
    pub storage: String,
    pub key_type: String,
    pub algorithm: String,
    pub check_digits: String,
    pub created: Timestamp,
    pub hsm_id: String,
}

/// `GET /v1/groups/{group}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<Key>,
}

/// `GET /v1/groups/{group}/keys/{key}/public`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub group: String,
    pub key: String,
    pub spki_der_base64: String,
    pub pem: String,
}
