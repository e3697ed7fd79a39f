//! `/v1/jobs` and the answers that start a job: a job as the Jobs view shows it.

use super::{Approval, Timestamp};
use crate::model::ApprovalId;
use serde::{Deserialize, Serialize};

/// A job, its progress, its display steps and its typed journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// A positive integer, as a string.
    pub id: String,
    /// `sync`, `rotate`, `delete-cloud`, `check-cloud`, `recover` or `purge`.
    pub kind: String,
    /// The console's name, e.g. "Synchronize HSM protected key(s)".
    pub title: String,
    pub group: String,
    /// The keys a sync pushes (empty for group-wide jobs).
    pub keys: Vec<JobKey>,
    /// An identity name, or `scheduler`.
    pub started_by: String,
    pub created: Timestamp,
    pub started: Option<Timestamp>,
    pub ended: Option<Timestamp>,
    pub state: String,
    pub progress: Progress,
    /// The latest step message.
    pub step: String,
    pub steps: Vec<Step>,
    pub journal: Vec<JournalStep>,
    pub error: Option<String>,
    pub cancel_requested: Option<String>,
    /// The dual-control approval the job waits (or waited) for, while the daemon remembers it.
    pub approval: Option<ApprovalId>,
}

/// One key of a sync job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobKey {
    pub key: String,
    /// `pending`, `import-sent`, `imported` or `failed`.
    pub state: String,
    /// The Azure version, once imported.
    pub version: Option<String>,
}

/// Progress in thousandths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub done: u16,
    pub total: u16,
    pub fraction: f64,
}

/// A display step: when, and what happened (never read for a decision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub at: Timestamp,
    pub message: String,
}

/// One entry of the typed journal: its step code and the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalStep {
    pub step: String,
    pub key: Option<String>,
}

/// `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// A job in an envelope: the 202 of a sync, and the answer to a cancel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobAnswer {
    pub job: Job,
}

/// The 202 of a route that starts a job, or records one waiting for approval (delete on
/// cloud, purge: then with the approval and a message saying what to do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStarted {
    pub job: Job,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
