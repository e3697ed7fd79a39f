//! "Recover key material on cloud": brings the group's soft-deleted Azure key back with all its
//! versions (designated device only). Local keys are untouched.

use super::executor::{run_with, send_once};
use super::{JobError, Jobs};
use crate::azure::{AzureError, KeyVaultError};
use crate::logs::Event;
use crate::model::{JobId, KeyGroup, RecoverStep};

/// "Recover key material on cloud": brings the group's soft-deleted Azure key back with all
/// its versions. The recover is journalled ([`RecoverStep::RecoverSent`]) before it is sent; a
/// restarted job sends it again, and where Azure then lists no deleted key but the key is live,
/// the recover sent before the restart went through.
pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
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
