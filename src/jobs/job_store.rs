//! The state a job kind reads and extends, as narrow interfaces: the job's own record
//! ([`JobStore`]: its typed journal, a sync's keys and KEK, the lifecycle records a rotation,
//! a drift check and a grace period end leave) and the group's local keys ([`LocalKeys`]).
//! The real implementation is the [`Service`]; the kinds' unit tests use in-memory ones
//! (`fakes`, test builds only). Every write here is one durable change.

use super::JobError;
use crate::model::{
    AzureVersion, DriftReport, GroupName, Job, JobId, JobState, JobStep, KekJournal, Key, KeyName,
    KeySync, KeySyncState, PendingGrace, RotateStep, StepMessage, SyncStep,
};
use crate::service::Service;
use crate::service::record_step;

/// A job's durable record, as the kinds read and extend it.
pub(super) trait JobStore {
    /// The job's typed journal so far.
    async fn journal(&self, id: JobId) -> Result<Vec<JobStep>, JobError>;
    /// Journals `step` with its display text (durable before the side effect it announces).
    async fn record(
        &self,
        id: JobId,
        step: JobStep,
        message: String,
        progress: Option<u16>,
    ) -> Result<(), JobError>;
    /// A display-only step.
    async fn note(&self, id: JobId, message: String, progress: Option<u16>)
    -> Result<(), JobError>;
    /// Who asked to cancel the job, if anyone did.
    async fn cancel_requested(&self, id: JobId) -> Result<Option<String>, JobError>;
    /// The reason the job failed before a restart, if it did.
    async fn failed_before(&self, id: JobId) -> Result<Option<String>, JobError>;
    /// Journals why the job fails, before its clean-up (kept if one is journalled already).
    async fn keep_error(&self, id: JobId, reason: String) -> Result<(), JobError>;
    /// Forgets the Azure versions of the group's local keys (the Azure key is gone for good);
    /// returns how many keys had one.
    async fn forget_azure_versions(&self, group: &GroupName) -> Result<usize, JobError>;
    /// Where each key of a sync stands.
    async fn key_syncs(&self, id: JobId) -> Result<Vec<KeySync>, JobError>;
    /// Records `key`'s Azure version, on the key and in the job, with its display steps and the
    /// job's progress, in one write.
    async fn record_sync(
        &self,
        id: JobId,
        group: &GroupName,
        key: &KeyName,
        version: &AzureVersion,
        messages: Vec<String>,
        progress: Option<u16>,
    ) -> Result<(), JobError>;
    /// Marks `key` imported in the job only: the key records `version` already.
    async fn mark_imported(
        &self,
        id: JobId,
        key: &KeyName,
        version: &AzureVersion,
        message: String,
    ) -> Result<(), JobError>;
    /// Marks `key` not started (its import is to be sent again), with a display step.
    async fn mark_not_started(
        &self,
        id: JobId,
        key: &KeyName,
        message: String,
    ) -> Result<(), JobError>;
    /// Journals that `key`'s import, tagged with `fingerprint`, may be sent from now on.
    async fn record_import_sent(
        &self,
        id: JobId,
        key: &KeyName,
        fingerprint: &str,
        message: String,
    ) -> Result<(), JobError>;
    /// The sync's KEK record, if it planned one.
    async fn kek(&self, id: JobId) -> Result<Option<KekJournal>, JobError>;
    /// Journals the KEK's name before its create is sent.
    async fn plan_kek(&self, id: JobId, kek: KekJournal, message: String) -> Result<(), JobError>;
    /// Records that the KEK exists (created, or found again), with the job's progress at
    /// least `progress`.
    async fn record_kek_created(
        &self,
        id: JobId,
        kid: &str,
        message: String,
        progress: Option<u16>,
    ) -> Result<(), JobError>;
    /// Applies `change` to the KEK record and journals its typed step, in one write.
    async fn record_kek(
        &self,
        id: JobId,
        change: KekChange,
        message: String,
    ) -> Result<(), JobError>;
    /// Adds a rotation's new key to the job's keys (not started), with its typed step.
    async fn record_rotation_key(
        &self,
        id: JobId,
        key: &KeyName,
        message: String,
    ) -> Result<(), JobError>;
    /// Ends a rotation in one write: the group's `last_rotated`, the grace entry, and the job
    /// succeeded with `message`.
    async fn finish_rotation(
        &self,
        id: JobId,
        group: &GroupName,
        at: i64,
        grace: Option<PendingGrace>,
        message: String,
    ) -> Result<(), JobError>;
    /// Keeps a drift check's report on the group.
    async fn set_drift(&self, group: &GroupName, report: DriftReport) -> Result<(), JobError>;
    /// The group's previous versions waiting for their grace period to end.
    async fn grace_of(&self, group: &GroupName) -> Result<Option<PendingGrace>, JobError>;
    /// Removes the group's grace entry.
    async fn clear_grace(&self, group: &GroupName) -> Result<(), JobError>;
}

/// The group's local keys, as a rotation, a sync and a drift check use them. Generating and
/// destroying go through the HSM and the state together.
pub(super) trait LocalKeys {
    /// Every key of the group.
    async fn keys(&self, group: &GroupName) -> Result<Vec<Key>, JobError>;
    /// One key's record.
    async fn key(&self, group: &GroupName, name: &KeyName) -> Result<Key, JobError>;
    /// Generates a key pair in the HSM and records it in the group.
    async fn generate(&self, group: &GroupName, name: &KeyName, by: &str) -> Result<(), JobError>;
    /// Destroys the HSM objects labelled for `name` that the state never recorded; returns
    /// how many there were.
    async fn destroy_unrecorded(
        &self,
        group: &GroupName,
        name: &KeyName,
    ) -> Result<usize, JobError>;
}

/// A step of a sync's KEK clean-up: what it changes in the KEK record, and its typed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KekChange {
    /// The create never succeeded: nothing to delete or purge.
    NeverCreated,
    Deleted,
    PurgeSent,
    /// Done: purged, or left to Azure (no soft-delete, or purge protection).
    Settled {
        purged: bool,
    },
}

impl KekChange {
    pub(super) fn apply(self, k: &mut KekJournal) {
        match self {
            Self::NeverCreated => {
                k.deleted = true;
                k.purged = Some(false);
            }
            Self::Deleted => k.deleted = true,
            Self::PurgeSent => k.purge_sent = true,
            Self::Settled { purged } => k.purged = Some(purged),
        }
    }

    pub(super) fn step(self) -> JobStep {
        match self {
            Self::NeverCreated => SyncStep::KekSettled { purged: false },
            Self::Deleted => SyncStep::KekDeleted,
            Self::PurgeSent => SyncStep::KekPurgeSent,
            Self::Settled { purged } => SyncStep::KekSettled { purged },
        }
        .into()
    }
}

impl JobStore for Service {
    async fn journal(&self, id: JobId) -> Result<Vec<JobStep>, JobError> {
        Ok(self.job_part(id, |j| j.journal.to_vec()).await?)
    }

    async fn record(
        &self,
        id: JobId,
        step: JobStep,
        message: String,
        progress: Option<u16>,
    ) -> Result<(), JobError> {
        Ok(self.job_record(id, step, message, progress).await?)
    }

    async fn note(
        &self,
        id: JobId,
        message: String,
        progress: Option<u16>,
    ) -> Result<(), JobError> {
        Ok(self.job_step(id, message, progress).await?)
    }

    async fn cancel_requested(&self, id: JobId) -> Result<Option<String>, JobError> {
        Ok(self.job_part(id, |j| j.cancel_requested.clone()).await?)
    }

    async fn failed_before(&self, id: JobId) -> Result<Option<String>, JobError> {
        Ok(self.job_part(id, |j| j.error.clone()).await?)
    }

    async fn keep_error(&self, id: JobId, reason: String) -> Result<(), JobError> {
        self.journal(id, |j| {
            j.error.get_or_insert(reason);
        })
        .await?;
        Ok(())
    }

    async fn forget_azure_versions(&self, group: &GroupName) -> Result<usize, JobError> {
        Ok(Service::forget_azure_versions(self, group).await?)
    }

    async fn key_syncs(&self, id: JobId) -> Result<Vec<KeySync>, JobError> {
        Ok(self.job_part(id, |j| j.keys.to_vec()).await?)
    }

    async fn record_sync(
        &self,
        id: JobId,
        group: &GroupName,
        key: &KeyName,
        version: &AzureVersion,
        messages: Vec<String>,
        progress: Option<u16>,
    ) -> Result<(), JobError> {
        Ok(self
            .record_sync_with_steps(id, group, key, version, messages, progress)
            .await?)
    }

    async fn mark_imported(
        &self,
        id: JobId,
        key: &KeyName,
        version: &AzureVersion,
        message: String,
    ) -> Result<(), JobError> {
        self.journal(id, |j| {
            set_state(
                j,
                key,
                KeySyncState::Imported {
                    version: version.clone(),
                },
            );
            let step = SyncStep::Imported {
                key: key.clone(),
                version: version.clone(),
            };
            record_step(j, step.into(), &message)
        })
        .await??;
        Ok(())
    }

    async fn mark_not_started(
        &self,
        id: JobId,
        key: &KeyName,
        message: String,
    ) -> Result<(), JobError> {
        self.journal(id, |j| {
            set_state(j, key, KeySyncState::NotStarted);
            // Dated by the service's clock when the change is made durable.
            j.steps.push(StepMessage { at: 0, message });
        })
        .await?;
        Ok(())
    }

    async fn record_import_sent(
        &self,
        id: JobId,
        key: &KeyName,
        fingerprint: &str,
        message: String,
    ) -> Result<(), JobError> {
        self.journal(id, |j| {
            let sent = KeySyncState::ImportSent {
                fingerprint: fingerprint.to_owned(),
            };
            set_state(j, key, sent);
            let step = SyncStep::ImportSent { key: key.clone() };
            record_step(j, step.into(), &message)
        })
        .await??;
        Ok(())
    }

    async fn kek(&self, id: JobId) -> Result<Option<KekJournal>, JobError> {
        Ok(self.job_part(id, |j| j.kek.clone()).await?)
    }

    async fn plan_kek(&self, id: JobId, kek: KekJournal, message: String) -> Result<(), JobError> {
        self.journal(id, |j| {
            j.kek = Some(kek);
            record_step(j, SyncStep::KekPlanned.into(), &message)
        })
        .await??;
        Ok(())
    }

    async fn record_kek_created(
        &self,
        id: JobId,
        kid: &str,
        message: String,
        progress: Option<u16>,
    ) -> Result<(), JobError> {
        self.journal(id, |j| {
            if let Some(kj) = j.kek.as_mut() {
                kj.kid = Some(kid.to_owned());
            }
            if let Some(p) = progress {
                j.progress = j.progress.max(p);
            }
            record_step(j, SyncStep::KekCreated.into(), &message)
        })
        .await??;
        Ok(())
    }

    async fn record_kek(
        &self,
        id: JobId,
        change: KekChange,
        message: String,
    ) -> Result<(), JobError> {
        self.journal(id, |j| {
            if let Some(k) = j.kek.as_mut() {
                change.apply(k);
            }
            record_step(j, change.step(), &message)
        })
        .await??;
        Ok(())
    }

    async fn record_rotation_key(
        &self,
        id: JobId,
        key: &KeyName,
        message: String,
    ) -> Result<(), JobError> {
        self.journal(id, |j| {
            j.keys.push(KeySync {
                key: key.clone(),
                state: KeySyncState::NotStarted,
            });
            let step = RotateStep::KeyGenerated { key: key.clone() };
            record_step(j, step.into(), &message)
        })
        .await??;
        Ok(())
    }

    async fn finish_rotation(
        &self,
        id: JobId,
        group: &GroupName,
        at: i64,
        grace: Option<PendingGrace>,
        message: String,
    ) -> Result<(), JobError> {
        Service::finish_rotation(self, id, group, at, grace, |j| {
            j.state = JobState::Succeeded;
            j.progress = 1000;
            j.ended = Some(at);
            j.steps.push(StepMessage { at: 0, message });
        })
        .await?;
        Ok(())
    }

    async fn set_drift(&self, group: &GroupName, report: DriftReport) -> Result<(), JobError> {
        Ok(Service::set_drift(self, group, report).await?)
    }

    async fn grace_of(&self, group: &GroupName) -> Result<Option<PendingGrace>, JobError> {
        Ok(self.pending_grace_of(group).await)
    }

    async fn clear_grace(&self, group: &GroupName) -> Result<(), JobError> {
        Ok(Service::clear_grace(self, group).await?)
    }
}

/// Where `key` stands in the sync.
fn set_state(j: &mut Job, key: &KeyName, state: KeySyncState) {
    j.keys
        .update_where(|p| &p.key == key, |p| p.state = state.clone());
}

impl LocalKeys for Service {
    async fn keys(&self, group: &GroupName) -> Result<Vec<Key>, JobError> {
        Ok(self.key_records(group).await?)
    }

    async fn key(&self, group: &GroupName, name: &KeyName) -> Result<Key, JobError> {
        Ok(self.key_record(group, name).await?)
    }

    async fn generate(&self, group: &GroupName, name: &KeyName, by: &str) -> Result<(), JobError> {
        self.create_key(group, name, by).await?;
        Ok(())
    }

    async fn destroy_unrecorded(
        &self,
        group: &GroupName,
        name: &KeyName,
    ) -> Result<usize, JobError> {
        Ok(self.destroy_unrecorded_hsm_keys(group, name).await?)
    }
}
