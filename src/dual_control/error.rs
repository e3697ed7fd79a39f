//! Why a dual-control request, decision or approved action was refused. The control API maps
//! each to its answer (`control::errors`); every message tells the operator what to do.

use crate::jobs::JobError;
use crate::model::ApprovalId;
use crate::service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum DualControlError {
    #[error("no approval \"{0}\"")]
    NotFound(ApprovalId),
    #[error("{summary} already waits for approval as {id}")]
    Pending { summary: String, id: ApprovalId },
    #[error(
        "{requester} already has {count} requests waiting for a second admin (at most {max} per requester); have them approved or rejected (`byokctl approval list --status pending`), or wait for them to expire"
    )]
    TooManyPending {
        requester: String,
        count: usize,
        max: usize,
    },
    #[error("at most {0} pending approvals")]
    TableFull(usize),
    #[error("approval {id} expired at {}; request the action again", crate::clock::rfc3339(*expires_at))]
    Expired { id: ApprovalId, expires_at: i64 },
    #[error("approval {id} was already decided ({status:?}) by {by}")]
    Decided {
        id: ApprovalId,
        status: super::Status,
        by: String,
    },
    #[error("{0} cannot approve their own request; a second, different admin must approve it")]
    SelfApproval(String),
    #[error("approval {id} has no waiting job; request the {what} again")]
    WithoutJob { id: ApprovalId, what: &'static str },
    #[error("{what}: this daemon runs without the Azure layer")]
    JobsUnavailable { what: &'static str },
    /// The appliance is not the designated device.
    #[error(
        "{what} refused: this appliance is not the designated device, and only the designated device changes the cloud; set `designated = true` in the configuration or `byokctl designated set true` (PUT /v1/config/designated) on the one appliance that should"
    )]
    NotDesignated { what: &'static str },
    /// The KEK file or kid of a `.byok` export was refused.
    #[error(transparent)]
    Kek(#[from] crate::azure::offline_kek::OfflineKekError),
    /// Approval {id} is not an approved `.byok` export whose file this identity may download.
    #[error("{0}")]
    NoByokFile(String),
    /// Someone other than the requester asked for an export's file.
    #[error("only {requester}, who requested export {id}, may download its .byok file")]
    NotRequester { id: ApprovalId, requester: String },
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The job behind an approved cloud action could not be recorded or started.
    #[error("{source}")]
    Job {
        #[source]
        source: JobError,
        /// A refusal by the cloud's state (purge protection, a live key, another vault).
        cloud_state: bool,
    },
}

impl DualControlError {
    /// The stable code the control API answers this refusal with (and the service log records
    /// for a refused decision). A service or job error answers with its own code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Pending { .. } => "approval_pending",
            Self::TooManyPending { .. } => "too_many_pending_approvals",
            Self::TableFull(_) => "limit_reached",
            Self::Expired { .. } => "approval_expired",
            Self::Decided { .. } => "approval_decided",
            Self::SelfApproval(_) => "self_approval",
            Self::WithoutJob { .. } => "approval_without_job",
            Self::JobsUnavailable { .. } => "jobs_unavailable",
            Self::NotDesignated { .. } => "not_designated",
            Self::Kek(_) => "invalid_field",
            Self::NoByokFile(_) => "no_byok_file",
            Self::NotRequester { .. } => "forbidden",
            Self::Job {
                cloud_state: true, ..
            } => "cloud_state",
            Self::Service(_) | Self::Job { .. } => "refused",
        }
    }

    /// A job error from recording or starting a job (not a refusal by the cloud's state).
    pub fn job(source: JobError) -> Self {
        Self::Job {
            source,
            cloud_state: false,
        }
    }
}
