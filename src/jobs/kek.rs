//! The key exchange key's lifecycle inside a sync: found again or created (its name journalled
//! first), deleted and purged where the vault allows (journalled at each step), and the two
//! waits around a delete that every cloud job shares: until the deleted key is visible, and
//! through Azure's "being deleted" window of a purge.
//!
//! Must never leave a KEK behind on purpose, nor create a second KEK for one job.

use super::JobError;
use super::executor::rfc3339;
use super::ports::{JobStore, KekChange, Vault};
use crate::azure::{AzureError, Kek, KeyVaultError, RecoveryLevel};
use crate::logs::Event;
use crate::model::{Job, JobId, KekJournal, KeyGroup, Target};
use std::time::Duration;

/// The KEK's lifetime (its size is `azure.kek_size`).
const KEK_LIFETIME_SECS: i64 = 3600;
/// How long to wait for a deleted KEK to become visible (Azure shows 10 s or more).
const DELETED_VISIBLE_WAIT: Duration = Duration::from_secs(120);
/// How often to look for the deleted KEK meanwhile.
const DELETED_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Finds the job's KEK again, or creates it with its name journalled first. `kek_bits` is
/// `azure.kek_size`; `now` dates the KEK's expiry.
pub(super) async fn ensure_kek(
    kv: &impl Vault,
    store: &impl JobStore,
    id: JobId,
    group: &KeyGroup,
    (kek_bits, now): (u32, i64),
) -> Result<Kek, JobError> {
    let vault = group.target.name();
    let name = Job::kek_name(id);
    let journal = store.kek(id).await?;
    if let Some(k) = &journal
        && k.deleted
    {
        // Its name is taken in the vault until purged: this job cannot make another.
        return Err(JobError::KekAlreadyDeleted {
            name: k.name.clone(),
        });
    }
    if let Some(k) = &journal {
        match kv.get_key(&k.name).await {
            Ok(bundle) => {
                let kek = kek_from_bundle(&group.target, &bundle)?;
                let message = format!(
                    "Found this job's key exchange key {} from before the restart",
                    kek.kid
                );
                store
                    .record_kek_created(id, &kek.kid, message, None)
                    .await?;
                return Ok(kek);
            }
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let planned = KekJournal {
        vault: group.target.journal_name(),
        name: name.clone(),
        kid: None,
        deleted: false,
        purged: None,
        purge_sent: false,
    };
    let message = format!(
        "Creating key exchange key {name} (RSA-HSM {kek_bits}) in {}",
        group.target
    );
    store.plan_kek(id, planned, message).await?;
    let exp = now + KEK_LIFETIME_SECS;
    let kek = match kv.create_kek(&name, kek_bits, exp).await {
        Ok(kek) => kek,
        // The answer was lost: look before creating again.
        Err(AzureError::ResponseLost { .. }) => match kv.get_key(&name).await {
            Ok(bundle) => kek_from_bundle(&group.target, &bundle)?,
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                kv.create_kek(&name, kek_bits, exp).await?
            }
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    let message = format!("Key exchange key created: {}", kek.kid);
    store
        .record_kek_created(id, &kek.kid, message, Some(200))
        .await?;
    tracing::info!(event = Event::AzureKekCreated.as_str(), service = "azure", job = id.get(), group = %group.name, vault, kid = %kek.kid,
        "Key exchange key {name} created (RSA-HSM {kek_bits})");
    Ok(kek)
}

fn kek_from_bundle(target: &Target, bundle: &crate::azure::KeyBundle) -> Result<Kek, JobError> {
    let strip = |b: Vec<u8>| -> Vec<u8> { b.into_iter().skip_while(|x| *x == 0).collect() };
    let bad = |part: &'static str| JobError::KekIncomplete {
        target: target.clone(),
        part,
    };
    let n = crate::azure::JsonWebKey::decode(bundle.key.n.as_deref())
        .map(strip)
        .ok_or_else(|| bad("modulus"))?;
    let e = crate::azure::JsonWebKey::decode(bundle.key.e.as_deref())
        .map(strip)
        .ok_or_else(|| bad("exponent"))?;
    Ok(Kek {
        kid: bundle.kid().to_owned(),
        version: bundle.azure_version(),
        n,
        e,
        recovery_level: bundle.attributes.recovery_level.clone(),
    })
}

/// Deletes the job's KEK and purges it where the vault allows; journalled at each step.
pub(super) async fn cleanup_kek(
    session: &impl Vault,
    store: &impl JobStore,
    id: JobId,
) -> Result<(), JobError> {
    let Some(kek) = store.kek(id).await? else {
        return Ok(());
    };
    if kek.purged.is_some() {
        return Ok(());
    }
    let vault = kek.vault.as_str();
    // The session is on the vault or pool the KEK was made in: its kind names it.
    let the = session.target().kind();
    let mut level: Option<RecoveryLevel> = None;
    if !kek.deleted {
        match session.delete_key(&kek.name).await {
            Ok(deleted) => level = deleted.bundle.attributes.recovery_level.clone(),
            // The create never succeeded: there is nothing to delete or purge.
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) if kek.kid.is_none() => {
                store
                    .record_kek(
                        id,
                        KekChange::NeverCreated,
                        format!(
                            "No key exchange key {} was created; nothing to clean up",
                            kek.name
                        ),
                    )
                    .await?;
                return Ok(());
            }
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {}
            Err(e) => return Err(e.into()),
        }
        store
            .record_kek(
                id,
                KekChange::Deleted,
                format!("Key exchange key {} deleted", kek.name),
            )
            .await?;
        tracing::info!(
            event = Event::AzureKekDeleted.as_str(),
            service = "azure",
            job = id.get(),
            vault,
            kid = kek.kid.as_deref().unwrap_or(&kek.name),
            "Key exchange key {} deleted",
            kek.name
        );
    }
    if kek.purge_sent {
        // A purge was sent before a restart: a deleted key that is gone now was purged.
        purge_with_retry(session, &kek.name).await?;
        let message = format!("Key exchange key {} purged", kek.name);
        store
            .record_kek(id, KekChange::Settled { purged: true }, message.clone())
            .await?;
        tracing::info!(event = Event::AzureKekPurged.as_str(), service = "azure", job = id.get(), vault, kid = %kek.name, "{message}");
        return Ok(());
    }
    let deleted = wait_deleted_visible(session, &kek.name, level.as_ref()).await?;
    let level = level.or_else(|| {
        deleted
            .as_ref()
            .and_then(|d| d.bundle.attributes.recovery_level.clone())
    });
    let (purged, message) = match (&deleted, &level) {
        (None, _) | (_, Some(RecoveryLevel::Purgeable)) => (
            false,
            format!(
                "{} has no soft-delete: the key exchange key is gone for good",
                the.the_capital()
            ),
        ),
        (Some(_), Some(l)) if l.purge_allowed() => {
            store
                .record_kek(
                    id,
                    KekChange::PurgeSent,
                    format!("Purging key exchange key {}", kek.name),
                )
                .await?;
            purge_with_retry(session, &kek.name).await?;
            (true, format!("Key exchange key {} purged", kek.name))
        }
        (Some(d), l) => (
            false,
            format!(
                "Key exchange key {} not purged: {}'s recovery level is {} (purge protection); Azure purges it on {}",
                kek.name,
                the.the(),
                l.as_ref()
                    .map(|l| l.as_str().to_owned())
                    .unwrap_or_else(|| "unknown".into()),
                d.scheduled_purge_date
                    .map_or_else(|| "its scheduled purge date".to_owned(), rfc3339)
            ),
        ),
    };
    if purged {
        tracing::info!(
            event = Event::AzureKekPurged.as_str(),
            service = "azure",
            job = id.get(),
            vault,
            kid = kek.kid.as_deref().unwrap_or(&kek.name),
            "{message}"
        );
    } else {
        tracing::info!(
            event = Event::AzureKekNotPurged.as_str(),
            record_level = "warn",
            service = "azure",
            job = id.get(),
            vault,
            kid = kek.kid.as_deref().unwrap_or(&kek.name),
            "{message}"
        );
    }
    store
        .record_kek(id, KekChange::Settled { purged }, message.clone())
        .await?;
    Ok(())
}

/// Waits until the deleted KEK is listed in deleted keys (Azure answers 404 for a while after a
/// delete). Returns `None` when the vault has no soft-delete.
pub(super) async fn wait_deleted_visible(
    vault: &impl Vault,
    name: &str,
    level: Option<&RecoveryLevel>,
) -> Result<Option<crate::azure::DeletedKeyBundle>, JobError> {
    if matches!(level, Some(RecoveryLevel::Purgeable)) {
        return Ok(None);
    }
    let started = tokio::time::Instant::now();
    loop {
        match vault.get_deleted_key(name).await {
            Ok(d) => return Ok(Some(d)),
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
                if started.elapsed() > DELETED_VISIBLE_WAIT {
                    return Err(JobError::DeletedNotListed {
                        name: name.to_owned(),
                        target: vault.target().clone(),
                        secs: DELETED_VISIBLE_WAIT.as_secs(),
                    });
                }
                // A fixed short interval: the key shows up at most this late (a doubling back-off
                // overshot a 2 s window to 3.75 s). GETs draw on the large "other" budget.
                tokio::time::sleep(DELETED_POLL_INTERVAL).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Purges a deleted key, waiting out Azure's "being deleted" window (409) with a growing
/// pause; a key already gone counts as purged.
pub(super) async fn purge_with_retry(vault: &impl Vault, name: &str) -> Result<(), JobError> {
    let mut wait = Duration::from_millis(250);
    for _ in 0..12 {
        match vault.purge_deleted_key(name).await {
            Ok(()) | Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => return Ok(()),
            Err(AzureError::KeyVault(KeyVaultError::BeingDeleted { .. })) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(4));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(JobError::StillBeingDeleted {
        name: name.to_owned(),
        target: vault.target().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::fakes::{FakeKey, FakeStore, FakeVault, group as fake_group};
    use crate::model::SyncStep;

    #[tokio::test]
    async fn the_wait_for_a_deleted_key_ends_once_azure_lists_it() {
        let vault = FakeVault::new()
            .with_key(
                "byokd-kek-3",
                FakeKey::Deleted(RecoveryLevel::RecoverablePurgeable),
            )
            .hidden_for(1);
        let listed = wait_deleted_visible(&vault, "byokd-kek-3", None)
            .await
            .unwrap();
        assert_eq!(
            listed.and_then(|d| d.scheduled_purge_date),
            Some(crate::jobs::fakes::SCHEDULED_PURGE)
        );
        // No soft-delete: nothing to wait for.
        let empty = FakeVault::new();
        let none = wait_deleted_visible(&empty, "byokd-kek-3", Some(&RecoveryLevel::Purgeable));
        assert!(none.await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_purge_waits_out_being_deleted_and_takes_gone_for_purged() {
        let vault = FakeVault::new()
            .with_key(
                "byokd-kek-3",
                FakeKey::Deleted(RecoveryLevel::RecoverablePurgeable),
            )
            .being_deleted_for(1);
        purge_with_retry(&vault, "byokd-kek-3").await.unwrap();
        assert_eq!(vault.changes(), ["purge byokd-kek-3"]);
        // A key already gone counts as purged.
        purge_with_retry(&FakeVault::new(), "byokd-kek-3")
            .await
            .unwrap();
    }

    fn kek(kid: Option<&str>) -> KekJournal {
        KekJournal {
            vault: crate::model::VaultName::try_from("kv1").unwrap(),
            name: "byokd-kek-3".into(),
            kid: kid.map(str::to_owned),
            deleted: false,
            purged: None,
            purge_sent: false,
        }
    }

    const ID: JobId = JobId::new(3);

    const SETTINGS: (u32, i64) = (3072, 0);

    #[tokio::test]
    async fn a_kek_is_created_once_with_its_name_journalled_first() {
        let vault = FakeVault::new();
        let store = FakeStore::default();
        let kek = ensure_kek(&vault, &store, ID, &fake_group(), SETTINGS)
            .await
            .unwrap();
        assert_eq!(vault.changes(), ["create byokd-kek-3"]);
        assert_eq!(
            store.steps(),
            [SyncStep::KekPlanned.into(), SyncStep::KekCreated.into()]
        );
        assert_eq!(store.kek_state().unwrap().kid, Some(kek.kid));
    }

    #[tokio::test]
    async fn a_planned_kek_that_azure_made_before_the_crash_is_found_not_made_again() {
        // Planned (the create's answer never recorded), and Azure has it.
        let vault = FakeVault::new().with_key(
            "byokd-kek-3",
            FakeKey::Live(RecoveryLevel::RecoverablePurgeable),
        );
        let store = FakeStore::default().with_kek(kek(None));
        ensure_kek(&vault, &store, ID, &fake_group(), SETTINGS)
            .await
            .unwrap();
        assert!(vault.changes().is_empty());
        assert_eq!(store.steps(), [SyncStep::KekCreated.into()]);
        assert!(store.kek_state().unwrap().kid.is_some());
        // Created before the crash: found again as well.
        let store = FakeStore::default().with_kek(kek(Some("kid")));
        ensure_kek(&vault, &store, ID, &fake_group(), SETTINGS)
            .await
            .unwrap();
        assert!(vault.changes().is_empty());
    }

    #[tokio::test]
    async fn a_planned_kek_azure_never_made_is_created_then() {
        let vault = FakeVault::new();
        let store = FakeStore::default().with_kek(kek(None));
        ensure_kek(&vault, &store, ID, &fake_group(), SETTINGS)
            .await
            .unwrap();
        assert_eq!(vault.changes(), ["create byokd-kek-3"]);
    }

    #[tokio::test]
    async fn a_deleted_kek_is_not_replaced_by_a_second_one() {
        let vault = FakeVault::new();
        let mut deleted = kek(Some("kid"));
        deleted.deleted = true;
        let store = FakeStore::default().with_kek(deleted);
        let err = ensure_kek(&vault, &store, ID, &fake_group(), SETTINGS)
            .await
            .unwrap_err();
        assert!(matches!(err, JobError::KekAlreadyDeleted { .. }), "{err}");
        assert!(vault.changes().is_empty() && store.steps().is_empty());
    }

    #[tokio::test]
    async fn a_kek_left_by_a_crash_is_deleted_and_purged() {
        let vault = FakeVault::new()
            .with_key(
                "byokd-kek-3",
                FakeKey::Live(RecoveryLevel::RecoverablePurgeable),
            )
            .hidden_for(1);
        let store = FakeStore::default().with_kek(kek(Some("kid")));
        cleanup_kek(&vault, &store, ID).await.unwrap();
        assert_eq!(vault.changes(), ["delete byokd-kek-3", "purge byokd-kek-3"]);
        assert_eq!(vault.key("byokd-kek-3"), None);
        assert_eq!(
            store.steps(),
            [
                KekChange::Deleted.step(),
                KekChange::PurgeSent.step(),
                KekChange::Settled { purged: true }.step()
            ]
        );
        let k = store.kek_state().unwrap();
        assert!(k.deleted && k.purge_sent && k.purged == Some(true));
        // Settled: a second run changes nothing.
        cleanup_kek(&vault, &store, ID).await.unwrap();
        assert_eq!(vault.changes().len(), 2);
    }

    #[tokio::test]
    async fn a_purge_sent_before_the_crash_is_taken_as_done_once_the_key_is_gone() {
        let vault = FakeVault::new();
        let mut journalled = kek(Some("kid"));
        journalled.deleted = true;
        journalled.purge_sent = true;
        let store = FakeStore::default().with_kek(journalled);
        cleanup_kek(&vault, &store, ID).await.unwrap();
        assert_eq!(store.steps(), [KekChange::Settled { purged: true }.step()]);
        assert!(vault.changes().is_empty());
    }

    #[tokio::test]
    async fn a_kek_never_created_needs_no_clean_up() {
        let vault = FakeVault::new();
        let store = FakeStore::default().with_kek(kek(None));
        cleanup_kek(&vault, &store, ID).await.unwrap();
        assert_eq!(store.steps(), [KekChange::NeverCreated.step()]);
        assert_eq!(store.kek_state().unwrap().purged, Some(false));
    }

    #[tokio::test]
    async fn purge_protection_leaves_the_kek_to_azure_and_says_when() {
        let vault = FakeVault::new().with_key(
            "byokd-kek-3",
            FakeKey::Live(RecoveryLevel::CustomizedRecoverable),
        );
        let store = FakeStore::default().with_kek(kek(Some("kid")));
        cleanup_kek(&vault, &store, ID).await.unwrap();
        assert_eq!(vault.changes(), ["delete byokd-kek-3"]);
        assert_eq!(
            store.steps().last(),
            Some(&KekChange::Settled { purged: false }.step())
        );
        assert!(
            store
                .notes()
                .iter()
                .any(|n| n.contains("Azure purges it on 2026-03-01T00:00:00Z"))
        );
    }
}
