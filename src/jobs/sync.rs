//! "Synchronize HSM protected key(s)": token → KEK → in-HSM wraps and imports (several in flight
//! per vault, see `sync_imports`) → record versions → delete (and purge) the KEK. Each step's
//! intent is journalled before its side effect, so a restart resumes from the journal: a
//! journalled KEK is found again or cleaned up, and an import whose answer was lost is found by
//! its fingerprint tag instead of being repeated.
//!
//! The state machine ([`steps`]) reaches Entra ID and Key Vault only through a [`Session`] and
//! [`StartImport`], the state through [`JobStore`]/[`LocalKeys`] and the HSM through [`KeyHsm`],
//! all given in a [`SyncPorts`] with the values it needs; [`sync_keys`] wires the real ones.
//! [`sync_keys`] is also the second half of a rotation, which syncs the key it generated.

use super::executor::{
    Flow, begin_cloud, fail, finish_cancelled, report_log_problem, succeed, with_retry_display,
};
use super::kek::{cleanup_kek, ensure_kek};
use super::ports::{JobStore, KeyHsm, LocalKeys, Session, Validity};
use super::sync_imports::{ImportPlan, StartImport, import_all};
use super::sync_resolve::resolve_sent;
use super::{JobError, Jobs};
use crate::azure::AccessToken;
use crate::clock::Clock;
use crate::logs::Event;
use crate::model::{Job, JobId, KeyGroup, KeyName, KeySyncState};
use crate::service::Designated;
use std::sync::Arc;
use tokio::sync::Semaphore;

pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    let Some((group, _permit, designated)) = begin_cloud(jobs, id).await? else {
        return Ok(());
    };
    let validity = Validity::of_policy(&group.rotation);
    match sync_keys(jobs, id, &group, validity, &designated).await {
        Ok(Flow::Done) => {
            succeed(jobs, id, "Synchronization finished").await?;
            tracing::info!(event = Event::JobsSucceeded.as_str(), job = id.get(), group = %group.name, vault = %group.target.name(), "Synchronize job {id} for key group {} succeeded", group.name);
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
    let ports = SyncPorts {
        session: jobs,
        store: jobs.service(),
        hsm: jobs.service().hsm(),
        kek_bits: jobs.settings().kek_bits,
        clock: jobs.clock().clone(),
        slots: jobs.slots().imports(group.target.name()),
        in_flight: jobs.slots().import_bound(),
    };
    with_retry_display(jobs.service(), id, steps(&ports, id, group, validity)).await
}

/// What a sync run reaches and is given: the sign-in, vaults and import tasks (`session`), the
/// job's state (`store`), the HSM (`hsm`), `azure.kek_size` (`kek_bits`), the clock, and the
/// vault's bound on imports in flight (`slots`, shared by every job on the vault, with
/// `in_flight` permits).
pub(super) struct SyncPorts<'a, P, S, H> {
    pub(super) session: &'a P,
    pub(super) store: &'a S,
    pub(super) hsm: &'a H,
    pub(super) kek_bits: u32,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) slots: Arc<Semaphore>,
    pub(super) in_flight: usize,
}

/// The job's cloud steps, then its clean-up, whatever happened to the imports.
async fn steps<P, S, H>(
    ports: &SyncPorts<'_, P, S, H>,
    id: JobId,
    group: &KeyGroup,
    validity: Validity,
) -> Result<Flow, JobError>
where
    P: Session + StartImport,
    S: JobStore + LocalKeys,
    H: KeyHsm,
{
    let (session, store) = (ports.session, ports.store);
    let mut token = None;
    let failed_before = store.failed_before(id).await?;
    let mut outcome = match (&failed_before, store.cancel_requested(id).await?) {
        (Some(reason), _) => Err(JobError::FailedBefore {
            reason: reason.clone(),
        }),
        (None, Some(by)) => Ok(Flow::Cancelled(by)),
        (None, None) => sync_pending(ports, id, group, validity, &mut token).await,
    };
    // A 401 (token expired or revoked): forget the token, sign in once more and resume from the
    // journal, which finds the KEK and any import again instead of repeating them.
    if let Err(e) = &outcome
        && failed_before.is_none()
    {
        match session.needs_new_token(group, e).await {
            Ok(true) => {
                session.drop_token(id, group).await?;
                token = None;
                outcome = sync_pending(ports, id, group, validity, &mut token).await;
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
    let mut cleanup = settle_cloud(session, store, ports.hsm, id, group, &mut token).await;
    if let Err(e) = &cleanup
        && session.needs_new_token(group, e).await.unwrap_or(false)
    {
        session.drop_token(id, group).await?;
        token = None;
        cleanup = settle_cloud(session, store, ports.hsm, id, group, &mut token).await;
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
async fn settle_cloud<S: JobStore + LocalKeys>(
    session: &impl Session,
    store: &S,
    hsm: &impl KeyHsm,
    id: JobId,
    group: &KeyGroup,
    token: &mut Option<AccessToken>,
) -> Result<(), JobError> {
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
        None => session
            .sign_in(id, group)
            .await
            .map_err(|e| JobError::KekLeftBehind {
                kek: Job::kek_name(id),
                target: group.target.clone(),
                source: Box::new(e),
            })?,
    };
    let settled = if sent {
        resolve_sent(&session.vault(&group.target, &t), store, hsm, id, group)
            .await
            .map(|_| ())
    } else {
        Ok(())
    };
    // The KEK lives in the vault or pool it was made in (always of the group's kind).
    let kek_target = store.kek(id).await?.map_or_else(
        || group.target.clone(),
        |k| group.target.with_journal_name(&k.vault),
    );
    let result = cleanup_kek(&session.vault(&kek_target, &t), store, id)
        .await
        .and(settled);
    *token = Some(t);
    result
}

/// Signs in, settles imports sent before a restart, ensures the KEK and imports the keys that
/// still need it.
async fn sync_pending<P, S, H>(
    ports: &SyncPorts<'_, P, S, H>,
    id: JobId,
    group: &KeyGroup,
    validity: Validity,
    token_out: &mut Option<AccessToken>,
) -> Result<Flow, JobError>
where
    P: Session + StartImport,
    S: JobStore + LocalKeys,
    H: KeyHsm,
{
    let (session, store, hsm) = (ports.session, ports.store, ports.hsm);
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
    let token = session.sign_in(id, group).await?;
    *token_out = Some(token.clone());
    if let Some(by) = store.cancel_requested(id).await? {
        return Ok(Flow::Cancelled(by));
    }
    // Imports sent before a restart (or a 401) are found by their tag first, with one listing.
    let vault = session.vault(&group.target, &token);
    let pending = if resolve_sent(&vault, store, hsm, id, group).await? {
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
    let settings = (ports.kek_bits, ports.clock.now_unix());
    let kek = ensure_kek(&vault, store, id, group, settings).await?;
    let plan = ImportPlan {
        keys: pending,
        validity,
        slots: ports.slots.clone(),
        in_flight: ports.in_flight,
        clock: ports.clock.clone(),
    };
    import_all(session, id, group, (&token, &kek), hsm.generator(), plan).await
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
            .with_imported("payments", "v1", 1)
            .with_imported("payments", "v3", 3);
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
        assert!(
            resolve_sent(&vault, &store, &FakeHsm::default(), ID, &group())
                .await
                .unwrap()
        );
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

/// The sync's state machine against the fakes: the calls each port saw.
#[cfg(test)]
mod flow_tests {
    use super::*;
    use crate::azure::jwk::fingerprint;
    use crate::azure::{AzureError, KeyVaultError};
    use crate::clock::ManualClock;
    use crate::hsm::HsmError;
    use crate::jobs::fakes::{
        FakeHsm, FakeStore, FakeVault, Refusal, ec_key, group, hsm_id, local_key,
    };
    use crate::jobs::fakes_session::FakeSession;
    use crate::model::{AzureVersion, KeySync};

    const ID: JobId = JobId::new(5);
    /// 2026-01-31T00:00:00Z.
    const NOW: i64 = 1_769_817_600;
    /// One calendar month after `NOW` (clamped to the end of February).
    const EXP: i64 = 1_772_236_800;
    const KEK: &str = "byokd-kek-5";

    /// Keys k1..=kn of group `payments`, none synced yet, and a vault that shows each key's
    /// public key for an import tagged with its fingerprint.
    fn fresh(n: u8) -> (FakeVault, FakeStore) {
        let names: Vec<String> = (1..=n).map(|i| format!("k{i}")).collect();
        let store = FakeStore::default()
            .with_keys(names.iter().map(|k| KeySync {
                key: KeyName::try_from(k.as_str()).unwrap(),
                state: KeySyncState::NotStarted,
            }))
            .with_local((1..=n).map(|i| local_key(&names[usize::from(i) - 1], i, None)));
        let vault = (1..=n).fold(FakeVault::new(), |v, seed| {
            let (spki, jwk) = ec_key(seed);
            v.answering(&fingerprint(&spki), jwk)
        });
        (vault, store)
    }

    async fn run_sync(session: &FakeSession, in_flight: usize) -> Result<Flow, JobError> {
        let clock = ManualClock::new(time::OffsetDateTime::from_unix_timestamp(NOW).unwrap());
        let ports = SyncPorts {
            session,
            store: &*session.store,
            hsm: &*session.hsm,
            kek_bits: 2048,
            clock: Arc::new(clock),
            slots: Arc::new(Semaphore::new(in_flight)),
            in_flight,
        };
        let mut g = group();
        g.rotation.enabled = true;
        g.rotation.keep_valid_months = 1;
        steps(&ports, ID, &g, Validity::of_policy(&g.rotation)).await
    }

    /// The `byokd-key` tag of every import the vault received, sorted.
    fn imported(vault: &FakeVault) -> Vec<String> {
        let mut keys: Vec<_> = vault
            .imports()
            .iter()
            .map(|r| r.tags["byokd-key"].clone())
            .collect();
        keys.sort();
        keys
    }

    fn count(changes: &[String], change: &str) -> usize {
        changes.iter().filter(|c| *c == change).count()
    }

    #[tokio::test]
    async fn a_sync_from_nothing_signs_in_once_and_leaves_no_kek_behind() {
        let (vault, store) = fresh(3);
        let session = FakeSession::new(vault, store, FakeHsm::default());
        assert_eq!(run_sync(&session, 2).await.unwrap(), Flow::Done);
        assert_eq!(session.calls(), ["sign in"]);
        let changes = session.vault.changes();
        assert_eq!(
            changes.first().map(String::as_str),
            Some("create byokd-kek-5")
        );
        assert_eq!(count(&changes, "import payments"), 3);
        assert_eq!(
            changes[changes.len() - 2..],
            [format!("delete {KEK}"), format!("purge {KEK}")]
        );
        // Every key wrapped and imported once, with the exp its policy asks for.
        let mut wraps = session.hsm.wraps();
        wraps.sort_by_key(|k| k.0);
        assert_eq!(wraps, [hsm_id(1), hsm_id(2), hsm_id(3)]);
        assert_eq!(imported(&session.vault), ["k1", "k2", "k3"]);
        assert!(
            session
                .vault
                .imports()
                .iter()
                .all(|r| (r.nbf, r.exp) == (Some(NOW), Some(EXP)))
        );
        // Each key's version recorded, on the key and in the job.
        let mut recorded = session.store.recorded();
        recorded.sort();
        let versions: Vec<_> = session.vault.versions("payments");
        assert_eq!(recorded.len(), 3);
        for (key, version) in &recorded {
            let v = versions.iter().find(|v| version == v.version.as_str());
            let fp = v.and_then(|v| v.fingerprint.clone());
            let seed: u8 = key.as_str()[1..].parse().unwrap();
            assert_eq!(fp, Some(fingerprint(&ec_key(seed).0)), "{key}");
        }
        assert!(
            session
                .store
                .key_states()
                .iter()
                .all(|s| matches!(s.state, KeySyncState::Imported { .. }))
        );
        let kek = session.store.kek_state().unwrap();
        assert!(kek.deleted && kek.purged.is_some(), "{kek:?}");
        assert_eq!(session.store.failed_before(ID).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_401_mid_sync_signs_in_once_more_and_resumes_from_the_journal() {
        // The second import meets 401: its token expired.
        let (vault, store) = fresh(3);
        let session = FakeSession::new(
            vault.refusing_import_after(1, Refusal::Unauthorized),
            store,
            FakeHsm::default(),
        );
        assert_eq!(run_sync(&session, 1).await.unwrap(), Flow::Done);
        assert_eq!(session.calls(), ["sign in", "drop token", "sign in"]);
        let changes = session.vault.changes();
        // The KEK journalled by the first run is found again, not created anew.
        assert_eq!(count(&changes, &format!("create {KEK}")), 1);
        assert_eq!(count(&changes, &format!("delete {KEK}")), 1);
        assert_eq!(count(&changes, &format!("purge {KEK}")), 1);
        // The key recorded before the 401 is not imported again; the refused one is, once.
        assert_eq!(imported(&session.vault), ["k1", "k2", "k3"]);
        assert_eq!(session.store.recorded().len(), 3);
        assert_eq!(session.store.failed_before(ID).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_failed_import_still_cleans_up_the_kek_and_keeps_the_error() {
        // k2's import is refused: the application lost its `import` permission.
        let (vault, store) = fresh(2);
        let vault = vault.refusing_import_after(1, Refusal::Forbidden);
        let session = FakeSession::new(vault, store, FakeHsm::default());
        let err = run_sync(&session, 1).await.unwrap_err();
        assert!(
            matches!(
                &err,
                JobError::Azure(AzureError::KeyVault(KeyVaultError::PermissionDenied { .. }))
            ),
            "{err:?}"
        );
        assert_eq!(session.calls(), ["sign in"]);
        let changes = session.vault.changes();
        assert_eq!(
            changes[changes.len() - 2..],
            [format!("delete {KEK}"), format!("purge {KEK}")]
        );
        assert!(session.store.kek_state().unwrap().purged.is_some());
        assert_eq!(
            session.store.failed_before(ID).await.unwrap(),
            Some(err.to_string())
        );
        assert_eq!(
            session.store.recorded(),
            [(KeyName::try_from("k1").unwrap(), AzureVersion::new("v1"))]
        );
    }

    #[tokio::test]
    async fn a_cancel_before_sign_in_signs_in_to_nothing_and_makes_no_kek() {
        let (vault, store) = fresh(2);
        let session = FakeSession::new(vault, store.cancelled_by("bob"), FakeHsm::default());
        assert_eq!(
            run_sync(&session, 1).await.unwrap(),
            Flow::Cancelled("bob".into())
        );
        assert!(session.calls().is_empty());
        assert!(session.vault.changes().is_empty());
        assert_eq!(session.store.kek_state(), None);
        assert!(session.hsm.wraps().is_empty());
    }

    #[tokio::test]
    async fn a_key_type_no_strategy_wraps_is_refused_before_any_kek() {
        let (vault, store) = fresh(2);
        let session = FakeSession::new(vault, store, FakeHsm::refusing());
        let err = run_sync(&session, 1).await.unwrap_err();
        assert!(
            matches!(err, JobError::Hsm(HsmError::NonConformingEncoding { .. })),
            "{err:?}"
        );
        assert!(session.calls().is_empty());
        assert!(session.vault.changes().is_empty());
        assert_eq!(session.store.kek_state(), None);
        assert!(session.hsm.wraps().is_empty());
        assert_eq!(
            session.store.failed_before(ID).await.unwrap(),
            Some(err.to_string())
        );
    }
}
