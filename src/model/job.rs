//! Jobs: long-running cloud operations with progress, step messages and a durable journal.
//!
//! A job's journal records each step's intent before its side effect and its result after, so
//! a restarted daemon can finish or undo it. This module is the data only; `jobs` runs them.

use super::{KeyName, LocalKeyName, VaultName};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a job does. The display names are the appliance console's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    Sync,
    Rotate,
    DeleteOnCloud,
    CheckCloud,
}

impl JobKind {
    pub fn title(self) -> &'static str {
        match self {
            Self::Sync => "Synchronize HSM protected key(s)",
            Self::Rotate => "Rotate key material",
            Self::DeleteOnCloud => "Delete key material on cloud",
            Self::CheckCloud => "Check cloud state",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Rotate => "rotate",
            Self::DeleteOnCloud => "delete-cloud",
            Self::CheckCloud => "check-cloud",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Pending,
    Running,
    WaitingRetry,
    WaitingApproval,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::WaitingRetry => "waiting-retry",
            Self::WaitingApproval => "waiting-approval",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A timestamped step message, as the Jobs view shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMessage {
    /// Unix seconds, UTC.
    pub at: i64,
    pub message: String,
}

/// Where a key-exchange key is in its life, journalled around each call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekJournal {
    pub vault: VaultName,
    /// Derived from the job id; journalled before the create call.
    pub name: String,
    /// The versioned kid once the create call answered.
    pub kid: Option<String>,
    pub deleted: bool,
    /// `Some(true)` purged, `Some(false)` purge not allowed (purge protection or no soft-delete).
    pub purged: Option<bool>,
    /// The purge request may have been sent: after a restart a deleted key that is no longer
    /// listed was purged, not still "being deleted".
    pub purge_sent: bool,
}

/// Where one key's push is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyPushState {
    NotStarted,
    /// The import request may have been sent; find it by its fingerprint tag before retrying.
    ImportSent {
        fingerprint: String,
    },
    Imported {
        version: String,
    },
    Failed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPush {
    pub key: LocalKeyName,
    pub state: KeyPushState,
}

/// A job and its journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub kind: JobKind,
    pub group: KeyName,
    /// The keys a sync pushes (empty for group-wide jobs).
    pub keys: Vec<KeyPush>,
    /// Who started it: an identity name, or `scheduler`.
    pub started_by: String,
    pub created: i64,
    pub started: Option<i64>,
    pub ended: Option<i64>,
    pub state: JobState,
    /// Progress in thousandths (0–1000).
    pub progress: u16,
    pub steps: Vec<StepMessage>,
    pub kek: Option<KekJournal>,
    /// The reason a failed job failed, in operator terms. Journalled before the clean-up that
    /// follows a failure, so a restart cleans up and fails with the same reason.
    pub error: Option<String>,
    /// Who asked to cancel the job; the runner stops at its next safe point.
    pub cancel_requested: Option<String>,
}

impl Job {
    /// The KEK name for this job: unique per job and recognisable in the vault.
    pub fn kek_name(id: u64) -> String {
        format!("byokd-kek-{id}")
    }
}
