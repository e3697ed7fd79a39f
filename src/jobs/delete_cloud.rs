//! "Delete key material on cloud", run once a second admin approved it: every version of the
//! group's Azure key deleted, the deleted key awaited through Azure's 404 window, purged when
//! the recovery level allows, else the scheduled purge date recorded. Each request is
//! journalled ([`DeleteCloudStep`]) before it is sent, so a restart resumes from what was sent.
//!
//! Local keys are never touched; once the Azure key is gone for good their Azure versions are
//! forgotten (the keys stay in the HSM and can be synced again).

use super::executor::{rfc3339, run_with};
use super::kek::{purge_with_retry, wait_deleted_visible};
use super::sign_in::sign_in;
use super::{JobError, Jobs};
use crate::azure::{AzureError, KeyVaultError, RecoveryLevel};
use crate::logs::Event;
use crate::model::{DeleteCloudStep, JobId, KeyGroup};

pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    run_with(jobs, id, true, async |group| {
        let by = jobs.service().job(id).await?.started_by;
        delete(jobs, id, group, &by).await.inspect_err(|e| {
            tracing::error!(event = Event::AzureKeyDeleteFailed.as_str(), service = "azure", job = id.get(), group = %group.name,
                vault = %group.vault, identity = %by, "Delete on cloud of {}/{} failed: {e}", group.vault, group.name);
        })
    })
    .await
}

/// The recovery level as the log and the job's steps name it.
fn level_name(level: Option<&RecoveryLevel>) -> &str {
    level.map_or("unknown", |l| l.as_str())
}

async fn delete(jobs: &Jobs, id: JobId, group: &KeyGroup, by: &str) -> Result<String, JobError> {
    let svc = jobs.service();
    let kv = jobs.azure().keyvault();
    let vault = group.vault.as_str();
    let name = group.name.as_str();
    // What this job sent before a restart, from its typed journal.
    let job = svc.job(id).await?;
    let sent = |step: DeleteCloudStep| job.journalled(&step.into());
    let (delete_sent, purge_sent) = (
        sent(DeleteCloudStep::DeleteSent),
        sent(DeleteCloudStep::PurgeSent),
    );
    let token = sign_in(jobs, id, group).await?;
    // The key's recovery level, read before the delete: where there is no soft-delete (recovery
    // level `Purgeable`), a 404 on the key after a possibly-sent delete means it is gone for
    // good, with nothing to purge and no deleted key ever to wait for.
    let mut no_soft_delete = sent(DeleteCloudStep::NoSoftDelete);
    match kv.get_key(&token, vault, name, None).await {
        Ok(b) if matches!(b.attributes.recovery_level, Some(RecoveryLevel::Purgeable)) => {
            if !no_soft_delete {
                svc.job_record(
                    id,
                    DeleteCloudStep::NoSoftDelete,
                    "The vault has no soft-delete (recovery level Purgeable): the delete is final",
                    Some(100),
                )
                .await?;
            }
            no_soft_delete = true;
        }
        Ok(_) | Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {}
        Err(e) => return Err(e.into()),
    }
    svc.job_record(
        id,
        DeleteCloudStep::DeleteSent,
        format!("Deleting Azure key {vault}/{name} (all versions); local keys are not touched"),
        Some(200),
    )
    .await?;
    let (level, kid) = match kv.delete_key(&token, vault, name).await {
        Ok(d) => (
            d.bundle.attributes.recovery_level.clone(),
            d.bundle.kid().to_owned(),
        ),
        // No soft-delete, and the key is gone: the delete went through (its answer was lost,
        // the client's retry met the 404, or it was sent before a restart). Nothing to purge.
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) if no_soft_delete => {
            let n = svc.forget_azure_versions(&group.name).await?;
            tracing::warn!(event = Event::AzureKeyNotPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault,
                identity = by, "Azure key {vault}/{name} deleted for good: the vault has no soft-delete (recovery level Purgeable) and no longer has the key, although the delete's answer was lost; nothing to purge");
            return Ok(format!(
                "The vault has no soft-delete and no longer has key {name}: the delete went through although its answer was lost, so the Azure key is gone for good and there is nothing to purge ({n} local key(s) may be pushed again; they were not touched)"
            ));
        }
        // Deleted before a restart (or behind our back): carry on with the deleted key.
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
            match kv.get_deleted_key(&token, vault, name).await {
                Ok(d) => (
                    d.bundle.attributes.recovery_level.clone(),
                    d.bundle.kid().to_owned(),
                ),
                // The purge this job sent before a restart went through.
                Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) if purge_sent => {
                    let n = svc.forget_azure_versions(&group.name).await?;
                    tracing::info!(event = Event::AzureKeyPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault,
                        identity = by, "Azure key {vault}/{name} purged (the purge went through before the daemon restarted)");
                    return Ok(format!(
                        "Azure key {vault}/{name} deleted and purged (the purge went through before the daemon restarted); {n} local key(s) kept in the HSM and may be pushed again"
                    ));
                }
                // The delete this job sent before a restart went through, and the deleted key
                // is still inside Azure's window where it is listed nowhere.
                Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) if delete_sent => {
                    wait_deleted_visible(jobs, &token, vault, name, None)
                        .await?
                        .map(|d| {
                            (
                                d.bundle.attributes.recovery_level.clone(),
                                d.bundle.kid().to_owned(),
                            )
                        })
                        .unwrap_or((None, name.to_owned()))
                }
                Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                    return Err(JobError::NothingToDelete {
                        vault: vault.to_owned(),
                        name: name.to_owned(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(event = Event::AzureKeyDeleted.as_str(), service = "azure", job = id.get(), group = %group.name, vault, kid = %kid,
        identity = by, "Azure key {vault}/{name} deleted with all its versions (recovery level {})", level_name(level.as_ref()));
    svc.job_record(
        id,
        DeleteCloudStep::Deleted,
        format!(
            "Azure key {vault}/{name} deleted (recovery level {})",
            level_name(level.as_ref())
        ),
        Some(500),
    )
    .await?;
    if matches!(level, Some(RecoveryLevel::Purgeable)) {
        let n = svc.forget_azure_versions(&group.name).await?;
        tracing::warn!(event = Event::AzureKeyNotPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault, kid = %kid,
            identity = by, "Azure key {vault}/{name} not purged: the vault has no soft-delete (recovery level Purgeable), so the delete removed it for good");
        return Ok(format!(
            "The vault has no soft-delete: the Azure key is gone for good ({n} local key(s) may be pushed again; they were not touched)"
        ));
    }
    svc.job_step(id, "Waiting for the deleted key to be listed", Some(600))
        .await?;
    let deleted = wait_deleted_visible(jobs, &token, vault, name, level.as_ref()).await?;
    let level = level.or_else(|| {
        deleted
            .as_ref()
            .and_then(|d| d.bundle.attributes.recovery_level.clone())
    });
    match (&deleted, &level) {
        (Some(_), Some(l)) if l.purge_allowed() => {
            svc.job_record(
                id,
                DeleteCloudStep::PurgeSent,
                "Purging the deleted key",
                Some(800),
            )
            .await?;
            purge_with_retry(jobs, &token, vault, name).await?;
            let n = svc.forget_azure_versions(&group.name).await?;
            tracing::info!(event = Event::AzureKeyPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault, kid = %kid,
                identity = by, "Azure key {vault}/{name} purged (recovery level {})", l.as_str());
            Ok(format!(
                "Azure key {vault}/{name} deleted and purged; {n} local key(s) kept in the HSM and may be pushed again"
            ))
        }
        (Some(d), l) => {
            let date = d
                .scheduled_purge_date
                .map_or_else(|| "its scheduled purge date".to_owned(), rfc3339);
            tracing::warn!(event = Event::AzureKeyNotPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault, kid = %kid,
                identity = by, scheduled_purge_date = d.scheduled_purge_date,
                "Azure key {vault}/{name} not purged: the vault's recovery level {} does not allow a purge (purge protection); Azure purges it on {date}", level_name(l.as_ref()));
            Ok(format!(
                "Azure key {vault}/{name} deleted but not purged: the vault's recovery level {} does not allow a purge (purge protection); Azure purges it on {date}. Until then `byokctl group recover {name}` brings it back",
                level_name(l.as_ref())
            ))
        }
        (None, _) => {
            let n = svc.forget_azure_versions(&group.name).await?;
            tracing::warn!(event = Event::AzureKeyNotPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault, kid = %kid,
                identity = by, "Azure key {vault}/{name} not purged: the vault lists no deleted key (no soft-delete), so the delete removed it for good");
            Ok(format!(
                "The vault has no soft-delete: the Azure key is gone for good ({n} local key(s) may be pushed again)"
            ))
        }
    }
}
