//! `byokctl job` and `byokctl approval`: list, show, follow and cancel jobs; list, show,
//! approve and reject dual-control requests; and following a job a command started.

use super::{Ctx, seg};
use crate::contract::{Approval, ApprovalList, Job, JobAnswer, JobList, JobStarted};
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use crate::ctl::output::{Column, Progress};
use http::Method;

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
    let started: JobStarted = super::typed(path, ctx.call(Method::POST, path, None).await?)?;
    // A dual-control request: its job waits in `waiting-approval`; nothing to follow yet.
    if let Some(approval) = &started.approval {
        if !ctx.json(&started) {
            let message = started.message.as_deref().unwrap_or_default();
            println!("pending approval {}: {message}", approval.id);
        }
        return Ok(());
    }
    let id = &started.job.id;
    if !wait.no_wait {
        return watch(ctx, id).await;
    }
    if !ctx.json(&started) {
        println!("job {id} started; follow it with `byokctl job watch {id}`");
    }
    Ok(())
}

/// Long-polls a job until it ends, drawing progress; a failed job is exit code 6.
async fn watch(ctx: &Ctx, id: &str) -> Result<(), CtlError> {
    let id = seg(id)?;
    let mut progress = Progress::new();
    loop {
        let job: Job = ctx.get(&format!("/v1/jobs/{id}?wait=10")).await?;
        if ctx.output == Output::Table {
            let (done, total) = (job.progress.done.into(), job.progress.total.into());
            progress.update(&job.state, done, total, &job.step);
        }
        match job.state.as_str() {
            "succeeded" | "done" | "failed" | "cancelled" => {
                progress.finish();
                ctx.show(&job);
                return if job.state == "succeeded" || job.state == "done" {
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
            ctx.list(
                &ctx.get::<ApprovalList>(&path).await?,
                "approvals",
                APPROVAL_COLS,
            );
        }
        ApprovalCmd::Show { id } => ctx.show(
            &ctx.get::<Approval>(&format!("/v1/approvals/{}", seg(&id)?))
                .await?,
        ),
        ApprovalCmd::Approve { id } => {
            let path = format!("/v1/approvals/{}/approve", seg(&id)?);
            let a = ctx.call(Method::POST, &path, None).await?;
            ctx.show(&super::typed::<Approval>(&path, a)?);
        }
        ApprovalCmd::Reject { id } => {
            let path = format!("/v1/approvals/{}/reject", seg(&id)?);
            let a = ctx.call(Method::POST, &path, None).await?;
            ctx.show(&super::typed::<Approval>(&path, a)?);
        }
    }
    Ok(())
}

pub(super) async fn job(ctx: &Ctx, c: JobCmd) -> Result<(), CtlError> {
    match c {
        JobCmd::List => ctx.list(&ctx.get::<JobList>("/v1/jobs").await?, "jobs", JOB_COLS),
        JobCmd::Show { id } => ctx.show(&ctx.get::<Job>(&format!("/v1/jobs/{}", seg(&id)?)).await?),
        JobCmd::Watch { id } => watch(ctx, &id).await?,
        JobCmd::Cancel { id } => {
            let path = format!("/v1/jobs/{}/cancel", seg(&id)?);
            let a = ctx.call(Method::POST, &path, None).await?;
            ctx.show(&super::typed::<JobAnswer>(&path, a)?.job);
        }
    }
    Ok(())
}
