//! "Synchronize HSM protected key(s)": token → KEK → in-HSM wraps and imports (several in flight
//! per vault, see `sync_imports`) → record versions → delete (and purge) the KEK. Each step's
//! intent is journalled before its side effect, so a restart resumes from the journal: a
//! journalled KEK is found again or cleaned up, and an import whose answer was lost is found by
//! its fingerprint tag instead of being repeated.
//!
//! [`sync_keys`] is also the second half of a rotation, which syncs the key it generated.

use super::executor::{
    Flow, begin_cloud, fail, finish_cancelled, report_log_problem, succeed, with_retry_display,
};
use super::kek::{cleanup_kek, ensure_kek};
use super::ports::{JobStore, KeyHsm, LocalKeys, SignedIn, Validity};
use super::sign_in::{drop_token, needs_new_token, sign_in};
use super::sync_imports::{ImportPlan, import_all};
use super::sync_resolve::resolve_sent;
use super::{JobError, Jobs};
use crate::azure::AccessToken;
use crate::logs::Event;
use crate::model::{Job, JobId, KeyGroup, KeyName, KeySyncState};
use crate::service::Designated;

pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    let Some((group, _permit, designated)) = begin_cloud(jobs, id).await? else {
        return Ok(());
    };
    let validity = Validity::of_policy(&group.rotation);
    match sync_keys(jobs, id, &group, validity, &designated).await {
        Ok(Flow::Done) => {
            succeed(jobs, id, "Synchronization finished").await?;
            tracing::info!(event = Event::JobsSucceeded.as_str(), job = id.get(), group = %group.name, vault = %group.vault, "Synchronize job {id} for key group {} succeeded", group.name);
        }
        Ok(Flow::Cancelled(by)) => finish_cancelled(jobs, id, &group, &by).await?,
        Err(e) => fail(jobs, id, e.to_string()).await,
    }
    report_log_problem(jobs, id).await
}

/// The sync proper (KEK, imports) and the clean-up of what it left open in the cloud, whatever
/// happened to the imports. A job that failed or was cancelled before a restart only finishes
/// its clean-up. Azure back-off shows as `waiting-retry` while it lasts. The versions made are
/// valid as `validity` says. It changes the cloud, so it runs only with the [`Designated`]
/// proof its job began with.
pub(super) async fn sync_keys(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    validity: Validity,
    _: &Designated,
) -> Result<Flow, JobError> {
    with_retry_display(jobs.service(), id, steps(jobs, id, group, validity)).await
}

/// The job's cloud steps, then its clean-up, whatever happened to the imports. The state is
/// reached through the [`JobStore`] and the HSM through [`KeyHsm`]; `jobs` gives the sign-in
/// and the per-vault import slots.
async fn steps(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    validity: Validity,
) -> Result<Flow, JobError> {
    let store = jobs.service();
    let mut token = None;
    let failed_before = store.failed_before(id).await?;
    let mut outcome = match (&failed_before, store.cancel_requested(id).await?) {
        (Some(reason), _) => Err(JobError::FailedBefore {
            reason: reason.clone(),
        }),
        (None, Some(by)) => Ok(Flow::Cancelled(by)),
        (None, None) => sync_pending(jobs, id, group, validity, &mut token).await,
    };
    // A 401 (token expired or revoked): forget the token, sign in once more and resume from the
    // journal, which finds the KEK and any import again instead of repeating them.
    if let Err(e) = &outcome
        && failed_before.is_none()
    {
        match needs_new_token(jobs, group, e).await {
            Ok(true) => {
                drop_token(jobs, id, group).await?;
                token = None;
                outcome = sync_pending(jobs, id, group, validity, &mut token).await;
            }
            Ok(false) => {}
            Err(clear) => outcome = Err(clear),
        }
    }
    if let Err(e) = &outcome {
        // Journal the reason before cleaning up, so a crash during clean-up still fails the
        // job with it instead of syncing on.
        store.keep_error(id, e.to_string()).await?;
    }
    let mut cleanup = settle_cloud(jobs, id, group, &mut token).await;
    if let Err(e) = &cleanup
        && needs_new_token(jobs, group, e).await.unwrap_or(false)
    {
        drop_token(jobs, id, group).await?;
        token = None;
        cleanup = settle_cloud(jobs, id, group, &mut token).await;
    }
    match (outcome, cleanup) {
        (Ok(flow), Ok(())) => Ok(flow),
        (Err(e), Err(c)) => Err(JobError::CleanupFailed {
            source: Box::new(e),
            cleanup: Box::new(c),
        }),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

/// Settles what the job left open in the cloud, signing in again first when a restart lost the
/// token: imports whose outcome is unknown are looked up by their fingerprint tag (recorded if
/// Azure has them, marked not started if not), then the KEK is deleted and purged.
async fn settle_cloud(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    token: &mut Option<AccessToken>,
) -> Result<(), JobError> {
    let store = jobs.service();
    let sent = store
        .key_syncs(id)
        .await?
        .iter()
        .any(|p| matches!(p.state, KeySyncState::ImportSent { .. }));
    let kek = store.kek(id).await?;
    let kek_open = kek.as_ref().is_some_and(|k| k.purged.is_none());
    if !sent && !kek_open {
        return Ok(());
    }
    let t = match token.take() {
        Some(t) => t,
        None => sign_in(jobs, id, group)
            .await
            .map_err(|e| JobError::KekLeftBehind {
                kek: Job::kek_name(id),
                vault: group.vault.clone(),
                source: Box::new(e),
            })?,
    };
    let settled = if sent {
        resolve_sent(&signed_in(jobs, group, &t), store, id, group)
            .await
            .map(|_| ())
    } else {
        Ok(())
    };
    // The KEK lives in the vault it was made in.
    let kek_vault = store.kek(id).await?.map(|k| k.vault);
    let vault = kek_vault.as_ref().unwrap_or(&group.vault).as_str();
    let session = SignedIn::new(jobs.azure().keyvault(), t.clone(), vault);
    let result = cleanup_kek(&session, store, id).await.and(settled);
    *token = Some(t);
    result
}

/// Signs in, settles imports sent before a restart, ensures the KEK and imports the keys that
/// still need it.
async fn sync_pending(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    validity: Validity,
    token_out: &mut Option<AccessToken>,
) -> Result<Flow, JobError> {
    let (store, hsm) = (jobs.service(), jobs.service().hsm());
    let pending = pending_keys(store, id, group).await?;
    if pending.is_empty() {
        store
            .note(
                id,
                "Nothing to push: every key already has its Azure version".into(),
                Some(1000),
            )
            .await?;
        return Ok(Flow::Done);
    }
    // Refused up front, before a KEK is made: no strategy wraps this key type conformingly.
    hsm.strategy_for(group.key_type)?;
    if let Some(by) = store.cancel_requested(id).await? {
        return Ok(Flow::Cancelled(by));
    }
    let token = sign_in(jobs, id, group).await?;
    *token_out = Some(token.clone());
    if let Some(by) = store.cancel_requested(id).await? {
        return Ok(Flow::Cancelled(by));
    }
    // Imports sent before a restart (or a 401) are found by their tag first, with one listing.
    let vault = signed_in(jobs, group, &token);
    let pending = if resolve_sent(&vault, store, id, group).await? {
        pending_keys(store, id, group).await?
    } else {
        pending
    };
    if pending.is_empty() {
        store
            .note(
                id,
                "Nothing more to push: every key has its Azure version".into(),
                Some(900),
            )
            .await?;
        return Ok(Flow::Done);
    }
    let settings = (jobs.settings().kek_bits, jobs.clock().now_unix());
    let kek = ensure_kek(&vault, store, id, group, settings).await?;
    let plan = ImportPlan {
        keys: pending,
        validity,
    };
    import_all(jobs, id, group, (&token, &kek), hsm.generator(), plan).await
}

/// Keys of the job that still need an import. Keys synced earlier are reported, not repeated;
/// a key that records its Azure version already is marked imported without an import.
pub(super) async fn pending_keys<S: JobStore + LocalKeys>(
    store: &S,
    id: JobId,
    group: &KeyGroup,
) -> Result<Vec<KeyName>, JobError> {
    let mut pending = Vec::new();
    for sync in store.key_syncs(id).await? {
        if matches!(sync.state, KeySyncState::Imported { .. }) {
            continue;
        }
        let key = store.key(&group.name, &sync.key).await?;
        match (&key.azure_version, &sync.state) {
            (Some(version), KeySyncState::NotStarted) => {
                let message = format!(
                    "Key {} is already pushed as version {version}; nothing to do",
                    sync.key
                );
                store.mark_imported(id, &sync.key, version, message).await?;
            }
            _ => pending.push(sync.key),
        }
    }
    Ok(pending)
}

/// The group's vault with this token.
fn signed_in<'a>(jobs: &'a Jobs, group: &'a KeyGroup, token: &AccessToken) -> SignedIn<'a> {
    SignedIn::new(jobs.azure().keyvault(), token.clone(), group.vault.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::jwk::fingerprint;
    use crate::jobs::fakes::{FakeHsm, FakeStore, FakeVault, ec_key, fake_batch, group, local_key};
    use crate::jobs::sync_imports::{Outcome, import_one};
    use crate::model::{AzureVersion, KeySync, SyncStep};

    const ID: JobId = JobId::new(5);

    fn key(name: &str) -> KeyName {
        KeyName::try_from(name).unwrap()
    }

    fn sync(name: &str, state: KeySyncState) -> KeySync {
        KeySync {
            key: key(name),
            state,
        }
    }

    fn fp(seed: u8) -> String {
        fingerprint(&ec_key(seed).0)
    }

    #[tokio::test]
    async fn a_resumed_sync_imports_only_what_no_run_before_it_finished() {
        // k1 imported and recorded; k2 recorded on the key but not in the job; k3's import went
        // through before the crash (Azure has its fingerprint tag); k4's import never arrived;
        // k5 not started.
        let vault = FakeVault::new()
            .with_version("payments", "v1", &fp(1))
            .with_version("payments", "v3", &fp(3));
        let vault = [4, 5].into_iter().fold(vault, |v, seed| {
            let (spki, jwk) = ec_key(seed);
            v.answering(&fingerprint(&spki), jwk)
        });
        let imported = |v: &str| KeySyncState::Imported {
            version: AzureVersion::new(v),
        };
        let sent = |seed| KeySyncState::ImportSent {
            fingerprint: fp(seed),
        };
        let store = FakeStore::default()
            .with_keys([
                sync("k1", imported("v1")),
                sync("k2", KeySyncState::NotStarted),
                sync("k3", sent(3)),
                sync("k4", sent(4)),
                sync("k5", KeySyncState::NotStarted),
            ])
            .with_local([
                local_key("k1", 1, Some("v1")),
                local_key("k2", 2, Some("v2")),
                local_key("k3", 3, None),
                local_key("k4", 4, None),
                local_key("k5", 5, None),
            ]);
        assert!(resolve_sent(&vault, &store, ID, &group()).await.unwrap());
        let pending = pending_keys(&store, ID, &group()).await.unwrap();
        assert_eq!(pending, [key("k4"), key("k5")]);
        let hsm = FakeHsm::default();
        let b = fake_batch(ID, 0, Validity::Unlimited, pending.len());
        for k in &pending {
            let outcome = import_one((&vault, &store, &hsm), &b, k).await.unwrap();
            assert_eq!(outcome, Outcome::Imported);
        }
        // Two imports in all, for k4 and k5; k1 to k3 were not sent again.
        let imported_keys: Vec<_> = vault
            .imports()
            .iter()
            .map(|r| r.tags["byokd-key"].clone())
            .collect();
        assert_eq!(imported_keys, ["k4", "k5"]);
        assert!(
            store.steps().contains(
                &SyncStep::Imported {
                    key: key("k2"),
                    version: AzureVersion::new("v2")
                }
                .into()
            )
        );
        let states: Vec<_> = store.key_states().into_iter().map(|s| s.state).collect();
        assert_eq!(
            states,
            [
                imported("v1"),
                imported("v2"),
                imported("v3"),
                imported("v4"),
                imported("v5")
            ]
        );
    }
}
