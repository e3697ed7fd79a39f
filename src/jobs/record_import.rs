//! Recording a manual import: after an officer imported a `.byok` file with the Azure CLI, the
//! Azure version it made becomes the key's version, so the key list, drift checks and rotation
//! go on as after a push.
//!
//! Runs at request time, not as a job: it is one read of Azure and one local write, with nothing
//! to resume. Must never record a version Azure does not show with the HSM key's public key.

use super::ports::SignedIn;
use super::sign_in::credential_token;
use super::sync_resolve::confirm_public_key;
use super::{JobError, Jobs};
use crate::logs::Event;
use crate::model::{AzureVersion, GroupName, KeyName};
use crate::service::Designated;

/// What recording a manual import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedImport {
    pub version: AzureVersion,
    /// The version it replaced, if the key had one.
    pub previous: Option<AzureVersion>,
}

impl Jobs {
    /// Reads `version` of the group's Azure key, checks it holds key `key` (RSA and EC keys: the
    /// JWK Azure shows must be the HSM key's public key; an AES key: Azure shows an oct key, whose
    /// material it never returns), then records it as the key's version.
    /// Designated device only (the recorded version is what rotation and drift checks act on).
    pub async fn record_import(
        &self,
        _: &Designated,
        (group, key): (&GroupName, &KeyName),
        version: &AzureVersion,
        by: &str,
    ) -> Result<RecordedImport, JobError> {
        let svc = self.service();
        let g = svc.group_record(group).await?;
        let k = svc.key_record(group, key).await?;
        let identity = svc.hsm().key_identity(k.hsm_id).await?;
        let token = credential_token(self, &g).await?;
        let vault = SignedIn::new(self.azure().keyvault(), token, &g.target);
        if let Err(e) = confirm_public_key(&vault, g.name.as_str(), version, &identity, key).await {
            tracing::warn!(event = Event::KeyImportRecordRefused.as_str(), service = "azure", group = %group, key = %key,
                identity = by, target = %g.target, version = %version, error = %e,
                "Recording version {version} of {}/{} for key {group}/{key} refused: {e}", g.target, g.name);
            return Err(e);
        }
        let previous = svc
            .record_manual_import((group, key), k.hsm_id, version, by)
            .await?;
        Ok(RecordedImport {
            version: version.clone(),
            previous,
        })
    }
}
