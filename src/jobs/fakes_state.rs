//! In-memory implementations of the state and HSM interfaces ([`JobStore`], [`LocalKeys`],
//! [`KeyHsm`]) for the kinds' unit tests (test builds only): one job's record, the group's
//! local keys and an HSM whose public keys are made-up P-256 points. Each remembers what it
//! was asked, so a test can assert the calls a state machine made.

use super::JobError;
use super::ports::{JobStore, KekChange, KeyHsm, LocalKeys, Validity};
use super::sync_imports::Batch;
use crate::azure::{JsonWebKey, Kek};
use crate::clock::ManualClock;
use crate::hsm::{HsmError, KekPublicKey, KeyIdentity, PublicKeyInfo, WrapStrategy};
use crate::model::{
    AzureVersion, CredentialName, DriftReport, GroupName, HsmKeyId, HsmPoolName, JobId, JobStep,
    KekJournal, Key, KeyGroup, KeyName, KeySync, KeySyncState, KeyType, PendingGrace, RotateStep,
    RotationPolicy, RsaExponent, Storage, SyncStep, VaultName,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// The DER prefix of a P-256 SubjectPublicKeyInfo, up to the point.
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

/// A made-up P-256 public key for `seed`: its SPKI DER (as the HSM gives it) and its JWK (as
/// Key Vault shows it). Different seeds give different keys.
pub(in crate::jobs) fn ec_key(seed: u8) -> (Vec<u8>, JsonWebKey) {
    let (x, y) = ([seed; 32], [seed ^ 0x5a; 32]);
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(&x);
    spki.extend_from_slice(&y);
    let jwk = JsonWebKey {
        kty: Some("EC-HSM".into()),
        x: Some(URL_SAFE_NO_PAD.encode(x)),
        y: Some(URL_SAFE_NO_PAD.encode(y)),
        ..JsonWebKey::default()
    };
    (spki, jwk)
}

/// A group on vault `kv1` whose Azure key is `payments`.
pub(in crate::jobs) fn group() -> KeyGroup {
    KeyGroup {
        name: GroupName::try_from("payments").unwrap(),
        credential: CredentialName::try_from("cred").unwrap(),
        target: crate::model::Target::KeyVault(VaultName::try_from("kv1").unwrap()),
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

/// [`group`] on Managed HSM pool `pool1`.
pub(in crate::jobs) fn pool_group() -> KeyGroup {
    KeyGroup {
        target: crate::model::Target::ManagedHsm(HsmPoolName::try_from("pool1").unwrap()),
        ..group()
    }
}

/// The HSM id of the fake key with `seed`.
pub(in crate::jobs) fn hsm_id(seed: u8) -> HsmKeyId {
    HsmKeyId([seed; 16])
}

/// An HSM whose key `hsm_id(seed)` has the public key `ec_key(seed)`.
#[derive(Default)]
pub(in crate::jobs) struct FakeHsm {
    wraps: Mutex<Vec<HsmKeyId>>,
    /// No strategy wraps the group's key type conformingly.
    refuses: bool,
}

impl FakeHsm {
    /// An HSM on which no strategy wraps any key type conformingly.
    pub(in crate::jobs) fn refusing() -> Self {
        Self {
            refuses: true,
            ..Self::default()
        }
    }

    /// The keys wrapped for transfer, in order.
    pub(in crate::jobs) fn wraps(&self) -> Vec<HsmKeyId> {
        self.wraps.lock().unwrap().clone()
    }
}

impl KeyHsm for FakeHsm {
    fn strategy_for(&self, key_type: KeyType) -> Result<WrapStrategy, HsmError> {
        if self.refuses {
            return Err(HsmError::NonConformingEncoding {
                key_type: format!("{key_type:?}"),
                reason: "the fake HSM wraps nothing conformingly".into(),
                host_allowed: false,
            });
        }
        Ok(WrapStrategy::Native)
    }

    fn generator(&self) -> String {
        "byokd test; fake HSM".into()
    }

    async fn key_identity(&self, key: HsmKeyId) -> Result<KeyIdentity, HsmError> {
        let spki_der = ec_key(key.0[0]).0;
        Ok(KeyIdentity::Public(PublicKeyInfo {
            check_digits: crate::hsm::check_digits(&spki_der),
            spki_der,
        }))
    }

    async fn wrap_for_transfer(
        &self,
        key: HsmKeyId,
        _kek: &KekPublicKey,
    ) -> Result<Vec<u8>, HsmError> {
        self.wraps.lock().unwrap().push(key);
        Ok(vec![key.0[0]; 48])
    }
}

/// One job's record and its group's local keys, in memory: what a run before a "restart"
/// journalled is given up front.
#[derive(Default)]
pub(in crate::jobs) struct FakeStore {
    journal: Mutex<Vec<JobStep>>,
    keys: Mutex<Vec<KeySync>>,
    kek: Mutex<Option<KekJournal>>,
    /// Versions recorded on the local keys: (key, version).
    recorded: Mutex<Vec<(KeyName, AzureVersion)>>,
    notes: Mutex<Vec<String>>,
    forgotten: Mutex<usize>,
    cancel: Mutex<Option<String>>,
    error: Mutex<Option<String>>,
    local: Mutex<Vec<Key>>,
    generated: Mutex<Vec<KeyName>>,
    /// Unrecorded HSM objects the next clean-up finds.
    unrecorded: Mutex<usize>,
    grace: Mutex<Option<PendingGrace>>,
    drift: Mutex<Option<DriftReport>>,
    /// How a rotation ended: (last rotated, closing message).
    rotated: Mutex<Option<(i64, String)>>,
}

/// A local key `name` made from the fake HSM key `seed`, pushed as `version` if any.
pub(in crate::jobs) fn local_key(name: &str, seed: u8, version: Option<&str>) -> Key {
    Key {
        name: KeyName::try_from(name).unwrap(),
        group: GroupName::try_from("payments").unwrap(),
        hsm_id: hsm_id(seed),
        check_digits: format!("{seed:04X}"),
        key_type: KeyType::Rsa {
            bits: 2048,
            exponent: RsaExponent::F4,
        },
        storage: Storage::Protected,
        created: 0,
        azure_version: version.map(AzureVersion::new),
    }
}

impl FakeStore {
    /// A record whose journal already holds `steps` (the run before a restart).
    pub(in crate::jobs) fn after(steps: impl IntoIterator<Item = JobStep>) -> Self {
        let store = Self::default();
        store.journal.lock().unwrap().extend(steps);
        store
    }

    /// A sync's keys, as the run before a restart left them.
    pub(in crate::jobs) fn with_keys(self, keys: impl IntoIterator<Item = KeySync>) -> Self {
        self.keys.lock().unwrap().extend(keys);
        self
    }

    /// A sync's KEK record, as the run before a restart left it.
    pub(in crate::jobs) fn with_kek(self, kek: KekJournal) -> Self {
        *self.kek.lock().unwrap() = Some(kek);
        self
    }

    /// The group's local keys.
    pub(in crate::jobs) fn with_local(self, keys: impl IntoIterator<Item = Key>) -> Self {
        self.local.lock().unwrap().extend(keys);
        self
    }

    /// `n` HSM objects that a run before a restart generated but never recorded.
    pub(in crate::jobs) fn with_unrecorded(self, n: usize) -> Self {
        *self.unrecorded.lock().unwrap() = n;
        self
    }

    /// A grace entry waiting.
    pub(in crate::jobs) fn with_grace(self, grace: PendingGrace) -> Self {
        *self.grace.lock().unwrap() = Some(grace);
        self
    }

    /// Someone asked to cancel the job.
    pub(in crate::jobs) fn cancelled_by(self, by: &str) -> Self {
        *self.cancel.lock().unwrap() = Some(by.into());
        self
    }

    pub(in crate::jobs) fn kek_state(&self) -> Option<KekJournal> {
        self.kek.lock().unwrap().clone()
    }

    pub(in crate::jobs) fn key_states(&self) -> Vec<KeySync> {
        self.keys.lock().unwrap().clone()
    }

    pub(in crate::jobs) fn recorded(&self) -> Vec<(KeyName, AzureVersion)> {
        self.recorded.lock().unwrap().clone()
    }

    pub(in crate::jobs) fn steps(&self) -> Vec<JobStep> {
        self.journal.lock().unwrap().clone()
    }

    pub(in crate::jobs) fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }

    /// How often the group's Azure versions were forgotten.
    pub(in crate::jobs) fn forgotten(&self) -> usize {
        *self.forgotten.lock().unwrap()
    }

    /// The keys generated in the HSM, in order.
    pub(in crate::jobs) fn generated(&self) -> Vec<KeyName> {
        self.generated.lock().unwrap().clone()
    }

    pub(in crate::jobs) fn grace(&self) -> Option<PendingGrace> {
        self.grace.lock().unwrap().clone()
    }

    pub(in crate::jobs) fn drift(&self) -> Option<DriftReport> {
        self.drift.lock().unwrap().clone()
    }

    pub(in crate::jobs) fn rotated(&self) -> Option<(i64, String)> {
        self.rotated.lock().unwrap().clone()
    }

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

    fn push(&self, step: impl Into<JobStep>, message: String) {
        self.journal.lock().unwrap().push(step.into());
        self.notes.lock().unwrap().push(message);
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
        self.push(step, message);
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

    async fn cancel_requested(&self, _id: JobId) -> Result<Option<String>, JobError> {
        Ok(self.cancel.lock().unwrap().clone())
    }

    async fn failed_before(&self, _id: JobId) -> Result<Option<String>, JobError> {
        Ok(self.error.lock().unwrap().clone())
    }

    async fn keep_error(&self, _id: JobId, reason: String) -> Result<(), JobError> {
        self.error.lock().unwrap().get_or_insert(reason);
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
        version: &AzureVersion,
        messages: Vec<String>,
        _progress: Option<u16>,
    ) -> Result<(), JobError> {
        let imported = KeySyncState::Imported {
            version: version.clone(),
        };
        self.set_state(key, imported);
        for k in self.local.lock().unwrap().iter_mut() {
            if &k.name == key {
                k.azure_version = Some(version.clone());
            }
        }
        self.recorded
            .lock()
            .unwrap()
            .push((key.clone(), version.clone()));
        let step = SyncStep::Imported {
            key: key.clone(),
            version: version.clone(),
        };
        self.push(step, messages.join("; "));
        Ok(())
    }

    async fn mark_imported(
        &self,
        _id: JobId,
        key: &KeyName,
        version: &AzureVersion,
        message: String,
    ) -> Result<(), JobError> {
        let imported = KeySyncState::Imported {
            version: version.clone(),
        };
        self.set_state(key, imported);
        let step = SyncStep::Imported {
            key: key.clone(),
            version: version.clone(),
        };
        self.push(step, message);
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

    async fn record_import_sent(
        &self,
        _id: JobId,
        key: &KeyName,
        fingerprint: &str,
        message: String,
    ) -> Result<(), JobError> {
        let sent = KeySyncState::ImportSent {
            fingerprint: fingerprint.into(),
        };
        self.set_state(key, sent);
        self.push(SyncStep::ImportSent { key: key.clone() }, message);
        Ok(())
    }

    async fn kek(&self, _id: JobId) -> Result<Option<KekJournal>, JobError> {
        Ok(self.kek_state())
    }

    async fn plan_kek(&self, _id: JobId, kek: KekJournal, message: String) -> Result<(), JobError> {
        *self.kek.lock().unwrap() = Some(kek);
        self.push(SyncStep::KekPlanned, message);
        Ok(())
    }

    async fn record_kek_created(
        &self,
        _id: JobId,
        kid: &str,
        message: String,
        _progress: Option<u16>,
    ) -> Result<(), JobError> {
        if let Some(k) = self.kek.lock().unwrap().as_mut() {
            k.kid = Some(kid.into());
        }
        self.push(SyncStep::KekCreated, message);
        Ok(())
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
        self.push(change.step(), message);
        Ok(())
    }

    async fn record_rotation_key(
        &self,
        _id: JobId,
        key: &KeyName,
        message: String,
    ) -> Result<(), JobError> {
        self.keys.lock().unwrap().push(KeySync {
            key: key.clone(),
            state: KeySyncState::NotStarted,
        });
        self.push(RotateStep::KeyGenerated { key: key.clone() }, message);
        Ok(())
    }

    async fn finish_rotation(
        &self,
        _id: JobId,
        _group: &GroupName,
        at: i64,
        grace: Option<PendingGrace>,
        message: String,
    ) -> Result<(), JobError> {
        if let Some(g) = grace {
            *self.grace.lock().unwrap() = Some(g);
        }
        *self.rotated.lock().unwrap() = Some((at, message));
        Ok(())
    }

    async fn set_drift(&self, _group: &GroupName, report: DriftReport) -> Result<(), JobError> {
        *self.drift.lock().unwrap() = Some(report);
        Ok(())
    }

    async fn grace_of(&self, _group: &GroupName) -> Result<Option<PendingGrace>, JobError> {
        Ok(self.grace())
    }

    async fn clear_grace(&self, _group: &GroupName) -> Result<(), JobError> {
        *self.grace.lock().unwrap() = None;
        Ok(())
    }
}

impl LocalKeys for FakeStore {
    async fn keys(&self, _group: &GroupName) -> Result<Vec<Key>, JobError> {
        Ok(self.local.lock().unwrap().clone())
    }

    async fn key(&self, _group: &GroupName, name: &KeyName) -> Result<Key, JobError> {
        let local = self.local.lock().unwrap();
        let found = local.iter().find(|k| &k.name == name);
        found
            .cloned()
            .ok_or_else(|| JobError::Invalid(format!("no key {name}")))
    }

    async fn generate(
        &self,
        _group: &GroupName,
        name: &KeyName,
        _by: &str,
    ) -> Result<(), JobError> {
        let mut generated = self.generated.lock().unwrap();
        generated.push(name.clone());
        let seed = 100 + u8::try_from(generated.len()).unwrap();
        self.local
            .lock()
            .unwrap()
            .push(local_key(name.as_str(), seed, None));
        Ok(())
    }

    async fn destroy_unrecorded(
        &self,
        _group: &GroupName,
        _name: &KeyName,
    ) -> Result<usize, JobError> {
        Ok(std::mem::take(&mut *self.unrecorded.lock().unwrap()))
    }
}

/// A sync's import batch for job `id` at `now` under a made-up KEK, one import at a time.
pub(in crate::jobs) fn fake_batch(id: JobId, now: i64, validity: Validity, total: usize) -> Batch {
    let clock = ManualClock::new(time::OffsetDateTime::from_unix_timestamp(now).unwrap());
    let kek = Kek {
        kid: format!("https://kv1.vault.azure.net/keys/byokd-kek-{id}/0a1b"),
        version: "0a1b".into(),
        n: vec![0xC3; 8],
        e: vec![1, 0, 1],
        recovery_level: None,
    };
    Batch::new(
        id,
        &group(),
        (&kek, "byokd test".into()),
        (validity, total),
        Arc::new(clock),
        Arc::new(Semaphore::new(1)),
    )
}
