//! "Purge key material on cloud" of a soft-deleted Azure key: refused at request time where the
//! vault cannot do it, and run once a second admin approved it. A purge makes the Azure versions
//! of the local keys gone for good, so they are forgotten (the keys stay in the HSM and can be
//! synced again).

use super::executor::{rfc3339, run_signed_in, send_once};
use super::kek::purge_with_retry;
use super::ports::{JobStore, SignedIn, Vault};
use super::sign_in::credential_token;
use super::{JobError, Jobs};
use crate::azure::{AzureError, KeyVaultError, RecoveryLevel};
use crate::logs::Event;
use crate::model::{GroupName, JobId, KeyGroup, PurgeStep};
use crate::service::Designated;

/// Refuses a purge at request time, before a second admin is asked, when the vault cannot do
/// it: the deleted key's recovery level (or, while Azure does not list it yet, the vault's, from
/// a live key) does not allow a purge (purge protection; Azure purges it on its scheduled
/// date), or the key is live and not deleted at all. A key listed nowhere may be inside Azure's
/// "being deleted" window: that purge is let through (it waits the window out).
pub(super) async fn purge_possible(jobs: &Jobs, group: &GroupName) -> Result<(), JobError> {
    let g = jobs.service().group_record(group).await?;
    let t = credential_token(jobs, &g).await?;
    let vault = SignedIn::new(jobs.azure().keyvault(), t, &g.target);
    refuse_impossible(&vault, &g.name).await
}

/// The request-time refusal, on a signed-in vault.
async fn refuse_impossible(kv: &impl Vault, name: &GroupName) -> Result<(), JobError> {
    let (target, name) = (kv.target().named(), name.as_str());
    let forbidden = |level: &RecoveryLevel, when: String| {
        JobError::Invalid(format!(
            "{target} does not allow a purge: its recovery level is {} (purge protection), so Azure would refuse it; {when}",
            level.as_str()
        ))
    };
    match kv.get_deleted_key(name).await {
        Ok(d) => match &d.bundle.attributes.recovery_level {
            Some(level) if level.purge_protected() => {
                let date = d
                    .scheduled_purge_date
                    .map_or_else(|| "its scheduled purge date".to_owned(), rfc3339);
                Err(forbidden(level, format!("Azure purges {name} on {date}")))
            }
            _ => Ok(()),
        },
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => match kv.get_key(name).await {
            Ok(b) => match &b.attributes.recovery_level {
                Some(level) if level.purge_protected() => {
                    Err(forbidden(level, format!("and key {name} is not deleted")))
                }
                _ => Err(JobError::Invalid(format!(
                    "key {name} in {target} is not deleted: there is nothing to purge (delete it on the cloud first)"
                ))),
            },
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => Ok(()),
            Err(e) => Err(e.into()),
        },
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
    let machine = async |vault: &SignedIn<'_>, group: &KeyGroup, by: &str, _: &Designated| {
        purge(vault, jobs.service(), id, group, by).await
    };
    run_signed_in(jobs, id, machine, |group, by, e| match e {
            // Refused by the cloud's state (purge protection, nothing to purge): a skip.
            JobError::Invalid(why) => {
                tracing::warn!(event = Event::AzureKeyNotPurged.as_str(), service = "azure", job = id.get(), group = %group.name,
                    vault = %group.target.name(), identity = %by, "{why}");
            }
            e => {
                tracing::error!(event = Event::AzureKeyPurgeFailed.as_str(), service = "azure", job = id.get(), group = %group.name,
                    vault = %group.target.name(), identity = %by, "Purge of the soft-deleted Azure key {}/{} failed: {e}", group.target.name(), group.name);
            }
    })
    .await
}

/// The purge's state machine, on a signed-in vault and the job's record.
async fn purge(
    kv: &impl Vault,
    store: &impl JobStore,
    id: JobId,
    group: &KeyGroup,
    by: &str,
) -> Result<String, JobError> {
    let (vault, target) = (group.target.name(), group.target.named());
    let name = group.name.as_str();
    let sent_before = send_once(
        store,
        id,
        PurgeStep::PurgeSent,
        format!("Purging the soft-deleted Azure key {vault}/{name} for good"),
        500,
    )
    .await?;
    let not_purged = |e: AzureError| JobError::Purge {
        target: group.target.clone(),
        source: Box::new(e),
    };
    match kv.purge_deleted_key(name).await {
        Ok(()) => {}
        // A purge right after a delete meets 409 ObjectIsBeingDeleted: waited out.
        Err(AzureError::KeyVault(KeyVaultError::BeingDeleted { .. })) => {
            purge_with_retry(kv, name).await.map_err(|e| match e {
                JobError::Azure(a) => not_purged(a),
                e => e,
            })?;
        }
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => match kv.get_key(name).await {
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) if sent_before => {}
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                return Err(JobError::Invalid(format!(
                    "nothing to purge: {target} lists no soft-deleted key {name} (not deleted, or already purged)"
                )));
            }
            Ok(_) => {
                return Err(JobError::Invalid(format!(
                    "nothing purged: key {name} in {target} is live, not deleted (recovered since the purge was requested?)"
                )));
            }
            Err(e) => return Err(not_purged(e)),
        },
        Err(AzureError::KeyVault(KeyVaultError::PurgeProtected { .. })) => {
            let date = kv
                .get_deleted_key(name)
                .await
                .ok()
                .and_then(|d| d.scheduled_purge_date)
                .map_or_else(|| "its scheduled purge date".to_owned(), rfc3339);
            return Err(JobError::Invalid(format!(
                "{target} has purge protection: it does not allow a purge; Azure purges {name} on {date}"
            )));
        }
        Err(e) => return Err(not_purged(e)),
    }
    store.forget_azure_versions(&group.name).await?;
    tracing::info!(event = Event::AzureKeyPurged.as_str(), service = "azure", job = id.get(), group = %group.name, vault, identity = by,
        "Soft-deleted Azure key {vault}/{name} purged for good");
    Ok(format!(
        "Azure key {vault}/{name} purged for good; local keys untouched (they may be pushed again)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::fakes::{FakeKey, FakeStore, FakeVault, group, pool_group};
    use crate::model::JobStep;

    const ID: JobId = JobId::new(9);

    fn sent() -> JobStep {
        PurgeStep::PurgeSent.into()
    }

    #[tokio::test]
    async fn purge_protection_refuses_and_says_when_azure_purges() {
        let level = RecoveryLevel::CustomizedRecoverable;
        let vault = FakeVault::new().with_key("payments", FakeKey::Deleted(level.clone()));
        // Refused at request time, before a second admin is asked...
        let refused = refuse_impossible(&vault, &group().name).await.unwrap_err();
        assert!(
            matches!(&refused, JobError::Invalid(why) if why.contains("purge protection") && why.contains("2026-03-01T00:00:00Z")),
            "{refused}"
        );
        // ...and by the job, should the vault have changed since.
        let store = FakeStore::default();
        let err = purge(&vault, &store, ID, &group(), "admin")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JobError::Invalid(why) if why.contains("purge protection") && why.contains("Azure purges payments on 2026-03-01T00:00:00Z")),
            "{err}"
        );
        assert_eq!(vault.key("payments"), Some(FakeKey::Deleted(level)));
        assert_eq!(store.forgotten(), 0);
    }

    #[tokio::test]
    async fn a_managed_hsm_pool_is_named_as_a_pool_and_a_vault_as_a_vault() {
        let level = RecoveryLevel::CustomizedRecoverable;
        let pool = FakeVault::pool().with_key("payments", FakeKey::Deleted(level.clone()));
        let refused = refuse_impossible(&pool, &pool_group().name)
            .await
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("Managed HSM pool pool1 does not allow a purge: its recovery level is CustomizedRecoverable"),
            "{refused}"
        );
        let err = purge(&pool, &FakeStore::default(), ID, &pool_group(), "admin")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Managed HSM pool pool1 has purge protection: it does not allow a purge; Azure purges payments on 2026-03-01T00:00:00Z"
        );
        let vault = FakeVault::new().with_key("payments", FakeKey::Deleted(level));
        let refused = refuse_impossible(&vault, &group().name).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("vault kv1 does not allow a purge"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_purge_right_after_the_delete_waits_out_being_deleted() {
        let vault = FakeVault::new()
            .with_key(
                "payments",
                FakeKey::Deleted(RecoveryLevel::RecoverablePurgeable),
            )
            .being_deleted_for(1);
        let store = FakeStore::default();
        purge(&vault, &store, ID, &group(), "admin").await.unwrap();
        assert_eq!(vault.key("payments"), None);
        assert_eq!(store.steps(), [sent()]);
        assert_eq!(store.forgotten(), 1);
    }

    #[tokio::test]
    async fn a_restart_after_purge_sent_takes_the_missing_key_as_purged() {
        let vault = FakeVault::new();
        let store = FakeStore::after([sent()]);
        let done = purge(&vault, &store, ID, &group(), "admin").await.unwrap();
        assert!(done.contains("purged for good"), "{done}");
        // Journalled once, not again by the resumed run.
        assert_eq!(store.steps(), [sent()]);
        assert_eq!(store.forgotten(), 1);
        // Without the journalled intent the same cloud state is "nothing to purge".
        let fresh = FakeStore::default();
        let err = purge(&vault, &fresh, ID, &group(), "admin")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JobError::Invalid(why) if why.starts_with("nothing to purge")),
            "{err}"
        );
        assert_eq!(fresh.forgotten(), 0);
    }

    #[tokio::test]
    async fn a_live_key_is_not_purged() {
        let vault = FakeVault::new().with_key(
            "payments",
            FakeKey::Live(RecoveryLevel::RecoverablePurgeable),
        );
        assert!(refuse_impossible(&vault, &group().name).await.is_err());
        let store = FakeStore::after([sent()]);
        let err = purge(&vault, &store, ID, &group(), "admin")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JobError::Invalid(why) if why.contains("is live")),
            "{err}"
        );
        assert!(vault.changes().is_empty());
    }
}
