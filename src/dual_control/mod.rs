//! Dual control: actions that wait for a second, different admin, and the lifecycle of the job
//! that waits with them.
//!
//! It owns the approvals table ([`approvals`]), the proofs ([`action::Approved`], made only
//! here), what an approval starts, and the waiting-job lifecycle: a delete on cloud or a purge
//! is recorded at once as a job in `waiting-approval`, linked to its approval; approving starts
//! it (with the approval's proof and the designated-device proof), and a rejection, the
//! approval's expiry, a cancel of the job or a restart (pending approvals live in memory only)
//! ends it `cancelled`. Expiry is read from the daemon's clock, both at every use of the table
//! and by one owned task ([`expiry`]). The control API decodes a request, calls one function
//! here and shapes the answer.

mod action;
pub mod approvals;
mod error;
mod expiry;

pub use action::{
    Action, Approval, Approved, ApprovedAction, CloudAction, DeleteCredential, DeleteGroupCloud,
    DeleteKey, ExportByok, PurgeGroupCloud, Status,
};
pub use approvals::{Approvals, EndedWait, MAX_PENDING_PER_REQUESTER};
pub use error::DualControlError;
pub use expiry::APPROVAL_LOST;

use crate::azure::offline_kek::OfflineKek;
use crate::jobs::{JobError, Jobs};
use crate::logs::Event;
use crate::model::{ApprovalId, CredentialName, GroupName, Job, JobId, KeyName};
use crate::service::{ByokFile, Service, ServiceError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How many approved exports' files are kept for download at most (oldest go first).
const MAX_BYOK_FILES: usize = 32;

/// What an offline export is called in refusals.
const EXPORT: &str = "export as a .byok file";

/// How long a purge request waits for Azure to say whether the vault allows a purge.
const PURGE_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Dual control over the service and the job runner. Cheap to clone.
#[derive(Clone)]
pub struct DualControl {
    approvals: Approvals,
    service: Service,
    jobs: Option<Jobs>,
    /// The files of approved `.byok` exports, by approval, in memory only.
    files: Arc<Mutex<BTreeMap<ApprovalId, ByokFile>>>,
}

/// What approving gave: the approval as it now stands, and the job it started, if any.
#[derive(Debug)]
pub struct Decision {
    pub approval: Approval,
    pub job: Option<Job>,
}

impl DualControl {
    /// Dual control whose requests wait `window_secs` for a second admin, by the service's
    /// clock. `jobs` is `None` where the daemon runs without the Azure layer.
    pub fn new(service: Service, jobs: Option<Jobs>, window_secs: u64) -> Self {
        Self {
            approvals: Approvals::new(window_secs, service.clock().clone()),
            service,
            jobs,
            files: Arc::default(),
        }
    }

    /// The job runner, or an error naming `what` could not be done without it.
    fn jobs(&self, what: &'static str) -> Result<&Jobs, DualControlError> {
        self.jobs
            .as_ref()
            .ok_or(DualControlError::JobsUnavailable { what })
    }

    /// Records a dual-control request (logged).
    async fn request(&self, action: Action, requester: &str) -> Result<Approval, DualControlError> {
        self.sweep().await;
        let approval = self.approvals.submit(action, requester)?;
        let (group, key, credential) = approval.action.target();
        tracing::warn!(event = Event::ApprovalRequested.as_str(), service = "control", approval = %approval.id,
            identity = %approval.requested_by, group, key, credential, expires_at = approval.expires_at,
            "Dual-control request {} by {}: {}; waiting for a second admin", approval.id, approval.requested_by, approval.summary);
        Ok(approval)
    }

    /// Requests deleting a credential; refused at once where it could not run (a key group
    /// uses it). The approved delete checks again under the state lock.
    pub async fn request_credential_delete(
        &self,
        name: &CredentialName,
        requester: &str,
    ) -> Result<Approval, DualControlError> {
        self.service.check_credential_deletable(name).await?;
        let action = Action::DeleteCredential(DeleteCredential {
            credential: name.to_string(),
        });
        self.request(action, requester).await
    }

    /// Requests deleting a pushed key locally (the service said it needs a second admin); the
    /// approval is for that key's HSM object only.
    pub async fn request_key_delete(
        &self,
        key: DeleteKey,
        requester: &str,
    ) -> Result<Approval, DualControlError> {
        self.request(Action::DeleteKey(key), requester).await
    }

    /// Requests exporting key `group`/`key` as a `.byok` file wrapped under the KEK in `kek_pem`
    /// (whose versioned id is `kek_kid`). Refused at once, and logged, where the KEK is not an
    /// RSA 2048/3072/4096 public key, the kid is not a key of the group's own target, or this
    /// appliance is not the designated device (the file's one use is changing the cloud).
    pub async fn request_byok_export(
        &self,
        (group, key): (&GroupName, &KeyName),
        (kek_pem, kek_kid): (&[u8], &str),
        requester: &str,
    ) -> Result<Approval, DualControlError> {
        let checked = self
            .check_byok_export((group, key), (kek_pem, kek_kid))
            .await;
        let action = match checked {
            Ok(action) => action,
            Err(e) => {
                tracing::warn!(event = Event::KeyByokExportRefused.as_str(), service = "control", group = %group, key = %key,
                    identity = requester, code = e.code(), "Export of key {group}/{key} as a .byok file by {requester} refused: {e}");
                return Err(e);
            }
        };
        let kid = action.kek_kid.clone();
        let approval = self.request(Action::ExportByok(action), requester).await?;
        tracing::warn!(event = Event::KeyByokExportRequested.as_str(), service = "control", group = %group, key = %key,
            identity = requester, approval = %approval.id, kid = %kid, expires_at = approval.expires_at,
            "Export of key {group}/{key} as a .byok file under {kid} requested by {requester} as {}; waiting for a second admin", approval.id);
        Ok(approval)
    }

    async fn check_byok_export(
        &self,
        (group, key): (&GroupName, &KeyName),
        (kek_pem, kek_kid): (&[u8], &str),
    ) -> Result<ExportByok, DualControlError> {
        let (hsm_id, target_host) = self.service.byok_export_target(group, key).await?;
        let kek = OfflineKek::parse(kek_pem, kek_kid, &target_host)?;
        self.service
            .designated_device()
            .await
            .map_err(|_| DualControlError::NotDesignated { what: EXPORT })?;
        Ok(ExportByok {
            group: group.to_string(),
            key: key.to_string(),
            kek_kid: kek.kid().to_owned(),
            hsm_id,
            kek,
            target_host,
        })
    }

    /// The `.byok` file of approved export `id`, for its requester `who` only (logged).
    pub async fn byok_file(
        &self,
        id: &ApprovalId,
        who: &str,
    ) -> Result<ByokFile, DualControlError> {
        let approval = self.get(id).await?;
        if !matches!(approval.action, Action::ExportByok(_)) {
            return Err(DualControlError::NoByokFile(format!(
                "approval {id} is not a .byok export"
            )));
        }
        if approval.requested_by != who {
            return Err(DualControlError::NotRequester {
                id: *id,
                requester: approval.requested_by,
            });
        }
        let file = self.files_lock().get(id).cloned();
        let file = match (approval.status, file) {
            (_, Some(file)) => file,
            (Status::Pending, None) => {
                return Err(DualControlError::NoByokFile(format!(
                    "export {id} still waits for a second admin's approval (`byokctl approval approve {id}`)"
                )));
            }
            (Status::Approved, None) => {
                return Err(DualControlError::NoByokFile(format!(
                    "the file of export {id} is no longer kept (files live in memory only: the daemon restarted or newer exports replaced it); request the export again"
                )));
            }
            (status, None) => {
                let why = approval.outcome.unwrap_or_default();
                return Err(DualControlError::NoByokFile(format!(
                    "export {id} made no file: it is {} {why}",
                    match status {
                        Status::Rejected => "rejected",
                        Status::Expired => "expired",
                        _ => "failed:",
                    }
                )));
            }
        };
        tracing::warn!(event = Event::KeyByokDownloaded.as_str(), service = "control", approval = %id, identity = who,
            group = %file.group, key = %file.key, kid = %file.kek_kid,
            "The .byok file of key {}/{} (export {id}) downloaded by {who}", file.group, file.key);
        Ok(file)
    }

    fn files_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ApprovalId, ByokFile>> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `file` for its requester; forgets files whose approval the table no longer keeps,
    /// then the oldest beyond [`MAX_BYOK_FILES`].
    fn keep_file(&self, id: ApprovalId, file: ByokFile) {
        let kept: std::collections::BTreeSet<ApprovalId> =
            self.approvals.list().into_iter().map(|a| a.id).collect();
        let mut files = self.files_lock();
        files.retain(|k, _| kept.contains(k));
        files.insert(id, file);
        while files.len() > MAX_BYOK_FILES {
            let oldest = self
                .approvals
                .list()
                .into_iter()
                .rev()
                .map(|a| a.id)
                .find(|a| files.contains_key(a));
            match oldest {
                Some(a) => {
                    files.remove(&a);
                }
                None => break,
            }
        }
    }

    /// "Delete key material on cloud": recorded at once as a job in `waiting-approval`, linked
    /// to the approval. Designated device only.
    pub async fn request_delete_cloud(
        &self,
        group: &GroupName,
        requester: &str,
    ) -> Result<(Approval, Job), DualControlError> {
        self.service.group(group).await?;
        let action = DeleteGroupCloud {
            group: group.to_string(),
        };
        self.request_job(action, Action::DeleteGroupCloud, group, requester)
            .await
    }

    /// "Purge key material on cloud" of a soft-deleted Azure key: refused at once (a cloud-state
    /// error, with the reason) where the vault's recovery level forbids purging or the key is
    /// live; else recorded like a delete on cloud, pinned to the group's vault now.
    pub async fn request_purge(
        &self,
        group: &GroupName,
        requester: &str,
    ) -> Result<(Approval, Job), DualControlError> {
        let target = self.service.group_record(group).await?.target;
        const WHAT: &str = PurgeGroupCloud::WHAT;
        let jobs = self.jobs(WHAT)?;
        let designated = self
            .service
            .designated_device()
            .await
            .map_err(|_| DualControlError::NotDesignated { what: WHAT })?;
        // Refused now, with the vault's reason, rather than after a second admin approved it.
        // Where Azure cannot be asked in time, the request goes ahead: the job then says.
        match tokio::time::timeout(PURGE_CHECK, jobs.purge_possible(&designated, group)).await {
            Ok(Err(e @ JobError::Invalid(_))) => {
                return Err(DualControlError::Job {
                    source: e,
                    cloud_state: true,
                });
            }
            Ok(Err(e)) => {
                tracing::warn!(group = %group, error = %e, "could not ask Azure whether {} allows a purge; requesting approval anyway", target.kind().the());
            }
            Err(_) => {
                tracing::warn!(group = %group, "Azure did not say in time whether {} allows a purge; requesting approval anyway", target.kind().the());
            }
            Ok(Ok(())) => {}
        }
        let action = PurgeGroupCloud {
            group: group.to_string(),
            target,
        };
        self.request_job(action, Action::PurgeGroupCloud, group, requester)
            .await
    }

    /// Records the request for `action` and its job in `waiting-approval`, linked to each other.
    async fn request_job<A: CloudAction>(
        &self,
        action: A,
        wrap: fn(A) -> Action,
        group: &GroupName,
        requester: &str,
    ) -> Result<(Approval, Job), DualControlError> {
        let jobs = self.jobs(A::WHAT)?;
        let designated = self
            .service
            .designated_device()
            .await
            .map_err(|_| DualControlError::NotDesignated { what: A::WHAT })?;
        let approval = self.request(wrap(action), requester).await?;
        let recorded = jobs
            .request_approval_job(
                &designated,
                A::KIND,
                group,
                requester,
                (&approval.id, approval.expires_at),
            )
            .await;
        let id = match recorded {
            Ok(id) => id,
            Err(e) => {
                // Never answered with its id, so nobody could decide it: it goes.
                self.approvals.forget(&approval.id);
                tracing::warn!(approval = %approval.id, error = %e, "dual-control request dropped: its waiting job could not be recorded");
                return Err(DualControlError::job(e));
            }
        };
        self.approvals.link_job(&approval.id, id);
        Ok((
            self.approvals.get(&approval.id)?,
            self.service.job(id).await?,
        ))
    }

    /// Approves a pending action as a second, different admin and runs it: as the requester
    /// with the approver's consent. The action re-checks its preconditions under the state
    /// lock; if they no longer hold, the approval ends `failed` with the reason (and the error
    /// is returned). A refused decision is logged.
    pub async fn approve(
        &self,
        id: &ApprovalId,
        approver: &str,
    ) -> Result<Decision, DualControlError> {
        self.sweep().await;
        let approved = self
            .approvals
            .approve(id, approver)
            .inspect_err(|e| refused(id, approver, e))?;
        let approval = approved.approval().clone();
        let (group, key, credential) = approval.action.target();
        tracing::warn!(event = Event::ApprovalApproved.as_str(), service = "control", approval = %approval.id,
            identity = %approver, requested_by = %approval.requested_by, approved_by = %approver, group, key, credential,
            "Dual-control request {} by {} approved by {}: {}; executing", approval.id, approval.requested_by, approver, approval.summary);
        let by = format!("{} (approved by {approver})", approval.requested_by);
        let result = self.execute(approved).await;
        let (ok, outcome) = match &result {
            Ok(None) => (true, "done".to_owned()),
            Ok(Some(job)) => (true, format!("job {} started", job.id)),
            Err(e) => (false, e.to_string()),
        };
        self.approvals
            .record_outcome(&approval.id, ok, outcome.clone());
        if ok {
            tracing::warn!(event = Event::ApprovalExecuted.as_str(), service = "control", approval = %approval.id,
                identity = %by, group, key, credential, "Approved action {} ({}) done: {outcome}", approval.id, approval.summary);
        } else {
            tracing::error!(event = Event::ApprovalExecuted.as_str(), service = "control", approval = %approval.id,
                identity = %by, group, key, credential, "Approved action {} ({}) not done: {outcome}", approval.id, approval.summary);
        }
        let job = result?;
        Ok(Decision {
            approval: self.approvals.get(&approval.id)?,
            job,
        })
    }

    /// What an approval starts: the service's approved delete, or the waiting job.
    async fn execute(&self, approved: ApprovedAction) -> Result<Option<Job>, DualControlError> {
        let id = match approved {
            ApprovedAction::DeleteCredential(a) => {
                self.service.delete_credential_approved(&a).await?;
                return Ok(None);
            }
            ApprovedAction::DeleteKey(a) => {
                self.service.delete_key_approved(&a).await?;
                return Ok(None);
            }
            ApprovedAction::ExportByok(a) => {
                self.export_approved(&a).await?;
                return Ok(None);
            }
            ApprovedAction::DeleteGroupCloud(a) => {
                let designated = self.runnable(&a).await?;
                self.jobs(DeleteGroupCloud::WHAT)?
                    .start_approved_delete(&a, designated)
                    .await
                    .map_err(DualControlError::job)?
            }
            ApprovedAction::PurgeGroupCloud(a) => {
                let designated = self.runnable(&a).await?;
                self.jobs(PurgeGroupCloud::WHAT)?
                    .start_approved_purge(&a, designated)
                    .await
                    .map_err(|source| DualControlError::Job {
                        cloud_state: matches!(source, JobError::Invalid(_)),
                        source,
                    })?
            }
        };
        Ok(Some(self.service.job(id).await?))
    }

    /// Wraps the approved export's key and keeps its file for the requester; a refusal (the
    /// appliance is no longer designated, the key changed, the wrap failed) is logged.
    async fn export_approved(&self, a: &Approved<ExportByok>) -> Result<(), DualControlError> {
        let x = a.action();
        tracing::warn!(event = Event::KeyByokExportApproved.as_str(), service = "control", approval = %a.id(),
            group = %x.group, key = %x.key, kid = %x.kek_kid, identity = %a.approver(),
            requested_by = %a.approval().requested_by, approved_by = %a.approver(),
            "Export of key {}/{} as a .byok file approved by {}; wrapping it in the HSM", x.group, x.key, a.approver());
        let made = match self.service.designated_device().await {
            Ok(_) => self
                .service
                .export_byok_approved(a)
                .await
                .map_err(DualControlError::from),
            Err(_) => Err(DualControlError::NotDesignated { what: EXPORT }),
        };
        match made {
            Ok(file) => {
                self.keep_file(*a.id(), file);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(event = Event::KeyByokExportRefused.as_str(), service = "control", approval = %a.id(),
                    group = %x.group, key = %x.key, identity = %a.by(), code = e.code(),
                    "Approved export of key {}/{} as a .byok file not made: {e}", x.group, x.key);
                Err(e)
            }
        }
    }

    /// Checks that the approved cloud action `a` can run here: the daemon has its job runner,
    /// the group still exists, the approval has its waiting job, and this appliance is the
    /// designated device (else the waiting job ends, not run).
    async fn runnable<A: CloudAction>(
        &self,
        a: &Approved<A>,
    ) -> Result<crate::service::Designated, DualControlError> {
        self.jobs(A::WHAT)?;
        let group =
            GroupName::try_from(a.action().group().to_owned()).map_err(ServiceError::from)?;
        self.service.group(&group).await?;
        let waiting = a.job().ok_or_else(|| DualControlError::WithoutJob {
            id: *a.id(),
            what: A::WHAT,
        })?;
        match self.service.designated_device().await {
            Ok(d) => Ok(d),
            Err(e) => {
                let not = JobError::from(e);
                self.service
                    .end_waiting_job(waiting, &format!("Not run: {not}"))
                    .await?;
                Err(DualControlError::job(not))
            }
        }
    }

    /// Rejects a pending action (any admin, the requester too); a job waiting for it ends
    /// `cancelled`. A refused decision is logged.
    pub async fn reject(&self, id: &ApprovalId, by: &str) -> Result<Approval, DualControlError> {
        self.sweep().await;
        let approval = self
            .approvals
            .reject(id, by)
            .inspect_err(|e| refused(id, by, e))?;
        let (group, key, credential) = approval.action.target();
        tracing::warn!(event = Event::ApprovalRejected.as_str(), service = "control", approval = %approval.id,
            identity = %by, requested_by = %approval.requested_by, rejected_by = %by, group, key, credential,
            "Dual-control request {} by {} rejected by {}: {}", approval.id, approval.requested_by, by, approval.summary);
        if let Some(job) = approval.job() {
            let reason = format!("Cancelled: approval {} was rejected by {by}", approval.id);
            self.service.end_waiting_job(job, &reason).await?;
        }
        Ok(approval)
    }

    /// Cancels a job (see [`Service::cancel_job`]); a job that waits for approval ends at once
    /// and its approval is withdrawn.
    pub async fn cancel_job(&self, id: JobId, by: &str) -> Result<Job, DualControlError> {
        let job = self.service.cancel_job(id, by).await?;
        if let Some(a) = self.approvals.withdraw_for_job(id, by) {
            let (group, key, credential) = a.action.target();
            tracing::warn!(event = Event::ApprovalWithdrawn.as_str(), service = "control", approval = %a.id,
                job = id.get(), identity = %by, group, key, credential,
                "Dual-control request {} ({}) withdrawn by {by}: its job {id} was cancelled", a.id, a.summary);
        }
        Ok(job)
    }

    /// Every approval the table keeps, newest first.
    pub async fn list(&self) -> Vec<Approval> {
        self.sweep().await;
        self.approvals.list()
    }

    pub async fn get(&self, id: &ApprovalId) -> Result<Approval, DualControlError> {
        self.sweep().await;
        self.approvals.get(id)
    }

    /// The approval a job waits (or waited) for, while the table remembers it.
    pub fn of_job(&self, job: JobId) -> Option<Approval> {
        self.approvals.of_job(job)
    }
}

/// Records a refused approve or reject.
fn refused(id: &ApprovalId, by: &str, e: &DualControlError) {
    tracing::warn!(
        event = Event::ApprovalRefused.as_str(),
        service = "control",
        approval = %id,
        identity = by,
        code = e.code(),
        "Approval decision on {id} by {by} refused: {e}"
    );
}
