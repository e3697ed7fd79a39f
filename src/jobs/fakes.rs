//! An in-memory Key Vault vault ([`Vault`]), for the fast unit tests of the kinds' state
//! machines (test builds only; the state and the HSM are in `fakes_state`). It behaves as
//! docs/byok-protocol.md describes Key Vault: a deleted key is hidden for a while after the delete
//! (404), a purge right after it meets 409 "being deleted", a purge-protected vault refuses
//! purges, an import makes a new version carrying its tags. The end-to-end tests against the
//! emulator stay the real proof.

pub(super) use super::fakes_state::{
    FakeHsm, FakeStore, ec_key, fake_batch, group, hsm_id, local_key, pool_group,
};
use super::ports::Vault;
use crate::azure::jwk::FINGERPRINT_TAG;
use crate::azure::{
    AzureError, DeletedKeyBundle, ImportRequest, JsonWebKey, Kek, KeyAttributes, KeyBundle,
    KeyItem, KeyUpdate, KeyVaultError, KvOp, RecoveryLevel,
};
use crate::model::{AzureVersion, Target};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// When Azure purges a deleted key on its own: 2026-03-01T00:00:00Z.
pub(super) const SCHEDULED_PURGE: i64 = 1_772_323_200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FakeKey {
    Live(RecoveryLevel),
    Deleted(RecoveryLevel),
}

#[derive(Default)]
struct State {
    keys: HashMap<String, FakeKey>,
    /// `get_deleted_key` answers 404 this many more times (Azure's window after a delete).
    hidden_polls: usize,
    /// `purge_deleted_key` answers 409 "being deleted" this many more times.
    being_deleted: usize,
    /// Requests that change the vault, in order ("delete payments", ...).
    changes: Vec<String>,
    /// Versions per key, oldest first.
    versions: HashMap<String, Vec<FakeVersion>>,
    /// The public key an import of a key with this fingerprint tag shows.
    public: HashMap<String, JsonWebKey>,
    /// The next import's answer is lost (after Azure made the version).
    lose_import_answer: bool,
    /// The import requests received, in order.
    imports: Vec<ImportRequest>,
    /// The import after this many more is refused, once, as given.
    refuse_import: Option<(usize, Refusal)>,
}

/// How the fake vault refuses an import.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    /// 401: the token expired.
    Unauthorized,
    /// 403: the application lacks the `import` permission.
    Forbidden,
}

/// One version of a key in the fake vault.
#[derive(Debug, Clone, Default)]
pub(super) struct FakeVersion {
    pub(super) version: String,
    pub(super) fingerprint: Option<String>,
    pub(super) enabled: bool,
    pub(super) exp: Option<i64>,
    pub(super) jwk: JsonWebKey,
}

/// One Key Vault vault (or Managed HSM pool), in memory; clones share it.
#[derive(Clone)]
pub(super) struct FakeVault {
    target: Target,
    state: Arc<Mutex<State>>,
}

impl FakeVault {
    /// Vault `kv1`, as [`group`]'s target.
    pub(super) fn new() -> Self {
        Self {
            target: group().target,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Managed HSM pool `pool1` instead, as [`pool_group`]'s target.
    pub(super) fn pool() -> Self {
        Self {
            target: pool_group().target,
            ..Self::new()
        }
    }

    /// The vault's (or pool's) name.
    pub(super) fn name(&self) -> &str {
        self.target.name()
    }

    /// After `imports` more imports, the next is refused as `how`, once.
    pub(super) fn refusing_import_after(self, imports: usize, how: Refusal) -> Self {
        self.lock().refuse_import = Some((imports, how));
        self
    }

    pub(super) fn with_key(self, name: &str, key: FakeKey) -> Self {
        self.lock().keys.insert(name.into(), key);
        self
    }

    /// The deleted key stays unlisted for `polls` more reads.
    pub(super) fn hidden_for(self, polls: usize) -> Self {
        self.lock().hidden_polls = polls;
        self
    }

    /// Purges meet 409 "being deleted" `times` more times.
    pub(super) fn being_deleted_for(self, times: usize) -> Self {
        self.lock().being_deleted = times;
        self
    }

    /// A version of key `name` tagged with `fingerprint`, as an import leaves it.
    pub(super) fn with_version(self, name: &str, version: &str, fingerprint: &str) -> Self {
        self.with(
            name,
            FakeVersion {
                version: version.into(),
                fingerprint: Some(fingerprint.into()),
                enabled: true,
                ..FakeVersion::default()
            },
        )
    }

    /// A version of key `name` that an import of the fake HSM's key `seed` left: its
    /// fingerprint tag and its public key.
    pub(super) fn with_imported(self, name: &str, version: &str, seed: u8) -> Self {
        let (spki, jwk) = ec_key(seed);
        self.with(
            name,
            FakeVersion {
                version: version.into(),
                fingerprint: Some(crate::azure::jwk::fingerprint(&spki)),
                enabled: true,
                jwk,
                ..FakeVersion::default()
            },
        )
    }

    /// A version of key `name` as given.
    pub(super) fn with(self, name: &str, version: FakeVersion) -> Self {
        {
            let mut s = self.lock();
            s.keys
                .entry(name.into())
                .or_insert(FakeKey::Live(RecoveryLevel::RecoverablePurgeable));
            s.versions.entry(name.into()).or_default().push(version);
        }
        self
    }

    /// An import tagged with fingerprint `fp` shows the public key `jwk`.
    pub(super) fn answering(self, fp: &str, jwk: JsonWebKey) -> Self {
        self.lock().public.insert(fp.into(), jwk);
        self
    }

    /// The next import's answer is lost after Azure made the version.
    pub(super) fn losing_import_answer(self) -> Self {
        self.lock().lose_import_answer = true;
        self
    }

    /// The import requests received, in order.
    pub(super) fn imports(&self) -> Vec<ImportRequest> {
        self.lock().imports.clone()
    }

    /// The versions of key `name`.
    pub(super) fn versions(&self, name: &str) -> Vec<FakeVersion> {
        self.lock().versions.get(name).cloned().unwrap_or_default()
    }

    pub(super) fn key(&self, name: &str) -> Option<FakeKey> {
        self.lock().keys.get(name).cloned()
    }

    pub(super) fn changes(&self) -> Vec<String> {
        self.lock().changes.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn not_found(&self, name: &str, deleted: bool) -> AzureError {
        AzureError::KeyVault(KeyVaultError::NotFound {
            vault: self.name().to_owned(),
            name: name.into(),
            deleted,
        })
    }

    fn bundle(&self, name: &str, level: &RecoveryLevel) -> KeyBundle {
        KeyBundle {
            key: JsonWebKey {
                kid: Some(format!(
                    "https://{}.vault.azure.net/keys/{name}/0a1b",
                    self.name()
                )),
                // An RSA public key, as a KEK shows it.
                n: Some("w8PDw8PDw8M".into()),
                e: Some("AQAB".into()),
                ..JsonWebKey::default()
            },
            attributes: KeyAttributes {
                recovery_level: Some(level.clone()),
                ..KeyAttributes::default()
            },
            ..KeyBundle::default()
        }
    }

    fn deleted(&self, name: &str, level: &RecoveryLevel) -> DeletedKeyBundle {
        DeletedKeyBundle {
            bundle: self.bundle(name, level),
            scheduled_purge_date: Some(SCHEDULED_PURGE),
            ..DeletedKeyBundle::default()
        }
    }
}

impl Vault for FakeVault {
    fn target(&self) -> &Target {
        &self.target
    }

    async fn get_key(&self, key: &str) -> Result<KeyBundle, AzureError> {
        match self.key(key) {
            Some(FakeKey::Live(level)) => Ok(self.bundle(key, &level)),
            _ => Err(self.not_found(key, false)),
        }
    }

    async fn delete_key(&self, key: &str) -> Result<DeletedKeyBundle, AzureError> {
        let mut s = self.lock();
        let Some(FakeKey::Live(level)) = s.keys.get(key).cloned() else {
            return Err(self.not_found(key, false));
        };
        s.changes.push(format!("delete {key}"));
        if level == RecoveryLevel::Purgeable {
            s.keys.remove(key);
        } else {
            s.keys.insert(key.into(), FakeKey::Deleted(level.clone()));
        }
        Ok(self.deleted(key, &level))
    }

    async fn get_deleted_key(&self, key: &str) -> Result<DeletedKeyBundle, AzureError> {
        let mut s = self.lock();
        match s.keys.get(key).cloned() {
            Some(FakeKey::Deleted(_)) if s.hidden_polls > 0 => {
                s.hidden_polls -= 1;
                Err(self.not_found(key, true))
            }
            Some(FakeKey::Deleted(level)) => Ok(self.deleted(key, &level)),
            _ => Err(self.not_found(key, true)),
        }
    }

    async fn purge_deleted_key(&self, key: &str) -> Result<(), AzureError> {
        let mut s = self.lock();
        let Some(FakeKey::Deleted(level)) = s.keys.get(key).cloned() else {
            return Err(self.not_found(key, true));
        };
        if level.purge_protected() {
            return Err(AzureError::KeyVault(KeyVaultError::PurgeProtected {
                vault: self.name().to_owned(),
                name: key.into(),
            }));
        }
        if s.being_deleted > 0 {
            s.being_deleted -= 1;
            return Err(AzureError::KeyVault(KeyVaultError::BeingDeleted {
                vault: self.name().to_owned(),
                name: key.into(),
            }));
        }
        s.changes.push(format!("purge {key}"));
        s.keys.remove(key);
        Ok(())
    }

    async fn recover_deleted_key(&self, key: &str) -> Result<KeyBundle, AzureError> {
        let mut s = self.lock();
        let Some(FakeKey::Deleted(level)) = s.keys.get(key).cloned() else {
            return Err(self.not_found(key, true));
        };
        s.changes.push(format!("recover {key}"));
        s.keys.insert(key.into(), FakeKey::Live(level.clone()));
        Ok(self.bundle(key, &level))
    }

    async fn list_versions(&self, key: &str) -> Result<Vec<KeyItem>, AzureError> {
        let s = self.lock();
        let Some(versions) = s.versions.get(key) else {
            return Err(self.not_found(key, false));
        };
        Ok(versions
            .iter()
            .map(|v| KeyItem {
                kid: self.kid(key, &v.version),
                tags: v
                    .fingerprint
                    .as_ref()
                    .map(|fp| [(FINGERPRINT_TAG.to_owned(), fp.clone())].into()),
                attributes: KeyAttributes {
                    enabled: Some(v.enabled),
                    exp: v.exp,
                    ..KeyAttributes::default()
                },
                ..KeyItem::default()
            })
            .collect())
    }

    async fn get_version(
        &self,
        key: &str,
        version: &AzureVersion,
    ) -> Result<KeyBundle, AzureError> {
        let s = self.lock();
        let found = s
            .versions
            .get(key)
            .and_then(|vs| vs.iter().find(|v| version == v.version.as_str()));
        let Some(v) = found else {
            return Err(self.not_found(key, false));
        };
        Ok(KeyBundle {
            key: JsonWebKey {
                kid: Some(self.kid(key, &v.version)),
                ..v.jwk.clone()
            },
            ..KeyBundle::default()
        })
    }

    async fn create_kek(&self, name: &str, _bits: u32, _exp: i64) -> Result<Kek, AzureError> {
        let mut s = self.lock();
        s.changes.push(format!("create {name}"));
        let level = RecoveryLevel::RecoverablePurgeable;
        s.keys.insert(name.into(), FakeKey::Live(level.clone()));
        Ok(Kek {
            kid: self.kid(name, "0a1b"),
            version: "0a1b".into(),
            n: vec![0xC3; 8],
            e: vec![1, 0, 1],
            recovery_level: Some(level),
        })
    }

    async fn import_key(
        &self,
        key: &str,
        request: &ImportRequest,
    ) -> Result<KeyBundle, AzureError> {
        let mut s = self.lock();
        match s.refuse_import {
            Some((0, how)) => {
                s.refuse_import = None;
                let vault = self.name().to_owned();
                return Err(AzureError::KeyVault(match how {
                    Refusal::Unauthorized => KeyVaultError::Unauthorized {
                        vault,
                        tenant: None,
                    },
                    Refusal::Forbidden => KeyVaultError::PermissionDenied {
                        vault,
                        op: KvOp::Import,
                        inner: "ForbiddenByRbac".into(),
                    },
                }));
            }
            Some((n, how)) => s.refuse_import = Some((n - 1, how)),
            None => {}
        }
        s.changes.push(format!("import {key}"));
        s.imports.push(request.clone());
        let fingerprint = request.tags.get(FINGERPRINT_TAG).cloned();
        let jwk = fingerprint
            .as_ref()
            .and_then(|fp| s.public.get(fp).cloned())
            .unwrap_or_default();
        // The next free "vN".
        let taken = s.versions.get(key).cloned().unwrap_or_default();
        let version = (taken.len() + 1..)
            .map(|n| format!("v{n}"))
            .find(|v| !taken.iter().any(|t| &t.version == v))
            .unwrap();
        s.keys
            .entry(key.into())
            .or_insert(FakeKey::Live(RecoveryLevel::RecoverablePurgeable));
        s.versions.entry(key.into()).or_default().push(FakeVersion {
            version: version.clone(),
            fingerprint,
            enabled: request.enabled,
            exp: request.exp,
            jwk: jwk.clone(),
        });
        if std::mem::take(&mut s.lose_import_answer) {
            return Err(AzureError::ResponseLost {
                method: "POST".into(),
                host: format!("{}.vault.azure.net", self.name()),
                path: format!("/keys/{key}/import"),
                reason: "connection reset".into(),
            });
        }
        Ok(KeyBundle {
            key: JsonWebKey {
                kid: Some(self.kid(key, &version)),
                ..jwk
            },
            ..KeyBundle::default()
        })
    }

    async fn update_key(
        &self,
        key: &str,
        version: &AzureVersion,
        update: &KeyUpdate,
    ) -> Result<KeyBundle, AzureError> {
        let mut s = self.lock();
        let found = s
            .versions
            .get_mut(key)
            .and_then(|vs| vs.iter_mut().find(|v| version == v.version.as_str()));
        let Some(v) = found else {
            return Err(self.not_found(key, false));
        };
        if let Some(enabled) = update.enabled {
            v.enabled = enabled;
        }
        s.changes.push(format!("update {key}/{version}"));
        Ok(KeyBundle {
            key: JsonWebKey {
                kid: Some(self.kid(key, version.as_str())),
                ..JsonWebKey::default()
            },
            ..KeyBundle::default()
        })
    }
}

impl FakeVault {
    fn kid(&self, key: &str, version: &str) -> String {
        format!(
            "https://{}.vault.azure.net/keys/{key}/{version}",
            self.name()
        )
    }
}
