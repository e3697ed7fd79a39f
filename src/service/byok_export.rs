//! Offline transfer on the appliance's side: the `.byok` file of an approved export, wrapped
//! inside the HSM under the officer's KEK exactly as a push wraps a key, and the record of the
//! Azure version the officer's manual import made.
//!
//! Owns the state checks of both (the key is the one the export was approved for; no job works
//! on a key whose version is recorded) and their service-log records. Never calls Azure: the
//! job runner confirms a manual import with Azure before [`Service::record_manual_import`].

use super::{Service, ServiceError};
use crate::azure::endpoints::CloudEndpoints;
use crate::dual_control::{Approved, ExportByok};
use crate::logs::Event;
use crate::model::{AzureVersion, GroupName, HsmKeyId, KeyGroup, KeyName};

/// An approved export's file, kept in memory for its requester to download.
#[derive(Clone)]
pub struct ByokFile {
    pub group: String,
    pub key: String,
    pub kek_kid: String,
    /// The admin who asked for it: the only one who may download it.
    pub requested_by: String,
    /// The `.byok` JSON, byte for byte as the Azure CLI reads it.
    pub json: Vec<u8>,
}

impl std::fmt::Debug for ByokFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByokFile")
            .field("group", &self.group)
            .field("key", &self.key)
            .field("kek_kid", &self.kek_kid)
            .field("bytes", &self.json.len())
            .finish()
    }
}

impl Service {
    /// The host a group's KEK and keys live on: its vault or Managed HSM pool in the configured
    /// cloud.
    pub fn target_host(&self, group: &KeyGroup) -> Result<String, ServiceError> {
        CloudEndpoints::of(self.config().azure.cloud)
            .host(&group.target)
            .map_err(|e| ServiceError::Conflict(format!("key group {}: {e}", group.name)))
    }

    /// For an export request: the key's HSM object and the host its KEK must be on.
    pub async fn byok_export_target(
        &self,
        group: &GroupName,
        key: &KeyName,
    ) -> Result<(HsmKeyId, String), ServiceError> {
        let g = self.group_record(group).await?;
        let k = self.key_record(group, key).await?;
        Ok((k.hsm_id, self.target_host(&g)?))
    }

    /// Wraps the key a second admin approved exporting, inside the HSM under the approved KEK,
    /// into its `.byok` file. Re-checks first that the key is still the one the export was
    /// requested for and that the group's target is still the KEK's host.
    pub async fn export_byok_approved(
        &self,
        approved: &Approved<ExportByok>,
    ) -> Result<ByokFile, ServiceError> {
        let a = approved.action();
        let group = GroupName::try_from(a.group.clone())?;
        let name = KeyName::try_from(a.key.clone())?;
        let (hsm_id, host) = self.byok_export_target(&group, &name).await?;
        if hsm_id != a.hsm_id {
            return Err(ServiceError::Conflict(format!(
                "key {group}/{name} is not the key approval {} was requested for: that one was deleted and another was given its name since; nothing was exported",
                approved.id()
            )));
        }
        if host != a.target_host {
            return Err(ServiceError::Conflict(format!(
                "key group {group}'s target is now {host}, not {} where the KEK {} is; nothing was exported; request the export again with a KEK of {host}",
                a.target_host, a.kek_kid
            )));
        }
        let key = self.key_record(&group, &name).await?;
        let ciphertext = self.hsm().wrap_for_transfer(hsm_id, a.kek.public()).await?;
        let by = approved.by();
        if self.hsm().wrap_report().strategy_for(key.key_type).ok()
            == Some(crate::hsm::WrapStrategy::Host)
        {
            tracing::warn!(event = Event::HsmWrapHost.as_str(), service = "hsm", group = %group, key = %name, identity = %by,
                "Key {name} was wrapped in host memory (hsm.allow_host_wrap): the key left the token under an ephemeral key");
        }
        let generator = crate::azure::transfer_blob::generator_of(self.hsm().report());
        let json = crate::azure::transfer_blob::byok_file(a.kek.kid(), &ciphertext, &generator)
            .map_err(|e| {
                ServiceError::Conflict(format!("the .byok file could not be written: {e}"))
            })?;
        tracing::warn!(event = Event::KeyByokExported.as_str(), service = "hsm", group = %group, key = %name, identity = %by,
            approval = %approved.id(), requested_by = %approved.approval().requested_by, approved_by = %approved.approver(),
            kid = a.kek.kid(), kek_bits = a.kek.bits(), check_digits = %key.check_digits, bytes = json.len(),
            "Key {group}/{name} (check digits {}) wrapped in the HSM under {} into a .byok file by {by}", key.check_digits, a.kek.kid());
        Ok(ByokFile {
            group: a.group.clone(),
            key: a.key.clone(),
            kek_kid: a.kek.kid().to_owned(),
            requested_by: approved.approval().requested_by.clone(),
            json,
        })
    }

    /// Records `version` as key `name`'s Azure version after a manual import that the job
    /// runner confirmed with Azure (the version holds the public key of HSM object `hsm_id`).
    /// Refused if the key is no longer that object or a job works on it. Returns the version it
    /// replaces, if any.
    pub async fn record_manual_import(
        &self,
        (group, name): (&GroupName, &KeyName),
        hsm_id: HsmKeyId,
        version: &AzureVersion,
        by: &str,
    ) -> Result<Option<AzureVersion>, ServiceError> {
        let mut data = self.inner.data.lock().await;
        let id = (group.clone(), name.clone());
        let key = data
            .state
            .keys
            .get(&id)?
            .ok_or_else(|| ServiceError::not_found("key", format!("{group}/{name}")))?;
        if key.hsm_id != hsm_id {
            return Err(ServiceError::Conflict(format!(
                "key {group}/{name} was replaced while Azure was asked; nothing was recorded; run record-import again"
            )));
        }
        if let Some(job) = super::busy::holding_key(&data.state, group, name) {
            return Err(super::busy::refusal(
                job,
                format!("the import of key {group}/{name} cannot be recorded"),
            ));
        }
        let previous = key.azure_version.clone();
        let check_digits = key.check_digits.clone();
        if let Some(k) = data.state.keys.get_mut(&id)? {
            k.azure_version = Some(version.clone());
        }
        if let Err(e) = data.commit().await {
            // The rollback reads nothing (the key is in the overlay since the change).
            let _ = data.state.keys.insert(id, key);
            return Err(e);
        }
        drop(data);
        tracing::warn!(event = Event::KeyImportRecorded.as_str(), service = "azure", group = %group, key = %name, identity = by,
            version = %version, previous = previous.as_ref().map(|v| v.as_str()), check_digits = %check_digits,
            "Key {group}/{name}: the manual import's version {version} recorded by {by} (Azure shows the HSM key's public key){}",
            previous.as_ref().map(|v| format!("; it replaces version {v}")).unwrap_or_default());
        Ok(previous)
    }
}
