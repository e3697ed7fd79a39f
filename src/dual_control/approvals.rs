//! The pending-approval table: submit, approve, reject, withdraw, expire, list. Approving
//! hands back the [`ApprovedAction`] proof; this table never performs an action itself.
//!
//! Approvals live in memory only: a restart drops them, which refuses rather than performs.
//! The table is bounded, and so is what one requester may have pending, so one admin cannot
//! fill it for everybody. Time is read from the daemon's clock; an approval whose expiry has
//! passed is expired at the next look at the table, and the jobs that waited for expired or
//! forgotten approvals are handed out once by [`Approvals::take_ended_waits`].

use super::action::{Action, Approval, ApprovedAction, Status};
use super::error::DualControlError;
use crate::clock::SharedClock;
use crate::logs::Event;
use crate::model::{ApprovalId, JobId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many approvals (pending and decided) are kept at most.
const MAX_ENTRIES: usize = 512;

/// How many approvals one requester may have pending at once.
pub const MAX_PENDING_PER_REQUESTER: usize = 16;

/// A job whose approval can no longer be approved: it is to end `cancelled`.
#[derive(Debug)]
pub struct EndedWait {
    pub approval_id: ApprovalId,
    pub job: JobId,
    /// The approval, while the table keeps it.
    pub approval: Option<Approval>,
}

#[derive(Default)]
struct Table {
    approvals: BTreeMap<ApprovalId, Approval>,
    /// Jobs in `waiting-approval`, by the approval they wait for, until the approval is
    /// decided (the decider ends or starts the job) or expires (the sweep ends it).
    waiting: BTreeMap<ApprovalId, JobId>,
}

/// The table of approvals. Cheap to clone.
#[derive(Clone)]
pub struct Approvals {
    window_ms: i64,
    clock: SharedClock,
    table: Arc<Mutex<Table>>,
}

impl Approvals {
    pub fn new(window_secs: u64, clock: SharedClock) -> Self {
        let window_ms = i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self {
            window_ms,
            clock,
            table: Arc::default(),
        }
    }

    /// The table, with every approval whose time is up marked expired.
    fn lock(&self) -> MutexGuard<'_, Table> {
        let mut t = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        expire(&mut t.approvals, self.clock.now_ms());
        t
    }

    /// Records a request for `action` by `requester`; refuses a duplicate of a pending one.
    pub fn submit(&self, action: Action, requester: &str) -> Result<Approval, DualControlError> {
        let now = self.clock.now_ms();
        let mut table = self.lock();
        if let Some(dup) = table
            .approvals
            .values()
            .find(|a| a.status == Status::Pending && a.action == action)
        {
            return Err(DualControlError::Pending {
                summary: action.describe(),
                id: dup.id,
            });
        }
        let mine = table
            .approvals
            .values()
            .filter(|a| a.status == Status::Pending && a.requested_by == requester)
            .count();
        if mine >= MAX_PENDING_PER_REQUESTER {
            return Err(DualControlError::TooManyPending {
                requester: requester.to_owned(),
                count: mine,
                max: MAX_PENDING_PER_REQUESTER,
            });
        }
        prune(&mut table);
        if table.approvals.len() >= MAX_ENTRIES {
            return Err(DualControlError::TableFull(MAX_ENTRIES));
        }
        let approval = Approval {
            id: ApprovalId::random(),
            summary: action.describe(),
            action,
            status: Status::Pending,
            requested_by: requester.to_owned(),
            requested_at: now / 1000,
            expires_at: now.saturating_add(self.window_ms) / 1000,
            decided_by: None,
            decided_at: None,
            outcome: None,
            job_id: None,
        };
        table.approvals.insert(approval.id, approval.clone());
        Ok(approval)
    }

    /// Forgets a request whose waiting job could not be recorded: it was never answered with
    /// an id, so nobody can decide it.
    pub fn forget(&self, id: &ApprovalId) {
        self.lock().approvals.remove(id);
    }

    pub fn list(&self) -> Vec<Approval> {
        let mut all: Vec<Approval> = self.lock().approvals.values().cloned().collect();
        all.sort_by_key(|a| std::cmp::Reverse(a.requested_at));
        all
    }

    pub fn get(&self, id: &ApprovalId) -> Result<Approval, DualControlError> {
        self.lock()
            .approvals
            .get(id)
            .cloned()
            .ok_or_else(|| DualControlError::NotFound(*id))
    }

    /// Approves a pending action by a different admin. The approval is marked approved before
    /// the action runs, so a second approval of the same id is refused. The proof it returns is
    /// what the approved action takes; its waiting job, if any, is the approver's to start.
    pub fn approve(
        &self,
        id: &ApprovalId,
        approver: &str,
    ) -> Result<ApprovedAction, DualControlError> {
        let approval = self.decide(id, approver, Status::Approved)?;
        Ok(ApprovedAction::new(approval, approver.to_owned()))
    }

    /// Rejects a pending action. Any admin may reject, the requester too (a withdrawal). Its
    /// waiting job, if any, is the rejecter's to end.
    pub fn reject(&self, id: &ApprovalId, by: &str) -> Result<Approval, DualControlError> {
        self.decide(id, by, Status::Rejected)
    }

    fn decide(
        &self,
        id: &ApprovalId,
        by: &str,
        status: Status,
    ) -> Result<Approval, DualControlError> {
        let now = self.clock.now_ms();
        let mut table = self.lock();
        let approval = table
            .approvals
            .get_mut(id)
            .ok_or_else(|| DualControlError::NotFound(*id))?;
        match approval.status {
            Status::Pending => {}
            Status::Expired => {
                return Err(DualControlError::Expired {
                    id: *id,
                    expires_at: approval.expires_at,
                });
            }
            decided => {
                return Err(DualControlError::Decided {
                    id: *id,
                    status: decided,
                    by: approval.decided_by.clone().unwrap_or_else(|| "?".into()),
                });
            }
        }
        if status == Status::Approved && approval.requested_by == by {
            return Err(DualControlError::SelfApproval(by.to_owned()));
        }
        approval.status = status;
        approval.decided_by = Some(by.to_owned());
        approval.decided_at = Some(now / 1000);
        let approval = approval.clone();
        table.waiting.remove(id);
        Ok(approval)
    }

    /// Links a pending approval to the job that waits for it.
    pub fn link_job(&self, id: &ApprovalId, job: JobId) {
        let mut table = self.lock();
        if let Some(a) = table.approvals.get_mut(id) {
            a.job_id = Some(job);
            table.waiting.insert(id.to_owned(), job);
        }
    }

    /// The approval a job waits (or waited) for, while the table remembers it.
    pub fn of_job(&self, job: JobId) -> Option<Approval> {
        self.lock()
            .approvals
            .values()
            .find(|a| a.job() == Some(job))
            .cloned()
    }

    /// Withdraws the pending approval a job waits for, because the job was cancelled by `by`.
    /// Returns the withdrawn approval, if one was pending.
    pub fn withdraw_for_job(&self, job: JobId, by: &str) -> Option<Approval> {
        let now = self.clock.now_ms();
        let mut table = self.lock();
        let a = table
            .approvals
            .values_mut()
            .find(|a| a.status == Status::Pending && a.job() == Some(job))?;
        a.status = Status::Rejected;
        a.decided_by = Some(by.to_owned());
        a.decided_at = Some(now / 1000);
        a.outcome = Some(format!("withdrawn: job {job} was cancelled by {by}"));
        let a = a.clone();
        table.waiting.remove(&a.id);
        Some(a)
    }

    /// The jobs whose approval expired (or was dropped from the table) while they waited,
    /// each handed out once, with the approval's id and the approval if the table still has it.
    pub fn take_ended_waits(&self) -> Vec<EndedWait> {
        let mut table = self.lock();
        let Table { approvals, waiting } = &mut *table;
        let mut ended = Vec::new();
        waiting.retain(|id, job| match approvals.get(id) {
            Some(a) if a.status == Status::Pending => true,
            a => {
                ended.push(EndedWait {
                    approval_id: *id,
                    job: *job,
                    approval: a.cloned(),
                });
                false
            }
        });
        ended
    }

    /// Hands an ended wait out again at the next sweep (its job could not be ended this time).
    pub fn retry(&self, wait: EndedWait) {
        self.lock().waiting.insert(wait.approval_id, wait.job);
    }

    /// Records what executing an approved action gave.
    pub fn record_outcome(&self, id: &ApprovalId, ok: bool, outcome: String) {
        if let Some(a) = self.lock().approvals.get_mut(id) {
            if !ok {
                a.status = Status::Failed;
            }
            a.outcome = Some(outcome);
        }
    }
}

fn expire(table: &mut BTreeMap<ApprovalId, Approval>, now_ms: i64) {
    for a in table.values_mut() {
        if a.status == Status::Pending && a.expires_at.saturating_mul(1000) <= now_ms {
            a.status = Status::Expired;
            let (group, key, credential) = a.action.target();
            tracing::warn!(event = Event::ApprovalExpired.as_str(), service = "control", approval = %a.id,
                identity = %a.requested_by, group, key, credential, expires_at = a.expires_at,
                "Dual-control request {} ({}) by {} expired without a second admin's approval", a.id, a.summary, a.requested_by);
        }
    }
}

/// Drops the oldest decided entries once the table is full.
fn prune(table: &mut Table) {
    while table.approvals.len() >= MAX_ENTRIES {
        let oldest = table
            .approvals
            .values()
            .filter(|a| a.status != Status::Pending)
            .min_by_key(|a| a.requested_at)
            .map(|a| a.id);
        match oldest {
            Some(id) => table.approvals.remove(&id),
            None => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::action::{DeleteCredential, DeleteGroupCloud};
    use super::*;
    use crate::clock::ManualClock;

    fn fixture() -> (Approvals, ManualClock) {
        let now =
            ManualClock::new(time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap());
        (Approvals::new(60, Arc::new(now.clone())), now)
    }

    fn delete_cred() -> Action {
        cred("c1")
    }

    fn cred(name: &str) -> Action {
        Action::DeleteCredential(DeleteCredential {
            credential: name.into(),
        })
    }

    #[test]
    fn a_second_admin_approves_once() {
        let (a, _) = fixture();
        let p = a.submit(delete_cred(), "alice").unwrap();
        assert!(matches!(
            a.approve(&p.id, "alice").unwrap_err(),
            DualControlError::SelfApproval(_)
        ));
        let done = a.approve(&p.id, "bob").unwrap();
        let ApprovedAction::DeleteCredential(done) = done else {
            panic!("{done:?}")
        };
        assert_eq!(done.approval().status, Status::Approved);
        assert_eq!(done.approval().decided_by.as_deref(), Some("bob"));
        assert_eq!(done.by(), "alice (approved by bob)");
        assert_eq!(done.action().credential, "c1");
        assert!(matches!(
            a.approve(&p.id, "carol").unwrap_err(),
            DualControlError::Decided { .. }
        ));
        assert!(matches!(
            a.reject(&p.id, "carol").unwrap_err(),
            DualControlError::Decided { .. }
        ));
    }

    #[test]
    fn an_expired_approval_cannot_be_approved_and_its_job_is_handed_out_once() {
        let (a, now) = fixture();
        let p = a
            .submit(
                Action::DeleteGroupCloud(DeleteGroupCloud { group: "g".into() }),
                "alice",
            )
            .unwrap();
        a.link_job(&p.id, JobId::new(3));
        now.advance(time::Duration::seconds(59));
        assert!(a.take_ended_waits().is_empty(), "still pending");
        now.advance(time::Duration::seconds(1));
        assert!(matches!(
            a.approve(&p.id, "bob").unwrap_err(),
            DualControlError::Expired { .. }
        ));
        assert_eq!(a.get(&p.id).unwrap().status, Status::Expired);
        let ended = a.take_ended_waits();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].job, JobId::new(3));
        assert_eq!(ended[0].approval.as_ref().unwrap().id, p.id);
        assert!(a.take_ended_waits().is_empty(), "handed out once");
        // A new request for the same action may then be made.
        assert!(
            a.submit(
                Action::DeleteGroupCloud(DeleteGroupCloud { group: "g".into() }),
                "alice"
            )
            .is_ok()
        );
    }

    #[test]
    fn cancelling_the_job_withdraws_its_pending_approval_only() {
        let (a, _) = fixture();
        let cloud = Action::DeleteGroupCloud(DeleteGroupCloud { group: "g".into() });
        let p = a.submit(cloud, "alice").unwrap();
        a.link_job(&p.id, JobId::new(7));
        assert_eq!(a.of_job(JobId::new(7)).unwrap().id, p.id);
        assert!(a.of_job(JobId::new(8)).is_none());
        assert!(
            a.withdraw_for_job(JobId::new(8), "olga").is_none(),
            "another job's approval stays"
        );
        let w = a.withdraw_for_job(JobId::new(7), "olga").unwrap();
        assert_eq!(w.status, Status::Rejected);
        assert_eq!(w.decided_by.as_deref(), Some("olga"));
        assert!(w.outcome.unwrap().contains("withdrawn"));
        assert!(matches!(
            a.approve(&p.id, "bob").unwrap_err(),
            DualControlError::Decided { .. }
        ));
        // Withdrawn once: nothing pending left to withdraw, and no waiting job left to end.
        assert!(a.withdraw_for_job(JobId::new(7), "olga").is_none());
        assert!(a.take_ended_waits().is_empty());
    }

    #[test]
    fn one_requester_cannot_fill_the_table() {
        let (a, _) = fixture();
        let mut first = None;
        for i in 0..MAX_PENDING_PER_REQUESTER {
            let p = a.submit(cred(&format!("c{i}")), "alice").unwrap();
            first.get_or_insert(p.id);
        }
        let refused = a.submit(cred("one-more"), "alice").unwrap_err();
        assert!(
            matches!(refused, DualControlError::TooManyPending { .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("alice"), "{refused}");
        // Another admin still may request, and a decided request frees a place.
        assert!(a.submit(cred("bobs"), "bob").is_ok());
        a.reject(&first.unwrap(), "alice").unwrap();
        assert!(a.submit(cred("one-more"), "alice").is_ok());
    }

    #[test]
    fn a_duplicate_pending_request_is_refused_and_rejection_ends_it() {
        let (a, _) = fixture();
        let p = a.submit(delete_cred(), "alice").unwrap();
        assert!(matches!(
            a.submit(delete_cred(), "bob").unwrap_err(),
            DualControlError::Pending { .. }
        ));
        assert_eq!(a.reject(&p.id, "alice").unwrap().status, Status::Rejected);
        assert!(matches!(
            a.approve(&p.id, "bob").unwrap_err(),
            DualControlError::Decided { .. }
        ));
        assert!(matches!(
            a.approve(&ApprovalId::random(), "bob").unwrap_err(),
            DualControlError::NotFound(_)
        ));
    }
}
