//! `/v1/approvals`: list and show pending dual-control actions, approve (a second, different
//! admin; the action then runs) and reject. Every request, approval and rejection is logged
//! with both identities.

use super::{Ctx, Input, Reply};
use crate::contract::{self, ApprovalAction, ApprovalStatus, Timestamp};
use crate::control::approvals::{Action, Approval, Approved, Status};
use crate::control::authz::{Admin, AnyRole, Authorized};
use crate::control::decode;
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use crate::logs::Event;
use crate::model::GroupName;
use crate::model::{ApprovalId, JobId};

/// An approval as the API shows it.
pub(super) fn answer(a: Approval) -> contract::Approval {
    let action = match a.action {
        Action::DeleteCredential { credential } => ApprovalAction::DeleteCredential { credential },
        Action::DeleteKey { group, key, .. } => ApprovalAction::DeleteKey { group, key },
        Action::DeleteGroupCloud { group } => ApprovalAction::DeleteGroupCloud { group },
        Action::PurgeGroupCloud { group, .. } => ApprovalAction::PurgeGroupCloud { group },
    };
    contract::Approval {
        id: a.id,
        action,
        summary: a.summary,
        status: match a.status {
            Status::Pending => ApprovalStatus::Pending,
            Status::Approved => ApprovalStatus::Approved,
            Status::Rejected => ApprovalStatus::Rejected,
            Status::Expired => ApprovalStatus::Expired,
            Status::Failed => ApprovalStatus::Failed,
        },
        requested_by: a.requested_by,
        requested_at: Timestamp::from_unix(a.requested_at),
        expires_at: Timestamp::from_unix(a.expires_at),
        decided_by: a.decided_by,
        decided_at: a.decided_at.map(Timestamp::from_unix),
        outcome: a.outcome,
        job_id: a.job_id.map(|j| j.to_string()),
        job: None,
    }
}

pub(super) fn id(p: &Params) -> Result<ApprovalId, ApiError> {
    p.get("approval").parse::<ApprovalId>().map_err(|_| {
        ApiError::invalid(
            "approval",
            "an approval id is a UUID, as returned with the 202 answer",
        )
    })
}

pub(super) fn decode_list(query: &str) -> Result<(), ApiError> {
    decode::only_query(query, &["status"])?;
    match decode::query_value(query, "status") {
        None | Some("pending" | "approved" | "rejected" | "expired" | "failed") => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "status",
            "use pending, approved, rejected, expired or failed",
        )),
    }
}

/// Records a dual-control request (logged) and returns the approval.
pub(super) fn submit(
    auth: &Authorized<Admin>,
    ctx: &Ctx,
    action: Action,
) -> Result<Approval, ApiError> {
    let approval = ctx.approvals.submit(action, auth.identity())?;
    let (group, key, credential) = approval.action.target();
    tracing::warn!(event = Event::ApprovalRequested.as_str(), service = "control", approval = %approval.id,
        identity = %approval.requested_by, group, key, credential, expires_at = approval.expires_at,
        "Dual-control request {} by {}: {}; waiting for a second admin", approval.id, approval.requested_by, approval.summary);
    Ok(approval)
}

/// Records a dual-control request and answers 202 with the approval to quote.
pub(super) fn request(
    auth: &Authorized<Admin>,
    ctx: &Ctx,
    action: Action,
) -> Result<Reply, ApiError> {
    let approval = submit(auth, ctx, action)?;
    let message = format!(
        "{} needs a second admin: run `byokctl approval approve {}` as a different admin before it expires",
        approval.summary, approval.id
    );
    Reply::accepted(&contract::Pending {
        approval: answer(approval),
        message,
        job: None,
    })
}

pub fn list(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    decode_list(&i.query)?;
    let status = decode::query_value(&i.query, "status");
    let approvals = ctx
        .approvals
        .list()
        .into_iter()
        .map(answer)
        .filter(|a| status.is_none_or(|s| a.status.as_str() == s))
        .collect();
    Reply::ok(&contract::ApprovalList { approvals })
}

pub fn show(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    Reply::ok(&answer(ctx.approvals.get(&id(&i.params)?)?))
}

/// Rejects a pending action; a job waiting for it ends `cancelled`.
pub async fn reject(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let id = id(&i.params)?;
    let approval = ctx
        .approvals
        .reject(&id, auth.identity())
        .inspect_err(|e| refused(&id, auth.name(), e))?;
    let (group, key, credential) = approval.action.target();
    tracing::warn!(event = Event::ApprovalRejected.as_str(), service = "control", approval = %approval.id,
        identity = %auth.name(), requested_by = %approval.requested_by, rejected_by = %auth.name(), group, key, credential,
        "Dual-control request {} by {} rejected by {}: {}", approval.id, approval.requested_by, auth.name(), approval.summary);
    if let Some(job) = linked_job(&approval) {
        let reason = format!(
            "Cancelled: approval {} was rejected by {}",
            approval.id,
            auth.name()
        );
        ctx.service.end_waiting_job(job, &reason).await?;
    }
    Reply::ok(&answer(approval))
}

/// Records a refused approve or reject.
fn refused(id: &ApprovalId, by: &str, e: &ApiError) {
    tracing::warn!(
        event = Event::ApprovalRefused.as_str(),
        service = "control",
        approval = %id,
        identity = by,
        code = e.code,
        "Approval decision on {id} by {by} refused: {}",
        e.message
    );
}

/// The job an approval's action waits in, if any.
fn linked_job(approval: &Approval) -> Option<JobId> {
    approval.job_id
}

/// Approves and runs the action, as the requester with the approver's consent. The action
/// re-checks its preconditions under the state lock; if they no longer hold, the approval ends
/// `failed` with the reason.
pub async fn approve(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let id = id(&i.params)?;
    let approved = ctx
        .approvals
        .approve(&id, auth.identity())
        .inspect_err(|e| refused(&id, auth.name(), e))?;
    let approval = approved.approval();
    let (group, key, credential) = approval.action.target();
    tracing::warn!(event = Event::ApprovalApproved.as_str(), service = "control", approval = %approval.id,
        identity = %auth.name(), requested_by = %approval.requested_by, approved_by = %auth.name(), group, key, credential,
        "Dual-control request {} by {} approved by {}: {}; executing", approval.id, approval.requested_by, auth.name(), approval.summary);
    let result = execute(ctx, &approved).await;
    let (ok, outcome) = match &result {
        Ok(Executed::Done) => (true, "done".to_owned()),
        Ok(Executed::Job(job)) => (true, format!("job {} started", job.id)),
        Err(e) => (false, e.message.clone()),
    };
    ctx.approvals
        .record_outcome(&approval.id, ok, outcome.clone());
    let by = approved.by();
    if ok {
        tracing::warn!(event = Event::ApprovalExecuted.as_str(), service = "control", approval = %approval.id,
            identity = %by, group, key, credential, "Approved action {} ({}) done: {outcome}", approval.id, approval.summary);
    } else {
        tracing::error!(event = Event::ApprovalExecuted.as_str(), service = "control", approval = %approval.id,
            identity = %by, group, key, credential, "Approved action {} ({}) not done: {outcome}", approval.id, approval.summary);
    }
    let mut body = answer(ctx.approvals.get(&approval.id)?);
    if let Executed::Job(job) = result? {
        body.job = Some(Box::new(super::jobs::answer(ctx, &job)));
    }
    Reply::ok(&body)
}

/// What executing an approved action gave.
enum Executed {
    Done,
    /// A job was started; the answer carries it so the caller can follow it.
    Job(Box<crate::model::Job>),
}

async fn execute(ctx: &Ctx, approved: &Approved) -> Result<Executed, ApiError> {
    let by = approved.by();
    match approved.action() {
        Action::DeleteCredential { .. } => {
            ctx.service.delete_credential_approved(approved).await?;
        }
        Action::DeleteKey { .. } => {
            ctx.service.delete_key_approved(approved).await?;
        }
        Action::DeleteGroupCloud { group } => {
            let (jobs, waiting) = waiting_job(ctx, approved, group, "delete on cloud").await?;
            let id = jobs
                .approved(waiting, &by, approved.approver())
                .await
                .map_err(super::cloud::job_error)?;
            return Ok(Executed::Job(Box::new(ctx.service.job(id).await?)));
        }
        Action::PurgeGroupCloud { group, vault } => {
            let (jobs, waiting) = waiting_job(ctx, approved, group, "purge").await?;
            let id = jobs
                .approved_purge(waiting, vault, &by, approved.approver())
                .await
                .map_err(super::cloud::cloud_error)?;
            return Ok(Executed::Job(Box::new(ctx.service.job(id).await?)));
        }
    }
    Ok(Executed::Done)
}

/// The job runner and the job that `approved` (about `group`) waits in.
async fn waiting_job<'a>(
    ctx: &'a Ctx,
    approved: &Approved,
    group: &str,
    what: &str,
) -> Result<(&'a crate::jobs::Jobs, JobId), ApiError> {
    let g = decode::field("group", GroupName::try_from(group.to_owned()))?;
    let jobs = super::cloud::jobs(ctx, what)?;
    ctx.service.group(&g).await?;
    let waiting = linked_job(approved.approval()).ok_or_else(|| {
        ApiError::new(
            http::StatusCode::CONFLICT,
            "approval_without_job",
            format!(
                "approval {} has no waiting job; request the {what} again",
                approved.id()
            ),
        )
    })?;
    Ok((jobs, waiting))
}
