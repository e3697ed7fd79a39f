//! Jobs: the cloud operations that take time ("Synchronize HSM protected key(s)", "Rotate key
//! material", "Delete key material on cloud", "Check cloud state", "Recover key material on cloud" and
//! "Purge key material on cloud"), run in the background with progress and a durable step journal.
//!
//! Owns submission (with the designated-device check), the per-vault concurrency bound, and
//! resuming unfinished jobs at start-up. It must never mutate the cloud from a non-designated
//! appliance, and never leave a KEK behind on purpose.

use crate::model::JobId;
mod clock;
mod cloud;
mod drift;
mod error;
mod imports;
mod public_key;
mod push;
mod rotate;
pub mod scheduler;
mod sign_in;
mod transfer_blob;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::JobError;
pub use public_key::{FINGERPRINT_TAG, fingerprint, jwk_matches_spki};
pub use scheduler::Scheduler;
pub use sign_in::HsmAssertionSigner;
pub use transfer_blob::{generator, key_hsm};

use crate::azure::Azure;
use crate::model::{ApprovalId, GroupName, JobKind, JobState, KeyName};
use crate::service::Service;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Why a job that waited for approval ends at start-up.
pub const APPROVAL_LOST: &str = "Cancelled: the approval did not survive the daemon's restart (pending approvals are kept in memory only); request again";

/// Jobs running concurrently against one vault.
const PER_VAULT_JOBS: usize = 1;

/// The job runner, shared by the control API and the scheduler.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    service: Service,
    azure: Arc<Azure>,
    vaults: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Imports in flight per vault, over all its jobs (`azure.vault_concurrent_imports`).
    imports: Mutex<HashMap<String, Arc<Semaphore>>>,
    clock: Arc<dyn Clock>,
    /// Where group and designated changes go for the scheduler to re-plan.
    changes: Mutex<Option<tokio::sync::mpsc::UnboundedSender<scheduler::Change>>>,
    changed: tokio::sync::Notify,
}

impl Jobs {
    pub fn new(service: Service, azure: Arc<Azure>) -> Self {
        Self::with_clock(service, azure, Arc::new(SystemClock))
    }

    /// A runner reading time from `clock` for rotation and grace decisions.
    pub fn with_clock(service: Service, azure: Arc<Azure>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                service,
                azure,
                vaults: Mutex::new(HashMap::new()),
                imports: Mutex::new(HashMap::new()),
                clock,
                changes: Mutex::new(None),
                changed: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    fn lock_changes(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<tokio::sync::mpsc::UnboundedSender<scheduler::Change>>>
    {
        self.inner
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_change_sink(
        &self,
        tx: tokio::sync::mpsc::UnboundedSender<scheduler::Change>,
    ) {
        *self.lock_changes() = Some(tx);
    }

    pub(crate) fn change_notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.changed.notified()
    }

    /// Tells the scheduler that a group's policy, rotation or grace record changed.
    pub fn group_changed(&self, group: &GroupName) {
        self.send_change(scheduler::Change::Group(group.clone()));
    }

    /// Tells the scheduler to re-plan everything (the designated setting changed).
    pub fn everything_changed(&self) {
        self.send_change(scheduler::Change::All);
    }

    fn send_change(&self, change: scheduler::Change) {
        if let Some(tx) = self.lock_changes().as_ref() {
            let _ = tx.send(change);
        }
        self.inner.changed.notify_one();
    }

    pub fn service(&self) -> &Service {
        &self.inner.service
    }

    pub fn azure(&self) -> &Arc<Azure> {
        &self.inner.azure
    }

    /// Submits "Synchronize HSM protected key(s)" for keys of one group; returns the job id.
    pub async fn submit_sync(
        &self,
        group: &GroupName,
        keys: &[KeyName],
        by: &str,
    ) -> Result<JobId, JobError> {
        self.require_designated().await?;
        if keys.is_empty() {
            return Err(JobError::Invalid(
                "name at least one key to synchronize".into(),
            ));
        }
        let id = self
            .service()
            .create_job(JobKind::Sync, group, keys, by)
            .await?;
        self.spawn(id);
        Ok(id)
    }

    /// Submits "Synchronize HSM protected key(s)" for every key of the group that has no Azure
    /// version (chosen when the job is created, under the state lock); returns the job id.
    pub async fn submit_sync_unpushed(
        &self,
        group: &GroupName,
        by: &str,
    ) -> Result<JobId, JobError> {
        self.require_designated().await?;
        let id = self.service().create_sync_of_unpushed(group, by).await?;
        self.spawn(id);
        Ok(id)
    }

    /// Submits "Rotate key material": a new HSM key for the group, pushed as its new version.
    pub async fn submit_rotate(&self, group: &GroupName, by: &str) -> Result<JobId, JobError> {
        self.require_designated().await?;
        self.submit_group_job(JobKind::Rotate, group, by).await
    }

    /// Records a dual-control job of `kind` ("Delete key material on cloud", "Purge key
    /// material on cloud") durably in `waiting-approval`, linked to the approval `approval`
    /// (which expires at `expires_at`). Nothing runs until [`Jobs::approved`] (a purge:
    /// [`Jobs::approved_purge`]).
    pub async fn request_approval_job(
        &self,
        kind: JobKind,
        group: &GroupName,
        by: &str,
        approval: &ApprovalId,
        expires_at: i64,
    ) -> Result<JobId, JobError> {
        self.require_designated().await?;
        Ok(self
            .service()
            .create_waiting_job(kind, group, by, approval, expires_at)
            .await?)
    }

    /// Runs a job that waited for approval, now that a second admin (`approver`) approved it:
    /// every Azure version of the group's key is deleted, and purged where the vault allows.
    /// Local keys are untouched. `by` names requester and approver.
    pub async fn approved(&self, id: JobId, by: &str, approver: &str) -> Result<JobId, JobError> {
        if let Err(e) = self.require_designated().await {
            self.service()
                .end_waiting_job(id, &format!("Not run: {e}"))
                .await?;
            return Err(e);
        }
        self.service().approve_job(id, by, approver).await?;
        self.spawn(id);
        Ok(id)
    }

    /// Submits "Check cloud state" (read-only, so allowed on any appliance).
    pub async fn submit_check(&self, group: &GroupName, by: &str) -> Result<JobId, JobError> {
        self.submit_group_job(JobKind::CheckCloud, group, by).await
    }

    /// Records a group-wide job of `kind` and starts it.
    async fn submit_group_job(
        &self,
        kind: JobKind,
        group: &GroupName,
        by: &str,
    ) -> Result<JobId, JobError> {
        let id = self.service().create_job(kind, group, &[], by).await?;
        self.spawn(id);
        Ok(id)
    }

    /// Submits "Recover key material on cloud": the group's soft-deleted Azure key is brought
    /// back with all its versions (designated device only, checked again when it runs).
    pub async fn submit_recover(&self, group: &GroupName, by: &str) -> Result<JobId, JobError> {
        self.require_designated().await?;
        self.submit_group_job(JobKind::Recover, group, by).await
    }

    /// Refuses a purge before anyone is asked to approve it when the vault cannot do it (no
    /// deleted key, or a recovery level that forbids purging).
    pub async fn purge_possible(&self, group: &GroupName) -> Result<(), JobError> {
        self.require_designated().await?;
        cloud::purge_possible(self, group).await
    }

    /// Runs a waiting purge job once a second admin approved it, but only for the deleted key
    /// in `vault`, the group's vault when the purge was requested: a group that now uses another
    /// vault ends the job `cancelled` and is refused. (The waiting job holds its group, so the
    /// group cannot be deleted and created again on another vault between this check and the
    /// run; the check guards a job and an approval that outlived their request.)
    pub async fn approved_purge(
        &self,
        id: JobId,
        vault: &str,
        by: &str,
        approver: &str,
    ) -> Result<JobId, JobError> {
        let job = self.service().job(id).await?;
        let now = self.service().group_record(&job.group).await?.vault;
        if !now.as_str().eq_ignore_ascii_case(vault) {
            let why = format!(
                "key group {} now uses vault {now}, not vault {vault} that this purge was requested and approved for; nothing was purged; request the purge again if the deleted key in {now} should go",
                job.group
            );
            self.service()
                .end_waiting_job(id, &format!("Not run: {why}"))
                .await?;
            return Err(JobError::Invalid(why));
        }
        self.approved(id, by, approver).await
    }

    /// Disables the previous Azure versions of a group whose grace period ended.
    pub async fn finish_grace(&self, group: &GroupName) -> Result<(), JobError> {
        self.require_designated().await?;
        cloud::finish_grace(self, group).await
    }

    /// Resumes every job that was not finished when the daemon stopped.
    pub async fn resume_unfinished(&self) {
        if let Err(e) = self.service().prune_jobs().await {
            tracing::warn!(error = %e, "could not prune finished jobs at start-up");
        }
        for (id, state) in self.service().unfinished_jobs().await {
            // Pending approvals live in memory only: the approval this job waited for is gone,
            // so the job ends rather than runs without a second admin.
            if state == JobState::WaitingApproval {
                if let Err(e) = self.service().end_waiting_job(id, APPROVAL_LOST).await {
                    tracing::error!(job = id.get(), error = %e, "could not end a job whose approval was lost");
                }
                continue;
            }
            tracing::info!(job = id.get(), "resuming unfinished job");
            self.spawn(id);
        }
    }

    async fn require_designated(&self) -> Result<(), JobError> {
        if self.service().designated().await {
            Ok(())
        } else {
            Err(JobError::NotDesignated)
        }
    }

    fn vault_slot(&self, vault: &str) -> Arc<Semaphore> {
        let mut map = match self.inner.vaults.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(vault.to_ascii_lowercase())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_VAULT_JOBS)))
            .clone()
    }

    /// `azure.vault_concurrent_imports`: how many imports may be in flight to one vault.
    fn concurrent_imports(&self) -> usize {
        self.service()
            .config()
            .azure
            .vault_concurrent_imports
            .clamp(1, 32) as usize
    }

    /// The bound on imports in flight to `vault`, shared by every job on it.
    fn import_slots(&self, vault: &str) -> Arc<Semaphore> {
        let bound = self.concurrent_imports();
        let mut map = match self.inner.imports.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(vault.to_ascii_lowercase())
            .or_insert_with(|| Arc::new(Semaphore::new(bound)))
            .clone()
    }

    fn spawn(&self, id: JobId) {
        let jobs = self.clone();
        tokio::spawn(async move {
            if let Err(e) = jobs.run(id).await {
                tracing::error!(job = id.get(), error = %e, "job could not be recorded");
            }
        });
    }

    /// Runs a job inside a `job` span that carries its id and the identity that started it:
    /// every service-log record the job causes names both (see `logs::capture`).
    async fn run(&self, id: JobId) -> Result<(), JobError> {
        let job = self.service().job(id).await?;
        let span = tracing::info_span!("job", job = id.get(), identity = %job.started_by);
        async {
            match job.kind {
                JobKind::Sync => push::run(self, id).await,
                JobKind::Rotate => rotate::run(self, id).await,
                JobKind::DeleteOnCloud => cloud::run_delete(self, id).await,
                JobKind::CheckCloud => drift::run(self, id).await,
                JobKind::Recover => cloud::run_recover(self, id).await,
                JobKind::Purge => cloud::run_purge(self, id).await,
            }
        }
        .instrument(span)
        .await
    }
}
