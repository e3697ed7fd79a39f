//! Jobs that wait for a second admin: created durably in `waiting-approval`, started when the
//! approval arrives, or ended when it is rejected, withdrawn or expires (the dual-control
//! domain module decides which; this file makes each change durable).

use super::jobs::JobKeys;
use super::{Service, ServiceError};
use crate::logs::Event;
use crate::model::{GroupName, Job, JobId, JobKind, JobState, StepMessage};

impl Service {
    /// Creates a job durably in `waiting-approval`: a dual-control action that a second admin
    /// must approve (see [`Service::approve_job`]) before it runs. `approval` is the approval's
    /// id, named in the job's first step; `expires_at` its expiry (Unix seconds).
    pub async fn create_waiting_job(
        &self,
        kind: JobKind,
        group: &GroupName,
        by: &str,
        approval: &crate::model::ApprovalId,
        expires_at: i64,
    ) -> Result<JobId, ServiceError> {
        let expires = time::OffsetDateTime::from_unix_timestamp(expires_at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| expires_at.to_string());
        let waiting = format!(
            "{} requested by {by}; waiting for a second admin to approve {approval} (expires at {expires})",
            kind.title()
        );
        self.insert_job(
            kind,
            group,
            JobKeys::These(&[]),
            by,
            JobState::WaitingApproval,
            waiting,
        )
        .await
    }

    /// Moves a job from `waiting-approval` to `pending` once a second admin approved it;
    /// `by` becomes its "started by" (requester and approver). Refused (409) when the job no
    /// longer waits (cancelled, or its approval expired or was rejected).
    pub async fn approve_job(
        &self,
        id: JobId,
        by: &str,
        approver: &str,
    ) -> Result<Job, ServiceError> {
        let job = self
            .journal(id, |job| {
                if job.state != JobState::WaitingApproval {
                    return Err(ServiceError::Conflict(format!(
                        "job {id} is {}, it no longer waits for approval; request the action again",
                        job.state
                    )));
                }
                job.state = JobState::Pending;
                job.started_by = by.to_owned();
                job.steps.push(StepMessage {
                    at: self.now_unix(),
                    message: format!("Approved by {approver}; queued"),
                });
                Ok(job.clone())
            })
            .await??;
        tracing::info!(
            event = Event::JobApproved.as_str(),
            job = id.get(),
            identity = by,
            "job approved by a second admin; queued"
        );
        Ok(job)
    }

    /// Ends a job that waits for approval `cancelled`, with `reason` as its error and last step
    /// (the approval expired, was rejected, or did not survive a restart). Returns whether the
    /// job was waiting; a job in any other state is left alone.
    pub async fn end_waiting_job(&self, id: JobId, reason: &str) -> Result<bool, ServiceError> {
        let ended = self
            .journal(id, |job| {
                if job.state != JobState::WaitingApproval {
                    return false;
                }
                let now = self.now_unix();
                job.state = JobState::Cancelled;
                job.ended = Some(now);
                job.error = Some(reason.to_owned());
                job.steps.push(StepMessage {
                    at: now,
                    message: reason.to_owned(),
                });
                true
            })
            .await?;
        if ended {
            tracing::warn!(
                event = Event::JobApprovalEnded.as_str(),
                job = id.get(),
                reason,
                "job waiting for approval cancelled"
            );
            self.prune_jobs().await?;
        }
        Ok(ended)
    }
}
