//! Configuration of the emulator: registered apps, vaults, throttling, faults.
//!
//! Everything here is plain data that can come from a TOML/JSON file (the binary) or be built in
//! code (tests). It never holds key material.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which Azure cloud a host or vault belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// Azure public cloud.
    #[default]
    Public,
    /// Azure China (21Vianet).
    China,
    /// Azure US Government.
    UsGov,
}

impl Cloud {
    /// All clouds.
    pub const ALL: [Cloud; 3] = [Cloud::Public, Cloud::China, Cloud::UsGov];

    /// The Entra sign-in host.
    pub fn login_host(self) -> &'static str {
        match self {
            Cloud::Public => "login.microsoftonline.com",
            Cloud::China => "login.chinacloudapi.cn",
            Cloud::UsGov => "login.microsoftonline.us",
        }
    }

    /// The ARM host.
    pub fn arm_host(self) -> &'static str {
        match self {
            Cloud::Public => "management.azure.com",
            Cloud::China => "management.chinacloudapi.cn",
            Cloud::UsGov => "management.usgovcloudapi.net",
        }
    }

    /// The vault DNS suffix, without the leading dot.
    pub fn vault_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "vault.azure.net",
            Cloud::China => "vault.azure.cn",
            Cloud::UsGov => "vault.usgovcloudapi.net",
        }
    }

    /// The Key Vault resource (audience), as in the `WWW-Authenticate` challenge.
    pub fn vault_resource(self) -> String {
        format!("https://{}", self.vault_suffix())
    }

    /// The client-credentials scope for ARM.
    pub fn arm_scope(self) -> String {
        format!("https://{}/.default", self.arm_host())
    }

    /// The cloud whose ARM host is `host`.
    pub fn from_arm_host(host: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|c| c.arm_host() == host)
    }

    /// The client-credentials scope for Key Vault.
    pub fn vault_scope(self) -> String {
        format!("https://{}/.default", self.vault_suffix())
    }

    /// The host of vault `name` in this cloud.
    pub fn vault_host(self, name: &str) -> String {
        format!("{}.{}", name.to_ascii_lowercase(), self.vault_suffix())
    }

    /// The Managed HSM DNS suffix, without the leading dot (Azure CLI's `mhsm_dns`).
    pub fn managed_hsm_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "managedhsm.azure.net",
            Cloud::China => "managedhsm.azure.cn",
            Cloud::UsGov => "managedhsm.usgovcloudapi.net",
        }
    }

    /// The Managed HSM resource (token audience), e.g. `https://managedhsm.azure.net`.
    pub fn managed_hsm_resource(self) -> String {
        format!("https://{}", self.managed_hsm_suffix())
    }

    /// The client-credentials scope for Managed HSM.
    pub fn managed_hsm_scope(self) -> String {
        format!("https://{}/.default", self.managed_hsm_suffix())
    }

    /// The cloud whose sign-in host is `host`.
    pub fn from_login_host(host: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|c| c.login_host() == host)
    }
}

/// A registered Entra application (service principal) in a tenant.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Tenant id (GUID or domain) the app is registered in.
    pub tenant: String,
    /// Application (client) id.
    pub client_id: String,
    /// Client secret, if the app has one.
    #[serde(default)]
    pub secret: Option<String>,
    /// The secret exists but has expired (AADSTS7000222).
    #[serde(default)]
    pub secret_expired: bool,
    /// DER of the certificate registered for client-assertion auth.
    #[serde(default, skip_serializing)]
    pub certificate_der: Option<Vec<u8>>,
    /// Path of a PEM certificate registered for client-assertion auth (config files).
    #[serde(default)]
    pub certificate_pem_file: Option<PathBuf>,
}

impl AppConfig {
    /// An app authenticating with a client secret.
    pub fn with_secret(tenant: &str, client_id: &str, secret: &str) -> Self {
        AppConfig {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            secret: Some(secret.to_owned()),
            ..AppConfig::default()
        }
    }

    /// An app authenticating with a certificate (client assertion).
    pub fn with_certificate(tenant: &str, client_id: &str, cert_der: Vec<u8>) -> Self {
        AppConfig {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            certificate_der: Some(cert_der),
            ..AppConfig::default()
        }
    }
}

/// Vault pricing tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sku {
    /// Software keys only: RSA-HSM / EC-HSM are refused.
    Standard,
    /// HSM-backed keys allowed.
    #[default]
    Premium,
}

/// The vault's deletion recovery level, as reported in `attributes.recoveryLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RecoveryLevel {
    /// No soft-delete: delete is final.
    Purgeable,
    /// Soft-delete, purge allowed.
    #[default]
    #[serde(rename = "Recoverable+Purgeable")]
    RecoverablePurgeable,
    /// Soft-delete with purge protection: purge is refused with 403.
    Recoverable,
    /// As `RecoverablePurgeable`, with a retention other than 90 days.
    #[serde(rename = "CustomizedRecoverable+Purgeable")]
    CustomizedRecoverablePurgeable,
    /// As `Recoverable`, with a retention other than 90 days.
    CustomizedRecoverable,
}

impl RecoveryLevel {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryLevel::Purgeable => "Purgeable",
            RecoveryLevel::RecoverablePurgeable => "Recoverable+Purgeable",
            RecoveryLevel::Recoverable => "Recoverable",
            RecoveryLevel::CustomizedRecoverablePurgeable => "CustomizedRecoverable+Purgeable",
            RecoveryLevel::CustomizedRecoverable => "CustomizedRecoverable",
        }
    }

    /// Whether deleted keys are kept (soft-delete).
    pub fn soft_delete(self) -> bool {
        self != RecoveryLevel::Purgeable
    }

    /// Whether a soft-deleted key may be purged by a caller.
    pub fn purge_allowed(self) -> bool {
        self.as_str().contains("Purgeable") && self.soft_delete()
    }
}

/// A data-plane permission, as granted by an RBAC role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// keys/create
    Create,
    /// keys/import
    Import,
    /// keys/delete
    Delete,
    /// deletedkeys/purge
    Purge,
    /// keys/read (and deletedkeys/read)
    Get,
    /// keys/list (versions, keys, deleted keys)
    List,
    /// keys/update
    Update,
    /// deletedkeys/recover
    Recover,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 8] = [
        Permission::Create,
        Permission::Import,
        Permission::Delete,
        Permission::Purge,
        Permission::Get,
        Permission::List,
        Permission::Update,
        Permission::Recover,
    ];
}

/// Options of one vault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultOptions {
    /// Cloud the vault lives in (decides its host suffix and token scope).
    pub cloud: Cloud,
    /// A Managed HSM pool rather than a Key Vault: host `<name>.managedhsm.azure.net`, tokens
    /// for the Managed HSM resource only (a Key Vault token is refused, and a Managed HSM token
    /// by every vault), local RBAC refusals (403 `AccessDenied` naming the data action), and
    /// soft-delete always on (`recovery_level` must keep deleted keys; `Recoverable` is purge
    /// protection). The tier (`sku`) does not apply.
    pub managed_hsm: bool,
    /// Tenant the vault belongs to; tokens from other tenants get 401. `None`: any tenant.
    pub tenant: Option<String>,
    /// Pricing tier.
    pub sku: Sku,
    /// Deletion recovery level.
    pub recovery_level: RecoveryLevel,
    /// `attributes.recoverableDays` (0 when soft-delete is off).
    pub recoverable_days: u32,
    /// Per-app permissions (client id → permissions). `None`: every app has every permission.
    pub access: Option<BTreeMap<String, Vec<Permission>>>,
    /// ARM: subscription id the vault lives in.
    pub subscription: String,
    /// ARM: resource group the vault lives in.
    pub resource_group: String,
    /// ARM: Azure region.
    pub location: String,
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            cloud: Cloud::Public,
            managed_hsm: false,
            tenant: None,
            sku: Sku::Premium,
            recovery_level: RecoveryLevel::RecoverablePurgeable,
            recoverable_days: 90,
            access: None,
            subscription: "00000000-0000-0000-0000-000000000000".into(),
            resource_group: "byokd-rg".into(),
            location: "westeurope".into(),
        }
    }
}

/// A vault in a config file (unknown fields are refused by `VaultOptions`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaultConfig {
    /// Vault name (3–24 chars).
    pub name: String,
    /// Its options.
    #[serde(flatten)]
    pub options: VaultOptions,
}

/// Which retry hint a 429 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetryHeader {
    /// `Retry-After: <seconds>`.
    #[default]
    RetryAfterSeconds,
    /// `x-ms-retry-after-ms: <ms>`.
    RetryAfterMs,
    /// No hint at all (Key Vault sometimes does this).
    None,
}

/// Throttling (docs/byok-protocol.md#throttling-and-retries): per-vault sliding windows, never more than the budget in any
/// window of (10 s × `time_factor`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// On/off.
    pub enabled: bool,
    /// Scales the 10 s window: 0.01 makes it 100 ms.
    pub time_factor: f64,
    /// CREATE transactions (key create and import) per window.
    pub create_per_window: u32,
    /// Other transactions per window on RSA-2048 and EC keys.
    pub other_rsa2048_ec: u32,
    /// Other transactions per window on RSA-3072 keys.
    pub other_rsa3072: u32,
    /// Other transactions per window on RSA-4096 keys.
    pub other_rsa4096: u32,
    /// Which hint 429s carry.
    pub header: RetryHeader,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            enabled: true,
            time_factor: 1.0,
            create_per_window: 10,
            other_rsa2048_ec: 2000,
            other_rsa3072: 500,
            other_rsa4096: 250,
            header: RetryHeader::RetryAfterSeconds,
        }
    }
}

/// Pre-generated RSA key pool sizes (process-wide, shared by all emulators).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyPoolConfig {
    /// RSA-2048 keys kept ready.
    pub rsa2048: usize,
    /// RSA-3072 keys kept ready.
    pub rsa3072: usize,
    /// RSA-4096 keys kept ready.
    pub rsa4096: usize,
}

impl Default for KeyPoolConfig {
    fn default() -> Self {
        KeyPoolConfig {
            rsa2048: 2,
            rsa3072: 0,
            rsa4096: 2,
        }
    }
}

/// Emulator configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmulatorConfig {
    /// Loopback address to listen on (port 0 allowed).
    pub listen: SocketAddr,
    /// Directory holding `ca.cert.pem` / `ca.key.pem`: loaded if present, else created there.
    pub ca_dir: Option<PathBuf>,
    /// Where to write the CA certificate PEM for clients to trust.
    pub ca_out: Option<PathBuf>,
    /// Extra DNS names for the server certificate.
    pub extra_hosts: Vec<String>,
    /// `expires_in` of issued tokens, in seconds.
    pub token_lifetime_secs: u64,
    /// How long a deleted key stays invisible (404 / 409) after delete, in ms.
    pub delete_pending_ms: u64,
    /// RSA key pool sizes.
    pub key_pool: KeyPoolConfig,
    /// Throttling.
    pub throttling: ThrottleConfig,
    /// Delay added to every request, in ms (round-trip emulation for benchmarks).
    pub rtt_delay_ms: u64,
    /// Append every request record as a JSON line to this file.
    pub request_log_file: Option<PathBuf>,
    /// Keep at most this many records in memory (oldest dropped first).
    pub request_log_cap: usize,
    /// Registered apps.
    pub apps: Vec<AppConfig>,
    /// Vaults.
    pub vaults: Vec<VaultConfig>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ca_dir: None,
            ca_out: None,
            extra_hosts: Vec::new(),
            token_lifetime_secs: 3599,
            delete_pending_ms: 2000,
            key_pool: KeyPoolConfig::default(),
            throttling: ThrottleConfig::default(),
            rtt_delay_ms: 0,
            request_log_file: None,
            request_log_cap: 100_000,
            apps: Vec::new(),
            vaults: Vec::new(),
        }
    }
}
