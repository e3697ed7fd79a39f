//! Cloud-side lifecycle of a group's Azure key: "Delete key material on cloud" (every version
//! deleted, the deleted key awaited through Azure's 404 window, purged when the recovery level
//! allows, else the scheduled purge date recorded), "Recover key material on cloud", "Purge key
//! material on cloud" of a soft-deleted key, and disabling the previous versions once a rotation's grace period ends.
//!
//! Local keys are never touched here, except that a purge makes their Azure versions gone for
//! good, so they are forgotten (the keys stay in the HSM and can be pushed again).

use super::push::{purge_with_retry, run_with, wait_deleted_visible};
use super::sign_in::{credential_token, sign_in};
use super::{JobError, Jobs};
use crate::azure::{AccessToken, AzureError, KeyUpdate, KeyVaultError, RecoveryLevel};
use crate::logs::Event;
use crate::model::JobId;
use crate::model::{DeleteCloudStep, GroupName, JobStep, KeyGroup, PurgeStep, RecoverStep};

pub(super) async fn run_delete(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
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
                    return Err(JobError::Failed(format!(
                        "vault {vault} has no key {name} and no deleted key of that name: nothing to delete"
                    )));
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
                .map_or_else(|| "its scheduled purge date".to_owned(), format_time);
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

fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// A token for a group's credential, outside a job.
async fn token(jobs: &Jobs, group: &KeyGroup) -> Result<AccessToken, JobError> {
    credential_token(jobs, group).await
}

/// The start of a cloud job that sends one request (recover, purge): the outbound allowlist
/// brought up to date, a token for the group's credential, and `step` journalled before the
/// request is sent, unless a run before a restart journalled it already. Returns the token and
/// whether the request may have been sent before the restart (the caller then takes "already
/// done" for success).
async fn send_once(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    step: impl Into<JobStep>,
    message: String,
    progress: u16,
) -> Result<(AccessToken, bool), JobError> {
    let svc = jobs.service();
    let step = step.into();
    let sent_before = svc.job(id).await?.journalled(&step);
    let token = sign_in(jobs, id, group).await?;
    if !sent_before {
        svc.job_record(id, step, message, Some(progress)).await?;
    }
    Ok((token, sent_before))
}

/// "Recover key material on cloud": brings the group's soft-deleted Azure key back with all
/// its versions. The recover is journalled ([`RecoverStep::RecoverSent`]) before it is sent; a
/// restarted job sends it again, and where Azure then lists no deleted key but the key is live,
/// the recover sent before the restart went through.
pub(super) async fn run_recover(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    run_with(jobs, id, true, async |group| {
        let by = jobs.service().job(id).await?.started_by;
        recover(jobs, id, group, &by).await.inspect_err(|e| {
            tracing::error!(event = Event::AzureKeyRecoverFailed.as_str(), service = "azure", job = id.get(), group = %group.name,
                vault = %group.vault, identity = %by, "Recovery of the soft-deleted Azure key {}/{} failed: {e}", group.vault, group.name);
        })
    })
    .await
}

async fn recover(jobs: &Jobs, id: JobId, group: &KeyGroup, by: &str) -> Result<String, JobError> {
    let kv = jobs.azure().keyvault();
    let vault = group.vault.as_str();
    let name = group.name.as_str();
    let (token, sent_before) = send_once(
        jobs,
        id,
        group,
        RecoverStep::RecoverSent,
        format!("Recovering the soft-deleted Azure key {vault}/{name} (all versions)"),
        300,
    )
    .await?;
    let outcome = kv.recover_deleted_key(&token, vault, name).await;
    let bundle = match outcome {
        Ok(bundle) => bundle,
        // No deleted key of that name: the recover sent before a restart went through (the key
        // is live), or there is nothing to recover.
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
            match kv.get_key(&token, vault, name, None).await {
                Ok(bundle) if sent_before => bundle,
                Ok(_) => {
                    return Err(JobError::Invalid(format!(
                        "nothing to recover: key {name} in vault {vault} is live, not deleted"
                    )));
                }
                Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                    return Err(JobError::Invalid(format!(
                        "nothing to recover: vault {vault} has no soft-deleted key {name} (never deleted, or purged); `byokctl group sync {name}` pushes the local keys again"
                    )));
                }
                Err(e) => return Err(not_recovered(vault, e)),
            }
        }
        Err(e) => return Err(not_recovered(vault, e)),
    };
    tracing::warn!(event = Event::AzureKeyRecovered.as_str(), service = "azure", job = id.get(), group = %group.name, vault,
        kid = bundle.kid(), version = bundle.version(), identity = by,
        "Soft-deleted Azure key {vault}/{name} recovered with all its versions");
    Ok(format!(
        "Azure key {vault}/{name} recovered with all its versions (current {})",
        bundle.version()
    ))
}

/// A recover that Azure did not carry out (unreachable vault, refusal), said as what the
/// operator can do about it.
fn not_recovered(vault: &str, e: AzureError) -> JobError {
    JobError::Recover {
        vault: vault.to_owned(),
        source: Box::new(e),
    }
}

/// Refuses a purge at request time, before a second admin is asked, when the vault cannot do
/// it: the deleted key's recovery level (or, while Azure does not list it yet, the vault's, from
/// a live key) does not allow a purge (purge protection; Azure purges it on its scheduled
/// date), or the key is live and not deleted at all. A key listed nowhere may be inside Azure's
/// "being deleted" window: that purge is let through (it waits the window out).
pub(super) async fn purge_possible(jobs: &Jobs, group: &GroupName) -> Result<(), JobError> {
    let g = jobs.service().group_record(group).await?;
    let t = token(jobs, &g).await?;
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
                    .map_or_else(|| "its scheduled purge date".to_owned(), format_time);
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
pub(super) async fn run_purge(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
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
                .map_or_else(|| "its scheduled purge date".to_owned(), format_time);
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

/// Disables each previous version recorded at the rotation, then clears the grace entry.
pub(super) async fn finish_grace(jobs: &Jobs, group: &GroupName) -> Result<(), JobError> {
    let svc = jobs.service();
    let Some(pending) = svc.pending_grace_of(group).await else {
        return Ok(());
    };
    let g = svc.group_record(group).await?;
    let t = token(jobs, &g).await?;
    let kv = jobs.azure().keyvault();
    for version in &pending.versions {
        let update = KeyUpdate {
            enabled: Some(false),
            ..KeyUpdate::default()
        };
        match kv
            .update_key(&t, g.vault.as_str(), g.name.as_str(), version, &update)
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
