//! Dual control: pending actions that wait for a second, different admin.
//!
//! It owns the pending-approval table: submit, approve, reject, expire, list. Approving hands
//! the action back to the caller to execute; this module never performs an action itself.
//! Pending approvals live in memory only: a restart drops them, which refuses rather than
//! performs (a job that waited for one is then cancelled at start-up). The table is bounded, and
//! so is what one requester may have pending, so one admin cannot fill it for everybody.
//!
//! An approval that expires is recorded in the service log when the table notices it (any read
//! of the table, and a timer at its expiry).

use super::errors::ApiError;
use super::identity::Identity;
use crate::logs::Event;
use crate::model::{ApprovalId, JobId};
use http::StatusCode;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How many approvals (pending and decided) are kept at most.
const MAX_ENTRIES: usize = 512;

/// How many approvals one requester may have pending at once.
pub const MAX_PENDING_PER_REQUESTER: usize = 16;

/// Milliseconds since the Unix epoch, UTC. Injected so tests can move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        let now = time::OffsetDateTime::now_utc();
        i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    })
}

/// An action that needs a second admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    DeleteCredential {
        credential: String,
    },
    DeleteKey {
        group: String,
        key: String,
        /// The key's HSM object when the delete was requested: the approval is for that key
        /// only, never for another one given the same name later.
        #[serde(skip)]
        hsm_id: crate::model::HsmKeyId,
    },
    /// Delete the group's Azure key (every version) on the cloud service; local keys stay.
    DeleteGroupCloud {
        group: String,
    },
    /// Purge the group's soft-deleted Azure key for good; local keys stay.
    PurgeGroupCloud {
        group: String,
        /// The group's vault when the purge was requested: the purge is for the deleted key in
        /// that vault only, never in another one the group was given since.
        #[serde(skip)]
        vault: String,
    },
}

impl Action {
    /// The group, key and credential the action is about, for the service log.
    pub fn target(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        match self {
            Self::DeleteCredential { credential } => (None, None, Some(credential)),
            Self::DeleteKey { group, key, .. } => (Some(group), Some(key), None),
            Self::DeleteGroupCloud { group } | Self::PurgeGroupCloud { group, .. } => {
                (Some(group), None, None)
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::DeleteCredential { credential } => format!("delete credential {credential:?}"),
            Self::DeleteKey { group, key, .. } => {
                format!("delete pushed key {group}/{key} locally")
            }
            Self::DeleteGroupCloud { group } => format!(
                "delete key group {group}'s Azure key (all versions) on the cloud service; local keys are untouched"
            ),
            Self::PurgeGroupCloud { group, .. } => format!(
                "purge key group {group}'s soft-deleted Azure key for good; local keys are untouched"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Expired,
    Failed,
}

/// An approval as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub id: ApprovalId,
    pub action: Action,
    pub summary: String,
    pub status: Status,
    pub requested_by: String,
    /// Unix seconds, UTC.
    pub requested_at: i64,
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// What executing the action gave, once approved.
    pub outcome: Option<String>,
    /// The job that waits in `waiting-approval` for this approval (delete on cloud).
    pub job_id: Option<JobId>,
}

/// Proof that a second, different admin approved an action: only [`Approvals::approve`] makes
/// one. The service's approved actions take it, and re-check their preconditions under the
/// state lock before they act.
#[derive(Debug)]
pub struct Approved {
    approval: Approval,
    approver: String,
}

impl Approved {
    pub fn approval(&self) -> &Approval {
        &self.approval
    }

    pub fn id(&self) -> &ApprovalId {
        &self.approval.id
    }

    pub fn action(&self) -> &Action {
        &self.approval.action
    }

    pub fn approver(&self) -> &str {
        &self.approver
    }

    /// Who acts: the requester with the approver's consent, as records and jobs name it.
    pub fn by(&self) -> String {
        format!(
            "{} (approved by {})",
            self.approval.requested_by, self.approver
        )
    }
}

/// The table of approvals.
#[derive(Clone)]
pub struct Approvals {
    window_ms: i64,
    clock: Clock,
    table: Arc<Mutex<BTreeMap<ApprovalId, Approval>>>,
}

impl Approvals {
    pub fn new(window_secs: u64, clock: Clock) -> Self {
        let window_ms = i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self {
            window_ms,
            clock,
            table: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ApprovalId, Approval>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a request for `action` by `requester`; refuses a duplicate of a pending one.
    pub fn submit(&self, action: Action, requester: &Identity) -> Result<Approval, ApiError> {
        let now = (self.clock)();
        let mut table = self.lock();
        expire(&mut table, now);
        if let Some(dup) = table
            .values()
            .find(|a| a.status == Status::Pending && a.action == action)
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "approval_pending",
                format!(
                    "{} already waits for approval as {}",
                    action.describe(),
                    dup.id
                ),
            ));
        }
        let mine = table
            .values()
            .filter(|a| a.status == Status::Pending && a.requested_by == requester.name)
            .count();
        if mine >= MAX_PENDING_PER_REQUESTER {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_pending_approvals",
                format!(
                    "{} already has {mine} requests waiting for a second admin (at most {MAX_PENDING_PER_REQUESTER} per requester); have them approved or rejected (`byokctl approval list --status pending`), or wait for them to expire",
                    requester.name
                ),
            ));
        }
        prune(&mut table);
        if table.len() >= MAX_ENTRIES {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "limit_reached",
                format!("at most {MAX_ENTRIES} pending approvals"),
            ));
        }
        let approval = Approval {
            id: ApprovalId::random(),
            summary: action.describe(),
            action,
            status: Status::Pending,
            requested_by: requester.name.clone(),
            requested_at: now / 1000,
            expires_at: now.saturating_add(self.window_ms) / 1000,
            decided_by: None,
            decided_at: None,
            outcome: None,
            job_id: None,
        };
        table.insert(approval.id, approval.clone());
        drop(table);
        self.expire_later(approval.expires_at);
        Ok(approval)
    }

    /// Looks at the table once `expires_at` (Unix seconds) has passed, so that an approval
    /// nobody reads again is still recorded as expired. Needs a Tokio runtime (none in unit
    /// tests, where reads expire the table).
    fn expire_later(&self, expires_at: i64) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (table, clock) = (self.table.clone(), self.clock.clone());
        rt.spawn(async move {
            let now = clock() / 1000;
            let wait = u64::try_from(expires_at.saturating_sub(now).saturating_add(1)).unwrap_or(1);
            tokio::time::sleep(std::time::Duration::from_secs(wait.max(1))).await;
            let mut t = table
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            expire(&mut t, clock());
        });
    }

    pub fn list(&self) -> Vec<Approval> {
        let mut table = self.lock();
        expire(&mut table, (self.clock)());
        let mut all: Vec<Approval> = table.values().cloned().collect();
        all.sort_by_key(|a| std::cmp::Reverse(a.requested_at));
        all
    }

    pub fn get(&self, id: &ApprovalId) -> Result<Approval, ApiError> {
        let mut table = self.lock();
        expire(&mut table, (self.clock)());
        table.get(id).cloned().ok_or_else(|| not_found(id))
    }

    /// Approves a pending action by a different admin. The approval is marked approved before
    /// the action runs, so a second approval of the same id is refused. The proof it returns is
    /// what the approved action takes.
    pub fn approve(&self, id: &ApprovalId, approver: &Identity) -> Result<Approved, ApiError> {
        Ok(Approved {
            approval: self.decide(id, approver, Status::Approved)?,
            approver: approver.name.clone(),
        })
    }

    /// Rejects a pending action. Any admin may reject, the requester too (a withdrawal).
    pub fn reject(&self, id: &ApprovalId, by: &Identity) -> Result<Approval, ApiError> {
        self.decide(id, by, Status::Rejected)
    }

    fn decide(&self, id: &ApprovalId, by: &Identity, status: Status) -> Result<Approval, ApiError> {
        let now = (self.clock)();
        let mut table = self.lock();
        expire(&mut table, now);
        let approval = table.get_mut(id).ok_or_else(|| not_found(id))?;
        match approval.status {
            Status::Pending => {}
            Status::Expired => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "approval_expired",
                    format!(
                        "approval {id} expired at {}; request the action again",
                        approval.expires_at
                    ),
                ));
            }
            decided => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "approval_decided",
                    format!(
                        "approval {id} was already decided ({decided:?}) by {}",
                        approval.decided_by.as_deref().unwrap_or("?")
                    ),
                ));
            }
        }
        if status == Status::Approved && approval.requested_by == by.name {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "self_approval",
                format!(
                    "{} requested this action; a second, different admin must approve it",
                    by.name
                ),
            ));
        }
        approval.status = status;
        approval.decided_by = Some(by.name.clone());
        approval.decided_at = Some(now / 1000);
        Ok(approval.clone())
    }

    /// Links a pending approval to the job that waits for it.
    pub fn link_job(&self, id: &ApprovalId, job: JobId) {
        if let Some(a) = self.lock().get_mut(id) {
            a.job_id = Some(job);
        }
    }

    /// The approval a job waits (or waited) for, while the table remembers it.
    pub fn of_job(&self, job: JobId) -> Option<Approval> {
        let mut table = self.lock();
        expire(&mut table, (self.clock)());
        table.values().find(|a| a.job_id == Some(job)).cloned()
    }

    /// Withdraws the pending approval a job waits for, because the job was cancelled by `by`.
    /// Returns the withdrawn approval, if one was pending.
    pub fn withdraw_for_job(&self, job: JobId, by: &str) -> Option<Approval> {
        let now = (self.clock)();
        let mut table = self.lock();
        expire(&mut table, now);
        let a = table
            .values_mut()
            .find(|a| a.status == Status::Pending && a.job_id == Some(job))?;
        a.status = Status::Rejected;
        a.decided_by = Some(by.to_owned());
        a.decided_at = Some(now / 1000);
        a.outcome = Some(format!("withdrawn: job {job} was cancelled by {by}"));
        Some(a.clone())
    }

    /// Records what executing an approved action gave.
    pub fn record_outcome(&self, id: &ApprovalId, ok: bool, outcome: String) {
        if let Some(a) = self.lock().get_mut(id) {
            if !ok {
                a.status = Status::Failed;
            }
            a.outcome = Some(outcome);
        }
    }
}

fn not_found(id: &ApprovalId) -> ApiError {
    ApiError::not_found(format!("no approval \"{id}\""))
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
fn prune(table: &mut BTreeMap<ApprovalId, Approval>) {
    while table.len() >= MAX_ENTRIES {
        let oldest = table
            .values()
            .filter(|a| a.status != Status::Pending)
            .min_by_key(|a| a.requested_at)
            .map(|a| a.id);
        match oldest {
            Some(id) => table.remove(&id),
            None => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn admin(name: &str) -> Identity {
        Identity {
            name: name.into(),
            role: Role::Admin,
        }
    }

    fn fixture() -> (Approvals, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(1_800_000_000_000));
        let t = now.clone();
        (
            Approvals::new(60, Arc::new(move || t.load(Ordering::SeqCst))),
            now,
        )
    }

    fn delete_cred() -> Action {
        Action::DeleteCredential {
            credential: "c1".into(),
        }
    }

    #[test]
    fn a_second_admin_approves_once() {
        let (a, _) = fixture();
        let p = a.submit(delete_cred(), &admin("alice")).unwrap();
        assert_eq!(
            a.approve(&p.id, &admin("alice")).unwrap_err().code,
            "self_approval"
        );
        let done = a.approve(&p.id, &admin("bob")).unwrap();
        assert_eq!(done.approval().status, Status::Approved);
        assert_eq!(done.approval().decided_by.as_deref(), Some("bob"));
        assert_eq!(done.by(), "alice (approved by bob)");
        assert_eq!(
            a.approve(&p.id, &admin("carol")).unwrap_err().code,
            "approval_decided"
        );
        assert_eq!(
            a.reject(&p.id, &admin("carol")).unwrap_err().code,
            "approval_decided"
        );
    }

    #[test]
    fn an_expired_approval_cannot_be_approved() {
        let (a, now) = fixture();
        let p = a.submit(delete_cred(), &admin("alice")).unwrap();
        now.fetch_add(60_000, Ordering::SeqCst);
        assert_eq!(
            a.approve(&p.id, &admin("bob")).unwrap_err().code,
            "approval_expired"
        );
        assert_eq!(a.get(&p.id).unwrap().status, Status::Expired);
        // A new request for the same action may then be made.
        assert!(a.submit(delete_cred(), &admin("alice")).is_ok());
    }

    #[test]
    fn cancelling_the_job_withdraws_its_pending_approval_only() {
        let (a, _) = fixture();
        let cloud = Action::DeleteGroupCloud { group: "g".into() };
        let p = a.submit(cloud, &admin("alice")).unwrap();
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
        assert_eq!(
            a.approve(&p.id, &admin("bob")).unwrap_err().code,
            "approval_decided"
        );
        // Withdrawn once: nothing pending left to withdraw.
        assert!(a.withdraw_for_job(JobId::new(7), "olga").is_none());
    }

    #[test]
    fn one_requester_cannot_fill_the_table() {
        let (a, _) = fixture();
        let mut first = None;
        for i in 0..MAX_PENDING_PER_REQUESTER {
            let p = a
                .submit(
                    Action::DeleteCredential {
                        credential: format!("c{i}"),
                    },
                    &admin("alice"),
                )
                .unwrap();
            first.get_or_insert(p.id);
        }
        let refused = a
            .submit(
                Action::DeleteCredential {
                    credential: "one-more".into(),
                },
                &admin("alice"),
            )
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code, "too_many_pending_approvals");
        assert!(refused.message.contains("alice"), "{}", refused.message);
        // Another admin still may request, and a decided request frees a place.
        assert!(
            a.submit(
                Action::DeleteCredential {
                    credential: "bobs".into()
                },
                &admin("bob")
            )
            .is_ok()
        );
        a.reject(&first.unwrap(), &admin("alice")).unwrap();
        assert!(
            a.submit(
                Action::DeleteCredential {
                    credential: "one-more".into()
                },
                &admin("alice")
            )
            .is_ok()
        );
    }

    #[test]
    fn a_duplicate_pending_request_is_refused_and_rejection_ends_it() {
        let (a, _) = fixture();
        let p = a.submit(delete_cred(), &admin("alice")).unwrap();
        assert_eq!(
            a.submit(delete_cred(), &admin("bob")).unwrap_err().code,
            "approval_pending"
        );
        assert_eq!(
            a.reject(&p.id, &admin("alice")).unwrap().status,
            Status::Rejected
        );
        assert_eq!(
            a.approve(&p.id, &admin("bob")).unwrap_err().code,
            "approval_decided"
        );
        assert_eq!(
            a.approve(&ApprovalId::random(), &admin("bob"))
                .unwrap_err()
                .status,
            StatusCode::NOT_FOUND
        );
    }
}
