//! The application core: every operation on credentials, key groups and keys, made durable
//! before it is acknowledged. The control API, the jobs and the tests all go through here.
//!
//! It owns the lock around the state and its store, and it is the only place that combines the
//! HSM with the state. It never returns or logs a secret.

mod backup;
mod busy;
mod byok_export;
mod credential_cert;
mod credentials;
mod designated;
mod error;
mod events;
mod groups;
mod jobs;
mod keys;
mod lifecycle;
mod retention;
mod waiting_jobs;

pub use backup::{BackupFailed, BackupSummary};
pub use byok_export::ByokFile;
pub use credentials::{
    CertificateExport, CredentialView, NewCertificateCredential, NewCredential, SignInMaterial,
};
pub use designated::{Designated, DesignatedSetting, DesignatedSource, NotDesignated};
pub use error::ServiceError;
pub use events::{CHANGE_CAPACITY, CommittedTargets, StateChange};
pub use groups::{DriftFindingView, DriftView, GroupView, NewGroup};
pub(crate) use jobs::record_step;
pub use keys::{KeyDeletion, KeyView};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::hsm::Hsm;
use crate::model::GroupName;
use crate::store::{LoadReport, State, Store};
use std::sync::Arc;
use tokio::sync::Mutex;

/// The running application: configuration, HSM handle and durable state.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    hsm: Hsm,
    clock: SharedClock,
    data: Mutex<Data>,
    job_changed: tokio::sync::watch::Sender<u64>,
    outlets: Arc<events::Outlets>,
}

struct Data {
    store: Store,
    state: State,
    /// Publishes what each commit changed (see [`events`]).
    published: events::Publisher,
}

impl Service {
    /// Opens the state directory and binds it to the HSM; every time the service records or
    /// decides by is read from `clock`. Fails rather than start empty over damaged state.
    pub fn open(
        config: Config,
        hsm: Hsm,
        clock: SharedClock,
    ) -> Result<(Service, LoadReport), ServiceError> {
        let (store, state, report) = Store::open(&config.state_dir)?;
        tracing::info!(
            generation = report.generation,
            fresh = report.fresh,
            migrated_from = report.migrated_from,
            credentials = state.credentials.len(),
            groups = state.groups.len(),
            keys = state.keys.len(),
            "state loaded"
        );
        let (job_changed, _) = tokio::sync::watch::channel(0);
        let published = events::Publisher::new(&state);
        let inner = Inner {
            config,
            hsm,
            outlets: published.outlets().clone(),
            clock,
            data: Mutex::new(Data {
                store,
                state,
                published,
            }),
            job_changed,
        };
        Ok((
            Service {
                inner: Arc::new(inner),
            },
            report,
        ))
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn hsm(&self) -> &Hsm {
        &self.inner.hsm
    }

    /// The daemon's one clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Now, in Unix seconds (UTC), by the daemon's clock.
    pub fn now_unix(&self) -> i64 {
        self.inner.clock.now_unix()
    }

    /// Whether this appliance may mutate the cloud: the runtime setting, else the config file.
    /// (For display; a cloud-changing job takes [`Service::designated_device`]'s proof.)
    pub async fn designated(&self) -> bool {
        self.designated_device().await.is_ok()
    }

    /// Sets the designated-device flag durably: a value other than byokd.toml's is kept and
    /// overrides the file; the file's own value clears the override, so the file applies again
    /// (see [`DesignatedSetting`]).
    pub async fn set_designated(&self, designated: bool, by: &str) -> Result<(), ServiceError> {
        let file = self.inner.config.designated;
        let mut data = self.inner.data.lock().await;
        let before = data.state.designated;
        data.state.designated = (designated != file).then_some(designated);
        if let Err(e) = data.commit().await {
            data.state.designated = before;
            return Err(e);
        }
        let source = if designated == file {
            "byokd.toml applies again"
        } else {
            "set through the API; it overrides byokd.toml"
        };
        tracing::warn!(
            event = crate::logs::Event::ConfigDesignatedChanged.as_str(),
            designated,
            file,
            was = ?before,
            identity = by,
            "designated-device setting changed by {by} to {designated} ({source}, which says {file})"
        );
        Ok(())
    }

    /// Committed group and designated-device changes, from now on (bounded by
    /// [`CHANGE_CAPACITY`]; a receiver that lags must re-read the state).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StateChange> {
        self.inner.outlets.subscribe()
    }

    /// The Key Vaults and Managed HSM pools that key groups name in the committed state,
    /// replaced under the state lock by the commit that changes them (the outbound allowlist
    /// reads it at each check).
    pub fn committed_targets(&self) -> tokio::sync::watch::Receiver<CommittedTargets> {
        self.inner.outlets.vaults()
    }

    /// The state generation on disk (for health and status).
    pub async fn generation(&self) -> u64 {
        self.inner.data.lock().await.store.generation()
    }
}

impl Data {
    /// Makes the state's changes durable, then publishes what they changed (see [`events`]).
    /// The writer thread does the I/O; this task waits with the state lock held, so nothing
    /// else reads a change before it is durable. For hot paths that may release the lock
    /// first (and so share an fsync with other tasks), see [`Data::stage`].
    async fn commit(&mut self) -> Result<(), ServiceError> {
        let touched = self.touched_groups();
        self.store.stage(&mut self.state)?.durable().await?;
        self.published.committed_touching(&self.state, &touched);
        Ok(())
    }

    /// The groups whose group or grace record changed since the last commit.
    fn touched_groups(&self) -> Vec<GroupName> {
        let touched: std::collections::BTreeSet<&GroupName> = self
            .state
            .groups
            .changed()
            .chain(self.state.grace.changed())
            .collect();
        touched.into_iter().cloned().collect()
    }

    /// Queues the state's changes for the next group commit and publishes them; the caller
    /// drops the state lock and then awaits the returned commit, so changes made by concurrent
    /// tasks meanwhile are committed with one fsync. Nothing is acknowledged before the await
    /// returns `Ok`; a failed commit fails every later one until byokd restarts (see
    /// `store::commit`).
    fn stage(&mut self) -> Result<crate::store::Pending, ServiceError> {
        let touched = self.touched_groups();
        let pending = self.store.stage(&mut self.state)?;
        self.published.committed_touching(&self.state, &touched);
        Ok(pending)
    }
}
