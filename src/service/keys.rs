//! Key operations: create a random key in the HSM for a group, list, show, and delete locally.
//! Deleting a local key never touches the cloud; whether a delete may happen at once, needs a
//! second admin, or is refused is decided under the state lock, with the removal.

use super::{Service, ServiceError};
use crate::control::authz::{Admin, Authorized, Operate};
use crate::dual_control::{Approved, DeleteKey};
use crate::logs::Event;
use crate::model::{GroupName, Key, KeyName, Storage};
use serde::Serialize;

/// A key as the console lists it: Name, Key Group, Version, Storage, Key type, Algorithm,
/// Check Digits, plus creation time.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyView {
    pub name: String,
    pub group: String,
    pub version: Option<String>,
    pub storage: String,
    pub key_type: String,
    pub algorithm: String,
    pub check_digits: String,
    pub created: i64,
    pub hsm_id: String,
}

impl KeyView {
    fn of(k: &Key) -> Self {
        Self {
            name: k.name.to_string(),
            group: k.group.to_string(),
            version: k.azure_version.as_ref().map(|v| v.to_string()),
            storage: k.storage.to_string(),
            key_type: k.key_type.family().to_owned(),
            algorithm: k.key_type.to_string(),
            check_digits: k.check_digits.clone(),
            created: k.created,
            hsm_id: k.hsm_id.to_hex(),
        }
    }
}

impl Service {
    /// "Create → Random": generates a key pair inside the HSM and records it in the group.
    pub async fn create_key(
        &self,
        group: &GroupName,
        name: &KeyName,
        by: &str,
    ) -> Result<KeyView, ServiceError> {
        let key_type = {
            let data = self.inner.data.lock().await;
            let g = data
                .state
                .groups
                .get(group)
                .ok_or_else(|| ServiceError::not_found("key group", group))?;
            if data
                .state
                .keys
                .contains_key(&(group.clone(), name.clone()))?
            {
                return Err(ServiceError::Conflict(format!(
                    "key {:?} already exists in group {:?}",
                    name.as_str(),
                    group.as_str()
                )));
            }
            let limit = self.config().limits.max_keys;
            if data.state.keys.len() >= limit {
                return Err(ServiceError::Limit(format!(
                    "at most {limit} keys (limits.max_keys)"
                )));
            }
            g.key_type
        };
        let generated = self.hsm().generate_target(key_type, group, name).await?;
        let key = Key {
            name: name.clone(),
            group: group.clone(),
            hsm_id: generated.id,
            check_digits: generated.identity.check_digits().to_owned(),
            key_type,
            storage: Storage::Protected,
            created: self.now_unix(),
            azure_version: None,
        };
        let id = (group.clone(), name.clone());
        let mut data = self.inner.data.lock().await;
        // Everything decided on the first look is decided again under the lock that commits:
        // the group may have been deleted (and created again, with another key type), the name
        // taken, or the key limit reached by creates that ran meanwhile.
        let limit = self.config().limits.max_keys;
        let same_group = data
            .state
            .groups
            .get(group)
            .is_some_and(|g| g.key_type == key_type);
        let committed = if !same_group || data.state.keys.contains_key(&id)? {
            Err(ServiceError::Conflict(format!(
                "key {:?} in group {:?} changed meanwhile; retry",
                name.as_str(),
                group.as_str()
            )))
        } else if data.state.keys.len() >= limit {
            Err(ServiceError::Limit(format!(
                "at most {limit} keys (limits.max_keys)"
            )))
        } else {
            match data.state.keys.insert(id.clone(), key.clone()) {
                Err(e) => Err(e.into()),
                Ok(_) => {
                    let committed = data.commit().await;
                    if committed.is_err() {
                        // The rollback reads nothing (the key is in the overlay since the insert).
                        let _ = data.state.keys.remove(&id);
                    }
                    committed
                }
            }
        };
        if let Err(e) = committed {
            drop(data);
            if let Err(destroy) = self.hsm().destroy(generated.id).await {
                tracing::error!(group = %group, key = %name, hsm_id = %generated.id.to_hex(), error = %destroy, "could not remove the HSM key of a failed create");
            }
            return Err(e);
        }
        tracing::info!(event = Event::KeyCreated.as_str(), service = "hsm", group = %group, key = %name, algorithm = %key_type,
            check_digits = %key.check_digits, identity = by, "Key {group}/{name} ({key_type}) created in the HSM by {by}");
        Ok(KeyView::of(&key))
    }

    /// Destroys the HSM objects labelled for `group`/`name` that the state does not record: a
    /// key generated just before a crash whose record never reached the disk (a rotation
    /// journals its planned key name before generating, and calls this when it resumes).
    /// Returns how many were destroyed. Never touches the recorded key.
    pub async fn destroy_unrecorded_hsm_keys(
        &self,
        group: &GroupName,
        name: &KeyName,
    ) -> Result<usize, ServiceError> {
        let recorded = {
            let data = self.inner.data.lock().await;
            data.state
                .keys
                .get(&(group.clone(), name.clone()))?
                .map(|k| k.hsm_id)
        };
        let label = crate::hsm::key_label(group, name);
        let mut destroyed = 0;
        for entry in self.hsm().list_keys().await? {
            if entry.label != label || Some(entry.id) == recorded {
                continue;
            }
            self.hsm().destroy(entry.id).await?;
            destroyed += 1;
            tracing::warn!(event = Event::HsmKeyUnrecordedDestroyed.as_str(), service = "hsm", group = %group, key = %name,
                hsm_id = %entry.id.to_hex(), "HSM key {label} was generated before a restart but never recorded; destroyed (it was never used)");
        }
        Ok(destroyed)
    }

    pub async fn list_keys(&self, group: &GroupName) -> Result<Vec<KeyView>, ServiceError> {
        let data = self.inner.data.lock().await;
        if !data.state.groups.contains_key(group) {
            return Err(ServiceError::not_found("key group", group));
        }
        Ok(data.state.keys_in(group)?.iter().map(KeyView::of).collect())
    }

    pub async fn key(&self, group: &GroupName, name: &KeyName) -> Result<KeyView, ServiceError> {
        let data = self.inner.data.lock().await;
        data.state
            .keys
            .get(&(group.clone(), name.clone()))?
            .as_ref()
            .map(KeyView::of)
            .ok_or_else(|| ServiceError::not_found("key", format!("{group}/{name}")))
    }

    /// The key's public key as SPKI DER, read back from the HSM. An AES key has none: 409.
    pub async fn key_public_der(
        &self,
        group: &GroupName,
        name: &KeyName,
    ) -> Result<Vec<u8>, ServiceError> {
        let (id, key_type) = {
            let data = self.inner.data.lock().await;
            data.state
                .keys
                .get(&(group.clone(), name.clone()))?
                .map(|k| (k.hsm_id, k.key_type))
                .ok_or_else(|| ServiceError::not_found("key", format!("{group}/{name}")))?
        };
        if key_type.is_symmetric() {
            return Err(ServiceError::Conflict(format!(
                "key {group}/{name} is an {key_type} key: it has no public key; compare its check digits (the key check value) instead"
            )));
        }
        Ok(self.hsm().public_key(id).await?.spki_der)
    }

    /// Deletes a key locally for `who`, deciding under the state lock, in the same critical
    /// section as the removal: a key that an unfinished job works on is refused (409 naming the
    /// job); a key that was pushed to Azure is not deleted but needs a second admin's approval
    /// ([`KeyDeletion::NeedsApproval`], for an admin; 403 for an operator); any other key is
    /// removed from the state, then from the HSM. The cloud is never touched.
    pub async fn delete_key(
        &self,
        who: &Authorized<Operate>,
        group: &GroupName,
        name: &KeyName,
    ) -> Result<KeyDeletion, ServiceError> {
        let removed = {
            let mut data = self.inner.data.lock().await;
            let key = deletable(&data.state, group, name)?;
            if let Some(version) = &key.azure_version {
                if !who.satisfies::<Admin>() {
                    return Err(ServiceError::Forbidden(format!(
                        "key {group}/{name} was pushed to Azure (version {version}); deleting it needs an admin and a second admin's approval"
                    )));
                }
                return Ok(KeyDeletion::NeedsApproval {
                    version: version.clone(),
                    hsm_id: key.hsm_id,
                });
            }
            let kind = data.state.groups.get(group).map(|g| g.target.kind());
            (data.remove_key(group, name).await?, kind)
        };
        self.destroy_deleted_key(removed, who.name(), None).await;
        Ok(KeyDeletion::Deleted)
    }

    /// Deletes the key a second admin approved deleting, re-checking under the state lock that
    /// it is still the key the delete was requested for (not another one given its name since)
    /// and that no unfinished job works on it.
    pub async fn delete_key_approved(
        &self,
        approved: &Approved<DeleteKey>,
    ) -> Result<(), ServiceError> {
        let DeleteKey { group, key, hsm_id } = approved.action();
        let group = GroupName::try_from(group.clone())?;
        let name = KeyName::try_from(key.clone())?;
        let removed = {
            let mut data = self.inner.data.lock().await;
            if deletable(&data.state, &group, &name)?.hsm_id != *hsm_id {
                return Err(ServiceError::Conflict(format!(
                    "key {group}/{name} is not the key approval {} was requested for: that one was deleted and another was given its name since; nothing was deleted; request the delete again if this key should go",
                    approved.id()
                )));
            }
            let kind = data.state.groups.get(&group).map(|g| g.target.kind());
            (data.remove_key(&group, &name).await?, kind)
        };
        self.destroy_deleted_key(removed, &approved.by(), Some(approved.id()))
            .await;
        Ok(())
    }

    /// Destroys a deleted key's HSM object and records the delete (saying where its Azure
    /// version stays: the vault or the pool of its group's target kind).
    async fn destroy_deleted_key(
        &self,
        (removed, kind): (Key, Option<crate::model::TargetKind>),
        by: &str,
        approval: Option<&crate::model::ApprovalId>,
    ) {
        let (group, name) = (&removed.group, &removed.name);
        let approval = approval.map(|a| a.to_string());
        if let Err(e) = self.hsm().destroy(removed.hsm_id).await {
            tracing::error!(group = %group, key = %name, hsm_id = %removed.hsm_id.to_hex(), error = %e, "key removed from state but the HSM object could not be destroyed; remove it with the HSM tools");
        }
        tracing::warn!(event = Event::KeyDeleted.as_str(), service = "hsm", group = %group, key = %name, identity = by,
            approval = approval.as_deref(), version = removed.azure_version.as_ref().map(|v| v.as_str()), check_digits = %removed.check_digits,
            "Key {group}/{name} deleted locally by {by}{} (the cloud is untouched)",
            removed.azure_version.as_ref().map(|v| format!("; its Azure version {v} stays in {}", kind.map_or("Azure", |k| k.the()))).unwrap_or_default());
    }
}

/// What deleting a key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDeletion {
    Deleted,
    /// The key was pushed (this Azure version): a second admin must approve the delete of
    /// this very key (its HSM object).
    NeedsApproval {
        version: crate::model::AzureVersion,
        hsm_id: crate::model::HsmKeyId,
    },
}

/// The key, if it exists and no unfinished job works on it.
fn deletable(
    state: &crate::store::State,
    group: &GroupName,
    name: &KeyName,
) -> Result<Key, ServiceError> {
    let key = state
        .keys
        .get(&(group.clone(), name.clone()))?
        .ok_or_else(|| ServiceError::not_found("key", format!("{group}/{name}")))?;
    if let Some(job) = super::busy::holding_key(state, group, name) {
        return Err(super::busy::refusal(
            job,
            format!("key {group}/{name} cannot be deleted"),
        ));
    }
    Ok(key)
}

impl super::Data {
    /// Removes a key from the state durably; restored on a failed write.
    async fn remove_key(&mut self, group: &GroupName, name: &KeyName) -> Result<Key, ServiceError> {
        let id = (group.clone(), name.clone());
        let removed = self
            .state
            .keys
            .remove(&id)?
            .ok_or_else(|| ServiceError::not_found("key", format!("{group}/{name}")))?;
        if let Err(e) = self.commit().await {
            // The rollback reads nothing (the removal is in the overlay).
            let _ = self.state.keys.insert(id, removed);
            return Err(e);
        }
        Ok(removed)
    }
}
