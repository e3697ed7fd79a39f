//! What a job kind is given instead of reaching for it: the configuration values it needs, read
//! once when the runner is made (`config/check.rs` has validated them, so nothing here or in a
//! kind checks or clamps them again), and the narrow interfaces through which a kind's state
//! machine reaches Key Vault ([`Vault`]) and its job record ([`JobStore`]). The real
//! implementations wrap the Azure client with the job's token and the [`Service`]; the kinds'
//! unit tests give in-memory ones (`fakes`, test builds only).

use super::JobError;
use crate::azure::{AccessToken, AzureError, DeletedKeyBundle, KeyBundle, KeyItem, KeyVault};
use crate::config::{AssertionAlg, Config};
use crate::model::{
    AzureVersion, GroupName, JobId, JobStep, KekJournal, KeyName, KeySync, KeySyncState,
    StepMessage, SyncStep,
};
use crate::service::Service;
use crate::service::record_step;

/// The configuration values the job kinds use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JobSettings {
    /// `azure.kek_size`: bits of the RSA-HSM key exchange key.
    pub(super) kek_bits: u32,
    /// `azure.vault_concurrent_imports`: imports in flight per vault, over all its jobs.
    pub(super) vault_concurrent_imports: usize,
    /// `azure.assertion_alg`: how a certificate credential signs its client assertion.
    pub(super) assertion_alg: AssertionAlg,
    /// `lifecycle.grace_days`: days the previous versions stay enabled after a rotation.
    pub(super) grace_days: u32,
}

impl JobSettings {
    pub(super) fn from_config(config: &Config) -> Self {
        Self {
            kek_bits: config.azure.kek_size,
            vault_concurrent_imports: config.azure.vault_concurrent_imports as usize,
            assertion_alg: config.azure.assertion_alg,
            grace_days: config.lifecycle.grace_days,
        }
    }
}

/// The Key Vault calls the cloud kinds make, on one vault, signed in.
pub(super) trait Vault {
    /// The vault's name, as the job's steps and errors say it.
    fn name(&self) -> &str;
    async fn get_key(&self, key: &str) -> Result<KeyBundle, AzureError>;
    async fn delete_key(&self, key: &str) -> Result<DeletedKeyBundle, AzureError>;
    async fn get_deleted_key(&self, key: &str) -> Result<DeletedKeyBundle, AzureError>;
    async fn purge_deleted_key(&self, key: &str) -> Result<(), AzureError>;
    async fn recover_deleted_key(&self, key: &str) -> Result<KeyBundle, AzureError>;
    /// Every version of the key, with its tags.
    async fn list_versions(&self, key: &str) -> Result<Vec<KeyItem>, AzureError>;
}

/// The Azure client on one vault with a job's token.
pub(super) struct SignedIn<'a> {
    kv: &'a KeyVault,
    token: AccessToken,
    vault: &'a str,
}

impl<'a> SignedIn<'a> {
    pub(super) fn new(kv: &'a KeyVault, token: AccessToken, vault: &'a str) -> Self {
        Self { kv, token, vault }
    }
}

impl Vault for SignedIn<'_> {
    fn name(&self) -> &str {
        self.vault
    }

    async fn get_key(&self, key: &str) -> Result<KeyBundle, AzureError> {
        self.kv.get_key(&self.token, self.vault, key, None).await
    }

    async fn delete_key(&self, key: &str) -> Result<DeletedKeyBundle, AzureError> {
        self.kv.delete_key(&self.token, self.vault, key).await
    }

    async fn get_deleted_key(&self, key: &str) -> Result<DeletedKeyBundle, AzureError> {
        self.kv.get_deleted_key(&self.token, self.vault, key).await
    }

    async fn purge_deleted_key(&self, key: &str) -> Result<(), AzureError> {
        self.kv
            .purge_deleted_key(&self.token, self.vault, key)
            .await
    }

    async fn recover_deleted_key(&self, key: &str) -> Result<KeyBundle, AzureError> {
        self.kv
            .recover_deleted_key(&self.token, self.vault, key)
            .await
    }

    async fn list_versions(&self, key: &str) -> Result<Vec<KeyItem>, AzureError> {
        self.kv.list_versions(&self.token, self.vault, key).await
    }
}

/// A job's durable record, as the cloud kinds read and extend it.
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
    /// Forgets the Azure versions of the group's local keys (the Azure key is gone for good);
    /// returns how many keys had one.
    async fn forget_azure_versions(&self, group: &GroupName) -> Result<usize, JobError>;
    /// Where each key of a sync stands.
    async fn key_syncs(&self, id: JobId) -> Result<Vec<KeySync>, JobError>;
    /// Records `key`'s Azure version, on the key and in the job, with a display step.
    async fn record_sync(
        &self,
        id: JobId,
        group: &GroupName,
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
    /// The sync's KEK record, if it planned one.
    async fn kek(&self, id: JobId) -> Result<Option<KekJournal>, JobError>;
    /// Applies `change` to the KEK record and journals its typed step, in one write.
    async fn record_kek(
        &self,
        id: JobId,
        change: KekChange,
        message: String,
    ) -> Result<(), JobError>;
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
        Ok(self.job(id).await?.journal)
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

    async fn forget_azure_versions(&self, group: &GroupName) -> Result<usize, JobError> {
        Ok(Service::forget_azure_versions(self, group).await?)
    }

    async fn key_syncs(&self, id: JobId) -> Result<Vec<KeySync>, JobError> {
        Ok(self.job(id).await?.keys)
    }

    async fn record_sync(
        &self,
        id: JobId,
        group: &GroupName,
        key: &KeyName,
        version: &AzureVersion,
        message: String,
    ) -> Result<(), JobError> {
        Ok(self
            .record_sync_with_steps(id, group, key, version, vec![message], None)
            .await?)
    }

    async fn mark_not_started(
        &self,
        id: JobId,
        key: &KeyName,
        message: String,
    ) -> Result<(), JobError> {
        self.journal(id, |j| {
            for p in j.keys.iter_mut().filter(|p| &p.key == key) {
                p.state = KeySyncState::NotStarted;
            }
            // Dated by the service's clock when the change is made durable.
            j.steps.push(StepMessage { at: 0, message });
        })
        .await?;
        Ok(())
    }

    async fn kek(&self, id: JobId) -> Result<Option<KekJournal>, JobError> {
        Ok(self.job(id).await?.kek)
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
}
