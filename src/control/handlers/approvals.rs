//! `/v1/approvals`: list and show pending dual-control actions, approve (a second, different
//! admin; the action then runs) and reject. Dual control ([`crate::dual_control`]) decides and
//! logs every request, approval and rejection with both identities; this decodes and answers.

use super::{Ctx, Input, Reply};
use crate::contract::{self, ApprovalAction, ApprovalStatus, Timestamp};
use crate::control::authz::{Admin, AnyRole, Authorized};
use crate::control::decode;
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use crate::dual_control::{Action, Approval, Status};
use crate::model::ApprovalId;

pub(super) fn answer(a: Approval) -> contract::Approval {
    let action = match a.action {
        Action::DeleteCredential(a) => ApprovalAction::DeleteCredential {
            credential: a.credential,
        },
        Action::DeleteKey(a) => ApprovalAction::DeleteKey {
            group: a.group,
            key: a.key,
        },
        Action::DeleteGroupCloud(a) => ApprovalAction::DeleteGroupCloud { group: a.group },
        Action::PurgeGroupCloud(a) => ApprovalAction::PurgeGroupCloud { group: a.group },
        Action::ExportByok(a) => ApprovalAction::ExportByok {
            group: a.group,
            key: a.key,
            kek_kid: a.kek_kid,
        },
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

/// Records a dual-control request and answers 202 with the approval to quote.
pub(super) fn requested(approval: Approval) -> Result<Reply, ApiError> {
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

pub async fn list(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    decode_list(&i.query)?;
    let status = decode::query_value(&i.query, "status");
    let approvals = ctx
        .dual
        .list()
        .await
        .into_iter()
        .map(answer)
        .filter(|a| status.is_none_or(|s| a.status.as_str() == s))
        .collect();
    Reply::ok(&contract::ApprovalList { approvals })
}

pub async fn show(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    Reply::ok(&answer(ctx.dual.get(&id(&i.params)?).await?))
}

/// Rejects a pending action; a job waiting for it ends `cancelled`.
pub async fn reject(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let approval = ctx.dual.reject(&id(&i.params)?, auth.name()).await?;
    Reply::ok(&answer(approval))
}

/// Approves and runs the action, as the requester with the approver's consent; the answer
/// carries the job it started, if any.
pub async fn approve(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let decision = ctx.dual.approve(&id(&i.params)?, auth.name()).await?;
    let mut body = answer(decision.approval);
    if let Some(job) = &decision.job {
        body.job = Some(Box::new(super::jobs::answer(ctx, job)));
    }
    Reply::ok(&body)
}
