//! Cloud actions: synchronize a key or group, force a rotation, check cloud state and recover
//! a soft-deleted key (202 with a job), and delete on the cloud service and purge (admin, dual
//! control: 202 with the approval and its job in `waiting-approval`, which starts once a second
//! admin approves).
//!
//! Every cloud-mutating action is refused with 409 `not_designated` on an appliance that is not
//! the designated device: the job runner takes the service's `Designated` proof. Delete on
//! cloud and purge are dual control's ([`crate::dual_control`]). Delete on cloud never touches
//! local keys; deleting local keys never touches the cloud.

use super::{Ctx, Input, Reply};
use crate::control::authz::{Admin, Authorized, Operate};
use crate::control::errors::ApiError;
use crate::dual_control::{Approval, DualControlError};
use crate::model::{Job, JobId};
use crate::service::Designated;
use http::StatusCode;

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

/// The proof that this appliance is the designated device, or 409 `not_designated`.
pub(super) async fn designated(ctx: &Ctx, what: &'static str) -> Result<Designated, ApiError> {
    ctx.service
        .designated_device()
        .await
        .map_err(|_| DualControlError::NotDesignated { what }.into())
}

/// "Synchronize HSM protected key(s)" for every key of the group that has no Azure version
/// (chosen by the service under its lock, when the job is created).
pub async fn sync_group(who: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    ctx.service.group(&group).await?;
    let designated = designated(ctx, "synchronize").await?;
    let id = jobs(ctx, "synchronize")?
        .submit_sync_unpushed(designated, &group, who.name())
        .await
        .map_err(|e| match e {
            crate::jobs::JobError::Service(crate::service::ServiceError::Conflict(m)) => {
                ApiError::new(StatusCode::CONFLICT, "nothing_to_sync", m)
            }
            e => e.into(),
        })?;
    started(ctx, id).await
}

async fn submit_sync(
    ctx: &Ctx,
    who: &Authorized<Operate>,
    group: &crate::model::GroupName,
    keys: &[crate::model::KeyName],
) -> Result<Reply, ApiError> {
    let designated = designated(ctx, "synchronize").await?;
    let id = jobs(ctx, "synchronize")?
        .submit_sync(designated, group, keys, who.name())
        .await?;
    started(ctx, id).await
}

/// "Rotate key material" now: a new HSM key pushed as the group's current Azure version.
pub async fn rotate_group(
    who: Authorized<Operate>,
    ctx: &Ctx,
    i: Input,
) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    ctx.service.group(&group).await?;
    let designated = designated(ctx, "rotate").await?;
    let id = jobs(ctx, "rotate")?
        .submit_rotate(designated, &group, who.name())
        .await?;
    started(ctx, id).await
}

/// "Check cloud state": a read-only drift check, allowed on any appliance.
pub async fn check_group(who: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    ctx.service.group(&group).await?;
    let id = jobs(ctx, "check cloud state")?
        .submit_check(&group, who.name())
        .await?;
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
    let designated = designated(ctx, "recover").await?;
    let id = jobs(ctx, "recover")?
        .submit_recover(designated, &group, who.name())
        .await?;
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
    let requested = ctx.dual.request_delete_cloud(&group, who.name()).await?;
    waiting(ctx, requested)
}

/// "Purge key material on cloud" of a soft-deleted Azure key: refused at once (409
/// `cloud_state`, with the reason) where the vault's recovery level forbids purging or the key
/// is live; else recorded like a delete on cloud, as a job in `waiting-approval` linked to the
/// dual-control approval, pinned to the group's vault now. Local keys are untouched.
pub async fn purge(who: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    let requested = ctx.dual.request_purge(&group, who.name()).await?;
    waiting(ctx, requested)
}

/// 202 with the approval and the job that waits for it.
fn waiting(ctx: &Ctx, (approval, job): (Approval, Job)) -> Result<Reply, ApiError> {
    let id = job.id;
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
