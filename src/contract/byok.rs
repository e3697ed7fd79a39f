//! Offline transfer: exporting a key as a `.byok` file (dual control), downloading the file of an
//! approved export, and recording the Azure version a manual import made.

use super::Key;
use serde::{Deserialize, Serialize};

/// `POST /v1/groups/{group}/keys/{key}/export-byok`: the KEK the key is wrapped under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByokExport {
    /// The KEK's public key as `az keyvault key download --encoding PEM` writes it.
    pub kek_pem: String,
    /// The KEK's versioned key id on the group's own target
    /// (`https://{vault}.vault.azure.net/keys/{name}/{version}`).
    pub kek_kid: String,
}

/// `GET /v1/approvals/{approval}/byok-file`: the file of an approved export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByokFile {
    pub approval: String,
    pub group: String,
    pub key: String,
    pub kek_kid: String,
    /// The `.byok` file's content, exactly: write it byte for byte.
    pub byok: String,
}

/// `POST /v1/groups/{group}/keys/{key}/record-import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordImport {
    /// The version the manual import made (the last part of the `kid` that
    /// `az keyvault key import` prints).
    pub version: String,
}

/// The answer to a recorded import: the key with its new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecorded {
    pub key: Key,
    /// The version it replaced, if the key had one.
    pub previous_version: Option<String>,
}
