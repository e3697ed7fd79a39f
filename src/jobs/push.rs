//! "Synchronize HSM protected key(s)": token → KEK → in-HSM wraps and imports (several in flight
//! per vault, see `imports`) → record versions → delete (and purge) the KEK. Each step's intent
//! is journalled before its side effect, so a restart resumes from the journal: a journalled KEK
//! is found again or cleaned up, and an import whose answer was lost is found by its fingerprint
//! tag instead of being repeated.

use super::imports::{import_all, resolve_sent};
use super::sign_in::{drop_token, needs_new_token, sign_in};
use super::{JobError, Jobs, generator};
use crate::azure::retry_notice::{self, RetryEvent, RetryNotice};
use crate::azure::{AccessToken, AzureError, Kek, KeyVaultError, RecoveryLevel};
use crate::logs::Event;
use crate::model::JobId;
use crate::model::{Job, JobState, KekJournal, KeyGroup, KeySyncState, SyncStep};
use crate::service::{Service, record_step};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The KEK's lifetime (its size is `azure.kek_size`).
const KEK_LIFETIME_SECS: i64 = 3600;
/// How long to wait for a deleted KEK to become visible (Azure shows 10 s or more).
const DELETED_VISIBLE_WAIT: Duration = Duration::from_secs(120);
/// How often to look for the deleted KEK meanwhile.
const DELETED_POLL_INTERVAL: Duration = Duration::from_millis(500);

pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    let Some((group, _permit)) = begin(jobs, id, true).await? else {
        return Ok(());
    };
    match transfer(jobs, id, &group).await {
        Ok(Flow::Done) => {
            succeed(jobs, id, "Synchronization finished").await?;
            tracing::info!(event = Event::JobsSucceeded.as_str(), job = id.get(), group = %group.name, vault = %group.vault, "Synchronize job {id} for key group {} succeeded", group.name);
        }
        Ok(Flow::Cancelled(by)) => finish_cancelled(jobs, id, &group, &by).await?,
        Err(e) => fail(jobs, id, e.to_string()).await,
    }
    report_log_problem(jobs, id).await
}

/// Takes the vault's slot, refuses (failing the job) a cloud-mutating job on a non-designated
/// appliance, and marks the job running. `None` when there is nothing to run.
pub(super) async fn begin(
    jobs: &Jobs,
    id: JobId,
    mutates_cloud: bool,
) -> Result<Option<(KeyGroup, tokio::sync::OwnedSemaphorePermit)>, JobError> {
    let svc = jobs.service();
    let job = svc.job(id).await?;
    if job.state.is_final() {
        return Ok(None);
    }
    let group = match svc.group_record(&job.group).await {
        Ok(g) => g,
        Err(e) => {
            fail(jobs, id, e.to_string()).await;
            return Ok(None);
        }
    };
    let slot = jobs.vault_slot(group.vault.as_str());
    let permit = slot
        .acquire_owned()
        .await
        .map_err(|_| JobError::Failed("job runner is shutting down".into()))?;
    if mutates_cloud && !svc.designated().await {
        fail(jobs, id, JobError::NotDesignated.to_string()).await;
        return Ok(None);
    }
    // A job cancelled while it waited for its vault slot stays cancelled.
    let job = svc
        .journal(id, |j| {
            if !j.state.is_final() {
                j.state = JobState::Running;
                j.started.get_or_insert(svc.now_unix());
            }
            j.clone()
        })
        .await?;
    if job.state.is_final() {
        return Ok(None);
    }
    Ok(Some((group, permit)))
}

/// Runs a job whose work is one body that ends with a closing message: begin, body, then
/// succeeded with that message or failed with the error.
pub(super) async fn run_with(
    jobs: &Jobs,
    id: JobId,
    mutates_cloud: bool,
    body: impl AsyncFnOnce(&KeyGroup) -> Result<String, JobError>,
) -> Result<(), JobError> {
    let Some((group, _permit)) = begin(jobs, id, mutates_cloud).await? else {
        return Ok(());
    };
    match body(&group).await {
        Ok(message) => succeed(jobs, id, &message).await?,
        Err(e) => fail(jobs, id, e.to_string()).await,
    }
    Ok(())
}

/// The push proper (KEK, imports) and the clean-up of what it left open in the cloud, whatever
/// happened to the imports. A job that failed or was cancelled before a restart only finishes
/// its clean-up.
pub(super) async fn transfer(jobs: &Jobs, id: JobId, group: &KeyGroup) -> Result<Flow, JobError> {
    let svc = jobs.service();
    let job = svc.job(id).await?;
    // Azure back-off shows as `waiting-retry` while it lasts.
    let (notice, events) = RetryNotice::channel();
    let watcher = tokio::spawn(show_retries(svc.clone(), id, events));
    let result = retry_notice::scope(notice, steps(jobs, id, &job, group)).await;
    // Every event is journalled before the job's final state.
    if watcher.await.is_err() {
        tracing::warn!(job = id.get(), "the retry watcher stopped early");
    }
    result
}

/// The job's cloud steps, then its clean-up, whatever happened to the imports.
async fn steps(jobs: &Jobs, id: JobId, job: &Job, group: &KeyGroup) -> Result<Flow, JobError> {
    let svc = jobs.service();
    let mut token = None;
    let mut outcome = match (&job.error, &job.cancel_requested) {
        (Some(reason), _) => Err(JobError::Failed(reason.clone())),
        (None, Some(by)) => Ok(Flow::Cancelled(by.clone())),
        (None, None) => push(jobs, id, group, &mut token).await,
    };
    // A 401 (token expired or revoked): forget the token, sign in once more and resume from the
    // journal, which finds the KEK and any import again instead of repeating them.
    if let Err(e) = &outcome
        && job.error.is_none()
    {
        match needs_new_token(jobs, group, e).await {
            Ok(true) => {
                drop_token(jobs, id, group).await?;
                token = None;
                outcome = push(jobs, id, group, &mut token).await;
            }
            Ok(false) => {}
            Err(clear) => outcome = Err(clear),
        }
    }
    if let Err(e) = &outcome {
        // Journal the reason before cleaning up, so a crash during clean-up still fails the
        // job with it instead of pushing on.
        let reason = e.to_string();
        svc.journal(id, |j| {
            j.error.get_or_insert(reason);
        })
        .await?;
    }
    let mut cleanup = settle_cloud(jobs, id, group, &mut token).await;
    if let Err(e) = &cleanup
        && needs_new_token(jobs, group, e).await.unwrap_or(false)
    {
        drop_token(jobs, id, group).await?;
        token = None;
        cleanup = settle_cloud(jobs, id, group, &mut token).await;
    }
    match (outcome, cleanup) {
        (Ok(flow), Ok(())) => Ok(flow),
        (Err(e), Err(c)) => Err(JobError::Failed(format!("{e}; and cleaning up: {c}"))),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

/// Marks a job succeeded with a closing step.
pub(super) async fn succeed(jobs: &Jobs, id: JobId, message: &str) -> Result<(), JobError> {
    jobs.service()
        .finish_job(id, JobState::Succeeded, |j| {
            j.progress = 1000;
            j.steps.push(step(message));
        })
        .await?;
    Ok(())
}

/// Marks a job cancelled, once its clean-up is done.
pub(super) async fn finish_cancelled(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    by: &str,
) -> Result<(), JobError> {
    jobs.service()
        .finish_job(id, JobState::Cancelled, |j| {
            j.steps.push(step(&format!(
                "Cancelled by {by}; the key exchange key is cleaned up"
            )));
        })
        .await?;
    tracing::info!(event = Event::JobsCancelled.as_str(), job = id.get(), group = %group.name, vault = %group.vault, identity = %by, "Job {id} for key group {} cancelled by {by}", group.name);
    Ok(())
}

/// A service log that cannot be written is reported by the job, not only by health.
pub(super) async fn report_log_problem(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    if let Some(problem) = crate::logs::write_problem() {
        jobs.service()
            .job_step(
                id,
                format!("Warning: the service log could not record this job: {problem}"),
                None,
            )
            .await?;
    }
    Ok(())
}

/// Journals Azure back-off: `waiting-retry` with a step saying why, then `running` again once
/// no call of the job is backing off (several imports may be in flight).
async fn show_retries(svc: Service, id: JobId, mut events: UnboundedReceiver<RetryEvent>) {
    let mut waiting = 0usize;
    while let Some(event) = events.recv().await {
        let recorded = match event {
            RetryEvent::Waiting { delay, reason } => {
                waiting += 1;
                svc.journal(id, |j| {
                    if j.state == JobState::Running {
                        j.state = JobState::WaitingRetry;
                    }
                    j.steps.push(step(&format!(
                        "Azure answered {reason}; retrying in {} ms",
                        delay.as_millis()
                    )));
                })
                .await
            }
            RetryEvent::Resumed => {
                waiting = waiting.saturating_sub(1);
                if waiting > 0 {
                    continue;
                }
                svc.journal(id, |j| {
                    if j.state == JobState::WaitingRetry {
                        j.state = JobState::Running;
                    }
                })
                .await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(job = id.get(), error = %e, "could not journal a retry wait");
        }
    }
}

/// How a push ended when nothing failed.
pub(super) enum Flow {
    Done,
    /// Stopped at a safe point because this identity cancelled the job.
    Cancelled(String),
}

/// Returns who cancelled the job, if anyone did.
async fn cancelled(jobs: &Jobs, id: JobId) -> Result<Option<String>, JobError> {
    Ok(jobs.service().job(id).await?.cancel_requested)
}

/// Settles what the job left open in the cloud, signing in again first when a restart lost the
/// token: imports whose outcome is unknown are looked up by their fingerprint tag (recorded if
/// Azure has them, marked not started if not), then the KEK is deleted and purged.
async fn settle_cloud(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    token: &mut Option<AccessToken>,
) -> Result<(), JobError> {
    let svc = jobs.service();
    let job = svc.job(id).await?;
    let sent = job
        .keys
        .iter()
        .any(|p| matches!(p.state, KeySyncState::ImportSent { .. }));
    let kek_open = job.kek.as_ref().is_some_and(|k| k.purged.is_none());
    if !sent && !kek_open {
        return Ok(());
    }
    let t = match token.take() {
        Some(t) => t,
        None => {
            jobs.azure()
                .allowlist()
                .set_vaults(svc.vault_names().await)?;
            sign_in(jobs, id, group).await.map_err(|e| {
                JobError::Failed(format!(
                    "{e}; the key exchange key {} may remain in vault {} until it expires",
                    Job::kek_name(id),
                    group.vault
                ))
            })?
        }
    };
    let settled = if sent {
        resolve_sent(jobs, id, group, &t).await.map(|_| ())
    } else {
        Ok(())
    };
    let result = cleanup_kek(jobs, id, &t).await.and(settled);
    *token = Some(t);
    result
}

/// Marks a job failed with a reason; logs if even that cannot be recorded.
pub(super) async fn fail(jobs: &Jobs, id: JobId, reason: String) {
    tracing::error!(
        event = Event::JobsFailed.as_str(),
        job = id.get(),
        "Job {id} failed: {reason}"
    );
    let recorded = jobs
        .service()
        .finish_job(id, JobState::Failed, |j| {
            j.steps.push(step(&format!("Failed: {reason}")));
            j.error = Some(reason.clone());
        })
        .await;
    if let Err(e) = recorded {
        tracing::error!(job = id.get(), error = %e, "could not record the job's failure");
    }
}

/// A display message; the service dates it by the daemon's clock when the change is durable.
pub(super) fn step(message: &str) -> crate::model::StepMessage {
    crate::model::StepMessage {
        at: 0,
        message: message.to_owned(),
    }
}

async fn push(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    token_out: &mut Option<AccessToken>,
) -> Result<Flow, JobError> {
    let svc = jobs.service();
    let job = svc.job(id).await?;
    let pending = pending_keys(jobs, &job, group).await?;
    if pending.is_empty() {
        svc.job_step(
            id,
            "Nothing to push: every key already has its Azure version",
            Some(1000),
        )
        .await?;
        return Ok(Flow::Done);
    }
    // Refused up front, before a KEK is made: no strategy wraps this key type conformingly.
    svc.hsm().wrap_report().strategy_for(group.key_type)?;
    if let Some(by) = cancelled(jobs, id).await? {
        return Ok(Flow::Cancelled(by));
    }
    jobs.azure()
        .allowlist()
        .set_vaults(svc.vault_names().await)?;
    let token = sign_in(jobs, id, group).await?;
    *token_out = Some(token.clone());
    if let Some(by) = cancelled(jobs, id).await? {
        return Ok(Flow::Cancelled(by));
    }
    // Imports sent before a restart (or a 401) are found by their tag first, with one listing.
    let pending = if resolve_sent(jobs, id, group, &token).await? {
        pending_keys(jobs, &svc.job(id).await?, group).await?
    } else {
        pending
    };
    if pending.is_empty() {
        svc.job_step(
            id,
            "Nothing more to push: every key has its Azure version",
            Some(900),
        )
        .await?;
        return Ok(Flow::Done);
    }
    let kek = ensure_kek(jobs, id, group, &token).await?;
    let report = svc.hsm().report();
    let generator = generator(
        &report.manufacturer,
        &report.model,
        &report.firmware_version,
    );
    import_all(jobs, id, group, &token, &kek, &generator, pending).await
}

/// Keys of the job that still need an import. Keys pushed earlier are reported, not repeated.
async fn pending_keys(
    jobs: &Jobs,
    job: &Job,
    group: &KeyGroup,
) -> Result<Vec<crate::model::KeyName>, JobError> {
    let svc = jobs.service();
    let mut pending = Vec::new();
    for push in &job.keys {
        if matches!(push.state, KeySyncState::Imported { .. }) {
            continue;
        }
        let key = svc.key_record(&group.name, &push.key).await?;
        match (&key.azure_version, &push.state) {
            (Some(version), KeySyncState::NotStarted) => {
                let version = version.clone();
                svc.journal(job.id, |j| {
                    for p in j.keys.iter_mut().filter(|p| p.key == push.key) {
                        p.state = KeySyncState::Imported {
                            version: version.clone(),
                        };
                    }
                    record_step(
                        j,
                        SyncStep::Imported {
                            key: push.key.clone(),
                            version: version.clone(),
                        }
                        .into(),
                        &format!(
                            "Key {} is already pushed as version {version}; nothing to do",
                            push.key
                        ),
                    )
                })
                .await??;
            }
            _ => pending.push(push.key.clone()),
        }
    }
    Ok(pending)
}

/// Finds the job's KEK again, or creates it with its name journalled first.
async fn ensure_kek(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    token: &AccessToken,
) -> Result<Kek, JobError> {
    let svc = jobs.service();
    let kv = jobs.azure().keyvault();
    let vault = group.vault.as_str();
    let name = Job::kek_name(id);
    let kek_bits = svc.config().azure.kek_size;
    let journal = svc.job(id).await?.kek;
    if let Some(k) = &journal
        && k.deleted
    {
        // Its name is taken in the vault until purged: this job cannot make another.
        return Err(JobError::Failed(format!(
            "this job's key exchange key {} was already deleted; run the synchronization again",
            k.name
        )));
    }
    if let Some(k) = &journal {
        match kv.get_key(token, vault, &k.name, None).await {
            Ok(bundle) => {
                let kek = kek_from_bundle(vault, &bundle)?;
                svc.journal(id, |j| {
                    if let Some(kj) = j.kek.as_mut() {
                        kj.kid = Some(kek.kid.clone());
                    }
                    record_step(
                        j,
                        SyncStep::KekCreated.into(),
                        &format!(
                            "Found this job's key exchange key {} from before the restart",
                            kek.kid
                        ),
                    )
                })
                .await??;
                return Ok(kek);
            }
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }
    svc.journal(id, |j| {
        j.kek = Some(KekJournal {
            vault: group.vault.clone(),
            name: name.clone(),
            kid: None,
            deleted: false,
            purged: None,
            purge_sent: false,
        });
        record_step(
            j,
            SyncStep::KekPlanned.into(),
            &format!("Creating key exchange key {name} (RSA-HSM {kek_bits}) in vault {vault}"),
        )
    })
    .await??;
    let exp = svc.now_unix() + KEK_LIFETIME_SECS;
    let kek = match kv.create_kek(token, vault, &name, kek_bits, exp).await {
        Ok(kek) => kek,
        // The answer was lost: look before creating again.
        Err(AzureError::ResponseLost { .. }) => match kv.get_key(token, vault, &name, None).await {
            Ok(bundle) => kek_from_bundle(vault, &bundle)?,
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                kv.create_kek(token, vault, &name, kek_bits, exp).await?
            }
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    svc.journal(id, |j| {
        if let Some(kj) = j.kek.as_mut() {
            kj.kid = Some(kek.kid.clone());
        }
        j.progress = j.progress.max(200);
        record_step(
            j,
            SyncStep::KekCreated.into(),
            &format!("Key exchange key created: {}", kek.kid),
        )
    })
    .await??;
    tracing::info!(event = Event::AzureKekCreated.as_str(), service = "azure", job = id.get(), group = %group.name, vault, kid = %kek.kid,
        "Key exchange key {name} created (RSA-HSM {kek_bits})");
    Ok(kek)
}

fn kek_from_bundle(vault: &str, bundle: &crate::azure::KeyBundle) -> Result<Kek, JobError> {
    let strip = |b: Vec<u8>| -> Vec<u8> { b.into_iter().skip_while(|x| *x == 0).collect() };
    let bad = |what: &str| {
        JobError::Failed(format!(
            "the key exchange key in vault {vault} has no {what}"
        ))
    };
    let n = crate::azure::JsonWebKey::decode(bundle.key.n.as_deref())
        .map(strip)
        .ok_or_else(|| bad("modulus"))?;
    let e = crate::azure::JsonWebKey::decode(bundle.key.e.as_deref())
        .map(strip)
        .ok_or_else(|| bad("exponent"))?;
    Ok(Kek {
        kid: bundle.kid().to_owned(),
        version: bundle.version().to_owned(),
        n,
        e,
        recovery_level: bundle.attributes.recovery_level.clone(),
    })
}

/// Deletes the job's KEK and purges it where the vault allows; journalled at each step.
async fn cleanup_kek(jobs: &Jobs, id: JobId, token: &AccessToken) -> Result<(), JobError> {
    let svc = jobs.service();
    let kv = jobs.azure().keyvault();
    let Some(kek) = svc.job(id).await?.kek else {
        return Ok(());
    };
    if kek.purged.is_some() {
        return Ok(());
    }
    let vault = kek.vault.as_str();
    let mut level: Option<RecoveryLevel> = None;
    if !kek.deleted {
        match kv.delete_key(token, vault, &kek.name).await {
            Ok(deleted) => level = deleted.bundle.attributes.recovery_level.clone(),
            // The create never succeeded: there is nothing to delete or purge.
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) if kek.kid.is_none() => {
                svc.journal(id, |j| {
                    if let Some(k) = j.kek.as_mut() {
                        k.deleted = true;
                        k.purged = Some(false);
                    }
                    record_step(
                        j,
                        SyncStep::KekSettled { purged: false }.into(),
                        &format!(
                            "No key exchange key {} was created; nothing to clean up",
                            kek.name
                        ),
                    )
                })
                .await??;
                return Ok(());
            }
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {}
            Err(e) => return Err(e.into()),
        }
        svc.journal(id, |j| {
            if let Some(k) = j.kek.as_mut() {
                k.deleted = true;
            }
            record_step(
                j,
                SyncStep::KekDeleted.into(),
                &format!("Key exchange key {} deleted", kek.name),
            )
        })
        .await??;
        tracing::info!(
            event = Event::AzureKekDeleted.as_str(),
            service = "azure",
            job = id.get(),
            vault,
            kid = kek.kid.as_deref().unwrap_or(&kek.name),
            "Key exchange key {} deleted",
            kek.name
        );
    }
    if kek.purge_sent {
        // A purge was sent before a restart: a deleted key that is gone now was purged.
        purge_with_retry(jobs, token, vault, &kek.name).await?;
        let message = format!("Key exchange key {} purged", kek.name);
        svc.journal(id, |j| {
            if let Some(k) = j.kek.as_mut() {
                k.purged = Some(true);
            }
            record_step(j, SyncStep::KekSettled { purged: true }.into(), &message)
        })
        .await??;
        tracing::info!(event = Event::AzureKekPurged.as_str(), service = "azure", job = id.get(), vault, kid = %kek.name, "{message}");
        return Ok(());
    }
    let deleted = wait_deleted_visible(jobs, token, vault, &kek.name, level.as_ref()).await?;
    let level = level.or_else(|| {
        deleted
            .as_ref()
            .and_then(|d| d.bundle.attributes.recovery_level.clone())
    });
    let (purged, message) = match (&deleted, &level) {
        (None, _) | (_, Some(RecoveryLevel::Purgeable)) => (
            false,
            "The vault has no soft-delete: the key exchange key is gone for good".to_owned(),
        ),
        (Some(_), Some(l)) if l.purge_allowed() => {
            svc.journal(id, |j| {
                if let Some(k) = j.kek.as_mut() {
                    k.purge_sent = true;
                }
                record_step(
                    j,
                    SyncStep::KekPurgeSent.into(),
                    &format!("Purging key exchange key {}", kek.name),
                )
            })
            .await??;
            purge_with_retry(jobs, token, vault, &kek.name).await?;
            (true, format!("Key exchange key {} purged", kek.name))
        }
        (Some(d), l) => (
            false,
            format!(
                "Key exchange key {} not purged: the vault's recovery level is {} (purge protection); Azure purges it on {}",
                kek.name,
                l.as_ref()
                    .map(|l| l.as_str().to_owned())
                    .unwrap_or_else(|| "unknown".into()),
                d.scheduled_purge_date
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "its scheduled purge date".into())
            ),
        ),
    };
    if purged {
        tracing::info!(
            event = Event::AzureKekPurged.as_str(),
            service = "azure",
            job = id.get(),
            vault,
            kid = kek.kid.as_deref().unwrap_or(&kek.name),
            "{message}"
        );
    } else {
        tracing::info!(
            event = Event::AzureKekNotPurged.as_str(),
            record_level = "warn",
            service = "azure",
            job = id.get(),
            vault,
            kid = kek.kid.as_deref().unwrap_or(&kek.name),
            "{message}"
        );
    }
    svc.journal(id, |j| {
        if let Some(k) = j.kek.as_mut() {
            k.purged = Some(purged);
        }
        record_step(j, SyncStep::KekSettled { purged }.into(), &message)
    })
    .await??;
    Ok(())
}

/// Waits until the deleted KEK is listed in deleted keys (Azure answers 404 for a while after a
/// delete). Returns `None` when the vault has no soft-delete.
pub(super) async fn wait_deleted_visible(
    jobs: &Jobs,
    token: &AccessToken,
    vault: &str,
    name: &str,
    level: Option<&RecoveryLevel>,
) -> Result<Option<crate::azure::DeletedKeyBundle>, JobError> {
    if matches!(level, Some(RecoveryLevel::Purgeable)) {
        return Ok(None);
    }
    let kv = jobs.azure().keyvault();
    let started = tokio::time::Instant::now();
    loop {
        match kv.get_deleted_key(token, vault, name).await {
            Ok(d) => return Ok(Some(d)),
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                if started.elapsed() > DELETED_VISIBLE_WAIT {
                    return Err(JobError::Failed(format!(
                        "key {name} was deleted but is not listed in the deleted keys of {vault} after {} s; purge it by hand",
                        DELETED_VISIBLE_WAIT.as_secs()
                    )));
                }
                // A fixed short interval: the key shows up at most this late (a doubling back-off
                // overshot a 2 s window to 3.75 s). GETs draw on the large "other" budget.
                tokio::time::sleep(DELETED_POLL_INTERVAL).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub(super) async fn purge_with_retry(
    jobs: &Jobs,
    token: &AccessToken,
    vault: &str,
    name: &str,
) -> Result<(), JobError> {
    let kv = jobs.azure().keyvault();
    let mut wait = Duration::from_millis(250);
    for _ in 0..12 {
        match kv.purge_deleted_key(token, vault, name).await {
            Ok(()) | Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => return Ok(()),
            Err(AzureError::KeyVault(KeyVaultError::BeingDeleted { .. })) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(4));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(JobError::Failed(format!(
        "key {name} in {vault} is still being deleted; purge it later"
    )))
}
