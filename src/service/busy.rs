//! Which unfinished job holds a key or a group. Destructive changes and changes to what a job
//! does ask here, under the same state lock as the change itself, so that nothing a job works on
//! is deleted or changed under it (a check on a snapshot, then the change, could be raced).

use super::ServiceError;
use crate::model::{GroupName, Job, JobKind, KeyName};
use crate::store::State;

/// The unfinished job that works on `group`/`key`: a sync that names it, or a rotation or a
/// delete on cloud or purge of its group (those work on every version of the group's key). A drift check
/// only reads, so it holds nothing.
pub(super) fn holding_key<'a>(
    state: &'a State,
    group: &GroupName,
    key: &KeyName,
) -> Option<&'a Job> {
    unfinished(state, group).find(|j| match j.kind {
        JobKind::Sync => j.keys.iter().any(|p| &p.key == key),
        // A purge makes every Azure version of the group's key gone for good.
        JobKind::Rotate | JobKind::DeleteOnCloud | JobKind::Purge => true,
        // A drift check only reads; a recover brings back Azure versions, not local keys.
        JobKind::CheckCloud | JobKind::Recover => false,
    })
}

/// Any unfinished job on `group` (it needs the group's record until it ends).
pub(super) fn on_group<'a>(state: &'a State, group: &GroupName) -> Option<&'a Job> {
    unfinished(state, group).next()
}

/// The unfinished job whose imports the group's rotation policy shapes (`exp` of a sync's
/// imports, the validity of a rotation's new version).
pub(super) fn using_policy<'a>(state: &'a State, group: &GroupName) -> Option<&'a Job> {
    unfinished(state, group).find(|j| matches!(j.kind, JobKind::Sync | JobKind::Rotate))
}

fn unfinished<'a>(state: &'a State, group: &GroupName) -> impl Iterator<Item = &'a Job> + 'a {
    let group = group.clone();
    state
        .jobs
        .values()
        .filter(move |j| !j.state.is_final() && j.group == group)
}

/// The 409 for `what` refused because `job` is unfinished.
pub(super) fn refusal(job: &Job, what: impl std::fmt::Display) -> ServiceError {
    ServiceError::Busy {
        job: job.id,
        message: format!(
            "{what}: job {} ({}, {}) works on key group {}; wait for it to end, or cancel it (`byokctl job cancel {}`)",
            job.id,
            job.kind.code(),
            job.state,
            job.group,
            job.id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobId, JobState, KeySync, KeySyncState};

    fn job(id: u64, kind: JobKind, group: &str, keys: &[&str], state: JobState) -> Job {
        Job {
            id: JobId::new(id),
            kind,
            group: GroupName::try_from(group).unwrap(),
            keys: keys
                .iter()
                .map(|k| KeySync {
                    key: KeyName::try_from(*k).unwrap(),
                    state: KeySyncState::NotStarted,
                })
                .collect(),
            started_by: "t".into(),
            created: 0,
            started: None,
            ended: None,
            state,
            progress: 0,
            steps: Default::default(),
            journal: Default::default(),
            kek: None,
            error: None,
            cancel_requested: None,
        }
    }

    fn state(jobs: Vec<Job>) -> State {
        State {
            jobs: jobs.into_iter().map(|j| (j.id, j)).collect(),
            ..State::default()
        }
    }

    fn held(s: &State, group: &str, key: &str) -> Option<u64> {
        holding_key(
            s,
            &GroupName::try_from(group).unwrap(),
            &KeyName::try_from(key).unwrap(),
        )
        .map(|j| j.id.get())
    }

    #[test]
    fn a_sync_holds_its_keys_and_group_wide_jobs_hold_every_key() {
        let s = state(vec![
            job(1, JobKind::Sync, "g", &["a"], JobState::Running),
            job(2, JobKind::Sync, "g", &["b"], JobState::Succeeded),
            job(3, JobKind::CheckCloud, "h", &[], JobState::Running),
            job(
                4,
                JobKind::DeleteOnCloud,
                "d",
                &[],
                JobState::WaitingApproval,
            ),
            job(5, JobKind::Rotate, "r", &[], JobState::Pending),
        ]);
        assert_eq!(held(&s, "g", "a"), Some(1));
        assert_eq!(held(&s, "g", "b"), None, "a finished job holds nothing");
        assert_eq!(held(&s, "h", "a"), None, "a drift check only reads");
        assert_eq!(held(&s, "d", "x"), Some(4));
        assert_eq!(held(&s, "r", "x"), Some(5));
        let h = GroupName::try_from("h").unwrap();
        assert_eq!(on_group(&s, &h).map(|j| j.id.get()), Some(3));
        assert!(using_policy(&s, &h).is_none());
        let g = GroupName::try_from("g").unwrap();
        assert_eq!(using_policy(&s, &g).map(|j| j.id.get()), Some(1));
        let ServiceError::Busy { job, message } =
            refusal(&s.jobs[&JobId::new(1)], "key g/a cannot go")
        else {
            panic!("not a busy refusal");
        };
        assert_eq!(job, JobId::new(1));
        assert!(message.contains("job 1 (sync, running)") && message.contains("job cancel 1"));
    }
}
