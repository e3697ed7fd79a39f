//! The end of a rotation's grace period: the previous Azure versions recorded at the rotation
//! are disabled, then the grace entry is cleared. Run by the scheduler, not as a job.

use super::ports::{JobStore, SignedIn, Vault};
use super::sign_in::credential_token;
use super::{JobError, Jobs};
use crate::azure::{AzureError, KeyUpdate, KeyVaultError};
use crate::logs::Event;
use crate::model::{GroupName, KeyGroup};

/// Disables each previous version recorded at the rotation, then clears the grace entry.
pub(super) async fn finish_grace(jobs: &Jobs, group: &GroupName) -> Result<(), JobError> {
    let svc = jobs.service();
    if svc.grace_of(group).await?.is_none() {
        return Ok(());
    }
    let g = svc.group_record(group).await?;
    let token = credential_token(jobs, &g).await?;
    let vault = SignedIn::new(jobs.azure().keyvault(), token, &g.target);
    end_grace(&vault, svc, &g, jobs.clock().now_unix()).await?;
    Ok(())
}

/// The grace period's end as a state machine: once the grace entry is due at `now`, every
/// previous version it lists is disabled (one already gone from Azure is skipped), then the
/// entry is cleared. Returns whether it was due.
pub(super) async fn end_grace(
    kv: &impl Vault,
    store: &impl JobStore,
    g: &KeyGroup,
    now: i64,
) -> Result<bool, JobError> {
    let Some(pending) = store.grace_of(&g.name).await? else {
        return Ok(false);
    };
    if pending.due > now {
        return Ok(false);
    }
    let update = KeyUpdate {
        enabled: Some(false),
        ..KeyUpdate::default()
    };
    for version in &pending.versions {
        match kv.update_key(g.name.as_str(), version, &update).await {
            Ok(b) => {
                tracing::info!(event = Event::AzureKeyVersionDisabled.as_str(), service = "azure", group = %g.name, vault = %g.target.name(),
                    kid = b.kid(), version = %version, "Grace period over: previous version {version} of {}/{} disabled", g.target.name(), g.name);
            }
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                tracing::warn!(event = Event::AzureKeyVersionMissing.as_str(), service = "azure", group = %g.name, vault = %g.target.name(),
                    version = %version, "Grace period over: previous version {version} of {}/{} is no longer in Azure; nothing to disable", g.target.name(), g.name);
            }
            // Logged by the scheduler (`rotation.grace_failed`), which retries later.
            Err(e) => return Err(e.into()),
        }
    }
    store.clear_grace(&g.name).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::jobs::fakes::{FakeStore, FakeVault, group};
    use crate::model::{AzureVersion, PendingGrace};

    #[tokio::test]
    async fn previous_versions_are_disabled_once_the_grace_days_are_over() {
        let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH);
        let vault = FakeVault::new()
            .with_version("payments", "v1", "fp-old")
            .with_version("payments", "v2", "fp-new");
        let store = FakeStore::default().with_grace(PendingGrace {
            versions: vec![AzureVersion::new("v1"), AzureVersion::new("gone")],
            due: 7 * 86_400,
            new_version: AzureVersion::new("v2"),
        });
        // Six days in: not due, nothing changes.
        clock.advance(time::Duration::days(6));
        assert!(
            !end_grace(&vault, &store, &group(), clock.now_unix())
                .await
                .unwrap()
        );
        assert!(vault.changes().is_empty());
        assert!(store.grace().is_some());
        // Seven days in: the previous version is disabled (one gone from Azure is skipped),
        // the new one stays enabled, and the entry is cleared.
        clock.advance(time::Duration::days(1));
        assert!(
            end_grace(&vault, &store, &group(), clock.now_unix())
                .await
                .unwrap()
        );
        assert_eq!(vault.changes(), ["update payments/v1"]);
        let enabled: Vec<_> = vault
            .versions("payments")
            .iter()
            .map(|v| (v.version.clone(), v.enabled))
            .collect();
        assert_eq!(enabled, [("v1".into(), false), ("v2".into(), true)]);
        assert!(store.grace().is_none());
    }
}
