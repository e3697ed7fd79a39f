//! "Recover key material on cloud": brings the group's soft-deleted Azure key back with all its
//! versions (designated device only). Local keys are untouched.

use super::executor::{run_signed_in, send_once};
use super::ports::{JobStore, SignedIn, Vault};
use super::{JobError, Jobs};
use crate::azure::{AzureError, KeyVaultError};
use crate::logs::Event;
use crate::model::{JobId, KeyGroup, RecoverStep, Target};
use crate::service::Designated;

/// "Recover key material on cloud": brings the group's soft-deleted Azure key back with all
/// its versions. The recover is journalled ([`RecoverStep::RecoverSent`]) before it is sent; a
/// restarted job sends it again, and where Azure then lists no deleted key but the key is live,
/// the recover sent before the restart went through.
pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    let machine = async |vault: &SignedIn<'_>, group: &KeyGroup, by: &str, _: &Designated| {
        recover(vault, jobs.service(), id, group, by).await
    };
    run_signed_in(jobs, id, machine, |group, by, e| {
        tracing::error!(event = Event::AzureKeyRecoverFailed.as_str(), service = "azure", job = id.get(), group = %group.name,
            vault = %group.target.name(), identity = %by, "Recovery of the soft-deleted Azure key {}/{} failed: {e}", group.target.name(), group.name);
    })
    .await
}

/// The recover's state machine, on a signed-in vault and the job's record.
async fn recover(
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
        RecoverStep::RecoverSent,
        format!("Recovering the soft-deleted Azure key {vault}/{name} (all versions)"),
        300,
    )
    .await?;
    let outcome = kv.recover_deleted_key(name).await;
    let bundle = match outcome {
        Ok(bundle) => bundle,
        // No deleted key of that name: the recover sent before a restart went through (the key
        // is live), or there is nothing to recover.
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => match kv.get_key(name).await {
            Ok(bundle) if sent_before => bundle,
            Ok(_) => {
                return Err(JobError::Invalid(format!(
                    "nothing to recover: key {name} in {target} is live, not deleted"
                )));
            }
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                return Err(JobError::Invalid(format!(
                    "nothing to recover: {target} has no soft-deleted key {name} (never deleted, or purged); `byokctl group sync {name}` pushes the local keys again"
                )));
            }
            Err(e) => return Err(not_recovered(&group.target, e)),
        },
        Err(e) => return Err(not_recovered(&group.target, e)),
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
fn not_recovered(target: &Target, e: AzureError) -> JobError {
    JobError::Recover {
        target: target.clone(),
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::RecoveryLevel;
    use crate::jobs::fakes::{FakeKey, FakeStore, FakeVault, group, pool_group};
    use crate::model::JobStep;

    const ID: JobId = JobId::new(11);

    fn sent() -> JobStep {
        RecoverStep::RecoverSent.into()
    }

    #[tokio::test]
    async fn a_deleted_key_comes_back_with_the_intent_journalled_first() {
        let level = RecoveryLevel::RecoverablePurgeable;
        let vault = FakeVault::new().with_key("payments", FakeKey::Deleted(level.clone()));
        let store = FakeStore::default();
        let done = recover(&vault, &store, ID, &group(), "admin")
            .await
            .unwrap();
        assert!(done.contains("recovered with all its versions"), "{done}");
        assert_eq!(vault.key("payments"), Some(FakeKey::Live(level)));
        assert_eq!(store.steps(), [sent()]);
    }

    #[tokio::test]
    async fn a_restart_after_recover_sent_takes_the_live_key_as_recovered() {
        let vault = FakeVault::new().with_key(
            "payments",
            FakeKey::Live(RecoveryLevel::RecoverablePurgeable),
        );
        let store = FakeStore::after([sent()]);
        recover(&vault, &store, ID, &group(), "admin")
            .await
            .unwrap();
        assert_eq!(store.steps(), [sent()]);
        assert!(vault.changes().is_empty());
        // Without the journalled intent a live key is refused: nothing to recover.
        let err = recover(&vault, &FakeStore::default(), ID, &group(), "admin")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JobError::Invalid(why) if why.contains("is live, not deleted")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_key_deleted_nowhere_is_refused_with_the_way_back() {
        // The job names the group's target by its kind: a vault, or a Managed HSM pool.
        for (vault, group, named) in [
            (FakeVault::new(), group(), "vault kv1"),
            (FakeVault::pool(), pool_group(), "Managed HSM pool pool1"),
        ] {
            let store = FakeStore::default();
            let err = recover(&vault, &store, ID, &group, "admin")
                .await
                .unwrap_err();
            assert!(
                matches!(&err, JobError::Invalid(why) if why.contains("byokctl group sync payments")),
                "{err}"
            );
            let said = format!("nothing to recover: {named} has no soft-deleted key payments");
            assert!(err.to_string().starts_with(&said), "{err}");
        }
    }
}
