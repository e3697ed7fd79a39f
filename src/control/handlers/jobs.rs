//! `/v1/jobs`: list and show jobs, with a long-poll form (`?wait=SECONDS`, at most 60) that
//! returns as soon as the job changes, or when the wait ends; and cancel a job.

use super::{Ctx, Input, Reply};
use crate::contract::{self, Timestamp};
use crate::control::authz::{AnyRole, Authorized, Operate};
use crate::control::decode;
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use crate::model::{Job, JobId, KeySyncState};
use std::time::Duration;

/// The longest long-poll a request may ask for.
pub const MAX_WAIT_SECS: u64 = 60;

pub(super) fn decode_list(query: &str) -> Result<Option<String>, ApiError> {
    decode::only_query(query, &["state"])?;
    Ok(decode::query_value(query, "state").map(str::to_owned))
}

fn job_id(p: &Params) -> Result<JobId, ApiError> {
    p.get("job")
        .parse::<JobId>()
        .map_err(|_| ApiError::invalid("job", "a job id is a positive integer"))
}

pub(super) fn decode_cancel(p: &Params, query: &str) -> Result<JobId, ApiError> {
    decode::only_query(query, &[])?;
    job_id(p)
}

pub(super) fn decode_show(p: &Params, query: &str) -> Result<(JobId, u64), ApiError> {
    let id = job_id(p)?;
    Ok((id, decode_wait(query)?))
}

/// The `?wait=` of a job request, in seconds (0 without one).
pub(super) fn decode_wait(query: &str) -> Result<u64, ApiError> {
    decode::only_query(query, &["wait"])?;
    match decode::query_value(query, "wait") {
        None => Ok(0),
        Some(w) => match w.parse::<u64>() {
            Ok(n) if n <= MAX_WAIT_SECS => Ok(n),
            _ => Err(ApiError::invalid(
                "wait",
                format!("seconds, from 0 to {MAX_WAIT_SECS}"),
            )),
        },
    }
}

/// A job as the Jobs view shows it, with the dual-control approval it waits (or waited) for,
/// while the daemon remembers that approval (pending approvals live in memory only).
pub(crate) fn answer(ctx: &Ctx, job: &Job) -> contract::Job {
    let keys = job
        .keys
        .iter()
        .map(|k| {
            let (state, version) = match &k.state {
                KeySyncState::NotStarted => ("pending", None),
                KeySyncState::ImportSent { .. } => ("import-sent", None),
                KeySyncState::Imported { version } => ("imported", Some(version.to_string())),
                KeySyncState::Failed { .. } => ("failed", None),
            };
            contract::JobKey {
                key: k.key.to_string(),
                state: state.to_owned(),
                version,
            }
        })
        .collect();
    contract::Job {
        id: job.id.to_string(),
        kind: job.kind.code().to_owned(),
        title: job.kind.title().to_owned(),
        group: job.group.to_string(),
        keys,
        started_by: job.started_by.clone(),
        created: Timestamp::from_unix(job.created),
        started: job.started.map(Timestamp::from_unix),
        ended: job.ended.map(Timestamp::from_unix),
        state: job.state.code().to_owned(),
        progress: contract::Progress {
            done: job.progress,
            total: 1000,
            fraction: f64::from(job.progress) / 1000.0,
        },
        step: job
            .steps
            .last()
            .map(|s| s.message.clone())
            .unwrap_or_default(),
        steps: job
            .steps
            .iter()
            .map(|s| contract::Step {
                at: Timestamp::from_unix(s.at),
                message: s.message.clone(),
            })
            .collect(),
        journal: job
            .journal
            .iter()
            .map(|s| contract::JournalStep {
                step: s.code().to_owned(),
                key: s.key().map(|k| k.to_string()),
            })
            .collect(),
        error: job.error.clone(),
        cancel_requested: job.cancel_requested.clone(),
        approval: ctx.dual.of_job(job.id).map(|a| a.id),
    }
}

pub async fn list(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let state = decode_list(&i.query)?;
    let jobs = ctx
        .service
        .jobs()
        .await
        .iter()
        .rev()
        .filter(|j| state.as_deref().is_none_or(|s| j.state.code() == s))
        .map(|j| answer(ctx, j))
        .collect();
    Reply::ok(&contract::JobList { jobs })
}

pub async fn show(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let (id, wait) = decode_show(&i.params, &i.query)?;
    let mut changes = ctx.service.job_changes();
    let first = ctx.service.job(id).await?;
    if wait == 0 || first.state.is_final() {
        return Reply::ok(&answer(ctx, &first));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            break;
        }
        let now = ctx.service.job(id).await?;
        if now != first {
            return Reply::ok(&answer(ctx, &now));
        }
    }
    Reply::ok(&answer(ctx, &ctx.service.job(id).await?))
}

/// Cancels a job where that is safe (see [`crate::service::Service::cancel_job`]); a job that
/// waits for approval ends at once and its approval is withdrawn.
pub async fn cancel(who: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let id = decode_cancel(&i.params, &i.query)?;
    let job = ctx.dual.cancel_job(id, who.name()).await?;
    Reply::ok(&contract::JobAnswer {
        job: answer(ctx, &job),
    })
}
