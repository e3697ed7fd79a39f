//! Jobs: the cloud operations that take time ("Synchronize HSM protected key(s)" and, as they
//! land, rotation, delete on cloud and the drift check), run in the background with progress
//! and a durable step journal.
//!
//! Owns submission (with the designated-device check), the per-vault concurrency bound, and
//! resuming unfinished jobs at start-up. It must never mutate the cloud from a non-designated
//! appliance, and never leave a KEK behind on purpose.

mod error;
mod public_key;
mod push;
mod transfer_blob;

pub use error::JobError;
pub use public_key::{FINGERPRINT_TAG, fingerprint, jwk_matches_spki};
pub use transfer_blob::{generator, key_hsm};

use crate::azure::Azure;
use crate::model::{JobKind, KeyName, LocalKeyName};
use crate::service::Service;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Jobs running concurrently against one vault.
const PER_VAULT_JOBS: usize = 1;

/// The job runner, shared by the control API and the scheduler.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    service: Service,
    azure: Arc<Azure>,
    vaults: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Jobs {
    pub fn new(service: Service, azure: Arc<Azure>) -> Self {
        Self {
            inner: Arc::new(Inner {
                service,
                azure,
                vaults: Mutex::new(HashMap::new()),
            }),
        }
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
        group: &KeyName,
        keys: &[LocalKeyName],
        by: &str,
    ) -> Result<u64, JobError> {
        self.require_designated().await?;
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

    /// Resumes every job that was not finished when the daemon stopped.
    pub async fn resume_unfinished(&self) {
        if let Err(e) = self.service().prune_jobs().await {
            tracing::warn!(error = %e, "could not prune finished jobs at start-up");
        }
        for id in self.service().unfinished_jobs().await {
            tracing::info!(job = id, "resuming unfinished job");
            self.spawn(id);
        }
    }

    async fn require_designated(&self) -> Result<(), JobError> {
        if self.service().designated().await {
            Ok(())
        } else {
            Err(JobError::NotDesignated)
        }
    }

    fn vault_slot(&self, vault: &str) -> Arc<Semaphore> {
        let mut map = match self.inner.vaults.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(vault.to_ascii_lowercase())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_VAULT_JOBS)))
            .clone()
    }

    fn spawn(&self, id: u64) {
        let jobs = self.clone();
        tokio::spawn(async move {
            if let Err(e) = jobs.run(id).await {
                tracing::error!(job = id, error = %e, "job could not be recorded");
            }
        });
    }

    async fn run(&self, id: u64) -> Result<(), JobError> {
        let job = self.service().job(id).await?;
        match job.kind {
            JobKind::Sync => push::run(self, id).await,
            other => {
                push::fail(
                    self,
                    id,
                    format!("{} is not available in this version", other.title()),
                )
                .await;
                Ok(())
            }
        }
    }
}
