//! What dual control guards: the actions that wait for a second, different admin, and the
//! proof that one approved them.
//!
//! [`Approved`] has private fields and no public constructor: only the approvals table
//! ([`super::approvals`]) makes one, when a different admin approves. The service's approved
//! deletes and the job runner's approved cloud jobs take it, so nothing starts them without a
//! second admin. An `Approved` cannot be forged outside this module:
//!
//! ```compile_fail
//! use byokd::dual_control::{Approved, DeleteGroupCloud};
//! let forged = Approved::<DeleteGroupCloud> { approval: todo!(), approver: "me".into(), action: todo!() };
//! ```

use crate::azure::offline_kek::OfflineKek;
use crate::model::{ApprovalId, HsmKeyId, JobId, JobKind};
use serde::Serialize;

/// An action that needs a second admin. The variants' data are the typed actions below, so an
/// approval of one kind is never taken for another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    DeleteCredential(DeleteCredential),
    DeleteKey(DeleteKey),
    /// Delete the group's Azure key (every version) on the cloud service; local keys stay.
    DeleteGroupCloud(DeleteGroupCloud),
    /// Purge the group's soft-deleted Azure key for good; local keys stay.
    PurgeGroupCloud(PurgeGroupCloud),
    /// Wrap a key in the HSM under an Azure KEK into a `.byok` file for an offline import.
    ExportByok(ExportByok),
}

/// Delete a credential (no key group may use it when it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteCredential {
    pub credential: String,
}

/// Delete a pushed key locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteKey {
    pub group: String,
    pub key: String,
    /// The key's HSM object when the delete was requested: the approval is for that key only,
    /// never for another one given the same name later.
    #[serde(skip)]
    pub hsm_id: HsmKeyId,
}

/// Delete the group's Azure key (every version) on the cloud service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteGroupCloud {
    pub group: String,
}

/// Purge the group's soft-deleted Azure key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeGroupCloud {
    pub group: String,
    /// The group's Key Vault or Managed HSM when the purge was requested: the purge is for the
    /// deleted key there only, never in another one the group was given since.
    #[serde(skip)]
    pub target: crate::model::Target,
}

/// Export a key as a `.byok` transfer file: wrapped inside the HSM under the KEK the officer
/// downloaded, exactly as a push wraps it, for `az keyvault key import --byok-file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportByok {
    pub group: String,
    pub key: String,
    /// The KEK's versioned key id, as the file's header carries it.
    pub kek_kid: String,
    /// The key's HSM object when the export was requested: the approval is for that key only.
    #[serde(skip)]
    pub hsm_id: HsmKeyId,
    /// The checked KEK the key is wrapped under.
    #[serde(skip)]
    pub kek: OfflineKek,
    /// The group's target host when the export was requested (the kid's host).
    #[serde(skip)]
    pub target_host: String,
}

/// An action run as a job that waits in `waiting-approval` until it is approved.
pub trait CloudAction {
    /// The kind of the waiting job.
    const KIND: JobKind;
    /// What it is called in answers ("delete on cloud", "purge").
    const WHAT: &'static str;
    fn group(&self) -> &str;
}

impl CloudAction for DeleteGroupCloud {
    const KIND: JobKind = JobKind::DeleteOnCloud;
    const WHAT: &'static str = "delete on cloud";
    fn group(&self) -> &str {
        &self.group
    }
}

impl CloudAction for PurgeGroupCloud {
    const KIND: JobKind = JobKind::Purge;
    const WHAT: &'static str = "purge";
    fn group(&self) -> &str {
        &self.group
    }
}

impl Action {
    /// The group, key and credential the action is about, for the service log.
    pub fn target(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        match self {
            Self::DeleteCredential(a) => (None, None, Some(&a.credential)),
            Self::DeleteKey(a) => (Some(&a.group), Some(&a.key), None),
            Self::ExportByok(a) => (Some(&a.group), Some(&a.key), None),
            Self::DeleteGroupCloud(DeleteGroupCloud { group })
            | Self::PurgeGroupCloud(PurgeGroupCloud { group, .. }) => (Some(group), None, None),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::DeleteCredential(a) => format!("delete credential {:?}", a.credential),
            Self::DeleteKey(a) => format!("delete pushed key {}/{} locally", a.group, a.key),
            Self::DeleteGroupCloud(a) => format!(
                "delete key group {}'s Azure key (all versions) on the cloud service; local keys are untouched",
                a.group
            ),
            Self::PurgeGroupCloud(a) => format!(
                "purge key group {}'s soft-deleted Azure key for good; local keys are untouched",
                a.group
            ),
            Self::ExportByok(a) => format!(
                "export key {}/{} as a .byok file wrapped under the key exchange key {} (for an offline import with the Azure CLI)",
                a.group, a.key, a.kek_kid
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Expired,
    Failed,
}

/// An approval as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub id: ApprovalId,
    pub action: Action,
    pub summary: String,
    pub status: Status,
    pub requested_by: String,
    /// Unix seconds, UTC.
    pub requested_at: i64,
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// What executing the action gave, once approved.
    pub outcome: Option<String>,
    /// The job that waits in `waiting-approval` for this approval (delete on cloud, purge).
    pub job_id: Option<JobId>,
}

impl Approval {
    /// The job that waits (or waited) for this approval, if any.
    pub fn job(&self) -> Option<JobId> {
        self.job_id
    }
}

/// Proof that a second, different admin approved action `A`: only the approvals table makes
/// one (see the module documentation). The approved action re-checks its preconditions under
/// the state lock before it acts.
#[derive(Debug)]
pub struct Approved<A> {
    approval: Approval,
    approver: String,
    action: A,
}

impl<A> Approved<A> {
    /// Only the approvals table calls this, once a different admin approved `approval`.
    pub(super) fn new(approval: Approval, approver: String, action: A) -> Self {
        Self {
            approval,
            approver,
            action,
        }
    }

    pub fn approval(&self) -> &Approval {
        &self.approval
    }

    pub fn id(&self) -> &ApprovalId {
        &self.approval.id
    }

    pub fn action(&self) -> &A {
        &self.action
    }

    pub fn approver(&self) -> &str {
        &self.approver
    }

    /// The job that waits for this approval, if the action has one.
    pub fn job(&self) -> Option<JobId> {
        self.approval.job()
    }

    /// Who acts: the requester with the approver's consent, as records and jobs name it.
    pub fn by(&self) -> String {
        format!(
            "{} (approved by {})",
            self.approval.requested_by, self.approver
        )
    }
}

/// An approved action of any kind, as approving hands it back.
#[derive(Debug)]
pub enum ApprovedAction {
    DeleteCredential(Approved<DeleteCredential>),
    DeleteKey(Approved<DeleteKey>),
    DeleteGroupCloud(Approved<DeleteGroupCloud>),
    PurgeGroupCloud(Approved<PurgeGroupCloud>),
    ExportByok(Approved<ExportByok>),
}

impl ApprovedAction {
    /// Makes the proof for `approval`, approved by `approver`.
    pub(super) fn new(approval: Approval, approver: String) -> Self {
        match approval.action.clone() {
            Action::DeleteCredential(a) => {
                Self::DeleteCredential(Approved::new(approval, approver, a))
            }
            Action::DeleteKey(a) => Self::DeleteKey(Approved::new(approval, approver, a)),
            Action::DeleteGroupCloud(a) => {
                Self::DeleteGroupCloud(Approved::new(approval, approver, a))
            }
            Action::PurgeGroupCloud(a) => {
                Self::PurgeGroupCloud(Approved::new(approval, approver, a))
            }
            Action::ExportByok(a) => Self::ExportByok(Approved::new(approval, approver, a)),
        }
    }

    pub fn approval(&self) -> &Approval {
        match self {
            Self::DeleteCredential(a) => a.approval(),
            Self::DeleteKey(a) => a.approval(),
            Self::DeleteGroupCloud(a) => a.approval(),
            Self::PurgeGroupCloud(a) => a.approval(),
            Self::ExportByok(a) => a.approval(),
        }
    }
}
