//! `byokctl job` and `byokctl approval`: list, show, follow and cancel jobs; list, show,
//! approve and reject dual-control requests; and following a job a command started.

use super::{Ctx, seg};
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use crate::ctl::output::{Column, Progress};
use http::Method;
use serde_json::Value;

const APPROVAL_COLS: &[Column] = &[
    ("ID", "id"),
    ("STATUS", "status"),
    ("ACTION", "summary"),
    ("REQUESTED BY", "requested_by"),
    ("EXPIRES", "expires_at"),
    ("DECIDED BY", "decided_by"),
    ("JOB", "job_id"),
];
const JOB_COLS: &[Column] = &[
    ("ID", "id"),
    ("KIND", "kind"),
    ("STATE", "state"),
    ("GROUP", "group"),
    ("CREATED", "created"),
];

/// Starts a job (202 with `job.id`), then follows it unless `--no-wait`.
pub(super) async fn start_job(ctx: &Ctx, path: &str, wait: JobWait) -> Result<(), CtlError> {
    let a = ctx.call(Method::POST, path, None).await?;
    // A dual-control request: its job waits in `waiting-approval`; nothing to follow yet.
    if a.body.get("approval").is_some() {
        ctx.done(&a, "accepted");
        return Ok(());
    }
    let job = a
        .body
        .get("job")
        .and_then(|j| j.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    match job {
        Some(id) if !wait.no_wait => watch(ctx, &id).await,
        Some(id) => {
            if !ctx.json(&a.body) {
                println!("job {id} started; follow it with `byokctl job watch {id}`");
            }
            Ok(())
        }
        None => {
            ctx.done(&a, "accepted");
            Ok(())
        }
    }
}

/// Long-polls a job until it ends, drawing progress; a failed job is exit code 6.
async fn watch(ctx: &Ctx, id: &str) -> Result<(), CtlError> {
    let id = seg(id)?;
    let mut progress = Progress::new();
    loop {
        let job = ctx.get(&format!("/v1/jobs/{id}?wait=10")).await?;
        let state = job
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let p = job.get("progress");
        let num = |k: &str| {
            p.and_then(|p| p.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let step = job.get("step").and_then(Value::as_str).unwrap_or("");
        if ctx.output == Output::Table {
            progress.update(&state, num("done"), num("total"), step);
        }
        match state.as_str() {
            "succeeded" | "done" | "failed" | "cancelled" => {
                progress.finish();
                ctx.show(&job);
                return if state == "succeeded" || state == "done" {
                    Ok(())
                } else {
                    Err(CtlError::JobFailed(id.to_owned()))
                };
            }
            _ => {}
        }
    }
}

pub(super) async fn approval(ctx: &Ctx, c: ApprovalCmd) -> Result<(), CtlError> {
    match c {
        ApprovalCmd::List { status } => {
            let path = match status {
                Some(s) => format!("/v1/approvals?status={}", seg(&s)?),
                None => "/v1/approvals".to_owned(),
            };
            ctx.list(&ctx.get(&path).await?, "approvals", APPROVAL_COLS);
        }
        ApprovalCmd::Show { id } => {
            ctx.show(&ctx.get(&format!("/v1/approvals/{}", seg(&id)?)).await?)
        }
        ApprovalCmd::Approve { id } => {
            let a = ctx
                .call(
                    Method::POST,
                    &format!("/v1/approvals/{}/approve", seg(&id)?),
                    None,
                )
                .await?;
            ctx.show(&a.body);
        }
        ApprovalCmd::Reject { id } => {
            let a = ctx
                .call(
                    Method::POST,
                    &format!("/v1/approvals/{}/reject", seg(&id)?),
                    None,
                )
                .await?;
            ctx.show(&a.body);
        }
    }
    Ok(())
}

pub(super) async fn job(ctx: &Ctx, c: JobCmd) -> Result<(), CtlError> {
    match c {
        JobCmd::List => ctx.list(&ctx.get("/v1/jobs").await?, "jobs", JOB_COLS),
        JobCmd::Show { id } => ctx.show(&ctx.get(&format!("/v1/jobs/{}", seg(&id)?)).await?),
        JobCmd::Watch { id } => watch(ctx, &id).await?,
        JobCmd::Cancel { id } => {
            let a = ctx
                .call(
                    Method::POST,
                    &format!("/v1/jobs/{}/cancel", seg(&id)?),
                    None,
                )
                .await?;
            ctx.show(a.body.get("job").unwrap_or(&a.body));
        }
    }
    Ok(())
}
