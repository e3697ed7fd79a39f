//! The import phase of "Synchronize HSM protected key(s)". Pending keys are wrapped in the HSM
//! ahead of their turn and imported with up to `azure.vault_concurrent_imports` imports in flight
//! per vault (one bound shared by every job on that vault). Each import still takes a slot of the
//! vault's CREATE budget in the Key Vault client, so the budget, not one import's round trip,
//! sets the pace. Each import's intent is journalled before it is sent and its version after;
//! an import whose answer never arrived is found again by its fingerprint tag.
//!
//! Must never: send an import whose intent is not journalled, start an import after a cancel or
//! a failure was seen, or return while an import it started is still in flight (whoever runs
//! next resolves `ImportSent` keys from the journal and must not race a live request).

use super::executor::Flow;
use super::ports::{JobStore, KeyHsm, LocalKeys, SignedIn, Validity, Vault};
use super::sync_resolve::find_by_fingerprint;
use super::{JobError, Jobs};
use crate::azure::jwk::{FINGERPRINT_TAG, identity_fingerprint, jwk_matches};
use crate::azure::retry_notice::{self, RetryNotice};
use crate::azure::transfer_blob::key_hsm;
use crate::azure::{AccessToken, AzureError, ImportRequest, Kek};
use crate::clock::Clock;
use crate::hsm::KekPublicKey;
use crate::logs::Event;
use crate::model::{AzureVersion, JobId, KeyGroup, KeyName, KeyType};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Keys wrapped ahead per import slot, so an import never waits for the (serial) HSM worker.
const WRAP_AHEAD: usize = 2;
/// HSM requests one job keeps queued at once: the worker is serial, so more would only crowd
/// its queue (`hsm::QUEUE_DEPTH`) for other callers.
const HSM_QUEUED: usize = 2;

/// The keys one run imports, how long their versions stay valid, and the vault's bound on
/// imports in flight (`slots`, shared by every job on the vault, `in_flight` permits).
pub(super) struct ImportPlan {
    pub(super) keys: Vec<KeyName>,
    pub(super) validity: Validity,
    pub(super) slots: Arc<Semaphore>,
    pub(super) in_flight: usize,
    pub(super) clock: Arc<dyn Clock>,
}

/// Starts one key's import ([`import_one`]) as a task of its own, on the vault of the batch's
/// group signed in with `token`, against the job's state and HSM.
pub(super) trait StartImport {
    fn import(
        &self,
        token: &AccessToken,
        batch: Arc<Batch>,
        key: KeyName,
    ) -> impl Future<Output = Result<Outcome, JobError>> + Send + 'static;
}

impl StartImport for Jobs {
    fn import(
        &self,
        token: &AccessToken,
        batch: Arc<Batch>,
        key: KeyName,
    ) -> impl Future<Output = Result<Outcome, JobError>> + Send + 'static {
        let (azure, svc, token) = (self.azure().clone(), self.service().clone(), token.clone());
        async move {
            let vault = SignedIn::new(azure.keyvault(), token, &batch.group.target);
            import_one((&vault, &svc, svc.hsm()), &batch, &key).await
        }
    }
}

/// What every import of one job run shares.
pub(super) struct Batch {
    id: JobId,
    group: KeyGroup,
    kek: Kek,
    generator: String,
    validity: Validity,
    clock: Arc<dyn Clock>,
    /// The vault's bound on imports in flight.
    slots: Arc<Semaphore>,
    /// This job's bound on queued HSM requests.
    hsm: Semaphore,
    /// Set on a cancel or a failure: no import starts after it.
    stop: AtomicBool,
    /// Keys synced so far in this run; held while one is recorded, so the "n of total" steps
    /// and the progress are journalled in order.
    done: tokio::sync::Mutex<usize>,
    total: usize,
}

impl Batch {
    /// A run importing `total` keys under `kek`, within the vault's `slots`.
    pub(super) fn new(
        id: JobId,
        group: &KeyGroup,
        (kek, generator): (&Kek, String),
        (validity, total): (Validity, usize),
        clock: Arc<dyn Clock>,
        slots: Arc<Semaphore>,
    ) -> Self {
        Self {
            id,
            group: group.clone(),
            kek: kek.clone(),
            generator,
            validity,
            clock,
            slots,
            hsm: Semaphore::new(HSM_QUEUED),
            stop: AtomicBool::new(false),
            done: tokio::sync::Mutex::new(0),
            total,
        }
    }
}

/// How one key's import ended, when nothing failed.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::jobs) enum Outcome {
    Imported,
    /// Not started because the job was stopped (cancel or another key's failure).
    Skipped,
    Cancelled(String),
}

/// Imports `pending` into the group's key, concurrently within the vault's bound. Returns once
/// every import it started has its answer recorded (or its failure); the first failure wins.
pub(super) async fn import_all(
    start: &impl StartImport,
    id: JobId,
    group: &KeyGroup,
    (token, kek): (&AccessToken, &Kek),
    generator: String,
    plan: ImportPlan,
) -> Result<Flow, JobError> {
    let ImportPlan {
        keys: pending,
        validity,
        slots,
        in_flight,
        clock,
    } = plan;
    let batch = Arc::new(Batch::new(
        id,
        group,
        (kek, generator),
        (validity, pending.len()),
        clock,
        slots,
    ));
    // Spawned tasks report their Azure back-off to the job like the job's own calls.
    let notice = retry_notice::current().unwrap_or_else(|| RetryNotice::channel().0);
    let window = in_flight * (1 + WRAP_AHEAD);
    let mut queue = pending.into_iter();
    let mut tasks = JoinSet::new();
    let mut failure: Option<JobError> = None;
    let mut cancelled_by: Option<String> = None;
    loop {
        while tasks.len() < window && !batch.stop.load(Ordering::SeqCst) {
            let Some(key) = queue.next() else { break };
            let b = batch.clone();
            let import = start.import(token, batch.clone(), key);
            // The task stays inside the job's span, so its records name the job's identity.
            let task = retry_notice::scope(notice.clone(), async move {
                let outcome = import.await;
                if !matches!(outcome, Ok(Outcome::Imported)) {
                    b.stop.store(true, Ordering::SeqCst);
                }
                outcome
            });
            tasks.spawn(task.in_current_span());
        }
        // No early return from here on: every task is drained before this phase ends.
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let result = joined.unwrap_or_else(|e| {
            batch.stop.store(true, Ordering::SeqCst);
            Err(JobError::ImportTask { source: e })
        });
        match result {
            Ok(Outcome::Imported | Outcome::Skipped) => {}
            Ok(Outcome::Cancelled(by)) => {
                cancelled_by.get_or_insert(by);
            }
            Err(e) if failure.is_none() => failure = Some(e),
            Err(e) => {
                tracing::warn!(job = id.get(), error = %e, "another import of the job failed too");
            }
        }
    }
    match (failure, cancelled_by) {
        (Some(e), _) => Err(e),
        (None, Some(by)) => Ok(Flow::Cancelled(by)),
        (None, None) => Ok(Flow::Done),
    }
}

/// Wraps one key, waits for an import slot, journals the intent, imports, records the version.
pub(in crate::jobs) async fn import_one<V, S, H>(
    (kv, store, hsm): (&V, &S, &H),
    b: &Batch,
    key_name: &KeyName,
) -> Result<Outcome, JobError>
where
    V: Vault,
    S: JobStore + LocalKeys,
    H: KeyHsm,
{
    if b.stop.load(Ordering::SeqCst) {
        return Ok(Outcome::Skipped);
    }
    let group = &b.group;
    let vault = group.target.name();
    let azure_name = group.name.as_str();
    let key = store.key(&group.name, key_name).await?;
    let hsm_turn = b.hsm.acquire().await.map_err(|_| JobError::ShuttingDown)?;
    let identity = hsm.key_identity(key.hsm_id).await?;
    let fp = identity_fingerprint(&identity, key.hsm_id);
    let kek = KekPublicKey {
        n: b.kek.n.clone(),
        e: b.kek.e.clone(),
    };
    let ciphertext = hsm.wrap_for_transfer(key.hsm_id, &kek).await?;
    drop(hsm_turn);
    if hsm.strategy_for(group.key_type).ok() == Some(crate::hsm::WrapStrategy::Host) {
        tracing::warn!(event = Event::HsmWrapHost.as_str(), service = "hsm", job = b.id.get(), group = %group.name, key = %key_name,
            "Key {key_name} was wrapped in host memory (hsm.allow_host_wrap): the key left the token under an ephemeral key");
    }
    let blob = key_hsm(&b.kek.kid, &ciphertext, &b.generator)
        .map_err(|source| JobError::TransferBlob { source })?;
    let request = import_request(group, &key, blob, &fp, b.validity, b.clock.now_unix());

    let permit = b
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| JobError::ShuttingDown)?;
    // Before an intent is journalled is the safe point: this key's import is not started.
    if b.stop.load(Ordering::SeqCst) {
        return Ok(Outcome::Skipped);
    }
    if let Some(by) = store.cancel_requested(b.id).await? {
        return Ok(Outcome::Cancelled(by));
    }
    let message = format!("Importing key {key_name} into {vault}/{azure_name}");
    store
        .record_import_sent(b.id, key_name, &fp, message)
        .await?;
    let bundle = match kv.import_key(azure_name, &request).await {
        Ok(bundle) => bundle,
        Err(AzureError::ResponseLost { .. }) => {
            if let Some(version) =
                find_by_fingerprint(kv, azure_name, &fp, &identity, key_name).await?
            {
                drop(permit);
                record(
                    store,
                    b,
                    key_name,
                    &version,
                    format!("The import answer was lost; found key {key_name} as version {version} by its fingerprint"),
                )
                .await?;
                return Ok(Outcome::Imported);
            }
            store
                .note(
                    b.id,
                    format!("The import answer for key {key_name} was lost and Azure has no such version; importing again"),
                    None,
                )
                .await?;
            kv.import_key(azure_name, &request).await?
        }
        Err(e) => return Err(e.into()),
    };
    // The answer is in: the slot goes to the next import while this one is recorded.
    drop(permit);
    if !jwk_matches(&bundle.key, &identity) {
        return Err(JobError::PublicKeyMismatch {
            kid: bundle.kid().to_owned(),
            key: key_name.to_string(),
        });
    }
    let version = bundle.azure_version();
    record(
        store,
        b,
        key_name,
        &version,
        format!("Key {key_name} imported as version {version}"),
    )
    .await?;
    tracing::info!(event = Event::AzureKeyImported.as_str(), service = "azure", job = b.id.get(), group = %group.name, key = %key_name, vault, kid = bundle.kid(), version = %version,
        "Key {key_name} imported into {vault}/{azure_name} as version {version}");
    Ok(Outcome::Imported)
}

/// The key's version, its step message and the job's progress: one durable write.
async fn record(
    store: &impl JobStore,
    b: &Batch,
    key_name: &KeyName,
    version: &AzureVersion,
    message: String,
) -> Result<(), JobError> {
    let mut done = b.done.lock().await;
    let n = *done + 1;
    let total = b.total.max(1);
    store
        .record_sync(
            b.id,
            &b.group.name,
            key_name,
            version,
            vec![message, format!("{n} of {total} key(s) pushed")],
            Some(200 + (700 * n / total) as u16),
        )
        .await?;
    *done = n;
    Ok(())
}

fn import_request(
    group: &KeyGroup,
    key: &crate::model::Key,
    key_hsm: String,
    fp: &str,
    validity: Validity,
    now: i64,
) -> ImportRequest {
    let exp = validity.expiry(now);
    let tags = BTreeMap::from([
        (FINGERPRINT_TAG.to_owned(), fp.to_owned()),
        ("byokd-key".to_owned(), key.name.to_string()),
        ("byokd-check-digits".to_owned(), key.check_digits.clone()),
    ]);
    ImportRequest {
        kty: key.key_type.azure_kty().to_owned(),
        crv: match key.key_type {
            KeyType::Ec(c) => Some(c.azure_name().to_owned()),
            KeyType::Rsa { .. } | KeyType::Aes { .. } => None,
        },
        key_ops: group
            .key_ops
            .iter()
            .map(|o| o.azure_name().to_owned())
            .collect(),
        key_hsm,
        enabled: true,
        nbf: Some(now),
        exp,
        tags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RotationPolicy;

    #[test]
    fn validity_is_chosen_by_the_caller_not_by_an_edited_group() {
        // 2026-01-31T00:00:00Z: a month later clamps to the end of February.
        let now = 1_769_817_600;
        assert_eq!(Validity::Unlimited.expiry(now), None);
        assert_eq!(Validity::Months(1).expiry(now), Some(1_772_236_800));
        let mut policy = RotationPolicy {
            keep_valid_months: 1,
            ..RotationPolicy::default()
        };
        assert_eq!(Validity::of_policy(&policy), Validity::Unlimited);
        policy.enabled = true;
        assert_eq!(Validity::of_policy(&policy), Validity::Months(1));
    }
}

#[cfg(test)]
mod import_tests {
    use super::*;
    use crate::jobs::fakes::{
        FakeHsm, FakeStore, FakeVault, ec_key, fake_batch, hsm_id, local_key,
    };
    use crate::model::{KeySync, KeySyncState, SyncStep};

    const ID: JobId = JobId::new(9);
    /// 2026-01-31T00:00:00Z.
    const NOW: i64 = 1_769_817_600;

    fn batch(validity: Validity, total: usize) -> Batch {
        fake_batch(ID, NOW, validity, total)
    }

    fn k1() -> KeyName {
        KeyName::try_from("k1").unwrap()
    }

    /// A store with key k1 (HSM key 1) not yet started, and a vault that shows k1's public key
    /// for an import tagged with its fingerprint.
    fn setup() -> (FakeVault, FakeStore) {
        let (spki, jwk) = ec_key(1);
        let vault = FakeVault::new().answering(&crate::azure::jwk::fingerprint(&spki), jwk);
        let store = FakeStore::default()
            .with_keys([KeySync {
                key: k1(),
                state: KeySyncState::NotStarted,
            }])
            .with_local([local_key("k1", 1, None)]);
        (vault, store)
    }

    #[tokio::test]
    async fn a_key_is_wrapped_and_imported_once_with_the_exp_it_was_asked_for() {
        let (vault, store) = setup();
        let hsm = FakeHsm::default();
        let b = batch(Validity::Months(1), 1);
        let outcome = import_one((&vault, &store, &hsm), &b, &k1()).await;
        assert_eq!(outcome.unwrap(), Outcome::Imported);
        assert_eq!(hsm.wraps(), [hsm_id(1)]);
        let imports = vault.imports();
        assert_eq!(imports.len(), 1);
        // One calendar month after the import (clamped to the end of February).
        assert_eq!(
            (imports[0].nbf, imports[0].exp),
            (Some(NOW), Some(1_772_236_800))
        );
        assert_eq!(store.recorded(), [(k1(), AzureVersion::new("v1"))]);
        assert_eq!(
            store.steps(),
            [
                SyncStep::ImportSent { key: k1() }.into(),
                SyncStep::Imported {
                    key: k1(),
                    version: AzureVersion::new("v1")
                }
                .into()
            ]
        );
        // A sync without a policy sets no `exp`.
        let (vault, store) = setup();
        let b = batch(Validity::Unlimited, 1);
        import_one((&vault, &store, &hsm), &b, &k1()).await.unwrap();
        assert_eq!(vault.imports()[0].exp, None);
    }

    #[tokio::test]
    async fn a_lost_import_answer_is_found_by_its_fingerprint_not_imported_again() {
        let (vault, store) = setup();
        let vault = vault.losing_import_answer();
        let b = batch(Validity::Unlimited, 1);
        let outcome = import_one((&vault, &store, &FakeHsm::default()), &b, &k1()).await;
        assert_eq!(outcome.unwrap(), Outcome::Imported);
        assert_eq!(vault.imports().len(), 1);
        assert_eq!(store.recorded(), [(k1(), AzureVersion::new("v1"))]);
    }

    #[tokio::test]
    async fn a_cancel_before_the_intent_sends_nothing() {
        let (vault, store) = setup();
        let store = store.cancelled_by("bob");
        let b = batch(Validity::Unlimited, 1);
        let outcome = import_one((&vault, &store, &FakeHsm::default()), &b, &k1()).await;
        assert_eq!(outcome.unwrap(), Outcome::Cancelled("bob".into()));
        assert!(vault.imports().is_empty());
        assert!(store.steps().is_empty());
        assert_eq!(store.key_states()[0].state, KeySyncState::NotStarted);
    }
}
