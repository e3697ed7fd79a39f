//! The lifecycle scheduler: rotations of groups with rotation on, grace-period ends and the
//! periodic drift check, kept in a min-heap by due time.
//!
//! It sleeps until the earliest entry and never scans every group periodically. It subscribes
//! to the service's committed changes (a bounded broadcast), so nobody has to tell it: a group
//! change wakes it to re-plan that group; a designated-device change, or falling behind the
//! channel, to re-plan everything. A rotation missed while the daemon was down is due at
//! start-up and runs once (its next due time follows the new `last_rotated`). A non-designated
//! appliance skips due rotations with a WARN.

use super::{Clock, Jobs};
use crate::logs::Event;
use crate::model::JobId;
use crate::model::{GroupName, KeyGroup, PendingGrace};
use crate::service::StateChange;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tracing::Instrument;

/// How long after a failed or refused scheduled action it is tried again.
pub const RETRY_SECS: i64 = 3600;
/// The longest sleep, so a wall-clock step (NTP, RTC) is noticed within this time.
const MAX_SLEEP_SECS: i64 = 3600;

/// The identity of what the scheduler starts (jobs' `started_by`, records' `identity`).
pub const SCHEDULER: &str = "scheduler";

/// What falls due.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    Rotate(GroupName),
    Grace(GroupName),
    Drift,
}

/// The heap of due times with lazy removal: an entry counts only while it matches `current`.
#[derive(Debug, Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(i64, Task)>>,
    current: HashMap<Task, i64>,
}

impl Schedule {
    /// Plans `task` at `due` (Unix seconds), or removes it with `None`.
    pub fn set(&mut self, task: Task, due: Option<i64>) {
        match due {
            Some(at) => {
                if self.current.insert(task.clone(), at) != Some(at) {
                    self.heap.push(Reverse((at, task)));
                }
            }
            None => {
                self.current.remove(&task);
            }
        }
        // Stale entries are dropped lazily; compact when they dominate.
        if self.heap.len() > 2 * self.current.len() + 64 {
            self.heap = self
                .current
                .iter()
                .map(|(t, at)| Reverse((*at, t.clone())))
                .collect();
        }
    }

    /// The earliest due time.
    pub fn next_due(&mut self) -> Option<i64> {
        while let Some(Reverse((at, task))) = self.heap.peek() {
            if self.current.get(task) == Some(at) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns every task due at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: i64) -> Vec<Task> {
        let mut due = Vec::new();
        while let Some(at) = self.next_due() {
            if at > now {
                break;
            }
            if let Some(Reverse((_, task))) = self.heap.pop() {
                self.current.remove(&task);
                due.push(task);
            }
        }
        due
    }

    /// When `task` is planned, if it is.
    pub fn due_of(&self, task: &Task) -> Option<i64> {
        self.current.get(task).copied()
    }

    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

/// What the changes received since the last tick ask to re-plan.
#[derive(Debug, Default)]
struct Replan {
    all: bool,
    groups: BTreeSet<GroupName>,
}

impl Replan {
    fn note(&mut self, change: StateChange) {
        match change {
            StateChange::Group(name) => {
                self.groups.insert(name);
            }
            StateChange::Designated => self.all = true,
        }
    }

    /// Missed changes cannot be known: everything is re-planned.
    fn lagged(&mut self, missed: u64) {
        tracing::info!(
            missed,
            "scheduler fell behind the state changes; re-planning everything"
        );
        self.all = true;
    }
}

/// The subscription to the service's changes and what it brought so far.
struct Changes {
    rx: broadcast::Receiver<StateChange>,
    pending: Replan,
}

impl Changes {
    /// Takes every change queued now.
    fn drain(&mut self) -> Replan {
        loop {
            match self.rx.try_recv() {
                Ok(change) => self.pending.note(change),
                Err(TryRecvError::Lagged(missed)) => self.pending.lagged(missed),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        std::mem::take(&mut self.pending)
    }
}

/// What one wake-up did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fired {
    /// Rotation jobs started, by group.
    pub rotations: Vec<(GroupName, JobId)>,
    /// Rotations skipped because this appliance is not designated.
    pub skipped: Vec<GroupName>,
    /// Groups whose previous versions were handled after the grace period.
    pub grace: Vec<GroupName>,
    /// Drift-check jobs started.
    pub drift_checks: usize,
}

/// The running scheduler.
pub struct Scheduler {
    jobs: Jobs,
    clock: Arc<dyn Clock>,
    schedule: tokio::sync::Mutex<Schedule>,
    changes: tokio::sync::Mutex<Changes>,
}

impl Scheduler {
    /// Subscribes to the service's changes, then builds the schedule from the state (a change
    /// committed in between is applied again on the first tick, which is harmless).
    pub async fn new(jobs: Jobs) -> Arc<Scheduler> {
        let rx = jobs.service().subscribe();
        let clock = jobs.clock().clone();
        let s = Arc::new(Scheduler {
            jobs,
            clock,
            schedule: tokio::sync::Mutex::new(Schedule::default()),
            changes: tokio::sync::Mutex::new(Changes {
                rx,
                pending: Replan::default(),
            }),
        });
        s.plan_all().await;
        s
    }

    /// Re-plans every group, the grace deadlines and the drift check.
    pub async fn plan_all(&self) {
        let svc = self.jobs.service();
        let groups = svc.rotation_plan().await;
        let grace = svc.pending_grace().await;
        let rotations = groups.iter().filter(|(_, due)| due.is_some()).count();
        let mut schedule = Schedule::default();
        for (name, due) in groups {
            schedule.set(Task::Rotate(name), due);
        }
        for (name, p) in &grace {
            schedule.set(Task::Grace(name.clone()), Some(p.due));
        }
        let hours = i64::from(svc.config().lifecycle.drift_check_hours);
        if hours > 0 {
            // A re-plan keeps the drift check's time: re-plans must not keep postponing it.
            let planned = self.schedule.lock().await.due_of(&Task::Drift);
            let due = planned.unwrap_or_else(|| self.clock.now_unix() + hours * 3600);
            schedule.set(Task::Drift, Some(due));
        }
        tracing::info!(
            rotations,
            grace = grace.len(),
            drift_check_hours = hours,
            "scheduler planned"
        );
        *self.schedule.lock().await = schedule;
    }

    async fn plan_group(&self, name: &GroupName) {
        let svc = self.jobs.service();
        let group = svc.group_record(name).await.ok();
        let grace = svc.pending_grace_of(name).await;
        let mut s = self.schedule.lock().await;
        s.set(
            Task::Rotate(name.clone()),
            group.as_ref().and_then(KeyGroup::rotation_due),
        );
        s.set(
            Task::Grace(name.clone()),
            grace.map(|g: PendingGrace| g.due),
        );
    }

    /// The earliest due time (Unix seconds).
    pub async fn next_due(&self) -> Option<i64> {
        self.schedule.lock().await.next_due()
    }

    pub async fn planned(&self) -> usize {
        self.schedule.lock().await.len()
    }

    /// Applies queued changes, then runs everything due now. Tests call this with a manual
    /// clock; [`Scheduler::run`] calls it on every wake-up.
    pub async fn tick(&self) -> Fired {
        self.apply_changes().await;
        let now = self.clock.now_unix();
        let due = self.schedule.lock().await.pop_due(now);
        let mut fired = Fired::default();
        // What the scheduler starts or does on its own is recorded as done by `scheduler`.
        let span = tracing::info_span!("scheduler", identity = SCHEDULER);
        for task in due {
            self.fire(task, now, &mut fired)
                .instrument(span.clone())
                .await;
        }
        fired
    }

    async fn apply_changes(&self) {
        let replan = self.changes.lock().await.drain();
        if replan.all {
            self.plan_all().await;
            return;
        }
        for name in &replan.groups {
            self.plan_group(name).await;
        }
    }

    async fn fire(&self, task: Task, now: i64, fired: &mut Fired) {
        let svc = self.jobs.service();
        match task {
            Task::Rotate(name) => {
                let Ok(group) = svc.group_record(&name).await else {
                    return;
                };
                let Some(due) = group.rotation_due() else {
                    return;
                };
                if due > now {
                    self.schedule
                        .lock()
                        .await
                        .set(Task::Rotate(name), Some(due));
                    return;
                }
                let Ok(designated) = svc.designated_device().await else {
                    let next = group.next_period_after(due, now);
                    tracing::warn!(
                        event = Event::RotationSkipped.as_str(),
                        group = %name,
                        vault = %group.target.name(),
                        due,
                        next_due = next,
                        "scheduled rotation skipped: this appliance is not the designated device (set `designated = true` or `byokctl designated set true` on the one that should rotate)"
                    );
                    self.schedule
                        .lock()
                        .await
                        .set(Task::Rotate(name.clone()), next);
                    fired.skipped.push(name);
                    return;
                };
                // Retried after RETRY_SECS unless the job succeeds and re-plans the group.
                self.schedule
                    .lock()
                    .await
                    .set(Task::Rotate(name.clone()), Some(now + RETRY_SECS));
                match self.jobs.submit_rotate(designated, &name, SCHEDULER).await {
                    Ok(id) => {
                        tracing::info!(event = Event::RotationScheduled.as_str(), job = id.get(), group = %name, due, "scheduled rotation started");
                        fired.rotations.push((name, id));
                    }
                    Err(e) => {
                        tracing::error!(event = Event::RotationFailed.as_str(), group = %name, error = %e, "scheduled rotation could not start")
                    }
                }
            }
            Task::Grace(name) => {
                let Ok(designated) = svc.designated_device().await else {
                    tracing::warn!(event = Event::RotationGraceSkipped.as_str(), group = %name, "grace period over, but this appliance is not the designated device; the previous version stays enabled");
                    self.schedule
                        .lock()
                        .await
                        .set(Task::Grace(name), Some(now + RETRY_SECS));
                    return;
                };
                match self.jobs.finish_grace(designated, &name).await {
                    Ok(()) => fired.grace.push(name),
                    Err(e) => {
                        tracing::error!(event = Event::RotationGraceFailed.as_str(), group = %name, error = %e, "could not disable the previous version; retrying later");
                        self.schedule
                            .lock()
                            .await
                            .set(Task::Grace(name), Some(now + RETRY_SECS));
                    }
                }
            }
            Task::Drift => {
                let hours = i64::from(svc.config().lifecycle.drift_check_hours);
                for (name, _) in svc.rotation_plan().await {
                    match self.jobs.submit_check(&name, SCHEDULER).await {
                        Ok(_) => fired.drift_checks += 1,
                        Err(e) => {
                            tracing::error!(group = %name, error = %e, "scheduled drift check could not start")
                        }
                    }
                }
                if hours > 0 {
                    self.schedule
                        .lock()
                        .await
                        .set(Task::Drift, Some(now + hours * 3600));
                }
            }
        }
    }

    /// Runs until the process ends: tick, then sleep until the earliest due time or a change.
    pub async fn run(self: Arc<Self>) {
        loop {
            let _ = self.tick().await;
            let now = self.clock.now_unix();
            let wait = self
                .next_due()
                .await
                .map_or(MAX_SLEEP_SECS, |at| (at - now).clamp(0, MAX_SLEEP_SECS));
            let sleep = tokio::time::sleep(std::time::Duration::from_secs(wait.unsigned_abs()));
            let mut changes = self.changes.lock().await;
            tokio::select! {
                _ = sleep => {}
                received = changes.rx.recv() => match received {
                    Ok(change) => changes.pending.note(change),
                    Err(RecvError::Lagged(missed)) => changes.pending.lagged(missed),
                    // The service outlives the scheduler; should it not, only time wakes it.
                    Err(RecvError::Closed) => {}
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyGroup;
    use crate::model::group::fixtures::test_group as group;
    use time::OffsetDateTime;
    use time::macros::datetime;

    fn ts(t: OffsetDateTime) -> i64 {
        t.unix_timestamp()
    }

    /// Simulates a scheduler that rotates successfully whenever a task is due, stepping a
    /// manual clock from one due time to the next; returns the rotation instants.
    fn simulate(groups: &mut [KeyGroup], until: OffsetDateTime) -> Vec<(String, OffsetDateTime)> {
        let mut s = Schedule::default();
        for g in groups.iter() {
            s.set(Task::Rotate(g.name.clone()), g.rotation_due());
        }
        let mut fired = Vec::new();
        while let Some(at) = s.next_due() {
            if at > ts(until) {
                break;
            }
            for task in s.pop_due(at) {
                let Task::Rotate(name) = task else { continue };
                let g = groups.iter_mut().find(|g| g.name == name).unwrap();
                g.last_rotated = Some(at);
                fired.push((
                    name.to_string(),
                    OffsetDateTime::from_unix_timestamp(at).unwrap(),
                ));
                s.set(Task::Rotate(name), g.rotation_due());
            }
        }
        fired
    }

    #[test]
    fn monthly_rotations_fire_at_calendar_instants_across_month_ends_and_leap_years() {
        let mut groups = vec![group("g31", datetime!(2027-12-31 09:30 UTC), 1)];
        let fired = simulate(&mut groups, datetime!(2028-06-01 00:00 UTC));
        let at: Vec<_> = fired.iter().map(|(_, t)| *t).collect();
        // Each rotation is one month after the previous one, day clamped: after Feb 29 the
        // day stays 29 (the clamp follows the last rotation, as the policy says).
        assert_eq!(
            at,
            vec![
                datetime!(2028-01-31 09:30 UTC),
                datetime!(2028-02-29 09:30 UTC),
                datetime!(2028-03-29 09:30 UTC),
                datetime!(2028-04-29 09:30 UTC),
                datetime!(2028-05-29 09:30 UTC),
            ]
        );
    }

    #[test]
    fn yearly_rotation_from_a_leap_day_and_interleaved_groups_fire_in_order() {
        let mut groups = vec![
            group("leap", datetime!(2024-02-29 12:00 UTC), 12),
            group("quarter", datetime!(2024-11-30 00:00 UTC), 3),
        ];
        let fired = simulate(&mut groups, datetime!(2025-06-30 00:00 UTC));
        assert_eq!(
            fired,
            vec![
                ("quarter".into(), datetime!(2025-02-28 00:00 UTC)),
                ("leap".into(), datetime!(2025-02-28 12:00 UTC)),
                ("quarter".into(), datetime!(2025-05-28 00:00 UTC)),
            ]
        );
    }

    #[test]
    fn a_rotation_missed_for_years_is_due_once_and_then_follows_the_new_last_rotation() {
        let mut g = group("old", datetime!(2020-01-15 08:00 UTC), 1);
        let now = datetime!(2026-03-10 10:00 UTC);
        let mut s = Schedule::default();
        s.set(Task::Rotate(g.name.clone()), g.rotation_due());
        let due = s.pop_due(ts(now));
        assert_eq!(due.len(), 1, "one rotation, not one per missed month");
        assert!(s.pop_due(ts(now)).is_empty());
        g.last_rotated = Some(ts(now));
        s.set(Task::Rotate(g.name.clone()), g.rotation_due());
        assert_eq!(s.next_due(), Some(ts(datetime!(2026-04-10 10:00 UTC))));
    }

    #[test]
    fn a_changed_policy_replaces_the_planned_time_and_off_removes_it() {
        let mut g = group("g", datetime!(2026-01-31 00:00 UTC), 12);
        let mut s = Schedule::default();
        s.set(Task::Rotate(g.name.clone()), g.rotation_due());
        assert_eq!(s.next_due(), Some(ts(datetime!(2027-01-31 00:00 UTC))));
        g.rotation.rotate_every_months = 1;
        s.set(Task::Rotate(g.name.clone()), g.rotation_due());
        assert_eq!(s.next_due(), Some(ts(datetime!(2026-02-28 00:00 UTC))));
        // The stale yearly entry never fires.
        assert_eq!(s.pop_due(ts(datetime!(2030-01-01 00:00 UTC))).len(), 1);
        s.set(Task::Rotate(g.name.clone()), g.rotation_due());
        g.rotation.enabled = false;
        s.set(Task::Rotate(g.name.clone()), g.rotation_due());
        assert_eq!(s.next_due(), None);
        assert!(s.is_empty());
    }

    #[test]
    fn stale_entries_are_compacted() {
        let g = group("g", datetime!(2026-01-31 00:00 UTC), 1);
        let mut s = Schedule::default();
        for i in 0..10_000 {
            s.set(Task::Rotate(g.name.clone()), Some(i));
        }
        assert!(s.heap.len() < 200, "heap grew to {}", s.heap.len());
        assert_eq!(s.next_due(), Some(9_999));
    }
}
