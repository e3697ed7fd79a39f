//! Cloud actions: synchronize a key or group, force a rotation, check cloud state and recover
//! a soft-deleted key (202 with a job), and delete on the cloud service and purge (admin, dual
//! control: 202 with the approval and its job in `waiting-approval`, which starts once a second
//! admin approves).
//!
//! Every cloud-mutating action is refused with 409 `not_designated` on an appliance that is not
//! the designated device. Delete on cloud never touches local keys; deleting local keys never
//! touches the cloud.

use super::{Ctx, Input, Reply};
use crate::control::approvals::Action;
use crate::control::authz::{Admin, Authorized, Operate};
use crate::control::errors::ApiError;
use crate::model::JobKind;
use crate::model::{ApprovalId, JobId};
use http::StatusCode;

/// How long a purge request waits for Azure to say whether the vault allows a purge.
const PURGE_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The job runner, or 503 where the daemon runs without the Azure layer.
pub(super) fn jobs<'a>(ctx: &'a Ctx, what: &str) -> Result<&'a crate::jobs::Jobs, ApiError> {
    ctx.jobs.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "jobs_unavailable",
            format!("{what}: this daemon runs without the Azure layer"),
        )
    })
}

/// 409 unless this appliance is the designated device.
async fn require_designated(ctx: &Ctx, what: &str) -> Result<(), ApiError> {
    if ctx.service.designated().await {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "not_designated",
        format!(
            "{what} refused: this appliance is not the designated device, and only the designated device changes the cloud; set `designated = true` in the configuration or `byokctl designated set true` (PUT /v1/config/designated) on the one appliance that should"
        ),
    ))
}

/// "Synchronize HSM protected key(s)" for every key of the group that has no Azure version
/// (chosen by the service under its lock, when the job is created).
pub async fn sync_group(who: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    ctx.service.group(&group).await?;
    require_designated(ctx, "synchronize").await?;
    let id = jobs(ctx, "synchronize")?
        .submit_sync_unpushed(&group, who.name())
        .await
        .map_err(|e| match e {
            crate::jobs::JobError::Service(crate::service::ServiceError::Conflict(m)) => {
                ApiError::new(StatusCode::CONFLICT, "nothing_to_sync", m)
            }
            e => job_error(e),
        })?;
    started(ctx, id).await
}

async fn submit_sync(
    ctx: &Ctx,
    who: &Authorized<Operate>,
    group: &crate::model::GroupName,
    keys: &[crate::model::KeyName],
) -> Result<Reply, ApiError> {
    let jobs = jobs(ctx, "synchronize")?;
    let id = jobs
        .submit_sync(group, keys, who.name())
        .await
        .map_err(job_error)?;
    started(ctx, id).await
}

/// Like [`job_error`], but a refusal by the cloud's state (purge protection, a live key, a
/// purge approved for another vault) is a 409 `cloud_state`.
pub(super) fn cloud_error(e: crate::jobs::JobError) -> ApiError {
    match e {
        crate::jobs::JobError::Invalid(m) => ApiError::new(StatusCode::CONFLICT, "cloud_state", m),
        other => job_error(other),
    }
}

pub(super) fn job_error(e: crate::jobs::JobError) -> ApiError {
    use crate::jobs::JobError;
    match e {
        JobError::NotDesignated => {
            ApiError::new(StatusCode::CONFLICT, "not_designated", e.to_string())
        }
        JobError::Invalid(m) => ApiError::invalid("keys", m),
        JobError::Service(s) => s.into(),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "job_failed_to_start",
            other.to_string(),
        ),
    }
}

/// "Rotate key material" now: a new HSM key pushed as the group's current Azure version.
pub async fn rotate_group(
    who: Authorized<Operate>,
    ctx: &Ctx,
    i: Input,
) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    ctx.service.group(&group).await?;
    require_designated(ctx, "rotate").await?;
    let id = jobs(ctx, "rotate")?
        .submit_rotate(&group, who.name())
        .await
        .map_err(job_error)?;
    started(ctx, id).await
}

/// "Check cloud state": a read-only drift check, allowed on any appliance.
pub async fn check_group(who: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    ctx.service.group(&group).await?;
    let id = jobs(ctx, "check cloud state")?
        .submit_check(&group, who.name())
        .await
        .map_err(job_error)?;
    started(ctx, id).await
}

async fn started(ctx: &Ctx, id: JobId) -> Result<Reply, ApiError> {
    let job = ctx.service.job(id).await?;
    Reply::accepted(&crate::contract::JobStarted {
        job: super::jobs::answer(ctx, &job),
        approval: None,
        message: None,
    })
}

/// "Recover key material on cloud": the group's soft-deleted Azure key (all versions) brought
/// back while Azure still holds it. A job, so that an unreachable or refusing vault fails the
/// job with the reason instead of the request.
pub async fn recover(who: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    ctx.service.group(&group).await?;
    require_designated(ctx, "recover").await?;
    let id = jobs(ctx, "recover")?
        .submit_recover(&group, who.name())
        .await
        .map_err(job_error)?;
    started(ctx, id).await
}

/// "Synchronize HSM protected key(s)" for one key; a pushed key is a no-op that reports its version.
pub async fn sync_key(who: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let (group, key) = super::keys::names(&i.params)?;
    ctx.service.key(&group, &key).await?;
    submit_sync(ctx, &who, &group, &[key]).await
}

/// Delete on cloud service: recorded at once as a job in `waiting-approval`, linked to the
/// dual-control approval; a second admin's approval runs it, a rejection, the approval's expiry
/// or a cancel of the job ends it `cancelled`. Local keys are untouched.
pub async fn delete_cloud(who: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    ctx.service.group(&group).await?;
    require_designated(ctx, "delete on cloud").await?;
    let action = Action::DeleteGroupCloud {
        group: group.to_string(),
    };
    let job = (action, JobKind::DeleteOnCloud);
    request_job(&who, ctx, &group, job, "delete on cloud").await
}

/// Records the dual-control `action` and its job of `kind` in `waiting-approval`, linked to
/// each other, and answers 202 with both.
async fn request_job(
    who: &Authorized<Admin>,
    ctx: &Ctx,
    group: &crate::model::GroupName,
    (action, kind): (Action, JobKind),
    what: &str,
) -> Result<Reply, ApiError> {
    let jobs = jobs(ctx, what)?;
    let approval = super::approvals::submit(who, ctx, action)?;
    let id = match jobs
        .request_approval_job(kind, group, who.name(), &approval.id, approval.expires_at)
        .await
    {
        Ok(id) => id,
        Err(e) => {
            ctx.approvals.reject(&approval.id, who.identity()).ok();
            return Err(job_error(e));
        }
    };
    ctx.approvals.link_job(&approval.id, id);
    end_on_expiry(ctx, &approval.id, approval.expires_at, id);
    let approval = ctx.approvals.get(&approval.id)?;
    let job = ctx.service.job(id).await?;
    let message = format!(
        "{} needs a second admin: job {id} waits in waiting-approval until a different admin runs `byokctl approval approve {}` (before it expires); `byokctl job cancel {id}` withdraws the request",
        approval.summary, approval.id
    );
    Reply::accepted(&crate::contract::Pending {
        job: Some(super::jobs::answer(ctx, &job)),
        approval: super::approvals::answer(approval),
        message,
    })
}

/// Ends the waiting job `cancelled` once its approval expires unapproved (or is gone from the
/// table, so that it can no longer be approved).
fn end_on_expiry(ctx: &Ctx, approval: &ApprovalId, expires_at: i64, job: JobId) {
    use crate::control::approvals::Status;
    let (approvals, service, approval) = (ctx.approvals.clone(), ctx.service.clone(), *approval);
    tokio::spawn(async move {
        loop {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            // One second past the expiry, so the table sees it expired.
            let wait = u64::try_from(expires_at.saturating_sub(now).saturating_add(1)).unwrap_or(1);
            tokio::time::sleep(std::time::Duration::from_secs(wait.max(1))).await;
            let requested_by = match approvals.get(&approval) {
                Ok(a) if a.status == Status::Pending => continue,
                Ok(a) if a.status == Status::Expired => a.requested_by,
                Ok(_) => return,
                Err(_) => "?".to_owned(),
            };
            let reason = format!(
                "Cancelled: approval {approval} expired at {expires_at} without a second admin's approval; request again"
            );
            match service.end_waiting_job(job, &reason).await {
                Ok(true) => {
                    tracing::warn!(approval = %approval, job = job.get(), requested_by = %requested_by,
                    "dual-control request expired; its job is cancelled")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(approval = %approval, job = job.get(), error = %e, "could not end a job whose approval expired")
                }
            }
            return;
        }
    });
}

/// "Purge key material on cloud" of a soft-deleted Azure key: refused at once (409
/// `cloud_state`, with the reason) where the vault's recovery level forbids purging or the key
/// is live; else recorded like a delete on cloud, as a job in `waiting-approval` linked to the
/// dual-control approval, pinned to the group's vault now. Local keys are untouched.
pub async fn purge(who: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    let vault = ctx.service.group(&group).await?.vault;
    require_designated(ctx, "purge").await?;
    // Refused now, with the vault's reason, rather than after a second admin approved it.
    // Where Azure cannot be asked in time, the request goes ahead: the job then says.
    match tokio::time::timeout(PURGE_CHECK, jobs(ctx, "purge")?.purge_possible(&group)).await {
        Ok(Err(e @ crate::jobs::JobError::Invalid(_))) => return Err(cloud_error(e)),
        Ok(Err(e)) => {
            tracing::warn!(group = %group, error = %e, "could not ask Azure whether the vault allows a purge; requesting approval anyway");
        }
        Err(_) => {
            tracing::warn!(group = %group, "Azure did not say in time whether the vault allows a purge; requesting approval anyway");
        }
        Ok(Ok(())) => {}
    }
    let action = Action::PurgeGroupCloud {
        group: group.to_string(),
        vault,
    };
    request_job(&who, ctx, &group, (action, JobKind::Purge), "purge").await
}
