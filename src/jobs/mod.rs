//! Jobs: the cloud operations that take time ("Synchronize HSM protected key(s)", "Rotate key
//! material", "Delete key material on cloud", "Check cloud state", "Recover key material on cloud" and
//! "Purge key material on cloud"), run in the background with progress and a durable step journal.
//!
//! Owns submission, the per-vault concurrency bound, and resuming unfinished jobs at start-up.
//! It must never mutate the cloud from a non-designated appliance (every cloud-changing
//! submission takes the service's [`Designated`] proof, and every cloud-changing run takes a
//! fresh one when it begins, after waiting for its vault: `executor::begin_cloud` fails the job
//! without one; a job needing dual control takes the [`Approved`] proof too), and never leave a
//! KEK behind on purpose.
//!
//! Code map, top down (a kind depends on the executor, `kek` and `ports`, never on another kind;
//! a rotation pushes its key with the sync's procedure, which the dispatcher below hands it):
//! - kinds, one file each: `sync` (with `sync_imports`, the import phase, and `sync_resolve`,
//!   finding lost imports by fingerprint tag), `rotate`, `delete_cloud`, `recover`, `purge`,
//!   `check_cloud`, and `grace` (run by the `scheduler`, not as a job);
//! - `executor`: begin/step/succeed/fail/cancel, per-vault slots, retry display;
//! - `kek`: the key exchange key's lifecycle and the waits around a delete;
//! - `sign_in`: Entra ID tokens for a job; `ports`: the configuration and the narrow interfaces
//!   the kinds' state machines run on: `Vault` (Key Vault, signed in), `KeyHsm` (the HSM), and
//!   in `job_store` `JobStore` (the job's record and lifecycle records) and `LocalKeys` (the
//!   group's keys). In-memory ones are in `fakes` and `fakes_state` (tests only); `error`:
//!   `JobError`. A kind's `run` wires the real ones (the service, the HSM handle, the signed-in
//!   client) into its state machine; nothing else in a kind reaches them.

use crate::model::JobId;
mod check_cloud;
mod delete_cloud;
mod error;
mod executor;
#[cfg(test)]
mod fakes;
#[cfg(test)]
mod fakes_session;
#[cfg(test)]
mod fakes_state;
mod grace;
mod job_store;
mod kek;
mod ports;
mod purge;
mod record_import;
mod recover;
mod rotate;
pub mod scheduler;
mod sign_in;
mod sync;
mod sync_imports;
mod sync_resolve;

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use error::JobError;
pub use record_import::RecordedImport;
pub use scheduler::Scheduler;
pub use sign_in::HsmAssertionSigner;

use crate::azure::Azure;
use crate::dual_control::{Approved, DeleteGroupCloud, PurgeGroupCloud};
use crate::model::{ApprovalId, GroupName, JobKind, JobState, KeyName};
use crate::service::Designated;
use crate::service::Service;
use std::sync::Arc;
use tracing::Instrument;

/// The job runner, shared by the control API and the scheduler.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    service: Service,
    azure: Arc<Azure>,
    /// One job at a time per vault; `azure.vault_concurrent_imports` imports per vault.
    slots: executor::VaultSlots,
    /// The configuration values the kinds use, read once.
    settings: ports::JobSettings,
    clock: Arc<dyn Clock>,
}

impl Jobs {
    /// A runner reading time from the service's clock (the daemon's one clock) for rotation
    /// and grace decisions. From here on the outbound allowlist of `azure` allows exactly the
    /// vaults the service's committed key groups name.
    pub fn new(service: Service, azure: Arc<Azure>) -> Self {
        let clock = service.clock().clone();
        let settings = ports::JobSettings::from_config(service.config());
        azure.allowlist().follow(service.committed_targets());
        Self {
            inner: Arc::new(Inner {
                service,
                azure,
                slots: executor::VaultSlots::new(settings.vault_concurrent_imports),
                settings,
                clock,
            }),
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
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
        _: Designated,
        group: &GroupName,
        keys: &[KeyName],
        by: &str,
    ) -> Result<JobId, JobError> {
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
        _: Designated,
        group: &GroupName,
        by: &str,
    ) -> Result<JobId, JobError> {
        let id = self.service().create_sync_of_unpushed(group, by).await?;
        self.spawn(id);
        Ok(id)
    }

    /// Submits "Rotate key material": a new HSM key for the group, synced as its new version.
    pub async fn submit_rotate(
        &self,
        _: Designated,
        group: &GroupName,
        by: &str,
    ) -> Result<JobId, JobError> {
        self.submit_group_job(JobKind::Rotate, group, by).await
    }

    /// Records a dual-control job of `kind` ("Delete key material on cloud", "Purge key
    /// material on cloud") durably in `waiting-approval`, linked to the approval `approval`
    /// (which expires at `expires_at`). Nothing runs until it is started with the approval's
    /// proof ([`Jobs::start_approved_delete`], [`Jobs::start_approved_purge`]).
    pub(crate) async fn request_approval_job(
        &self,
        _: &Designated,
        kind: JobKind,
        group: &GroupName,
        by: &str,
        (approval, expires_at): (&ApprovalId, i64),
    ) -> Result<JobId, JobError> {
        Ok(self
            .service()
            .create_waiting_job(kind, group, by, approval, expires_at)
            .await?)
    }

    /// Starts the job that waited for `approved`: every Azure version of the group's key is
    /// deleted, and purged where the vault allows. Local keys are untouched.
    pub async fn start_approved_delete(
        &self,
        approved: &Approved<DeleteGroupCloud>,
        designated: Designated,
    ) -> Result<JobId, JobError> {
        self.start_waiting(approved, designated).await
    }

    /// Starts the waiting job of an approved `approved` purge, but only for the deleted key in
    /// the vault the purge was requested for: a group that now uses another vault ends the job
    /// `cancelled` and is refused. (The waiting job holds its group, so the group cannot be
    /// deleted and created again on another vault between this check and the run; the check
    /// guards a job and an approval that outlived their request.)
    pub async fn start_approved_purge(
        &self,
        approved: &Approved<PurgeGroupCloud>,
        designated: Designated,
    ) -> Result<JobId, JobError> {
        let id = waiting_job(approved)?;
        let vault = &approved.action().target;
        let job = self.service().job(id).await?;
        let now = self.service().group_record(&job.group).await?.target;
        if !now.same_as(vault) {
            let why = format!(
                "key group {} now uses {now}, not {vault} that this purge was requested and approved for; nothing was purged; request the purge again if the deleted key in {now} should go",
                job.group
            );
            self.service()
                .end_waiting_job(id, &format!("Not run: {why}"))
                .await?;
            return Err(JobError::Invalid(why));
        }
        self.start_waiting(approved, designated).await
    }

    /// Queues the job that waited for `approved`, as the requester with the approver's consent.
    async fn start_waiting<A>(
        &self,
        approved: &Approved<A>,
        _: Designated,
    ) -> Result<JobId, JobError> {
        let id = waiting_job(approved)?;
        self.service()
            .approve_job(id, &approved.by(), approved.approver())
            .await?;
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
    pub async fn submit_recover(
        &self,
        _: Designated,
        group: &GroupName,
        by: &str,
    ) -> Result<JobId, JobError> {
        self.submit_group_job(JobKind::Recover, group, by).await
    }

    /// Refuses a purge before anyone is asked to approve it when the vault cannot do it (no
    /// deleted key, or a recovery level that forbids purging).
    pub async fn purge_possible(&self, _: &Designated, group: &GroupName) -> Result<(), JobError> {
        purge::purge_possible(self, group).await
    }

    /// Disables the previous Azure versions of a group whose grace period ended.
    pub async fn finish_grace(&self, _: Designated, group: &GroupName) -> Result<(), JobError> {
        grace::finish_grace(self, group).await
    }

    /// Resumes every job that was not finished when the daemon stopped. A job that waited for
    /// approval is not resumed: dual control ends it ([`crate::dual_control`]).
    pub async fn resume_unfinished(&self) {
        if let Err(e) = self.service().prune_jobs().await {
            tracing::warn!(error = %e, "could not prune finished jobs at start-up");
        }
        for (id, state) in self.service().unfinished_jobs().await {
            if state == JobState::WaitingApproval {
                continue;
            }
            tracing::info!(job = id.get(), "resuming unfinished job");
            self.spawn(id);
        }
    }

    fn settings(&self) -> ports::JobSettings {
        self.inner.settings
    }

    fn slots(&self) -> &executor::VaultSlots {
        &self.inner.slots
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
                JobKind::Sync => sync::run(self, id).await,
                JobKind::Rotate => rotate::run(self, id, sync::sync_keys).await,
                JobKind::DeleteOnCloud => delete_cloud::run(self, id).await,
                JobKind::CheckCloud => check_cloud::run(self, id).await,
                JobKind::Recover => recover::run(self, id).await,
                JobKind::Purge => purge::run(self, id).await,
            }
        }
        .instrument(span)
        .await
    }
}

/// The job an approved cloud action's approval is linked to.
fn waiting_job<A>(approved: &Approved<A>) -> Result<JobId, JobError> {
    approved.job().ok_or_else(|| {
        JobError::Invalid(format!(
            "approval {} has no waiting job; request the action again",
            approved.id()
        ))
    })
}

#[cfg(test)]
mod tests {
    /// The kinds meet only in the dispatcher: no kind's code imports another kind.
    #[test]
    fn no_kind_imports_another_kind() {
        let kinds = [
            "sync",
            "rotate",
            "delete_cloud",
            "recover",
            "purge",
            "check_cloud",
            "grace",
        ];
        for kind in kinds {
            let path = format!("{}/src/jobs/{kind}.rs", env!("CARGO_MANIFEST_DIR"));
            let source = std::fs::read_to_string(&path).unwrap();
            let code = source.split("#[cfg(test)]").next().unwrap();
            for other in kinds.iter().filter(|o| **o != kind) {
                for import in [format!("super::{other}::"), format!("jobs::{other}::")] {
                    assert!(!code.contains(&import), "{path} imports {import}");
                }
            }
        }
    }
}
