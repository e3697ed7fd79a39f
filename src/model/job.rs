//! Jobs: long-running cloud operations with progress, step messages and a durable journal.
//!
//! A job's journal records each step's intent before its side effect and its result after, so
//! a restarted daemon can finish or undo it. The journal is typed data ([`JobStep`], one enum
//! per kind); step messages are display text only and no decision reads them. This module is
//! the data only; `jobs` runs them.

use super::{GroupName, KeyName, VaultName};
use crate::store::{Rows, Undo};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A job's number: unique on this appliance, never reused, shown as `#<n>` in messages.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct JobId(u64);

impl JobId {
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The id after this one, for the store's counter.
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for JobId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// What a job does. The display names are the appliance console's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    Sync,
    Rotate,
    DeleteOnCloud,
    CheckCloud,
    Recover,
    Purge,
}

impl JobKind {
    pub fn title(self) -> &'static str {
        match self {
            Self::Sync => "Synchronize HSM protected key(s)",
            Self::Rotate => "Rotate key material",
            Self::DeleteOnCloud => "Delete key material on cloud",
            Self::CheckCloud => "Check cloud state",
            Self::Recover => "Recover key material on cloud",
            Self::Purge => "Purge key material on cloud",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Rotate => "rotate",
            Self::DeleteOnCloud => "delete-cloud",
            Self::CheckCloud => "check-cloud",
            Self::Recover => "recover",
            Self::Purge => "purge",
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
pub enum KeySyncState {
    NotStarted,
    /// The import request may have been sent; find it by its fingerprint tag before retrying.
    ImportSent {
        fingerprint: String,
    },
    Imported {
        version: super::AzureVersion,
    },
    Failed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySync {
    pub key: KeyName,
    pub state: KeySyncState,
}

/// A job and its journal. The store keeps it as a header record (every field but the three
/// lists) and one row per entry of `keys`, `steps` and `journal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub group: GroupName,
    /// The keys a sync pushes (empty for group-wide jobs). Stored one row per key: a step
    /// writes the rows it changed, never the whole list (see `store::Rows`).
    pub keys: Rows<KeySync>,
    /// Who started it: an identity name, or `scheduler`.
    pub started_by: String,
    pub created: i64,
    pub started: Option<i64>,
    pub ended: Option<i64>,
    pub state: JobState,
    /// Progress in thousandths (0–1000).
    pub progress: u16,
    /// Display text for the Jobs view; never read for a decision (see `journal`).
    pub steps: Rows<StepMessage>,
    /// The typed journal: each durable intent (before its side effect) and result (after), in
    /// order. Crash recovery reads this, `kek` and `keys`, never `steps`.
    pub journal: Rows<JobStep>,
    pub kek: Option<KekJournal>,
    /// The reason a failed job failed, in operator terms. Journalled before the clean-up that
    /// follows a failure, so a restart cleans up and fails with the same reason.
    pub error: Option<String>,
    /// Who asked to cancel the job; the runner stops at its next safe point.
    pub cancel_requested: Option<String>,
}

impl Job {
    /// The KEK name for this job: unique per job and recognisable in the vault.
    pub fn kek_name(id: JobId) -> String {
        format!("byokd-kek-{id}")
    }

    /// Whether the typed journal holds `step`.
    pub fn journalled(&self, step: &JobStep) -> bool {
        self.journal.contains(step)
    }

    /// Applies `change`; returns its result and what undoes it, should the change not become
    /// durable. The undo holds the job's header and the rows the change touched, never a copy
    /// of all its keys.
    pub fn change<R>(&mut self, change: impl FnOnce(&mut Job) -> R) -> (R, JobUndo) {
        let header = Box::new(self.header_copy());
        self.keys.record_undo();
        self.steps.record_undo();
        self.journal.record_undo();
        let out = change(self);
        let undo = JobUndo {
            header,
            keys: self.keys.take_undo(),
            steps: self.steps.take_undo(),
            journal: self.journal.take_undo(),
        };
        (out, undo)
    }

    /// The job with empty lists.
    fn header_copy(&mut self) -> Job {
        let keys = std::mem::take(&mut self.keys);
        let steps = std::mem::take(&mut self.steps);
        let journal = std::mem::take(&mut self.journal);
        let header = self.clone();
        (self.keys, self.steps, self.journal) = (keys, steps, journal);
        header
    }
}

/// What undoes one change to a job (see [`Job::change`]).
#[derive(Debug)]
pub struct JobUndo {
    header: Box<Job>,
    keys: Undo<KeySync>,
    steps: Undo<StepMessage>,
    journal: Undo<JobStep>,
}

impl JobUndo {
    /// Puts `job` back as it was before the change.
    pub fn undo(self, job: &mut Job) {
        let mut keys = std::mem::take(&mut job.keys);
        let mut steps = std::mem::take(&mut job.steps);
        let mut journal = std::mem::take(&mut job.journal);
        keys.undo(self.keys);
        steps.undo(self.steps);
        journal.undo(self.journal);
        *job = Job {
            keys,
            steps,
            journal,
            ..*self.header
        };
    }
}

/// The push of keys to Azure (a synchronize job, and the push inside a rotation): KEK, imports,
/// KEK clean-up. The KEK's and each key's state are also kept in [`KekJournal`] and
/// [`KeySyncState`], which recovery reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncStep {
    /// Intent: the KEK's name is journalled; its create request may have been sent.
    KekPlanned,
    /// Result: the KEK exists (created, or found again after a restart).
    KekCreated,
    /// Intent: this key's import request may have been sent.
    ImportSent { key: KeyName },
    /// Result: this key's Azure version is recorded.
    Imported {
        key: KeyName,
        version: super::AzureVersion,
    },
    /// Result: the KEK is deleted.
    KekDeleted,
    /// Intent: the purge of the deleted KEK may have been sent.
    KekPurgeSent,
    /// Result: the KEK is settled: purged, or gone for good, or left to Azure's purge date.
    KekSettled { purged: bool },
}

/// "Rotate key material" (its push is journalled as [`SyncStep`]s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotateStep {
    /// Intent: the new key's name, before it is generated. A restart destroys any HSM object
    /// labelled for it that the state never recorded.
    KeyPlanned { key: KeyName },
    /// Result: the new key is generated and recorded.
    KeyGenerated { key: KeyName },
}

/// "Delete key material on cloud".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteCloudStep {
    /// Result: the vault has no soft-delete (recovery level `Purgeable`), read before the
    /// delete: a key found absent after a possibly-sent delete is gone for good.
    NoSoftDelete,
    /// Intent: the delete request may have been sent.
    DeleteSent,
    /// Result: Azure answered the delete (or the deleted key was found).
    Deleted,
    /// Intent: the purge request may have been sent: a deleted key no longer listed was purged.
    PurgeSent,
}

/// "Check cloud state" (read-only: a restart runs the check again from the start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckCloudStep {
    /// Result: Azure listed this many versions of the group's key.
    Listed { versions: u32 },
}

/// "Recover key material on cloud": the group's soft-deleted Azure key brought back with all
/// its versions. A recover is idempotent in effect: after a restart the job sends it again,
/// and where Azure then lists no deleted key but the key is live, the recover this step
/// announced went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoverStep {
    /// Intent: the recover request may have been sent.
    RecoverSent,
}

/// "Purge key material on cloud": the group's soft-deleted Azure key purged for good, after a
/// second admin's approval. After a restart the job sends the purge again; where Azure then
/// lists neither a deleted nor a live key, the purge this step announced went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PurgeStep {
    /// Intent: the purge request may have been sent.
    PurgeSent,
}

/// One entry of a job's typed journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStep {
    Sync(SyncStep),
    Rotate(RotateStep),
    DeleteCloud(DeleteCloudStep),
    CheckCloud(CheckCloudStep),
    Recover(RecoverStep),
    Purge(PurgeStep),
}

impl JobStep {
    /// Every step's code, by the kinds that journal it. The crash tests name their kill points
    /// by these codes and must cover each code of each kind.
    pub const PUSH_CODES: &'static [&'static str] = &[
        "push.kek-planned",
        "push.kek-created",
        "push.import-sent",
        "push.imported",
        "push.kek-deleted",
        "push.kek-purge-sent",
        "push.kek-settled",
    ];
    pub const ROTATE_CODES: &'static [&'static str] =
        &["rotate.key-planned", "rotate.key-generated"];
    pub const DELETE_CLOUD_CODES: &'static [&'static str] = &[
        "delete-cloud.no-soft-delete",
        "delete-cloud.delete-sent",
        "delete-cloud.deleted",
        "delete-cloud.purge-sent",
    ];
    pub const CHECK_CLOUD_CODES: &'static [&'static str] = &["check-cloud.listed"];
    pub const RECOVER_CODES: &'static [&'static str] = &["recover.recover-sent"];
    pub const PURGE_CODES: &'static [&'static str] = &["purge.purge-sent"];

    /// The codes of the steps a job of `kind` journals.
    pub fn codes_of(kind: JobKind) -> Vec<&'static str> {
        match kind {
            JobKind::Sync => Self::PUSH_CODES.to_vec(),
            JobKind::Rotate => [Self::ROTATE_CODES, Self::PUSH_CODES].concat(),
            JobKind::DeleteOnCloud => Self::DELETE_CLOUD_CODES.to_vec(),
            JobKind::CheckCloud => Self::CHECK_CLOUD_CODES.to_vec(),
            JobKind::Recover => Self::RECOVER_CODES.to_vec(),
            JobKind::Purge => Self::PURGE_CODES.to_vec(),
        }
    }

    /// Whether a job of `kind` journals this step.
    pub fn belongs_to(&self, kind: JobKind) -> bool {
        matches!(
            (self, kind),
            (Self::Sync(_), JobKind::Sync | JobKind::Rotate)
                | (Self::Rotate(_), JobKind::Rotate)
                | (Self::DeleteCloud(_), JobKind::DeleteOnCloud)
                | (Self::CheckCloud(_), JobKind::CheckCloud)
                | (Self::Recover(_), JobKind::Recover)
                | (Self::Purge(_), JobKind::Purge)
        )
    }

    /// The step's stable code, as the API shows it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Sync(s) => match s {
                SyncStep::KekPlanned => "push.kek-planned",
                SyncStep::KekCreated => "push.kek-created",
                SyncStep::ImportSent { .. } => "push.import-sent",
                SyncStep::Imported { .. } => "push.imported",
                SyncStep::KekDeleted => "push.kek-deleted",
                SyncStep::KekPurgeSent => "push.kek-purge-sent",
                SyncStep::KekSettled { .. } => "push.kek-settled",
            },
            Self::Rotate(s) => match s {
                RotateStep::KeyPlanned { .. } => "rotate.key-planned",
                RotateStep::KeyGenerated { .. } => "rotate.key-generated",
            },
            Self::DeleteCloud(s) => match s {
                DeleteCloudStep::NoSoftDelete => "delete-cloud.no-soft-delete",
                DeleteCloudStep::DeleteSent => "delete-cloud.delete-sent",
                DeleteCloudStep::Deleted => "delete-cloud.deleted",
                DeleteCloudStep::PurgeSent => "delete-cloud.purge-sent",
            },
            Self::CheckCloud(CheckCloudStep::Listed { .. }) => "check-cloud.listed",
            Self::Recover(RecoverStep::RecoverSent) => "recover.recover-sent",
            Self::Purge(PurgeStep::PurgeSent) => "purge.purge-sent",
        }
    }

    /// The local key the step is about, if any.
    pub fn key(&self) -> Option<&KeyName> {
        match self {
            Self::Sync(SyncStep::ImportSent { key } | SyncStep::Imported { key, .. })
            | Self::Rotate(RotateStep::KeyPlanned { key } | RotateStep::KeyGenerated { key }) => {
                Some(key)
            }
            _ => None,
        }
    }
}

impl From<SyncStep> for JobStep {
    fn from(s: SyncStep) -> Self {
        Self::Sync(s)
    }
}

impl From<RotateStep> for JobStep {
    fn from(s: RotateStep) -> Self {
        Self::Rotate(s)
    }
}

impl From<DeleteCloudStep> for JobStep {
    fn from(s: DeleteCloudStep) -> Self {
        Self::DeleteCloud(s)
    }
}

impl From<CheckCloudStep> for JobStep {
    fn from(s: CheckCloudStep) -> Self {
        Self::CheckCloud(s)
    }
}

impl From<RecoverStep> for JobStep {
    fn from(s: RecoverStep) -> Self {
        Self::Recover(s)
    }
}

impl From<PurgeStep> for JobStep {
    fn from(s: PurgeStep) -> Self {
        Self::Purge(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn every_step() -> Vec<JobStep> {
        let key = KeyName::try_from("k".to_owned()).unwrap();
        vec![
            SyncStep::KekPlanned.into(),
            SyncStep::KekCreated.into(),
            SyncStep::ImportSent { key: key.clone() }.into(),
            SyncStep::Imported {
                key: key.clone(),
                version: super::super::AzureVersion::new("v"),
            }
            .into(),
            SyncStep::KekDeleted.into(),
            SyncStep::KekPurgeSent.into(),
            SyncStep::KekSettled { purged: true }.into(),
            RotateStep::KeyPlanned { key: key.clone() }.into(),
            RotateStep::KeyGenerated { key }.into(),
            DeleteCloudStep::NoSoftDelete.into(),
            DeleteCloudStep::DeleteSent.into(),
            DeleteCloudStep::Deleted.into(),
            DeleteCloudStep::PurgeSent.into(),
            CheckCloudStep::Listed { versions: 1 }.into(),
            RecoverStep::RecoverSent.into(),
            PurgeStep::PurgeSent.into(),
        ]
    }

    #[test]
    fn the_code_lists_name_every_step_once_under_the_kinds_that_journal_it() {
        let kinds = [
            JobKind::Sync,
            JobKind::Rotate,
            JobKind::DeleteOnCloud,
            JobKind::CheckCloud,
            JobKind::Recover,
            JobKind::Purge,
        ];
        let steps = every_step();
        let mut codes: Vec<&str> = steps.iter().map(JobStep::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), steps.len(), "codes are unique");
        for step in &steps {
            for kind in kinds {
                assert_eq!(
                    JobStep::codes_of(kind).contains(&step.code()),
                    step.belongs_to(kind),
                    "{} in {kind:?}",
                    step.code()
                );
            }
        }
        let listed: usize = [
            JobStep::PUSH_CODES,
            JobStep::ROTATE_CODES,
            JobStep::DELETE_CLOUD_CODES,
            JobStep::CHECK_CLOUD_CODES,
            JobStep::RECOVER_CODES,
            JobStep::PURGE_CODES,
        ]
        .iter()
        .map(|c| c.len())
        .sum();
        assert_eq!(listed, steps.len(), "every listed code has a step");
    }

    #[test]
    fn a_change_undone_leaves_the_job_as_it_was() {
        let key = |i: usize| KeyName::try_from(format!("k{i}")).unwrap();
        let mut job = Job {
            id: JobId::new(1),
            kind: JobKind::Sync,
            group: GroupName::try_from("g").unwrap(),
            keys: Rows::committed(
                (0..4)
                    .map(|i| KeySync {
                        key: key(i),
                        state: KeySyncState::NotStarted,
                    })
                    .collect(),
            ),
            started_by: "a".into(),
            created: 1,
            started: None,
            ended: None,
            state: JobState::Pending,
            progress: 0,
            steps: Rows::default(),
            journal: Rows::default(),
            kek: None,
            error: None,
            cancel_requested: None,
        };
        let before = job.clone();
        let ((), undo) = job.change(|j| {
            j.state = JobState::Running;
            j.progress = 7;
            j.keys.update_where(
                |k| k.key == key(2),
                |k| {
                    k.state = KeySyncState::ImportSent {
                        fingerprint: "f".into(),
                    }
                },
            );
            j.journal.push(SyncStep::ImportSent { key: key(2) }.into());
            j.steps.push(StepMessage {
                at: 2,
                message: "m".into(),
            });
        });
        assert_ne!(job, before);
        undo.undo(&mut job);
        assert_eq!(job, before);
    }
}
