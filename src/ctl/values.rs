//! The fixed lists byokctl's arguments take (clap value enums): key types and usages, job states
//! and kinds, approval statuses, log services and levels, and output and export formats. Being
//! enums, they are checked by clap and offered by shell completion.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables fitted to the terminal; `show` as a describe-style record with sections.
    Table,
    /// Tables with every column.
    Wide,
    /// The API's answer as JSON, with its field names.
    Json,
    /// The API's answer as YAML, with its field names.
    Yaml,
    /// Tab-separated values: a header of the API's field names, then one row per item (a
    /// record: one `field<TAB>value` line per field).
    Tsv,
    /// Nothing: only the exit code tells.
    None,
}

/// On or off; `true`/`false` (and `yes`/`no`) are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    #[value(alias = "true", alias = "yes")]
    On,
    #[value(alias = "false", alias = "no")]
    Off,
}

/// An Azure key type. AES keys (oct-HSM) only in a Managed HSM group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyTypeArg {
    #[value(name = "RSA-2048")]
    Rsa2048,
    #[value(name = "RSA-3072")]
    Rsa3072,
    #[value(name = "RSA-4096")]
    Rsa4096,
    #[value(name = "EC-P256")]
    EcP256,
    #[value(name = "EC-P384")]
    EcP384,
    #[value(name = "EC-P521")]
    EcP521,
    #[value(name = "EC-P256K")]
    EcP256k,
    /// AES-128 (oct-HSM), Managed HSM groups only.
    #[value(name = "AES-128", alias = "aes-128")]
    Aes128,
    /// AES-192 (oct-HSM), Managed HSM groups only.
    #[value(name = "AES-192", alias = "aes-192")]
    Aes192,
    /// AES-256 (oct-HSM), Managed HSM groups only.
    #[value(name = "AES-256", alias = "aes-256")]
    Aes256,
}

impl KeyTypeArg {
    /// Why a Key Vault group cannot have this key type, if it cannot (AES: only a Managed HSM
    /// takes oct-HSM keys). The daemon refuses it too; byokctl says so before asking.
    pub fn key_vault_refusal(self) -> Option<String> {
        let bits = match self {
            Self::Aes128 => 128,
            Self::Aes192 => 192,
            Self::Aes256 => 256,
            _ => return None,
        };
        crate::model::KeyType::Aes { bits }.key_vault_refusal()
    }
}

/// A key usage (Key Vault's key operation names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyOpArg {
    #[value(name = "encrypt")]
    Encrypt,
    #[value(name = "decrypt")]
    Decrypt,
    #[value(name = "sign")]
    Sign,
    #[value(name = "verify")]
    Verify,
    #[value(name = "wrapKey")]
    WrapKey,
    #[value(name = "unwrapKey")]
    UnwrapKey,
}

/// How `key public` writes the public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublicFormat {
    /// SubjectPublicKeyInfo, PEM (`-----BEGIN PUBLIC KEY-----`).
    Pem,
    /// SubjectPublicKeyInfo, DER (binary).
    Der,
    /// A JSON Web Key (RFC 7517): kty with n/e or crv/x/y.
    Jwk,
}

/// A job's state, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobStateArg {
    Pending,
    Running,
    WaitingRetry,
    WaitingApproval,
    Succeeded,
    Failed,
    Cancelled,
}

/// A job's kind, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobKindArg {
    Sync,
    Rotate,
    DeleteCloud,
    CheckCloud,
    Recover,
    Purge,
}

/// An approval's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApprovalStatusArg {
    Pending,
    Approved,
    Rejected,
    Expired,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogService {
    Azure,
    Hsm,
    Control,
    Jobs,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}
