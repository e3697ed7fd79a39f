//! Durable job records: creating a job, journalling each step, and reading jobs back. The
//! executor in `crate::jobs` calls these so that every journal entry is on disk before the side
//! effect it announces.

use super::retention::Retention;
use super::{Service, ServiceError};
use crate::logs::Event;
use crate::model::{AzureVersion, JobId};
use crate::model::{
    GroupName, Job, JobKind, JobState, JobStep, Key, KeyGroup, KeyName, KeySync, KeySyncState,
    StepMessage, SyncStep,
};
use crate::store::State;

/// Appends a typed step and its display message to a job's journal; refused when the job's
/// kind does not journal that step (a programming error, surfaced as the job's failure). The
/// message's time is set by the service when the change is made durable ([`stamp_steps`]).
pub(crate) fn record_step(job: &mut Job, step: JobStep, message: &str) -> Result<(), ServiceError> {
    if !step.belongs_to(job.kind) {
        return Err(wrong_step(job, &step));
    }
    job.journal.push(step);
    job.steps.push(StepMessage {
        at: 0,
        message: message.to_owned(),
    });
    Ok(())
}

/// Dates the step messages a change appended to a job (those after the first `from`) by the
/// daemon's clock: job code adds messages, the service says when.
pub(super) fn stamp_steps(job: &mut Job, from: usize, at: i64) {
    for i in from..job.steps.len() {
        if let Some(s) = job.steps.get_mut(i) {
            s.at = at;
        }
    }
}

fn wrong_step(job: &Job, step: &JobStep) -> ServiceError {
    ServiceError::Conflict(format!(
        "job {} ({}) cannot journal step {}; report this as a byokd bug",
        job.id,
        job.kind.code(),
        step.code()
    ))
}

/// Which keys a new job names.
pub(super) enum JobKeys<'a> {
    These(&'a [KeyName]),
    /// Every key of the group without an Azure version, at the moment the job is created.
    Unpushed,
}

/// Where a key's last push stands, for a new job that pushes it: an import that an ended job
/// sent but never saw answered (its job failed or was cancelled before it could look) is carried
/// over from the newest ended job that names the key, so that the new job looks for it by its
/// fingerprint tag and records it instead of importing the key a second time. A key with a
/// version is never carried over.
fn unresolved_import(
    state: &State,
    group: &GroupName,
    key: &KeyName,
) -> Result<KeySyncState, ServiceError> {
    let pushed = state
        .keys
        .get(&(group.clone(), key.clone()))?
        .is_some_and(|k| k.azure_version.is_some());
    if pushed {
        return Ok(KeySyncState::NotStarted);
    }
    Ok(state
        .jobs
        .values()
        .rev()
        .filter(|j| j.state.is_final() && &j.group == group)
        .flat_map(|j| j.keys.iter())
        .find(|p| &p.key == key)
        .filter(|p| matches!(p.state, KeySyncState::ImportSent { .. }))
        .map_or(KeySyncState::NotStarted, |p| p.state.clone()))
}

impl Service {
    pub(super) async fn insert_job(
        &self,
        kind: JobKind,
        group: &GroupName,
        keys: JobKeys<'_>,
        by: &str,
        state: JobState,
        first_step: String,
    ) -> Result<JobId, ServiceError> {
        let mut data = self.inner.data.lock().await;
        if !data.state.groups.contains_key(group) {
            return Err(ServiceError::not_found("key group", group));
        }
        let keys: Vec<KeyName> = match keys {
            JobKeys::These(keys) => keys.to_vec(),
            JobKeys::Unpushed => {
                let unpushed: Vec<KeyName> = data
                    .state
                    .keys_in(group)?
                    .into_iter()
                    .filter(|k| k.azure_version.is_none())
                    .map(|k| k.name.clone())
                    .collect();
                if unpushed.is_empty() {
                    return Err(ServiceError::Conflict(format!(
                        "every key of group {group} already has its Azure version (or the group has no keys): nothing to synchronize"
                    )));
                }
                unpushed
            }
        };
        for key in &keys {
            if !data
                .state
                .keys
                .contains_key(&(group.clone(), key.clone()))?
            {
                return Err(ServiceError::not_found("key", format!("{group}/{key}")));
            }
        }
        let id = data.state.next_job_id.max(JobId::new(1));
        let job = Job {
            id,
            kind,
            group: group.clone(),
            keys: keys
                .iter()
                .map(|k| {
                    Ok(KeySync {
                        key: k.clone(),
                        state: unresolved_import(&data.state, group, k)?,
                    })
                })
                .collect::<Result<_, ServiceError>>()?,
            started_by: by.to_owned(),
            created: self.now_unix(),
            started: None,
            ended: None,
            state,
            progress: 0,
            steps: vec![StepMessage {
                at: self.now_unix(),
                message: first_step,
            }]
            .into(),
            journal: Default::default(),
            kek: None,
            error: None,
            cancel_requested: None,
        };
        data.state.jobs.insert(id, job);
        data.state.next_job_id = id.next();
        let retention = Retention::from(&self.config().jobs);
        let pruned = retention.prune(&mut data.state.jobs, self.now_unix());
        if let Err(e) = data.commit().await {
            data.state.jobs.remove(&id);
            data.state
                .jobs
                .extend(pruned.into_iter().map(|j| (j.id, j)));
            data.state.next_job_id = id;
            return Err(e);
        }
        let pruned = pruned.len();
        if pruned > 0 {
            tracing::info!(
                event = Event::JobPruned.as_str(),
                count = pruned,
                "finished jobs pruned by retention"
            );
        }
        tracing::info!(event = Event::JobCreated.as_str(), service = "jobs", job = id.get(), kind = kind.code(), group = %group,
            identity = by, state = state.code(), "Job {id} ({}) created for key group {group} by {by}", kind.code());
        Ok(id)
    }

    /// Creates a pending job durably and returns its id.
    pub async fn create_job(
        &self,
        kind: JobKind,
        group: &GroupName,
        keys: &[KeyName],
        by: &str,
    ) -> Result<JobId, ServiceError> {
        let queued = format!("{} queued by {by}", kind.title());
        self.insert_job(
            kind,
            group,
            JobKeys::These(keys),
            by,
            JobState::Pending,
            queued,
        )
        .await
    }

    /// Creates "Synchronize HSM protected key(s)" for every key of the group that has no Azure
    /// version, chosen under the same lock as the job's creation. 409 when there is none.
    pub async fn create_sync_of_unpushed(
        &self,
        group: &GroupName,
        by: &str,
    ) -> Result<JobId, ServiceError> {
        let queued = format!("{} queued by {by}", JobKind::Sync.title());
        self.insert_job(
            JobKind::Sync,
            group,
            JobKeys::Unpushed,
            by,
            JobState::Pending,
            queued,
        )
        .await
    }

    /// Applies `change` to a job and makes it durable before returning. On a failed write the
    /// job is restored to what it was.
    pub async fn journal<R>(
        &self,
        id: JobId,
        change: impl FnOnce(&mut Job) -> R,
    ) -> Result<R, ServiceError> {
        let mut data = self.inner.data.lock().await;
        let job = data
            .state
            .jobs
            .get_mut(&id)
            .ok_or_else(|| ServiceError::not_found("job", id))?;
        let from = job.steps.len();
        let (out, undo) = job.change(change);
        stamp_steps(job, from, self.now_unix());
        // Group commit: the lock is released before the fsync, so steps journalled by other
        // jobs meanwhile share it. The step is acknowledged only once durable.
        let pending = data.stage();
        drop(data);
        if let Err(e) = durable(pending).await {
            if let Some(job) = self.inner.data.lock().await.state.jobs.get_mut(&id) {
                undo.undo(job);
            }
            return Err(e);
        }
        self.inner.job_changed.send_modify(|n| *n += 1);
        Ok(out)
    }

    /// Cancels a job. A pending job, or one waiting for approval, ends `cancelled` at once (the
    /// caller withdraws the approval); a started one records the request
    /// and its runner stops at the next safe point (never with an import whose outcome is
    /// unknown), cleans up its key exchange key and ends `cancelled`. Returns the job as it is
    /// now. A finished job cannot be cancelled.
    pub async fn cancel_job(&self, id: JobId, by: &str) -> Result<Job, ServiceError> {
        let job = self
            .journal(id, |job| {
                if job.state.is_final() {
                    return Err(ServiceError::Conflict(format!(
                        "job {id} already ended {}; there is nothing to cancel",
                        job.state
                    )));
                }
                let now = self.now_unix();
                if job.state == JobState::WaitingApproval {
                    job.state = JobState::Cancelled;
                    job.ended = Some(now);
                    job.steps.push(StepMessage {
                        at: now,
                        message: format!(
                            "Cancelled by {by} while it waited for approval; the approval request is withdrawn"
                        ),
                    });
                } else if job.state == JobState::Pending && job.kek.is_none() {
                    job.state = JobState::Cancelled;
                    job.ended = Some(now);
                    job.steps.push(StepMessage {
                        at: now,
                        message: format!("Cancelled by {by} before it started"),
                    });
                } else if job.cancel_requested.is_none() {
                    job.steps.push(StepMessage {
                        at: now,
                        message: format!(
                            "Cancel requested by {by}; stopping at the next safe point"
                        ),
                    });
                }
                job.cancel_requested.get_or_insert_with(|| by.to_owned());
                Ok(job.clone())
            })
            .await??;
        tracing::info!(
            event = Event::JobCancel.as_str(),
            job = id.get(),
            identity = by,
            state = job.state.code(),
            "job cancel requested"
        );
        Ok(job)
    }

    /// Ends a job (any final state) durably, then prunes finished jobs by retention.
    pub async fn finish_job(
        &self,
        id: JobId,
        state: JobState,
        change: impl FnOnce(&mut Job),
    ) -> Result<(), ServiceError> {
        self.journal(id, |job| {
            job.state = state;
            job.ended = Some(self.now_unix());
            change(job);
        })
        .await?;
        self.prune_jobs().await
    }

    /// Removes finished jobs beyond the retention count or age. Unfinished jobs stay.
    pub async fn prune_jobs(&self) -> Result<(), ServiceError> {
        let mut data = self.inner.data.lock().await;
        let pruned =
            Retention::from(&self.config().jobs).prune(&mut data.state.jobs, self.now_unix());
        if pruned.is_empty() {
            return Ok(());
        }
        let count = pruned.len();
        if let Err(e) = data.commit().await {
            data.state
                .jobs
                .extend(pruned.into_iter().map(|j| (j.id, j)));
            return Err(e);
        }
        tracing::info!(
            event = Event::JobPruned.as_str(),
            count,
            "finished jobs pruned by retention"
        );
        Ok(())
    }

    /// Adds a step message (and optionally progress) durably.
    pub async fn job_step(
        &self,
        id: JobId,
        message: impl Into<String>,
        progress: Option<u16>,
    ) -> Result<(), ServiceError> {
        let message = message.into();
        self.journal(id, |job| {
            job.steps.push(StepMessage {
                at: self.now_unix(),
                message,
            });
            // Progress never goes back, also when a resumed job repeats a step.
            if let Some(p) = progress {
                job.progress = job.progress.max(p.min(1000));
            }
        })
        .await
    }

    /// Journals a typed step with its display message (and optionally progress) in one durable
    /// write. Refused when the job's kind does not journal that step.
    pub async fn job_record(
        &self,
        id: JobId,
        step: impl Into<JobStep>,
        message: impl Into<String>,
        progress: Option<u16>,
    ) -> Result<(), ServiceError> {
        let (step, message) = (step.into(), message.into());
        self.journal(id, |job| {
            record_step(job, step, &message)?;
            if let Some(p) = progress {
                job.progress = job.progress.max(p.min(1000));
            }
            Ok(())
        })
        .await?
    }

    pub async fn job(&self, id: JobId) -> Result<Job, ServiceError> {
        let data = self.inner.data.lock().await;
        data.state
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| ServiceError::not_found("job", id))
    }

    /// What `read` takes from a job, without copying the rest of it (a sync's keys).
    pub async fn job_part<R>(
        &self,
        id: JobId,
        read: impl FnOnce(&Job) -> R,
    ) -> Result<R, ServiceError> {
        let data = self.inner.data.lock().await;
        data.state
            .jobs
            .get(&id)
            .map(read)
            .ok_or_else(|| ServiceError::not_found("job", id))
    }

    pub async fn jobs(&self) -> Vec<Job> {
        let data = self.inner.data.lock().await;
        data.state.jobs.values().cloned().collect()
    }

    /// Jobs that were not finished when the daemon stopped, with their state.
    pub async fn unfinished_jobs(&self) -> Vec<(JobId, JobState)> {
        let data = self.inner.data.lock().await;
        data.state
            .jobs
            .values()
            .filter(|j| !j.state.is_final())
            .map(|j| (j.id, j.state))
            .collect()
    }

    /// A receiver that changes whenever any job changes (for long-poll and watch).
    pub fn job_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.job_changed.subscribe()
    }

    /// Records the Azure version of a pushed key, durably, together with the job journal entry.
    pub async fn record_sync(
        &self,
        id: JobId,
        group: &GroupName,
        key: &KeyName,
        version: &AzureVersion,
    ) -> Result<(), ServiceError> {
        self.record_sync_with_steps(id, group, key, version, Vec::new(), None)
            .await
    }

    /// As [`Service::record_sync`], with the job's step messages and progress for this key in
    /// the same commit: one state write per pushed key instead of one per message.
    pub async fn record_sync_with_steps(
        &self,
        id: JobId,
        group: &GroupName,
        key: &KeyName,
        version: &AzureVersion,
        steps: Vec<String>,
        progress: Option<u16>,
    ) -> Result<(), ServiceError> {
        let imported = JobStep::Sync(SyncStep::Imported {
            key: key.clone(),
            version: version.clone(),
        });
        let mut data = self.inner.data.lock().await;
        let key_id = (group.clone(), key.clone());
        let before_key = data
            .state
            .keys
            .get(&key_id)?
            .ok_or_else(|| ServiceError::not_found("key", format!("{group}/{key}")))?;
        let job = data
            .state
            .jobs
            .get(&id)
            .ok_or_else(|| ServiceError::not_found("job", id))?;
        if !imported.belongs_to(job.kind) {
            return Err(wrong_step(job, &imported));
        }
        if let Some(k) = data.state.keys.get_mut(&key_id)? {
            k.azure_version = Some(version.clone());
        }
        let at = self.now_unix();
        let undo_job = data.state.jobs.get_mut(&id).map(|job| {
            job.change(|job| {
                job.keys.update_where(
                    |p| &p.key == key,
                    |p| {
                        p.state = KeySyncState::Imported {
                            version: version.clone(),
                        }
                    },
                );
                job.journal.push(imported);
                job.steps
                    .extend(steps.into_iter().map(|message| StepMessage { at, message }));
                if let Some(p) = progress {
                    job.progress = p.min(1000);
                }
            })
            .1
        });
        // Group commit, as in `journal`: keys pushed by concurrent jobs share one fsync.
        let pending = data.stage();
        drop(data);
        if let Err(e) = durable(pending).await {
            let mut data = self.inner.data.lock().await;
            // The rollback reads nothing (the key is in the overlay since the change).
            let _ = data.state.keys.insert(key_id, before_key);
            if let (Some(job), Some(undo)) = (data.state.jobs.get_mut(&id), undo_job) {
                undo.undo(job);
            }
            return Err(e);
        }
        self.inner.job_changed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// A group's full record, for the job runner.
    pub(crate) async fn group_record(&self, name: &GroupName) -> Result<KeyGroup, ServiceError> {
        let data = self.inner.data.lock().await;
        data.state
            .groups
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::not_found("key group", name))
    }

    /// Every key of a group, in full, for the job runner.
    pub(crate) async fn key_records(&self, group: &GroupName) -> Result<Vec<Key>, ServiceError> {
        let data = self.inner.data.lock().await;
        if !data.state.groups.contains_key(group) {
            return Err(ServiceError::not_found("key group", group));
        }
        Ok(data.state.keys_in(group)?)
    }

    /// A key's full record, for the job runner.
    pub(crate) async fn key_record(
        &self,
        group: &GroupName,
        key: &KeyName,
    ) -> Result<Key, ServiceError> {
        let data = self.inner.data.lock().await;
        data.state
            .keys
            .get(&(group.clone(), key.clone()))?
            .ok_or_else(|| ServiceError::not_found("key", format!("{group}/{key}")))
    }
}

/// Awaits a staged commit (see `Data::stage`).
async fn durable(pending: Result<crate::store::Pending, ServiceError>) -> Result<(), ServiceError> {
    pending?.durable().await?;
    Ok(())
}
