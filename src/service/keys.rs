//! Key operations: create a random key in the HSM for a group, list, show, and delete locally.
//! Deleting a local key never touches the cloud.

use super::{Service, ServiceError, now_unix};
use crate::model::{Key, KeyName, LocalKeyName, Storage};
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
            version: k.azure_version.clone(),
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
        group: &KeyName,
        name: &LocalKeyName,
        by: &str,
    ) -> Result<KeyView, ServiceError> {
        let key_type = {
            let data = self.inner.data.lock().await;
            let g = data
                .state
                .groups
                .get(group)
                .ok_or_else(|| ServiceError::not_found("key group", group))?;
            if data.state.keys.contains_key(&(group.clone(), name.clone())) {
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
        let generated = self.hsm().generate(key_type, group, name).await?;
        let key = Key {
            name: name.clone(),
            group: group.clone(),
            hsm_id: generated.id,
            check_digits: generated.public.check_digits.clone(),
            key_type,
            storage: Storage::Protected,
            created: now_unix(),
            azure_version: None,
        };
        let id = (group.clone(), name.clone());
        let mut data = self.inner.data.lock().await;
        let conflict = data.state.keys.contains_key(&id) || !data.state.groups.contains_key(group);
        let committed = if conflict {
            Err(ServiceError::Conflict(format!(
                "key {:?} in group {:?} changed meanwhile; retry",
                name.as_str(),
                group.as_str()
            )))
        } else {
            data.state.keys.insert(id.clone(), key.clone());
            data.commit().inspect_err(|_| {
                data.state.keys.remove(&id);
            })
        };
        if let Err(e) = committed {
            drop(data);
            if let Err(destroy) = self.hsm().destroy(generated.id).await {
                tracing::error!(group = %group, key = %name, hsm_id = %generated.id.to_hex(), error = %destroy, "could not remove the HSM key of a failed create");
            }
            return Err(e);
        }
        tracing::info!(group = %group, key = %name, algorithm = %key_type, check_digits = %key.check_digits, identity = by, "key created in the HSM");
        Ok(KeyView::of(&key))
    }

    /// Destroys the HSM objects labelled for `group`/`name` that the state does not record: a
    /// key generated just before a crash whose record never reached the disk (a rotation
    /// journals its planned key name before generating, and calls this when it resumes).
    /// Returns how many were destroyed. Never touches the recorded key.
    pub async fn destroy_unrecorded_hsm_keys(
        &self,
        group: &KeyName,
        name: &LocalKeyName,
    ) -> Result<usize, ServiceError> {
        let recorded = {
            let data = self.inner.data.lock().await;
            data.state
                .keys
                .get(&(group.clone(), name.clone()))
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
            tracing::warn!(event = "hsm.key.unrecorded_destroyed", service = "hsm", group = %group, key = %name,
                hsm_id = %entry.id.to_hex(), "HSM key {label} was generated before a restart but never recorded; destroyed (it was never used)");
        }
        Ok(destroyed)
    }

    pub async fn list_keys(&self, group: &KeyName) -> Result<Vec<KeyView>, ServiceError> {
        let data = self.inner.data.lock().await;
        if !data.state.groups.contains_key(group) {
            return Err(ServiceError::not_found("key group", group));
        }
        Ok(data.state.keys_in(group).map(KeyView::of).collect())
    }

    pub async fn key(&self, group: &KeyName, name: &LocalKeyName) -> Result<KeyView, ServiceError> {
        let data = self.inner.data.lock().await;
        data.state
            .keys
            .get(&(group.clone(), name.clone()))
            .map(KeyView::of)
            .ok_or_else(|| ServiceError::not_found("key", format!("{group}/{name}")))
    }

    /// The key's public key as SPKI DER, read back from the HSM.
    pub async fn key_public_der(
        &self,
        group: &KeyName,
        name: &LocalKeyName,
    ) -> Result<Vec<u8>, ServiceError> {
        let id = {
            let data = self.inner.data.lock().await;
            data.state
                .keys
                .get(&(group.clone(), name.clone()))
                .map(|k| k.hsm_id)
                .ok_or_else(|| ServiceError::not_found("key", format!("{group}/{name}")))?
        };
        Ok(self.hsm().public_key(id).await?.spki_der)
    }

    /// Deletes a key locally: from the state, then from the HSM. The Azure version (if any) is
    /// left untouched in the cloud.
    pub async fn delete_key_local(
        &self,
        group: &KeyName,
        name: &LocalKeyName,
        by: &str,
    ) -> Result<(), ServiceError> {
        let id = (group.clone(), name.clone());
        let removed = {
            let mut data = self.inner.data.lock().await;
            let Some(removed) = data.state.keys.remove(&id) else {
                return Err(ServiceError::not_found("key", format!("{group}/{name}")));
            };
            if let Err(e) = data.commit() {
                data.state.keys.insert(id, removed);
                return Err(e);
            }
            removed
        };
        if let Err(e) = self.hsm().destroy(removed.hsm_id).await {
            tracing::error!(group = %group, key = %name, hsm_id = %removed.hsm_id.to_hex(), error = %e, "key removed from state but the HSM object could not be destroyed; remove it with the HSM tools");
        }
        tracing::info!(group = %group, key = %name, identity = by, pushed = removed.azure_version.is_some(), "key deleted locally (cloud untouched)");
        Ok(())
    }
}
