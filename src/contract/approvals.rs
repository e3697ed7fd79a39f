//! `/v1/approvals`: dual-control requests as the API shows them, and the 202 answer of a
//! request that needs a second admin.

use super::{Job, Timestamp};
use crate::model::ApprovalId;
use serde::{Deserialize, Serialize};

/// What an approval is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApprovalAction {
    DeleteCredential {
        credential: String,
    },
    DeleteKey {
        group: String,
        key: String,
    },
    /// Delete the group's Azure key (every version) on the cloud service.
    DeleteGroupCloud {
        group: String,
    },
    /// Purge the group's soft-deleted Azure key for good.
    PurgeGroupCloud {
        group: String,
    },
    /// Export a key as a `.byok` file wrapped under an Azure key exchange key.
    ExportByok {
        group: String,
        key: String,
        kek_kid: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
    Failed,
}

impl ApprovalStatus {
    /// The name the API uses (`pending`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Failed => "failed",
        }
    }
}

/// A dual-control request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: ApprovalId,
    pub action: ApprovalAction,
    pub summary: String,
    pub status: ApprovalStatus,
    pub requested_by: String,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub decided_by: Option<String>,
    pub decided_at: Option<Timestamp>,
    /// What executing the action gave, once approved.
    pub outcome: Option<String>,
    /// The job that waits in `waiting-approval` for this approval (delete on cloud, purge).
    pub job_id: Option<String>,
    /// On approve of a delete on cloud or purge: the job that was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Box<Job>>,
}

/// `GET /v1/approvals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalList {
    pub approvals: Vec<Approval>,
}

/// 202: the request waits for a second admin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub approval: Approval,
    /// What to do next, for an operator.
    pub message: String,
    /// Delete on cloud and purge: the job, recorded at once in `waiting-approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
}
