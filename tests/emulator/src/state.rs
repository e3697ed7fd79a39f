//! The emulator's in-memory world: apps, tokens, vaults with their keys, faults, request log.
//!
//! One mutex guards it; it is never held across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{AppConfig, Cloud, ThrottleConfig, VaultOptions};
use crate::faults::ActiveRule;
use crate::keys::{Material, PublicKey, jwk};
use crate::reqlog::RequestRecord;
use crate::throttle::VaultWindows;

/// An issued bearer token.
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub tenant: String,
    pub client_id: String,
    pub cloud: Cloud,
    pub audience: Audience,
    pub expires: Instant,
}

/// Which resource a token was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    Vault,
    ManagedHsm,
    Arm,
}

/// Where a key version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `POST /keys/{name}/create`.
    Created,
    /// `PUT /keys/{name}` (BYOK or plain JWK import).
    Imported,
    /// Added behind the client's back via the handle.
    Foreign,
}

#[derive(Debug, Clone)]
pub(crate) struct KeyVersion {
    pub version: String,
    pub kty: String,
    pub key_ops: Vec<String>,
    pub material: Material,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub tags: BTreeMap<String, String>,
    pub origin: Origin,
}

impl KeyVersion {
    /// Live for use as a KEK / for crypto: enabled and within nbf/exp.
    pub fn usable(&self, now: i64) -> bool {
        self.enabled && self.nbf.is_none_or(|n| n <= now) && self.exp.is_none_or(|e| e > now)
    }

    pub fn is_kek(&self) -> bool {
        self.key_ops == ["import"]
    }
}

#[derive(Debug, Clone)]
pub(crate) struct KeyEntry {
    /// Name as first created (Key Vault keeps the original case).
    pub name: String,
    /// Versions in creation order; the last is the latest.
    pub versions: Vec<KeyVersion>,
}

impl KeyEntry {
    pub fn latest(&self) -> Option<&KeyVersion> {
        self.versions.last()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DeletedEntry {
    pub entry: KeyEntry,
    pub deleted_date: i64,
    pub scheduled_purge: i64,
    pub visible_at: Instant,
}

/// Per-vault counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultCounters {
    /// Successful key creates.
    pub creates: u64,
    /// Successful imports.
    pub imports: u64,
    /// 429s issued by the throttle (not by faults).
    pub throttled: u64,
}

#[derive(Debug)]
pub(crate) struct Vault {
    pub name: String,
    pub opts: VaultOptions,
    pub keys: BTreeMap<String, KeyEntry>,
    pub deleted: BTreeMap<String, DeletedEntry>,
    pub windows: VaultWindows,
    pub counters: VaultCounters,
}

impl Vault {
    pub fn new(name: &str, opts: VaultOptions) -> Vault {
        Vault {
            name: name.to_ascii_lowercase(),
            opts,
            keys: BTreeMap::new(),
            deleted: BTreeMap::new(),
            windows: VaultWindows::default(),
            counters: VaultCounters::default(),
        }
    }

    pub fn host(&self) -> String {
        if self.opts.managed_hsm {
            format!(
                "{}.{}",
                self.name.to_ascii_lowercase(),
                self.opts.cloud.managed_hsm_suffix()
            )
        } else {
            self.opts.cloud.vault_host(&self.name)
        }
    }

    /// The resource (token audience) this vault or Managed HSM pool accepts.
    pub fn resource(&self) -> String {
        if self.opts.managed_hsm {
            self.opts.cloud.managed_hsm_resource()
        } else {
            self.opts.cloud.vault_resource()
        }
    }

    /// The audience a token must have been issued for.
    pub fn audience(&self) -> Audience {
        if self.opts.managed_hsm {
            Audience::ManagedHsm
        } else {
            Audience::Vault
        }
    }

    /// Whether this is a Managed HSM pool, which imports AES (`oct-HSM`) keys; a Key Vault
    /// refuses them.
    pub fn is_managed_hsm(&self) -> bool {
        self.opts.managed_hsm
    }

    pub fn base_url(&self) -> String {
        format!("https://{}", self.host())
    }

    pub fn kid(&self, name: &str, version: &str) -> String {
        format!("{}/keys/{name}/{version}", self.base_url())
    }

    pub fn recoverable_days(&self) -> u32 {
        if self.opts.recovery_level.soft_delete() {
            self.opts.recoverable_days
        } else {
            0
        }
    }

    pub fn attributes(&self, v: &KeyVersion) -> Value {
        let mut a = json!({
            "enabled": v.enabled,
            "created": v.created,
            "updated": v.updated,
            "recoveryLevel": self.opts.recovery_level.as_str(),
            "recoverableDays": self.recoverable_days(),
            "exportable": false,
        });
        if let Some(n) = v.nbf {
            a["nbf"] = json!(n);
        }
        if let Some(e) = v.exp {
            a["exp"] = json!(e);
        }
        a
    }

    /// A KeyBundle.
    pub fn bundle(&self, name: &str, v: &KeyVersion) -> Value {
        let mut b = json!({
            "key": jwk(&self.kid(name, &v.version), &v.kty, &v.key_ops, &v.material.public),
            "attributes": self.attributes(v),
        });
        if !v.tags.is_empty() {
            b["tags"] = json!(v.tags);
        }
        b
    }

    /// A KeyItem (versions list).
    pub fn item(&self, name: &str, v: &KeyVersion, versioned: bool) -> Value {
        let kid = if versioned {
            self.kid(name, &v.version)
        } else {
            format!("{}/keys/{name}", self.base_url())
        };
        let mut b = json!({"kid": kid, "attributes": self.attributes(v)});
        if !v.tags.is_empty() {
            b["tags"] = json!(v.tags);
        }
        b
    }

    /// A DeletedKeyBundle (latest version).
    pub fn deleted_bundle(&self, d: &DeletedEntry) -> Value {
        let Some(v) = d.entry.latest() else {
            return json!({});
        };
        let mut b = self.bundle(&d.entry.name, v);
        b["recoveryId"] = json!(format!("{}/deletedkeys/{}", self.base_url(), d.entry.name));
        b["deletedDate"] = json!(d.deleted_date);
        b["scheduledPurgeDate"] = json!(d.scheduled_purge);
        b
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub apps: Vec<AppConfig>,
    pub tokens: HashMap<String, TokenInfo>,
    pub token_lifetime_secs: u64,
    pub vaults: BTreeMap<String, Vault>,
    pub faults: Vec<ActiveRule>,
    pub throttle: ThrottleConfig,
    pub rtt_delay: Duration,
    pub delete_pending: Duration,
    pub requests: std::collections::VecDeque<RequestRecord>,
    pub request_log_cap: usize,
    pub seq: u64,
    pub fault_429s: u64,
    /// Whether imports keep the unwrapped PKCS#8 for tests (off unless a test turns it on).
    pub retain_imported_pkcs8: bool,
    pub imported_pkcs8: Vec<ImportedPrivateKey>,
    /// `jti` of accepted client assertions → their `exp`: a replayed assertion is refused.
    pub seen_jtis: HashMap<String, i64>,
    /// Requests held by a `Delay` (before acting) or `CommitThenHold` (after acting) fault.
    pub holds: u64,
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub log_file: Option<Mutex<std::fs::File>>,
}

impl Shared {
    /// Lock the state. A poisoned lock (a panic elsewhere) is recovered: state stays usable.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The private key of an imported version as the emulator unwrapped it (PKCS#8 DER): what
/// Azure learns from a BYOK import. Only kept when a test asks, to prove the key shows up
/// nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportedPrivateKey {
    pub vault: String,
    pub name: String,
    pub version: String,
    pub pkcs8: Vec<u8>,
}

impl std::fmt::Debug for ImportedPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedPrivateKey")
            .field("vault", &self.vault)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("pkcs8_len", &self.pkcs8.len())
            .finish()
    }
}

/// A version as seen by tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    /// Version id (32 lowercase hex).
    pub version: String,
    /// Full kid.
    pub kid: String,
    /// JWK kty.
    pub kty: String,
    /// key_ops.
    pub key_ops: Vec<String>,
    /// Enabled flag.
    pub enabled: bool,
    /// Not-before (unix seconds).
    pub nbf: Option<i64>,
    /// Expiry (unix seconds).
    pub exp: Option<i64>,
    /// Created (unix seconds).
    pub created: i64,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Public key.
    pub public_key: PublicKey,
    /// How the version came to be.
    pub origin: Origin,
}

/// A key (all versions) as seen by tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// Key name.
    pub name: String,
    /// The latest version's key_ops is exactly `["import"]`.
    pub is_kek: bool,
    /// Number of versions.
    pub versions: usize,
    /// Latest version id.
    pub latest_version: String,
}

/// A soft-deleted key as seen by tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedView {
    /// Key name.
    pub name: String,
    /// Still inside the "being deleted" window (GET 404, purge 409).
    pub pending: bool,
    /// Deletion time.
    pub deleted_date: i64,
    /// Scheduled purge time.
    pub scheduled_purge_date: i64,
}

pub(crate) fn version_view(vault: &Vault, name: &str, v: &KeyVersion) -> VersionView {
    VersionView {
        version: v.version.clone(),
        kid: vault.kid(name, &v.version),
        kty: v.kty.clone(),
        key_ops: v.key_ops.clone(),
        enabled: v.enabled,
        nbf: v.nbf,
        exp: v.exp,
        created: v.created,
        tags: v.tags.clone(),
        public_key: v.material.public.clone(),
        origin: v.origin,
    }
}
