//! `/v1/approvals`: list and show pending dual-control actions, approve (a second, different
//! admin; the action then runs) and reject. Every request, approval and rejection is logged
//! with both identities.

use super::{Ctx, Input, Reply, to_json};
use crate::control::approvals::{Action, Approval};
use crate::control::authz::{Admin, AnyRole, Authorized};
use crate::control::decode;
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use crate::model::{CredentialName, KeyName, LocalKeyName};
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

/// Records a dual-control request (logged) and returns the approval.
pub(super) fn submit(
    auth: &Authorized<Admin>,
    ctx: &Ctx,
    action: Action,
) -> Result<Approval, ApiError> {
    let approval = ctx.approvals.submit(action, auth.identity())?;
    tracing::warn!(
        approval = %approval.id,
        requested_by = %approval.requested_by,
        action = %approval.summary,
        expires_at = approval.expires_at,
        "dual-control action requested; waiting for a second admin"
    );
    Ok(approval)
}

/// Records a dual-control request and answers 202 with the approval to quote.
pub(super) fn request(
    auth: &Authorized<Admin>,
    ctx: &Ctx,
    action: Action,
) -> Result<Reply, ApiError> {
    let approval = submit(auth, ctx, action)?;
    Reply::accepted(json!({
        "approval": to_json(&approval)?,
        "message": format!(
            "{} needs a second admin: run `byokctl approval approve {}` as a different admin before it expires",
            approval.summary, approval.id
        ),
    }))
}

pub fn list(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    decode_list(&i.query)?;
    let status = decode::query_value(&i.query, "status");
    let all: Vec<Approval> = ctx
        .approvals
        .list()
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

pub fn show(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    Reply::ok(to_json(&ctx.approvals.get(&id(&i.params)?)?)?)
}

/// Rejects a pending action; a job waiting for it ends `cancelled`.
pub async fn reject(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let approval = ctx.approvals.reject(&id(&i.params)?, auth.identity())?;
    tracing::warn!(
        approval = %approval.id,
        requested_by = %approval.requested_by,
        rejected_by = %auth.name(),
        action = %approval.summary,
        "dual-control action rejected"
    );
    if let Some(job) = linked_job(&approval) {
        let reason = format!(
            "Cancelled: approval {} was rejected by {}",
            approval.id,
            auth.name()
        );
        ctx.service.end_waiting_job(job, &reason).await?;
    }
    Reply::ok(to_json(&approval)?)
}

/// The job an approval's action waits in, if any.
fn linked_job(approval: &Approval) -> Option<u64> {
    approval.job_id.as_deref().and_then(|j| j.parse().ok())
}

/// Approves and runs the action, as the requester with the approver's consent.
pub async fn approve(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let id = id(&i.params)?;
    let approval = ctx.approvals.approve(&id, auth.identity()).inspect_err(|e| {
        tracing::warn!(approval = %id, approver = %auth.name(), code = e.code, "dual-control approval refused");
    })?;
    tracing::warn!(
        approval = %approval.id,
        requested_by = %approval.requested_by,
        approved_by = %auth.name(),
        action = %approval.summary,
        "dual-control action approved; executing"
    );
    let by = format!("{} (approved by {})", approval.requested_by, auth.name());
    let result = execute(ctx, &approval, &by, auth.name()).await;
    let (ok, outcome) = match &result {
        Ok(Executed::Done) => (true, "done".to_owned()),
        Ok(Executed::Said(m)) => (true, m.clone()),
        Ok(Executed::Job(job)) => (true, format!("job {} started", job.id)),
        Err(e) => (false, e.message.clone()),
    };
    ctx.approvals.record_outcome(&approval.id, ok, outcome);
    tracing::warn!(
        approval = %approval.id,
        requested_by = %approval.requested_by,
        approved_by = %auth.name(),
        action = %approval.summary,
        ok,
        "dual-control action finished"
    );
    let mut body = to_json(&ctx.approvals.get(&approval.id)?)?;
    if let (Executed::Job(job), Some(o)) = (result?, body.as_object_mut()) {
        o.insert("job".into(), super::jobs::view(&job));
    }
    Reply::ok(body)
}

/// What executing an approved action gave.
enum Executed {
    Done,
    Said(String),
    /// A job was started; the answer carries it so the caller can follow it.
    Job(Box<crate::model::Job>),
}

async fn execute(
    ctx: &Ctx,
    approval: &Approval,
    by: &str,
    approver: &str,
) -> Result<Executed, ApiError> {
    match &approval.action {
        Action::DeleteCredential { credential } => {
            let name = decode::field("credential", CredentialName::try_from(credential.clone()))?;
            ctx.service.delete_credential(&name, by).await?;
        }
        Action::DeleteKey { group, key } => {
            let g = decode::field("group", KeyName::try_from(group.clone()))?;
            let k = decode::field("key", LocalKeyName::try_from(key.clone()))?;
            ctx.service.delete_key_local(&g, &k, by).await?;
        }
        Action::DeleteGroupCloud { group } => {
            let g = decode::field("group", KeyName::try_from(group.clone()))?;
            let jobs = super::cloud::jobs(ctx, "delete on cloud")?;
            ctx.service.group(&g).await?;
            let waiting = linked_job(approval).ok_or_else(|| {
                ApiError::new(
                    http::StatusCode::CONFLICT,
                    "approval_without_job",
                    format!(
                        "approval {} has no waiting job; request the delete on cloud again",
                        approval.id
                    ),
                )
            })?;
            let id = jobs
                .approved(waiting, by, approver)
                .await
                .map_err(super::cloud::job_error)?;
            return Ok(Executed::Job(Box::new(ctx.service.job(id).await?)));
        }
        Action::PurgeGroupCloud { group } => {
            let g = decode::field("group", KeyName::try_from(group.clone()))?;
            let jobs = super::cloud::jobs(ctx, "purge")?;
            let said = jobs
                .purge(&g, by)
                .await
                .map_err(super::cloud::cloud_error)?;
            return Ok(Executed::Said(said));
        }
    }
    Ok(Executed::Done)
}
