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
use super::ports::SignedIn;
use super::sync_resolve::find_by_fingerprint;
use super::{JobError, Jobs};
use crate::azure::jwk::{FINGERPRINT_TAG, fingerprint, jwk_matches_spki};
use crate::azure::retry_notice::{self, RetryNotice};
use crate::azure::transfer_blob::key_hsm;
use crate::azure::{AccessToken, AzureError, ImportRequest, Kek};
use crate::hsm::KekPublicKey;
use crate::logs::Event;
use crate::model::{AzureVersion, JobId};
use crate::model::{
    KeyGroup, KeyName, KeySyncState, KeyType, RotationPolicy, SyncStep, add_months,
};
use crate::service::record_step;
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

/// How long the versions a sync makes stay valid (their `exp`), chosen by whoever runs the sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Validity {
    /// No `exp`: the version stays valid until it is disabled.
    Unlimited,
    /// `exp` this many calendar months after the import.
    Months(u32),
}

impl Validity {
    /// A sync job's versions: "keep key valid for N months" where the group's rotation policy
    /// is on, no expiry where it is off.
    pub(super) fn of_policy(policy: &RotationPolicy) -> Self {
        if policy.enabled {
            Self::Months(policy.keep_valid_months)
        } else {
            Self::Unlimited
        }
    }

    /// The `exp` of a version imported at `now` (Unix seconds).
    fn expiry(self, now: i64) -> Option<i64> {
        match self {
            Self::Unlimited => None,
            Self::Months(months) => {
                let now = time::OffsetDateTime::from_unix_timestamp(now)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                Some(add_months(now, months).unix_timestamp())
            }
        }
    }
}

/// The keys one run imports, and how long their versions stay valid.
pub(super) struct ImportPlan {
    pub(super) keys: Vec<KeyName>,
    pub(super) validity: Validity,
}

/// What every import task of one job run shares.
struct Batch {
    jobs: Jobs,
    id: JobId,
    group: KeyGroup,
    token: AccessToken,
    kek: Kek,
    generator: String,
    validity: Validity,
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

/// How one key's task ended, when nothing failed.
enum Outcome {
    Imported,
    /// Not started because the job was stopped (cancel or another key's failure).
    Skipped,
    Cancelled(String),
}

/// Imports `pending` into the group's key, concurrently within the vault's bound. Returns once
/// every import it started has its answer recorded (or its failure); the first failure wins.
pub(super) async fn import_all(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    token: &AccessToken,
    kek: &Kek,
    generator: &str,
    plan: ImportPlan,
) -> Result<Flow, JobError> {
    let ImportPlan {
        keys: pending,
        validity,
    } = plan;
    let slots = jobs.slots().imports(group.vault.as_str());
    let in_flight = jobs.slots().import_bound();
    let batch = Arc::new(Batch {
        jobs: jobs.clone(),
        id,
        group: group.clone(),
        token: token.clone(),
        kek: kek.clone(),
        generator: generator.to_owned(),
        validity,
        slots,
        hsm: Semaphore::new(HSM_QUEUED),
        stop: AtomicBool::new(false),
        done: tokio::sync::Mutex::new(0),
        total: pending.len(),
    });
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
            // The task stays inside the job's span, so its records name the job's identity.
            let task = retry_notice::scope(notice.clone(), async move {
                let outcome = import_one(&b, &key).await;
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
async fn import_one(b: &Batch, key_name: &KeyName) -> Result<Outcome, JobError> {
    if b.stop.load(Ordering::SeqCst) {
        return Ok(Outcome::Skipped);
    }
    let svc = b.jobs.service();
    let kv = b.jobs.azure().keyvault();
    let group = &b.group;
    let vault = group.vault.as_str();
    let azure_name = group.name.as_str();
    let key = svc.key_record(&group.name, key_name).await?;
    let hsm_turn = b.hsm.acquire().await.map_err(|_| JobError::ShuttingDown)?;
    let spki = svc.hsm().public_key(key.hsm_id).await?.spki_der;
    let fp = fingerprint(&spki);
    let ciphertext = svc
        .hsm()
        .wrap_for_transfer(
            key.hsm_id,
            &KekPublicKey {
                n: b.kek.n.clone(),
                e: b.kek.e.clone(),
            },
        )
        .await?;
    drop(hsm_turn);
    if svc.hsm().wrap_report().strategy_for(group.key_type).ok()
        == Some(crate::hsm::WrapStrategy::Host)
    {
        tracing::warn!(event = Event::HsmWrapHost.as_str(), service = "hsm", job = b.id.get(), group = %group.name, key = %key_name,
            "Key {key_name} was wrapped in host memory (hsm.allow_host_wrap): the key left the token under an ephemeral key");
    }
    let blob = key_hsm(&b.kek.kid, &ciphertext, &b.generator)
        .map_err(|source| JobError::TransferBlob { source })?;
    let request = import_request(group, &key, blob, &fp, b.validity, svc.now_unix());

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
    if let Some(by) = svc.job(b.id).await?.cancel_requested {
        return Ok(Outcome::Cancelled(by));
    }
    svc.journal(b.id, |j| {
        for p in j.keys.iter_mut().filter(|p| &p.key == key_name) {
            p.state = KeySyncState::ImportSent {
                fingerprint: fp.clone(),
            };
        }
        record_step(
            j,
            SyncStep::ImportSent {
                key: key_name.clone(),
            }
            .into(),
            &format!("Importing key {key_name} into {vault}/{azure_name}"),
        )
    })
    .await??;
    let bundle = match kv.import_key(&b.token, vault, azure_name, &request).await {
        Ok(bundle) => bundle,
        Err(AzureError::ResponseLost { .. }) => {
            let session = SignedIn::new(kv, b.token.clone(), vault);
            if let Some(version) = find_by_fingerprint(&session, azure_name, &fp).await? {
                drop(permit);
                record(
                    b,
                    key_name,
                    &version,
                    format!("The import answer was lost; found key {key_name} as version {version} by its fingerprint"),
                )
                .await?;
                return Ok(Outcome::Imported);
            }
            svc.job_step(
                b.id,
                format!("The import answer for key {key_name} was lost and Azure has no such version; importing again"),
                None,
            )
            .await?;
            kv.import_key(&b.token, vault, azure_name, &request).await?
        }
        Err(e) => return Err(e.into()),
    };
    // The answer is in: the slot goes to the next import while this one is recorded.
    drop(permit);
    if !jwk_matches_spki(&bundle.key, &spki) {
        return Err(JobError::PublicKeyMismatch {
            kid: bundle.kid().to_owned(),
            key: key_name.to_string(),
        });
    }
    let version = bundle.azure_version();
    record(
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
    b: &Batch,
    key_name: &KeyName,
    version: &AzureVersion,
    message: String,
) -> Result<(), JobError> {
    let mut done = b.done.lock().await;
    let n = *done + 1;
    let total = b.total.max(1);
    b.jobs
        .service()
        .record_sync_with_steps(
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
            KeyType::Rsa { .. } => None,
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
