//! `/v1/approvals`: list and show pending dual-control actions, approve (a second, different
//! admin; the action then runs) and reject. Dual control ([`crate::dual_control`]) decides and
//! logs every request, approval and rejection with both identities; this decodes and answers.

use super::{Ctx, Input, Reply, to_json};
use crate::control::authz::{Admin, AnyRole, Authorized};
use crate::control::decode;
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use crate::dual_control::Approval;
use serde_json::json;

pub(super) fn id(p: &Params) -> Result<String, ApiError> {
    let raw = p.get("approval");
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| {
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
pub(super) fn requested(approval: &Approval) -> Result<Reply, ApiError> {
    Reply::accepted(json!({
        "approval": to_json(approval)?,
        "message": format!(
            "{} needs a second admin: run `byokctl approval approve {}` as a different admin before it expires",
            approval.summary, approval.id
        ),
    }))
}

pub async fn list(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    decode_list(&i.query)?;
    let status = decode::query_value(&i.query, "status");
    let all: Vec<Approval> = ctx
        .dual
        .list()
        .await
        .into_iter()
        .filter(|a| {
            status.is_none_or(|s| {
                to_json(&a.status)
                    .ok()
                    .and_then(|v| v.as_str().map(|v| v == s))
                    .unwrap_or(false)
            })
        })
        .collect();
    Reply::ok(json!({ "approvals": to_json(&all)? }))
}

pub async fn show(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    Reply::ok(to_json(&ctx.dual.get(&id(&i.params)?).await?)?)
}

/// Rejects a pending action; a job waiting for it ends `cancelled`.
pub async fn reject(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let approval = ctx.dual.reject(&id(&i.params)?, auth.name()).await?;
    Reply::ok(to_json(&approval)?)
}

/// Approves and runs the action, as the requester with the approver's consent; the answer
/// carries the job it started, if any.
pub async fn approve(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let decision = ctx.dual.approve(&id(&i.params)?, auth.name()).await?;
    let mut body = to_json(&decision.approval)?;
    if let (Some(job), Some(o)) = (&decision.job, body.as_object_mut()) {
        o.insert("job".into(), super::jobs::view(job));
    }
    Reply::ok(body)
}
