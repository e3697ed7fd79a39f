//! Durable lifecycle records: a rotation's outcome (`last_rotated` and the grace-period list,
//! written together with the job's end), the grace list itself, drift reports, and forgetting
//! Azure versions once a purge made them gone for good.

use super::{Service, ServiceError};
use crate::model::JobId;
use crate::model::{DriftReport, GroupName, Job, PendingGrace};

impl Service {
    /// Every group's name and when its next rotation is due (`None`: rotation off), for the
    /// scheduler's plan (read once at start-up and on a full re-plan) and the drift check's
    /// round. Only these are copied out: a copy of every group would add, for a moment at
    /// start-up, as much memory as the groups themselves hold (60 MiB at 200,000 groups).
    pub async fn rotation_plan(&self) -> Vec<(GroupName, Option<i64>)> {
        let data = self.inner.data.lock().await;
        data.state
            .groups
            .iter()
            .map(|(name, g)| (name.clone(), g.rotation_due()))
            .collect()
    }

    pub async fn pending_grace(&self) -> Vec<(GroupName, PendingGrace)> {
        let data = self.inner.data.lock().await;
        data.state
            .grace
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub async fn pending_grace_of(&self, group: &GroupName) -> Option<PendingGrace> {
        let data = self.inner.data.lock().await;
        data.state.grace.get(group).cloned()
    }

    /// Records a successful rotation: `last_rotated`, the grace entry (replacing an earlier one
    /// whose versions are then merged in) and the job's end, in one write.
    pub async fn finish_rotation(
        &self,
        id: JobId,
        group: &GroupName,
        at: i64,
        grace: Option<PendingGrace>,
        end_job: impl FnOnce(&mut Job),
    ) -> Result<(), ServiceError> {
        let mut data = self.inner.data.lock().await;
        let before_group = data
            .state
            .groups
            .get(group)
            .cloned()
            .ok_or_else(|| ServiceError::not_found("key group", group))?;
        if !data.state.jobs.contains_key(&id) {
            return Err(ServiceError::not_found("job", id));
        }
        let before_grace = data.state.grace.get(group).cloned();
        if let Some(g) = data.state.groups.get_mut(group) {
            g.last_rotated = Some(at);
        }
        if let Some(mut new) = grace {
            if let Some(old) = &before_grace {
                for v in &old.versions {
                    if !new.versions.contains(v) && *v != new.new_version {
                        new.versions.push(v.clone());
                    }
                }
            }
            data.state.grace.insert(group.clone(), new);
        }
        let now = self.now_unix();
        let undo_job = data.state.jobs.get_mut(&id).map(|j| {
            let from = j.steps.len();
            let (_, undo) = j.change(end_job);
            super::jobs::stamp_steps(j, from, now);
            undo
        });
        if let Err(e) = data.commit().await {
            data.state.groups.insert(group.clone(), before_group);
            if let (Some(j), Some(undo)) = (data.state.jobs.get_mut(&id), undo_job) {
                undo.undo(j);
            }
            match before_grace {
                Some(g) => data.state.grace.insert(group.clone(), g),
                None => data.state.grace.remove(group),
            };
            return Err(e);
        }
        drop(data);
        self.inner.job_changed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Removes a group's grace entry once its previous versions were handled.
    pub async fn clear_grace(&self, group: &GroupName) -> Result<(), ServiceError> {
        let mut data = self.inner.data.lock().await;
        let Some(removed) = data.state.grace.remove(group) else {
            return Ok(());
        };
        if let Err(e) = data.commit().await {
            data.state.grace.insert(group.clone(), removed);
            return Err(e);
        }
        Ok(())
    }

    /// Stores a group's latest drift report.
    pub async fn set_drift(
        &self,
        group: &GroupName,
        report: DriftReport,
    ) -> Result<(), ServiceError> {
        let mut data = self.inner.data.lock().await;
        if !data.state.groups.contains_key(group) {
            return Err(ServiceError::not_found("key group", group));
        }
        let before = data.state.drift.insert(group.clone(), report);
        if let Err(e) = data.commit().await {
            match before {
                Some(b) => data.state.drift.insert(group.clone(), b),
                None => data.state.drift.remove(group),
            };
            return Err(e);
        }
        Ok(())
    }

    /// After a purge the Azure versions are gone for good: the group's keys forget them, so they
    /// can be pushed again. The keys themselves stay in the HSM.
    pub async fn forget_azure_versions(&self, group: &GroupName) -> Result<usize, ServiceError> {
        let mut data = self.inner.data.lock().await;
        let ids: Vec<_> = data
            .state
            .keys_in(group)?
            .into_iter()
            .filter(|k| k.azure_version.is_some())
            .map(|k| ((k.group.clone(), k.name.clone()), k))
            .collect();
        for (id, _) in &ids {
            if let Some(k) = data.state.keys.get_mut(id)? {
                k.azure_version = None;
            }
        }
        let grace = data.state.grace.remove(group);
        if let Err(e) = data.commit().await {
            for (id, k) in ids {
                // The rollback reads nothing (each key is in the overlay since the change).
                let _ = data.state.keys.insert(id, k);
            }
            if let Some(g) = grace {
                data.state.grace.insert(group.clone(), g);
            }
            return Err(e);
        }
        Ok(ids.len())
    }
}
