//! "Purge key material on cloud" of a soft-deleted Azure key: refused at request time where the
//! vault cannot do it, and run once a second admin approved it. A purge makes the Azure versions
//! of the local keys gone for good, so they are forgotten (the keys stay in the HSM and can be
//! synced again).

use super::executor::{rfc3339, run_with, send_once};
use super::kek::purge_with_retry;
use super::sign_in::credential_token;
use super::{JobError, Jobs};
use crate::azure::{AzureError, KeyVaultError, RecoveryLevel};
use crate::logs::Event;
use crate::model::{GroupName, JobId, KeyGroup, PurgeStep};

/// Refuses a purge at request time, before a second admin is asked, when the vault cannot do
/// it: the deleted key's recovery level (or, while Azure does not list it yet, the vault's, from
/// a live key) does not allow a purge (purge protection; Azure purges it on its scheduled
/// date), or the key is live and not deleted at all. A key listed nowhere may be inside Azure's
/// "being deleted" window: that purge is let through (it waits the window out).
pub(super) async fn purge_possible(jobs: &Jobs, group: &GroupName) -> Result<(), JobError> {
    let g = jobs.service().group_record(group).await?;
    let t = credential_token(jobs, &g).await?;
    let kv = jobs.azure().keyvault();
    let (vault, name) = (g.vault.as_str(), g.name.as_str());
    let forbidden = |level: &RecoveryLevel, when: String| {
        JobError::Invalid(format!(
            "vault {vault} does not allow a purge: its recovery level is {} (purge protection), so Azure would refuse it; {when}",
            level.as_str()
        ))
    };
    match kv.get_deleted_key(&t, vault, name).await {
        Ok(d) => match &d.bundle.attributes.recovery_level {
            Some(level) if level.purge_protected() => {
                let date = d
                    .scheduled_purge_date
                    .map_or_else(|| "its scheduled purge date".to_owned(), rfc3339);
                Err(forbidden(level, format!("Azure purges {name} on {date}")))
            }
            _ => Ok(()),
        },
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
            match kv.get_key(&t, vault, name, None).await {
                Ok(b) => match &b.attributes.recovery_level {
                    Some(level) if level.purge_protected() => {
                        Err(forbidden(level, format!("and key {name} is not deleted")))
                    }
                    _ => Err(JobError::Invalid(format!(
                        "key {name} in vault {vault} is not deleted: there is nothing to purge (delete it on the cloud first)"
                    ))),
                },
                Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// "Purge key material on cloud", run once a second admin approved it: the group's
/// soft-deleted Azure key purged for good (a purge right after a delete on cloud waits out
/// Azure's "being deleted" window). The purge is journalled ([`PurgeStep::PurgeSent`]) before it
/// is sent; a restarted job sends it again, and where Azure then lists neither a deleted key nor
/// a live key of that name, the purge sent before the restart went through (a purge cannot be
/// undone, so nothing else can have removed the deleted key but Azure's own scheduled purge,
/// which has the same effect). The Azure versions of the local keys are then forgotten.
pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    run_with(jobs, id, true, async |group| {
        let by = jobs.service().job(id).await?.started_by;
        purge(jobs, id, group, &by).await.inspect_err(|e| match e {
            // Refused by the cloud's state (purge protection, nothing to purge): a skip.
            JobError::Invalid(why) => {
                tracing::warn!(event = Event::AzureKeyNotPurged.as_str(), service = "azure", job = id.get(), group = %group.name,
                    vault = %group.vault, identity = %by, "{why}");
            }
            e => {
                tracing::error!(event = Event::AzureKeyPurgeFailed.as_str(), service = "azure", job = id.get(), group = %group.name,
                    vault = %group.vault, identity = %by, "Purge of the soft-deleted Azure key {}/{} failed: {e}", group.vault, group.name);
            }
        })
    })
    .await
}

async fn purge(jobs: &Jobs, id: JobId, group: &KeyGroup, by: &str) -> Result<String, JobError> {
    let svc = jobs.service();
    let kv = jobs.azure().keyvault();
    let vault = group.vault.as_str();
    let name = group.name.as_str();
    let (token, sent_before) = send_once(
        jobs,
        id,
        group,
        PurgeStep::PurgeSent,
        format!("Purging the soft-deleted Azure key {vault}/{name} for good"),
        500,
    )
    .await?;
    let not_purged = |e: AzureError| JobError::Purge {
        vault: vault.to_owned(),
        source: Box::new(e),
    };
    match kv.purge_deleted_key(&token, vault, name).await {
        Ok(()) => {}
        // A purge right after a delete meets 409 ObjectIsBeingDeleted: waited out.
        Err(AzureError::KeyVault(KeyVaultError::BeingDeleted { .. })) => {
            purge_with_retry(jobs, &token, vault, name)
                .await
                .map_err(|e| match e {
                    JobError::Azure(a) => not_purged(a),
                    e => e,
                })?;
        }
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
            match kv.get_key(&token, vault, name, None).await {
                Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) if sent_before => {}
                Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                    return Err(JobError::Invalid(format!(
                        "nothing to purge: vault {vault} lists no soft-deleted key {name} (not deleted, or already purged)"
                    )));
                }
                Ok(_) => {
                    return Err(JobError::Invalid(format!(
                        "nothing purged: key {name} in vault {vault} is live, not deleted (recovered since the purge was requested?)"
                    )));
                }
                Err(e) => return Err(not_purged(e)),
            }
        }
        Err(AzureError::KeyVault(KeyVaultError::PurgeProtected { .. })) => {
            let date = kv
                .get_deleted_key(&token, vault, name)
                .await
                .ok()
                .and_then(|d| d.scheduled_purge_date)
                .map_or_else(|| "its scheduled purge date".to_owned(), rfc3339);
            return Err(JobError::Invalid(format!(
                "vault {vault} has purge protection: it does not allow a purge; Azure purges {name} on {date}"
            )));
        }
        Err(e) => return Err(not_purged(e)),
    }
    svc.forget_azure_versions(&group.name).await?;
    tracing::info!(event = Event::AzureKeyPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault, identity = by,
        "Soft-deleted Azure key {vault}/{name} purged for good");
    Ok(format!(
        "Azure key {vault}/{name} purged for good; local keys untouched (they may be pushed again)"
    ))
}
