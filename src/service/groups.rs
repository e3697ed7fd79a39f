//! Key group operations: create (refusing unknown credentials, key types the token cannot
//! generate and key types no usable wrap strategy exports conformingly), list, show, update the rotation policy, and delete when empty. Update and delete
//! are refused while a job works on the group, decided under the state lock.

use super::{Service, ServiceError};
use crate::hsm::HsmError;
use crate::logs::Event;
use crate::model::JobId;
use crate::model::{
    CredentialName, GroupName, KeyGroup, KeyOp, KeyType, ModelError, RotationPolicy, Target,
};
use serde::Serialize;

/// A request to create a key group, already validated into domain types.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub name: GroupName,
    pub credential: CredentialName,
    pub target: Target,
    pub key_type: KeyType,
    /// `None` gives the key type's default usages.
    pub key_ops: Option<Vec<KeyOp>>,
    pub rotation: RotationPolicy,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupView {
    pub name: String,
    pub credential: String,
    pub target: Target,
    pub key_type: String,
    pub algorithm: String,
    pub exponent: Option<u32>,
    pub key_ops: Vec<&'static str>,
    pub rotation: RotationPolicy,
    pub last_rotated: Option<i64>,
    pub created: i64,
    pub keys: usize,
    /// When the next scheduled rotation is due (Unix seconds), if rotation is on.
    pub next_rotation: Option<i64>,
    /// Previous Azure versions waiting for the grace period to end, if any.
    pub pending_grace: Option<crate::model::PendingGrace>,
    /// The last drift check ("Check cloud state") and its findings, if one ran.
    pub drift: Option<DriftView>,
}

/// A drift report as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DriftView {
    pub checked: i64,
    pub job: JobId,
    pub azure_versions: usize,
    pub findings: Vec<DriftFindingView>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DriftFindingView {
    pub code: &'static str,
    pub key: Option<String>,
    pub version: Option<String>,
    pub message: String,
}

impl DriftView {
    fn of(r: &crate::model::DriftReport) -> Self {
        Self {
            checked: r.checked,
            job: r.job,
            azure_versions: r.azure_versions,
            findings: r
                .findings
                .iter()
                .map(|f| DriftFindingView {
                    code: f.code(),
                    key: f.key().map(str::to_owned),
                    version: f.version().map(str::to_owned),
                    message: f.describe(),
                })
                .collect(),
        }
    }
}

impl Service {
    pub async fn create_group(&self, new: NewGroup, by: &str) -> Result<GroupView, ServiceError> {
        let key_ops = new.key_ops.unwrap_or_else(|| new.key_type.default_ops());
        KeyOp::validate_for(&key_ops, new.key_type)?;
        new.key_type.check_target(new.target.kind())?;
        new.rotation.validate()?;
        // A Managed HSM pool on a cloud without Managed HSM could never be reached.
        crate::azure::CloudEndpoints::of(self.config().azure.cloud)
            .host(&new.target)
            .map_err(|e| {
                ServiceError::Invalid(ModelError::new(new.target.kind().as_str(), e.to_string()))
            })?;
        // Capabilities before promises: a group of a key type the token cannot generate would
        // accept keys it can never create.
        self.hsm()
            .can_generate(new.key_type)
            .await
            .map_err(|e| match e {
                HsmError::KeyTypeNotSupported { .. } => {
                    ServiceError::Invalid(ModelError::new("key_type", e.to_string()))
                }
                other => ServiceError::Hsm(other),
            })?;
        // Nor a key type the token generates but no usable wrap strategy exports conformingly:
        // the officer learns it now, with the failed encoding class, not at the first push.
        if let Some(reason) = self.hsm().wrap_report().refuses_group(new.key_type) {
            return Err(ServiceError::Invalid(ModelError::new("key_type", reason)));
        }
        let mut data = self.inner.data.lock().await;
        if !data.state.credentials.contains_key(&new.credential) {
            return Err(ServiceError::not_found("credential", &new.credential));
        }
        if data.state.groups.contains_key(&new.name) {
            return Err(ServiceError::Conflict(format!(
                "key group {:?} already exists",
                new.name.as_str()
            )));
        }
        let limit = self.config().limits.max_groups;
        if data.state.groups.len() >= limit {
            return Err(ServiceError::Limit(format!(
                "at most {limit} key groups (limits.max_groups)"
            )));
        }
        let group = KeyGroup {
            name: new.name.clone(),
            credential: new.credential,
            target: new.target,
            key_type: new.key_type,
            key_ops,
            rotation: new.rotation,
            last_rotated: None,
            created: self.now_unix(),
        };
        data.state.groups.insert(new.name.clone(), group);
        if let Err(e) = data.commit().await {
            data.state.groups.remove(&new.name);
            return Err(e);
        }
        tracing::info!(event = Event::GroupCreated.as_str(), service = "control", group = %new.name, identity = by,
            "Key group {} created by {by}", new.name);
        view(&data.state, &new.name)
    }

    pub async fn list_groups(&self) -> Vec<GroupView> {
        let data = self.inner.data.lock().await;
        data.state
            .groups
            .keys()
            .filter_map(|n| view(&data.state, n).ok())
            .collect()
    }

    pub async fn group(&self, name: &GroupName) -> Result<GroupView, ServiceError> {
        let data = self.inner.data.lock().await;
        view(&data.state, name)
    }

    /// Changes a group's rotation policy: `change` gets the current policy and returns the new
    /// one, under the state lock (two partial updates cannot undo each other). Refused while a
    /// sync or rotation of the group is unfinished, since the policy shapes its imports.
    pub async fn update_rotation(
        &self,
        name: &GroupName,
        change: impl FnOnce(RotationPolicy) -> RotationPolicy,
        by: &str,
    ) -> Result<GroupView, ServiceError> {
        let mut data = self.inner.data.lock().await;
        let current = data
            .state
            .groups
            .get(name)
            .ok_or_else(|| ServiceError::not_found("key group", name))?
            .rotation;
        let rotation = change(current);
        rotation.validate()?;
        if rotation == current {
            return view(&data.state, name);
        }
        if let Some(job) = super::busy::using_policy(&data.state, name) {
            return Err(super::busy::refusal(
                job,
                format!("the rotation policy of key group {name} cannot change now"),
            ));
        }
        if let Some(g) = data.state.groups.get_mut(name) {
            g.rotation = rotation;
        }
        if let Err(e) = data.commit().await {
            if let Some(g) = data.state.groups.get_mut(name) {
                g.rotation = current;
            }
            return Err(e);
        }
        tracing::info!(event = Event::GroupUpdated.as_str(), service = "control", group = %name, identity = by,
            enabled = rotation.enabled, every = rotation.rotate_every_months, keep = rotation.keep_valid_months,
            "Rotation policy of key group {name} changed by {by}: enabled {}, every {} month(s), keep valid {} month(s)",
            rotation.enabled, rotation.rotate_every_months, rotation.keep_valid_months);
        view(&data.state, name)
    }

    /// Deletes a key group that has no keys left. Never touches the cloud.
    pub async fn delete_group(&self, name: &GroupName, by: &str) -> Result<(), ServiceError> {
        let mut data = self.inner.data.lock().await;
        if !data.state.groups.contains_key(name) {
            return Err(ServiceError::not_found("key group", name));
        }
        if let Some(job) = super::busy::on_group(&data.state, name) {
            return Err(super::busy::refusal(
                job,
                format!("key group {name} cannot be deleted"),
            ));
        }
        let count = data.state.keys_in(name).count();
        if count > 0 {
            return Err(ServiceError::Conflict(format!(
                "key group {:?} still has {count} key(s); delete them first",
                name.as_str()
            )));
        }
        let removed = data.state.groups.remove(name);
        let drift = data.state.drift.remove(name);
        let grace = data.state.grace.remove(name);
        if let Err(e) = data.commit().await {
            if let Some(g) = removed {
                data.state.groups.insert(name.clone(), g);
            }
            if let Some(d) = drift {
                data.state.drift.insert(name.clone(), d);
            }
            if let Some(g) = grace {
                data.state.grace.insert(name.clone(), g);
            }
            return Err(e);
        }
        tracing::warn!(event = Event::GroupDeleted.as_str(), service = "control", group = %name, identity = by,
            "Key group {name} deleted by {by} (local only; the cloud is untouched)");
        Ok(())
    }
}

fn view(state: &crate::store::State, name: &GroupName) -> Result<GroupView, ServiceError> {
    let g = state
        .groups
        .get(name)
        .ok_or_else(|| ServiceError::not_found("key group", name))?;
    Ok(GroupView {
        name: g.name.to_string(),
        credential: g.credential.to_string(),
        target: g.target.clone(),
        key_type: g.key_type.family().to_owned(),
        algorithm: g.key_type.to_string(),
        exponent: match g.key_type {
            KeyType::Rsa { exponent, .. } => Some(exponent.value()),
            KeyType::Ec(_) | KeyType::Aes { .. } => None,
        },
        key_ops: g.key_ops.iter().map(|o| o.azure_name()).collect(),
        rotation: g.rotation,
        last_rotated: g.last_rotated,
        created: g.created,
        keys: state.keys_in(name).count(),
        next_rotation: g.rotation_due(),
        pending_grace: state.grace.get(name).cloned(),
        drift: state.drift.get(name).map(DriftView::of),
    })
}
