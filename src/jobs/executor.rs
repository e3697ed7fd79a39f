//! The job executor, shared by every kind: taking the vault's slot and marking a job running
//! (`begin`), journalling steps, ending a job (`succeed`, `fail`, `finish_cancelled`), showing
//! Azure back-off as `waiting-retry`, and the per-vault bounds on jobs and imports in flight.
//!
//! Knows no job kind: the kinds call in here, never the other way round.

use super::ports::{JobStore, SignedIn};
use super::sign_in::sign_in;
use super::{JobError, Jobs};
use crate::azure::retry_notice::{self, RetryEvent, RetryEvents, RetryNotice};
use crate::logs::Event;
use crate::model::{JobId, JobState, JobStep, KeyGroup, StepMessage};
use crate::service::{Designated, NotDesignated, Service};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Jobs running concurrently against one vault.
const PER_VAULT_JOBS: usize = 1;

/// How a job's work ended when nothing failed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Done,
    /// Stopped at a safe point because this identity cancelled the job.
    Cancelled(String),
}

/// The per-vault bounds: one job at a time per vault, and `azure.vault_concurrent_imports`
/// imports in flight per vault over all its jobs.
pub(super) struct VaultSlots {
    jobs: Mutex<HashMap<String, Arc<Semaphore>>>,
    imports: Mutex<HashMap<String, Arc<Semaphore>>>,
    import_bound: usize,
}

impl VaultSlots {
    pub(super) fn new(import_bound: usize) -> Self {
        Self {
            jobs: Mutex::new(HashMap::new()),
            imports: Mutex::new(HashMap::new()),
            import_bound,
        }
    }

    /// How many imports may be in flight to one vault.
    pub(super) fn import_bound(&self) -> usize {
        self.import_bound
    }

    /// The slot a job takes for its whole run on `vault`.
    pub(super) fn job(&self, vault: &str) -> Arc<Semaphore> {
        slot(&self.jobs, vault, PER_VAULT_JOBS)
    }

    /// The bound on imports in flight to `vault`, shared by every job on it.
    pub(super) fn imports(&self, vault: &str) -> Arc<Semaphore> {
        slot(&self.imports, vault, self.import_bound)
    }
}

fn slot(map: &Mutex<HashMap<String, Arc<Semaphore>>>, vault: &str, n: usize) -> Arc<Semaphore> {
    let mut map = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(vault.to_ascii_lowercase())
        .or_insert_with(|| Arc::new(Semaphore::new(n)))
        .clone()
}

/// Takes the vault's slot and marks a read-only job running. `None` when there is nothing to
/// run.
pub(super) async fn begin(
    jobs: &Jobs,
    id: JobId,
) -> Result<Option<(KeyGroup, OwnedSemaphorePermit)>, JobError> {
    let started = start(jobs, id, async || Ok(())).await?;
    Ok(started.map(|(group, permit, ())| (group, permit)))
}

/// Takes the vault's slot, then the [`Designated`] proof (designation may have been switched
/// off while the job waited, or before a restart), and marks a cloud-changing job running
/// with it. Without the proof the job fails with [`JobError::NotDesignated`] and `None` is
/// returned, as when there is nothing to run: a cloud-changing run cannot start without it.
pub(super) async fn begin_cloud(
    jobs: &Jobs,
    id: JobId,
) -> Result<Option<(KeyGroup, OwnedSemaphorePermit, Designated)>, JobError> {
    start(jobs, id, async || jobs.service().designated_device().await).await
}

async fn start<P>(
    jobs: &Jobs,
    id: JobId,
    proof: impl AsyncFnOnce() -> Result<P, NotDesignated>,
) -> Result<Option<(KeyGroup, OwnedSemaphorePermit, P)>, JobError> {
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
    let permit = jobs
        .slots()
        .job(group.target.name())
        .acquire_owned()
        .await
        .map_err(|_| JobError::ShuttingDown)?;
    let proof = match proof().await {
        Ok(proof) => proof,
        Err(e) => {
            fail(jobs, id, JobError::from(e).to_string()).await;
            return Ok(None);
        }
    };
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
    Ok(Some((group, permit, proof)))
}

/// Runs a read-only job whose work is one body that ends with a closing message: begin, body,
/// then succeeded with that message or failed with the error.
pub(super) async fn run_with(
    jobs: &Jobs,
    id: JobId,
    body: impl AsyncFnOnce(&KeyGroup) -> Result<String, JobError>,
) -> Result<(), JobError> {
    let Some((group, _permit)) = begin(jobs, id).await? else {
        return Ok(());
    };
    end_with(jobs, id, body(&group).await).await
}

/// Ends a job with its body's outcome: succeeded with the closing message, or failed.
async fn end_with(
    jobs: &Jobs,
    id: JobId,
    outcome: Result<String, JobError>,
) -> Result<(), JobError> {
    match outcome {
        Ok(message) => succeed(jobs, id, &message).await?,
        Err(e) => fail(jobs, id, e.to_string()).await,
    }
    Ok(())
}

/// Runs a cloud-changing kind whose state machine works on the group's vault, signed in: the
/// job's start with the [`Designated`] proof ([`begin_cloud`]) and its end as [`run_with`],
/// the sign-in, then `machine` with the vault, the group, who started the job and the proof.
/// `failed` writes the kind's own audit record of an error before the job ends `failed` with
/// it.
pub(super) async fn run_signed_in(
    jobs: &Jobs,
    id: JobId,
    machine: impl AsyncFnOnce(&SignedIn<'_>, &KeyGroup, &str, &Designated) -> Result<String, JobError>,
    failed: impl FnOnce(&KeyGroup, &str, &JobError),
) -> Result<(), JobError> {
    let Some((group, _permit, designated)) = begin_cloud(jobs, id).await? else {
        return Ok(());
    };
    let outcome = async {
        let by = jobs.service().job(id).await?.started_by;
        let signed_in = async {
            let vault = sign_in_to_vault(jobs, id, &group).await?;
            machine(&vault, &group, &by, &designated).await
        };
        signed_in.await.inspect_err(|e| failed(&group, &by, e))
    };
    end_with(jobs, id, outcome.await).await
}

/// Journals `step` before a cloud job's one request (recover, purge) is sent, unless a run before
/// a restart journalled it already. Returns whether the request may have been sent before the
/// restart (the caller then takes "already done" for success).
pub(super) async fn send_once(
    store: &impl JobStore,
    id: JobId,
    step: impl Into<JobStep>,
    message: String,
    progress: u16,
) -> Result<bool, JobError> {
    let step = step.into();
    let sent_before = store.journal(id).await?.contains(&step);
    if !sent_before {
        store.record(id, step, message, Some(progress)).await?;
    }
    Ok(sent_before)
}

/// The group's vault, signed in: a token for the group's credential, with the job's steps
/// around it.
pub(super) async fn sign_in_to_vault<'a>(
    jobs: &'a Jobs,
    id: JobId,
    group: &'a KeyGroup,
) -> Result<SignedIn<'a>, JobError> {
    let token = sign_in(jobs, id, group).await?;
    Ok(SignedIn::new(jobs.azure().keyvault(), token, &group.target))
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
    tracing::info!(event = Event::JobsCancelled.as_str(), job = id.get(), group = %group.name, vault = %group.target.name(), identity = %by, "Job {id} for key group {} cancelled by {by}", group.name);
    Ok(())
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

/// A display-only step (no journal entry). A display message; the service dates it by the daemon's clock when the change is durable.
pub(super) fn step(message: &str) -> StepMessage {
    StepMessage {
        at: 0,
        message: message.to_owned(),
    }
}

pub(super) use crate::clock::rfc3339;

/// Runs `work` with the Azure back-off of its calls shown in the job: `waiting-retry` with a
/// step saying why while a call waits, `running` again once none does. Every notice is
/// journalled before this returns.
pub(super) async fn with_retry_display<F: Future>(svc: &Service, id: JobId, work: F) -> F::Output {
    let (notice, events) = RetryNotice::channel();
    let watcher = tokio::spawn(show_retries(svc.clone(), id, events));
    let result = retry_notice::scope(notice, work).await;
    if watcher.await.is_err() {
        tracing::warn!(job = id.get(), "the retry watcher stopped early");
    }
    result
}

/// Journals Azure back-off. The state follows the count of calls waiting now (several imports
/// may be in flight), so a notice dropped while the channel was full changes no state for long.
async fn show_retries(svc: Service, id: JobId, mut events: RetryEvents) {
    let mut shown_waiting = false;
    while let Some(event) = events.recv().await {
        let waiting = events.waiting() > 0;
        let message = match event {
            RetryEvent::Waiting { delay, reason } => Some(format!(
                "Azure answered {reason}; retrying in {} ms",
                delay.as_millis()
            )),
            RetryEvent::Resumed => None,
        };
        if message.is_none() && waiting == shown_waiting {
            continue;
        }
        shown_waiting = waiting;
        let recorded = svc
            .journal(id, |j| {
                match (j.state, waiting) {
                    (JobState::Running, true) => j.state = JobState::WaitingRetry,
                    (JobState::WaitingRetry, false) => j.state = JobState::Running,
                    _ => {}
                }
                if let Some(m) = &message {
                    j.steps.push(step(m));
                }
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!(job = id.get(), error = %e, "could not journal a retry wait");
        }
    }
}
