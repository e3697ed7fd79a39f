//! In-memory implementations of the kinds' interfaces ([`Vault`], [`JobStore`]), for the fast
//! unit tests of the kinds' state machines (test builds only). They behave as docs/byok-protocol.md
//! describes Key Vault: a deleted key is hidden for a while after the delete (404), a purge
//! right after it meets 409 "being deleted", a purge-protected vault refuses purges. The
//! end-to-end tests against the emulator stay the real proof.

use super::JobError;
use super::ports::{JobStore, KekChange, Vault};
use crate::azure::jwk::FINGERPRINT_TAG;
use crate::azure::{
    AzureError, DeletedKeyBundle, JsonWebKey, KeyAttributes, KeyBundle, KeyItem, KeyVaultError,
    RecoveryLevel,
};
use crate::model::{
    CredentialName, GroupName, JobId, JobStep, KekJournal, KeyGroup, KeyName, KeySync,
    KeySyncState, KeyType, RotationPolicy, RsaExponent, SyncStep, VaultName,
};
use std::collections::HashMap;
use std::sync::Mutex;

/// When Azure purges a deleted key on its own: 2026-03-01T00:00:00Z.
pub(super) const SCHEDULED_PURGE: i64 = 1_772_323_200;

/// A group on vault `kv1` whose Azure key is `payments`.
pub(super) fn group() -> KeyGroup {
    KeyGroup {
        name: GroupName::try_from("payments").unwrap(),
        credential: CredentialName::try_from("cred").unwrap(),
        vault: VaultName::try_from("kv1").unwrap(),
        key_type: KeyType::Rsa {
            bits: 2048,
            exponent: RsaExponent::F4,
        },
        key_ops: Vec::new(),
        rotation: RotationPolicy::default(),
        last_rotated: None,
        created: 0,
    }
}

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
    /// Versions per key: (version, fingerprint tag).
    versions: HashMap<String, Vec<(String, String)>>,
}

/// One Key Vault vault, in memory.
pub(super) struct FakeVault {
    name: String,
    state: Mutex<State>,
}

impl FakeVault {
    pub(super) fn new() -> Self {
        Self {
            name: "kv1".into(),
            state: Mutex::new(State::default()),
        }
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
        self.lock()
            .versions
            .entry(name.into())
            .or_default()
            .push((version.into(), fingerprint.into()));
        self
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
            vault: self.name.clone(),
            name: name.into(),
            deleted,
        })
    }

    fn bundle(&self, name: &str, level: &RecoveryLevel) -> KeyBundle {
        KeyBundle {
            key: JsonWebKey {
                kid: Some(format!(
                    "https://{}.vault.azure.net/keys/{name}/0a1b",
                    self.name
                )),
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
    fn name(&self) -> &str {
        &self.name
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
                vault: self.name.clone(),
                name: key.into(),
            }));
        }
        if s.being_deleted > 0 {
            s.being_deleted -= 1;
            return Err(AzureError::KeyVault(KeyVaultError::BeingDeleted {
                vault: self.name.clone(),
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
            .map(|(version, fp)| KeyItem {
                kid: format!("https://{}.vault.azure.net/keys/{key}/{version}", self.name),
                tags: Some([(FINGERPRINT_TAG.to_owned(), fp.clone())].into()),
                ..KeyItem::default()
            })
            .collect())
    }
}

/// One job's record, in memory: what a run before a "restart" journalled is given up front.
#[derive(Default)]
pub(super) struct FakeStore {
    journal: Mutex<Vec<JobStep>>,
    keys: Mutex<Vec<KeySync>>,
    kek: Mutex<Option<KekJournal>>,
    /// Versions recorded on the local keys: (key, version).
    recorded: Mutex<Vec<(KeyName, String)>>,
    notes: Mutex<Vec<String>>,
    forgotten: Mutex<usize>,
}

impl FakeStore {
    /// A record whose journal already holds `steps` (the run before a restart).
    pub(super) fn after(steps: impl IntoIterator<Item = JobStep>) -> Self {
        let store = Self::default();
        store.journal.lock().unwrap().extend(steps);
        store
    }

    /// A sync's keys, as the run before a restart left them.
    pub(super) fn with_keys(self, keys: impl IntoIterator<Item = KeySync>) -> Self {
        self.keys.lock().unwrap().extend(keys);
        self
    }

    /// A sync's KEK record, as the run before a restart left it.
    pub(super) fn with_kek(self, kek: KekJournal) -> Self {
        *self.kek.lock().unwrap() = Some(kek);
        self
    }

    pub(super) fn kek_state(&self) -> Option<KekJournal> {
        self.kek.lock().unwrap().clone()
    }

    pub(super) fn key_states(&self) -> Vec<KeySync> {
        self.keys.lock().unwrap().clone()
    }

    pub(super) fn recorded(&self) -> Vec<(KeyName, String)> {
        self.recorded.lock().unwrap().clone()
    }

    pub(super) fn steps(&self) -> Vec<JobStep> {
        self.journal.lock().unwrap().clone()
    }

    pub(super) fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }

    /// How often the group's Azure versions were forgotten.
    pub(super) fn forgotten(&self) -> usize {
        *self.forgotten.lock().unwrap()
    }
}

impl JobStore for FakeStore {
    async fn journal(&self, _id: JobId) -> Result<Vec<JobStep>, JobError> {
        Ok(self.steps())
    }

    async fn record(
        &self,
        _id: JobId,
        step: JobStep,
        message: String,
        _progress: Option<u16>,
    ) -> Result<(), JobError> {
        self.journal.lock().unwrap().push(step);
        self.notes.lock().unwrap().push(message);
        Ok(())
    }

    async fn note(
        &self,
        _id: JobId,
        message: String,
        _progress: Option<u16>,
    ) -> Result<(), JobError> {
        self.notes.lock().unwrap().push(message);
        Ok(())
    }

    async fn forget_azure_versions(&self, _group: &GroupName) -> Result<usize, JobError> {
        *self.forgotten.lock().unwrap() += 1;
        Ok(1)
    }

    async fn key_syncs(&self, _id: JobId) -> Result<Vec<KeySync>, JobError> {
        Ok(self.key_states())
    }

    async fn record_sync(
        &self,
        _id: JobId,
        _group: &GroupName,
        key: &KeyName,
        version: &str,
        message: String,
    ) -> Result<(), JobError> {
        self.set_state(
            key,
            KeySyncState::Imported {
                version: version.into(),
            },
        );
        self.recorded
            .lock()
            .unwrap()
            .push((key.clone(), version.into()));
        self.journal.lock().unwrap().push(
            SyncStep::Imported {
                key: key.clone(),
                version: version.into(),
            }
            .into(),
        );
        self.notes.lock().unwrap().push(message);
        Ok(())
    }

    async fn mark_not_started(
        &self,
        _id: JobId,
        key: &KeyName,
        message: String,
    ) -> Result<(), JobError> {
        self.set_state(key, KeySyncState::NotStarted);
        self.notes.lock().unwrap().push(message);
        Ok(())
    }

    async fn kek(&self, _id: JobId) -> Result<Option<KekJournal>, JobError> {
        Ok(self.kek_state())
    }

    async fn record_kek(
        &self,
        _id: JobId,
        change: KekChange,
        message: String,
    ) -> Result<(), JobError> {
        if let Some(k) = self.kek.lock().unwrap().as_mut() {
            change.apply(k);
        }
        self.journal.lock().unwrap().push(change.step());
        self.notes.lock().unwrap().push(message);
        Ok(())
    }
}

impl FakeStore {
    fn set_state(&self, key: &KeyName, state: KeySyncState) {
        for k in self
            .keys
            .lock()
            .unwrap()
            .iter_mut()
            .filter(|k| &k.key == key)
        {
            k.state = state.clone();
        }
    }
}
