//! `byokctl job` and `byokctl approval`: list, show, follow and cancel jobs; list, show,
//! approve and reject dual-control requests; and following a job a command started.

use super::{Ctx, seg, value_name};
use crate::contract::{Approval, ApprovalList, Job, JobAnswer, JobList, JobStarted};
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use crate::ctl::output::{self, Column, col, note, say, wide};
use crate::ctl::progress::Progress;
use http::Method;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

const APPROVAL_COLS: &[Column] = &[
    col("ID", "id"),
    col("STATUS", "status"),
    col("ACTION", "summary"),
    col("REQUESTED BY", "requested_by"),
    wide("REQUESTED", "requested_at"),
    col("EXPIRES", "expires_at"),
    col("DECIDED BY", "decided_by"),
    wide("DECIDED", "decided_at"),
    col("JOB", "job_id"),
    wide("OUTCOME", "outcome"),
];
const JOB_COLS: &[Column] = &[
    col("ID", "id"),
    col("KIND", "kind"),
    col("STATE", "state"),
    col("GROUP", "group"),
    col("PROGRESS", "progress"),
    wide("STARTED BY", "started_by"),
    col("CREATED", "created"),
    wide("ENDED", "ended"),
    wide("STEP", "step"),
    wide("ERROR", "error"),
];

/// Starts a job (202 with `job.id`), then follows it unless `--no-wait`.
pub(super) async fn start_job(ctx: &Ctx, path: &str, wait: JobWait) -> Result<(), CtlError> {
    let started: JobStarted = super::typed(path, ctx.call(Method::POST, path, None).await?)?;
    // A dual-control request: its job waits in `waiting-approval`; nothing to follow yet.
    if let Some(approval) = &started.approval {
        if !ctx.machine(&started)? {
            let message = started.message.as_deref().unwrap_or_default();
            say(&format!("pending approval {}: {message}", approval.id))?;
        }
        return Ok(());
    }
    let id = &started.job.id;
    if !wait.no_wait {
        return watch(ctx, id).await;
    }
    if !ctx.machine(&started)? {
        say(&format!(
            "job {id} started; follow it with `byokctl job watch {id}`"
        ))?;
    }
    Ok(())
}

/// Long-polls a job until it ends, drawing progress; a failed or cancelled job is exit code 6.
async fn watch(ctx: &Ctx, id: &str) -> Result<(), CtlError> {
    let id = seg(id)?;
    let mut progress = Progress::new();
    loop {
        let job: Job = ctx.get(&format!("/v1/jobs/{id}?wait=10")).await?;
        let v = serde_json::to_value(&job).unwrap_or_default();
        if matches!(ctx.output, Output::Table | Output::Wide) {
            progress.update(&v);
        }
        if matches!(job.state.as_str(), "succeeded" | "failed" | "cancelled") {
            progress.finish();
            ctx.show(&job)?;
            return if job.state == "succeeded" {
                Ok(())
            } else {
                Err(CtlError::JobFailed(id.to_owned()))
            };
        }
    }
}

/// The jobs `job list` shows: the API filters by state, byokctl by kind and group.
async fn jobs(ctx: &Ctx, f: &JobFilter) -> Result<JobList, CtlError> {
    let path = match f.state {
        Some(s) => format!("/v1/jobs?state={}", value_name(s)),
        None => "/v1/jobs".to_owned(),
    };
    let mut list: JobList = ctx.get(&path).await?;
    list.jobs.retain(|j| {
        f.kind.is_none_or(|k| value_name(k) == j.kind)
            && f.group.as_deref().is_none_or(|g| g == j.group)
    });
    Ok(list)
}

/// `job list --watch`: the list, then every job that appears or changes, as it does (checked
/// every two seconds) until interrupted.
async fn list_watch(ctx: &Ctx, f: &JobFilter) -> Result<(), CtlError> {
    let mut seen: HashMap<String, Job> = HashMap::new();
    let mut first = true;
    loop {
        let list = jobs(ctx, f).await?;
        let changed: Vec<&Job> = list
            .jobs
            .iter()
            .rev()
            .filter(|j| seen.get(&j.id) != Some(*j))
            .collect();
        if first || !changed.is_empty() {
            let rows: Vec<Value> = changed
                .iter()
                .filter_map(|j| serde_json::to_value(j).ok())
                .collect();
            print_rows(ctx, &rows, first)?;
        }
        for j in list.jobs {
            seen.insert(j.id.clone(), j);
        }
        first = false;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Rows of `job list --watch`: table rows (the header once), TSV rows, or one JSON or YAML
/// document per job.
fn print_rows(ctx: &Ctx, rows: &[Value], header: bool) -> Result<(), CtlError> {
    let text = match ctx.output {
        Output::None => return Ok(()),
        Output::Json => {
            for r in rows {
                say(&serde_json::to_string(r).unwrap_or_default())?;
            }
            return Ok(());
        }
        Output::Yaml => {
            for r in rows {
                say(&format!("---\n{}", output::yaml(r)?.trim_end()))?;
            }
            return Ok(());
        }
        Output::Tsv => output::tsv(rows, JOB_COLS),
        Output::Table | Output::Wide => output::table(rows, JOB_COLS, ctx.output == Output::Wide),
    };
    let mut lines = text.lines();
    if !header {
        lines.next();
    }
    for l in lines.filter(|l| *l != "(none)" || header) {
        say(l)?;
    }
    Ok(())
}

pub(super) async fn approval(ctx: &Ctx, c: ApprovalCmd) -> Result<(), CtlError> {
    match c {
        ApprovalCmd::List { status } => {
            let path = match status {
                Some(s) => format!("/v1/approvals?status={}", value_name(s)),
                None => "/v1/approvals".to_owned(),
            };
            ctx.list(
                &ctx.get::<ApprovalList>(&path).await?,
                "approvals",
                APPROVAL_COLS,
            )?;
        }
        ApprovalCmd::Show { id } => ctx.show(
            &ctx.get::<Approval>(&format!("/v1/approvals/{}", seg(&id)?))
                .await?,
        )?,
        ApprovalCmd::Approve { id, wait } => {
            let path = format!("/v1/approvals/{}/approve", seg(&id)?);
            let a = ctx.call(Method::POST, &path, None).await?;
            let approval = super::typed::<Approval>(&path, a)?;
            match (&approval.job, wait) {
                (Some(job), true) => {
                    if matches!(ctx.output, Output::Table | Output::Wide) {
                        note(&format!(
                            "approval {} approved; following job {}",
                            approval.id, job.id
                        ));
                    }
                    watch(ctx, &job.id).await?;
                }
                _ => ctx.show(&approval)?,
            }
        }
        ApprovalCmd::ByokFile { id, file, force } => {
            super::byok::download(ctx, &id, &super::byok::Target { file, force }).await?
        }
        ApprovalCmd::Reject { id } => {
            let path = format!("/v1/approvals/{}/reject", seg(&id)?);
            let a = ctx.call(Method::POST, &path, None).await?;
            ctx.show(&super::typed::<Approval>(&path, a)?)?;
        }
    }
    Ok(())
}

pub(super) async fn job(ctx: &Ctx, c: JobCmd) -> Result<(), CtlError> {
    match c {
        JobCmd::List {
            filter,
            watch: true,
        } => list_watch(ctx, &filter).await?,
        JobCmd::List { filter, .. } => ctx.list(&jobs(ctx, &filter).await?, "jobs", JOB_COLS)?,
        JobCmd::Show { id } => {
            ctx.show(&ctx.get::<Job>(&format!("/v1/jobs/{}", seg(&id)?)).await?)?
        }
        JobCmd::Watch { id } => watch(ctx, &id).await?,
        JobCmd::Cancel { id } => {
            let path = format!("/v1/jobs/{}/cancel", seg(&id)?);
            let a = ctx.call(Method::POST, &path, None).await?;
            ctx.show(&super::typed::<JobAnswer>(&path, a)?.job)?;
        }
    }
    Ok(())
}
