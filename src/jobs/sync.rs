//! "Synchronize HSM protected key(s)": token → KEK → in-HSM wraps and imports (several in flight
//! per vault, see `sync_imports`) → record versions → delete (and purge) the KEK. Each step's
//! intent is journalled before its side effect, so a restart resumes from the journal: a
//! journalled KEK is found again or cleaned up, and an import whose answer was lost is found by
//! its fingerprint tag instead of being repeated.
//!
//! [`sync_keys`] is also the second half of a rotation, which syncs the key it generated.

use super::executor::{
    Flow, begin, cancelled, fail, finish_cancelled, report_log_problem, succeed, with_retry_display,
};
use super::kek::{cleanup_kek, ensure_kek};
use super::ports::SignedIn;
use super::sign_in::{drop_token, needs_new_token, sign_in};
pub(super) use super::sync_imports::Validity;
use super::sync_imports::{ImportPlan, import_all};
use super::sync_resolve::resolve_sent;
use super::{JobError, Jobs};
use crate::azure::AccessToken;
use crate::azure::transfer_blob::generator;
use crate::logs::Event;
use crate::model::{Job, JobId, KeyGroup, KeyName, KeySyncState, SyncStep};
use crate::service::record_step;

pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    let Some((group, _permit)) = begin(jobs, id, true).await? else {
        return Ok(());
    };
    match sync_keys(jobs, id, &group, Validity::of_policy(&group.rotation)).await {
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
/// valid as `validity` says.
pub(super) async fn sync_keys(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
    validity: Validity,
) -> Result<Flow, JobError> {
    let svc = jobs.service();
    let job = svc.job(id).await?;
    with_retry_display(svc, id, steps(jobs, id, &job, group, validity)).await
}

/// The job's cloud steps, then its clean-up, whatever happened to the imports.
async fn steps(
    jobs: &Jobs,
    id: JobId,
    job: &Job,
    group: &KeyGroup,
    validity: Validity,
) -> Result<Flow, JobError> {
    let svc = jobs.service();
    let mut token = None;
    let mut outcome = match (&job.error, &job.cancel_requested) {
        (Some(reason), _) => Err(JobError::FailedBefore {
            reason: reason.clone(),
        }),
        (None, Some(by)) => Ok(Flow::Cancelled(by.clone())),
        (None, None) => sync_pending(jobs, id, group, validity, &mut token).await,
    };
    // A 401 (token expired or revoked): forget the token, sign in once more and resume from the
    // journal, which finds the KEK and any import again instead of repeating them.
    if let Err(e) = &outcome
        && job.error.is_none()
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
        let reason = e.to_string();
        svc.journal(id, |j| {
            j.error.get_or_insert(reason);
        })
        .await?;
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
    let svc = jobs.service();
    let job = svc.job(id).await?;
    let sent = job
        .keys
        .iter()
        .any(|p| matches!(p.state, KeySyncState::ImportSent { .. }));
    let kek_open = job.kek.as_ref().is_some_and(|k| k.purged.is_none());
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
        resolve_sent(&signed_in(jobs, group, &t), svc, id, group)
            .await
            .map(|_| ())
    } else {
        Ok(())
    };
    // The KEK lives in the vault it was made in.
    let kek_vault = svc.job(id).await?.kek.map(|k| k.vault);
    let vault = kek_vault.as_ref().unwrap_or(&group.vault).as_str();
    let session = SignedIn::new(jobs.azure().keyvault(), t.clone(), vault);
    let result = cleanup_kek(&session, svc, id).await.and(settled);
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
    let svc = jobs.service();
    let job = svc.job(id).await?;
    let pending = pending_keys(jobs, &job, group).await?;
    if pending.is_empty() {
        svc.job_step(
            id,
            "Nothing to push: every key already has its Azure version",
            Some(1000),
        )
        .await?;
        return Ok(Flow::Done);
    }
    // Refused up front, before a KEK is made: no strategy wraps this key type conformingly.
    svc.hsm().wrap_report().strategy_for(group.key_type)?;
    if let Some(by) = cancelled(jobs, id).await? {
        return Ok(Flow::Cancelled(by));
    }
    let token = sign_in(jobs, id, group).await?;
    *token_out = Some(token.clone());
    if let Some(by) = cancelled(jobs, id).await? {
        return Ok(Flow::Cancelled(by));
    }
    // Imports sent before a restart (or a 401) are found by their tag first, with one listing.
    let pending = if resolve_sent(&signed_in(jobs, group, &token), svc, id, group).await? {
        pending_keys(jobs, &svc.job(id).await?, group).await?
    } else {
        pending
    };
    if pending.is_empty() {
        svc.job_step(
            id,
            "Nothing more to push: every key has its Azure version",
            Some(900),
        )
        .await?;
        return Ok(Flow::Done);
    }
    let kek = ensure_kek(jobs, id, group, &token).await?;
    let report = svc.hsm().report();
    let generator = generator(
        &report.manufacturer,
        &report.model,
        &report.firmware_version,
    );
    let plan = ImportPlan {
        keys: pending,
        validity,
    };
    import_all(jobs, id, group, &token, &kek, &generator, plan).await
}

/// Keys of the job that still need an import. Keys synced earlier are reported, not repeated.
async fn pending_keys(jobs: &Jobs, job: &Job, group: &KeyGroup) -> Result<Vec<KeyName>, JobError> {
    let svc = jobs.service();
    let mut pending = Vec::new();
    for sync in &job.keys {
        if matches!(sync.state, KeySyncState::Imported { .. }) {
            continue;
        }
        let key = svc.key_record(&group.name, &sync.key).await?;
        match (&key.azure_version, &sync.state) {
            (Some(version), KeySyncState::NotStarted) => {
                let version = version.clone();
                svc.journal(job.id, |j| {
                    for p in j.keys.iter_mut().filter(|p| p.key == sync.key) {
                        p.state = KeySyncState::Imported {
                            version: version.clone(),
                        };
                    }
                    record_step(
                        j,
                        SyncStep::Imported {
                            key: sync.key.clone(),
                            version: version.clone(),
                        }
                        .into(),
                        &format!(
                            "Key {} is already pushed as version {version}; nothing to do",
                            sync.key
                        ),
                    )
                })
                .await??;
            }
            _ => pending.push(sync.key.clone()),
        }
    }
    Ok(pending)
}

/// The group's vault with this token.
fn signed_in<'a>(jobs: &'a Jobs, group: &'a KeyGroup, token: &AccessToken) -> SignedIn<'a> {
    SignedIn::new(jobs.azure().keyvault(), token.clone(), group.vault.as_str())
}
