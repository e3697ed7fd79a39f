//! "Delete key material on cloud", run once a second admin approved it: every version of the
//! group's Azure key deleted, the deleted key awaited through Azure's 404 window, purged when
//! the recovery level allows, else the scheduled purge date recorded. Each request is
//! journalled ([`DeleteCloudStep`]) before it is sent, so a restart resumes from what was sent.
//!
//! Local keys are never touched; once the Azure key is gone for good their Azure versions are
//! forgotten (the keys stay in the HSM and can be synced again).

use super::executor::{rfc3339, run_signed_in};
use super::kek::{purge_with_retry, wait_deleted_visible};
use super::ports::{JobStore, SignedIn, Vault};
use super::{JobError, Jobs};
use crate::azure::{AzureError, KeyVaultError, RecoveryLevel};
use crate::logs::Event;
use crate::model::{DeleteCloudStep, JobId, KeyGroup};
use crate::service::Designated;

pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    let machine = async |vault: &SignedIn<'_>, group: &KeyGroup, by: &str, _: &Designated| {
        delete(vault, jobs.service(), id, group, by).await
    };
    run_signed_in(jobs, id, machine, |group, by, e| {
        tracing::error!(event = Event::AzureKeyDeleteFailed.as_str(), service = "azure", job = id.get(), group = %group.name,
            vault = %group.target.name(), identity = %by, "Delete on cloud of {}/{} failed: {e}", group.target.name(), group.name);
    })
    .await
}

/// The recovery level as the log and the job's steps name it.
fn level_name(level: Option<&RecoveryLevel>) -> &str {
    level.map_or("unknown", |l| l.as_str())
}

/// The delete's state machine, on a signed-in vault and the job's record.
async fn delete(
    kv: &impl Vault,
    store: &impl JobStore,
    id: JobId,
    group: &KeyGroup,
    by: &str,
) -> Result<String, JobError> {
    let vault = group.target.name();
    // "The vault" or "The pool" (`the` in mid-sentence), from the group's typed target.
    let (the, the_cap) = (group.target.kind().the(), group.target.kind().the_capital());
    let name = group.name.as_str();
    // What this job sent before a restart, from its typed journal.
    let journal = store.journal(id).await?;
    let sent = |step: DeleteCloudStep| journal.contains(&step.into());
    let (delete_sent, purge_sent) = (
        sent(DeleteCloudStep::DeleteSent),
        sent(DeleteCloudStep::PurgeSent),
    );
    // The key's recovery level, read before the delete: where there is no soft-delete (recovery
    // level `Purgeable`), a 404 on the key after a possibly-sent delete means it is gone for
    // good, with nothing to purge and no deleted key ever to wait for.
    let mut no_soft_delete = sent(DeleteCloudStep::NoSoftDelete);
    match kv.get_key(name).await {
        Ok(b) if matches!(b.attributes.recovery_level, Some(RecoveryLevel::Purgeable)) => {
            if !no_soft_delete {
                store.record(id, DeleteCloudStep::NoSoftDelete.into(), format!("{the_cap} has no soft-delete (recovery level Purgeable): the delete is final"),
                    Some(100),
                )
                .await?;
            }
            no_soft_delete = true;
        }
        Ok(_) | Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {}
        Err(e) => return Err(e.into()),
    }
    store
        .record(
            id,
            DeleteCloudStep::DeleteSent.into(),
            format!("Deleting Azure key {vault}/{name} (all versions); local keys are not touched"),
            Some(200),
        )
        .await?;
    let (level, kid) = match kv.delete_key(name).await {
        Ok(d) => (
            d.bundle.attributes.recovery_level.clone(),
            d.bundle.kid().to_owned(),
        ),
        // No soft-delete, and the key is gone: the delete went through (its answer was lost,
        // the client's retry met the 404, or it was sent before a restart). Nothing to purge.
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) if no_soft_delete => {
            let n = store.forget_azure_versions(&group.name).await?;
            tracing::warn!(event = Event::AzureKeyNotPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault,
                identity = by, "Azure key {vault}/{name} deleted for good: {the} has no soft-delete (recovery level Purgeable) and no longer has the key, although the delete's answer was lost; nothing to purge");
            return Ok(format!(
                "{the_cap} has no soft-delete and no longer has key {name}: the delete went through although its answer was lost, so the Azure key is gone for good and there is nothing to purge ({n} local key(s) may be pushed again; they were not touched)"
            ));
        }
        // Deleted before a restart (or behind our back): carry on with the deleted key.
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
            match kv.get_deleted_key(name).await {
                Ok(d) => (
                    d.bundle.attributes.recovery_level.clone(),
                    d.bundle.kid().to_owned(),
                ),
                // The purge this job sent before a restart went through.
                Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) if purge_sent => {
                    let n = store.forget_azure_versions(&group.name).await?;
                    tracing::info!(event = Event::AzureKeyPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault,
                        identity = by, "Azure key {vault}/{name} purged (the purge went through before the daemon restarted)");
                    return Ok(format!(
                        "Azure key {vault}/{name} deleted and purged (the purge went through before the daemon restarted); {n} local key(s) kept in the HSM and may be pushed again"
                    ));
                }
                // The delete this job sent before a restart went through, and the deleted key
                // is still inside Azure's window where it is listed nowhere.
                Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) if delete_sent => {
                    wait_deleted_visible(kv, name, None)
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
                        target: group.target.clone(),
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
    store
        .record(
            id,
            DeleteCloudStep::Deleted.into(),
            format!(
                "Azure key {vault}/{name} deleted (recovery level {})",
                level_name(level.as_ref())
            ),
            Some(500),
        )
        .await?;
    if matches!(level, Some(RecoveryLevel::Purgeable)) {
        let n = store.forget_azure_versions(&group.name).await?;
        tracing::warn!(event = Event::AzureKeyNotPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault, kid = %kid,
            identity = by, "Azure key {vault}/{name} not purged: {the} has no soft-delete (recovery level Purgeable), so the delete removed it for good");
        return Ok(format!(
            "{the_cap} has no soft-delete: the Azure key is gone for good ({n} local key(s) may be pushed again; they were not touched)"
        ));
    }
    store
        .note(
            id,
            "Waiting for the deleted key to be listed".into(),
            Some(600),
        )
        .await?;
    let deleted = wait_deleted_visible(kv, name, level.as_ref()).await?;
    let level = level.or_else(|| {
        deleted
            .as_ref()
            .and_then(|d| d.bundle.attributes.recovery_level.clone())
    });
    match (&deleted, &level) {
        (Some(_), Some(l)) if l.purge_allowed() => {
            store
                .record(
                    id,
                    DeleteCloudStep::PurgeSent.into(),
                    "Purging the deleted key".into(),
                    Some(800),
                )
                .await?;
            purge_with_retry(kv, name).await?;
            let n = store.forget_azure_versions(&group.name).await?;
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
                "Azure key {vault}/{name} not purged: {the}'s recovery level {} does not allow a purge (purge protection); Azure purges it on {date}", level_name(l.as_ref()));
            Ok(format!(
                "Azure key {vault}/{name} deleted but not purged: {the}'s recovery level {} does not allow a purge (purge protection); Azure purges it on {date}. Until then `byokctl group recover {name}` brings it back",
                level_name(l.as_ref())
            ))
        }
        (None, _) => {
            let n = store.forget_azure_versions(&group.name).await?;
            tracing::warn!(event = Event::AzureKeyNotPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault, kid = %kid,
                identity = by, "Azure key {vault}/{name} not purged: {the} lists no deleted key (no soft-delete), so the delete removed it for good");
            Ok(format!(
                "{the_cap} has no soft-delete: the Azure key is gone for good ({n} local key(s) may be pushed again)"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::fakes::{FakeKey, FakeStore, FakeVault, group, pool_group};
    use crate::model::JobStep;

    const ID: JobId = JobId::new(7);

    fn step(s: DeleteCloudStep) -> JobStep {
        s.into()
    }

    #[tokio::test]
    async fn a_restart_after_delete_sent_with_the_answer_lost_carries_on_to_the_purge() {
        // The delete went through before the restart; Azure still hides the deleted key.
        let vault = FakeVault::new()
            .with_key(
                "payments",
                FakeKey::Deleted(RecoveryLevel::RecoverablePurgeable),
            )
            .hidden_for(1);
        let store = FakeStore::after([step(DeleteCloudStep::DeleteSent)]);
        let done = delete(&vault, &store, ID, &group(), "admin").await.unwrap();
        assert!(done.contains("deleted and purged"), "{done}");
        assert_eq!(vault.key("payments"), None);
        // Not deleted twice: the only change this run made is the purge.
        assert_eq!(vault.changes(), ["purge payments"]);
        let steps = store.steps();
        assert!(steps.contains(&step(DeleteCloudStep::Deleted)));
        assert!(steps.contains(&step(DeleteCloudStep::PurgeSent)));
        assert_eq!(store.forgotten(), 1);
    }

    #[tokio::test]
    async fn the_intent_is_journalled_before_the_delete_is_sent() {
        let vault = FakeVault::new()
            .with_key(
                "payments",
                FakeKey::Live(RecoveryLevel::RecoverablePurgeable),
            )
            .hidden_for(1)
            .being_deleted_for(1);
        let store = FakeStore::default();
        delete(&vault, &store, ID, &group(), "admin").await.unwrap();
        assert_eq!(vault.changes(), ["delete payments", "purge payments"]);
        assert!(
            store
                .notes()
                .iter()
                .any(|m| m == "Waiting for the deleted key to be listed")
        );
        assert_eq!(
            store.steps(),
            [
                step(DeleteCloudStep::DeleteSent),
                step(DeleteCloudStep::Deleted),
                step(DeleteCloudStep::PurgeSent)
            ]
        );
    }

    #[tokio::test]
    async fn purge_protection_keeps_the_deleted_key_and_says_when_azure_purges_it() {
        let vault = FakeVault::new().with_key(
            "payments",
            FakeKey::Live(RecoveryLevel::RecoverableProtectedSubscription),
        );
        let store = FakeStore::default();
        let done = delete(&vault, &store, ID, &group(), "admin").await.unwrap();
        assert!(
            done.contains("not purged") && done.contains("Azure purges it on 2026-03-01T00:00:00Z"),
            "{done}"
        );
        assert_eq!(
            vault.key("payments"),
            Some(FakeKey::Deleted(
                RecoveryLevel::RecoverableProtectedSubscription
            ))
        );
        assert!(!store.steps().contains(&step(DeleteCloudStep::PurgeSent)));
        // Recoverable: the local keys keep their Azure versions.
        assert_eq!(store.forgotten(), 0);
        assert!(done.contains(": the vault's recovery level"), "{done}");
    }

    #[tokio::test]
    async fn a_managed_hsm_pool_is_said_to_be_a_pool() {
        let pool =
            FakeVault::pool().with_key("payments", FakeKey::Live(RecoveryLevel::Recoverable));
        let done = delete(&pool, &FakeStore::default(), ID, &pool_group(), "admin")
            .await
            .unwrap();
        assert_eq!(
            done,
            "Azure key pool1/payments deleted but not purged: the pool's recovery level Recoverable does not allow a purge (purge protection); Azure purges it on 2026-03-01T00:00:00Z. Until then `byokctl group recover payments` brings it back"
        );
        let (empty, store) = (FakeVault::pool(), FakeStore::default());
        let err = delete(&empty, &store, ID, &pool_group(), "admin").await;
        let err = err.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Managed HSM pool pool1 has no key payments and no deleted key of that name: nothing to delete"
        );
    }

    #[tokio::test]
    async fn without_soft_delete_a_lost_answer_means_the_key_is_gone_for_good() {
        // Before the restart: no soft-delete seen, the delete sent, its answer lost.
        let vault = FakeVault::new();
        let store = FakeStore::after([
            step(DeleteCloudStep::NoSoftDelete),
            step(DeleteCloudStep::DeleteSent),
        ]);
        let done = delete(&vault, &store, ID, &group(), "admin").await.unwrap();
        assert!(done.contains("gone for good"), "{done}");
        assert!(vault.changes().is_empty());
        assert_eq!(store.forgotten(), 1);
    }

    #[tokio::test]
    async fn a_key_found_nowhere_without_a_delete_sent_is_an_error() {
        let vault = FakeVault::new();
        let store = FakeStore::default();
        let err = delete(&vault, &store, ID, &group(), "admin")
            .await
            .unwrap_err();
        assert!(matches!(err, JobError::NothingToDelete { .. }), "{err}");
        assert_eq!(store.forgotten(), 0);
    }
}
