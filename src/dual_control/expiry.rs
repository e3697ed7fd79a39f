//! Ending the jobs whose approval can no longer come: the approval expired (by the daemon's
//! clock), or it did not survive a restart.
//!
//! Expiry is checked at every use of dual control and by one task the daemon owns
//! ([`DualControl::spawn_expiry`]), which looks once a second so that an approval nobody reads
//! again still ends its job. The task only paces itself with a timer; whether an approval
//! expired is decided by the injected clock, so tests move the clock instead of waiting.

use super::DualControl;
use crate::model::JobState;

/// How often the expiry task looks at the table.
const EXPIRY_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a job that waited for approval ends at start-up.
pub const APPROVAL_LOST: &str = "Cancelled: the approval did not survive the daemon's restart (pending approvals are kept in memory only); request again";

impl DualControl {
    /// Ends `cancelled` every job whose approval expired (or left the table) while it waited.
    pub async fn sweep(&self) {
        for wait in self.approvals.take_ended_waits() {
            let (job, approval) = (wait.job, &wait.approval_id);
            let (requested_by, expires_at) = wait
                .approval
                .as_ref()
                .map_or(("?", 0), |a| (a.requested_by.as_str(), a.expires_at));
            let reason = format!(
                "Cancelled: approval {approval} expired at {} without a second admin's approval; request again",
                crate::clock::rfc3339(expires_at)
            );
            match self.service.end_waiting_job(job, &reason).await {
                Ok(true) => {
                    tracing::warn!(
                        approval = %approval,
                        job = job.get(),
                        requested_by,
                        "dual-control request expired; its job is cancelled"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(approval = %approval, job = job.get(), error = %e, "could not end a job whose approval expired; trying again");
                    self.approvals.retry(wait);
                }
            }
        }
    }

    /// At start-up: the approvals that jobs in `waiting-approval` waited for are gone (they live
    /// in memory only), so those jobs end rather than ever run without a second admin.
    pub async fn end_lost_waits(&self) {
        for (id, state) in self.service.unfinished_jobs().await {
            if state != JobState::WaitingApproval || self.approvals.of_job(id).is_some() {
                continue;
            }
            if let Err(e) = self.service.end_waiting_job(id, APPROVAL_LOST).await {
                tracing::error!(job = id.get(), error = %e, "could not end a job whose approval was lost");
            }
        }
    }

    /// The one task that ends jobs of expired approvals nobody looks at; the daemon owns it.
    pub fn spawn_expiry(&self) -> tokio::task::JoinHandle<()> {
        let dual = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRY_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                dual.sweep().await;
            }
        })
    }
}
