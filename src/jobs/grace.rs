//! The end of a rotation's grace period: the previous Azure versions recorded at the rotation
//! are disabled, then the grace entry is cleared. Run by the scheduler, not as a job.

use super::sign_in::credential_token;
use super::{JobError, Jobs};
use crate::azure::{AzureError, KeyUpdate, KeyVaultError};
use crate::logs::Event;
use crate::model::GroupName;

/// Disables each previous version recorded at the rotation, then clears the grace entry.
pub(super) async fn finish_grace(jobs: &Jobs, group: &GroupName) -> Result<(), JobError> {
    let svc = jobs.service();
    let Some(pending) = svc.pending_grace_of(group).await else {
        return Ok(());
    };
    let g = svc.group_record(group).await?;
    let t = credential_token(jobs, &g).await?;
    let kv = jobs.azure().keyvault();
    for version in &pending.versions {
        let update = KeyUpdate {
            enabled: Some(false),
            ..KeyUpdate::default()
        };
        match kv
            .update_key(
                &t,
                g.vault.as_str(),
                g.name.as_str(),
                version.as_str(),
                &update,
            )
            .await
        {
            Ok(b) => {
                tracing::info!(event = Event::AzureKeyVersionDisabled.as_str(), service = "azure", group = %g.name, vault = %g.vault,
                    kid = b.kid(), version = %version, "Grace period over: previous version {version} of {}/{} disabled", g.vault, g.name);
            }
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                tracing::warn!(event = Event::AzureKeyVersionMissing.as_str(), service = "azure", group = %g.name, vault = %g.vault,
                    version = %version, "Grace period over: previous version {version} of {}/{} is no longer in Azure; nothing to disable", g.vault, g.name);
            }
            // Logged by the scheduler (`rotation.grace_failed`), which retries later.
            Err(e) => return Err(e.into()),
        }
    }
    svc.clear_grace(group).await?;
    Ok(())
}
