//! Which unfinished job holds a key or a group. Destructive changes and changes to what a job
//! does ask here, under the same state lock as the change itself, so that nothing a job works on
//! is deleted or changed under it (a check on a snapshot, then the change, could be raced).

use super::ServiceError;
use crate::model::{Job, JobKind, KeyName, LocalKeyName};
use crate::store::State;

/// The unfinished job that works on `group`/`key`: a sync that names it, or a rotation or a
/// delete on cloud of its group (those work on every version of the group's key). A drift check
/// only reads, so it holds nothing.
pub(super) fn holding_key<'a>(
    state: &'a State,
    group: &KeyName,
    key: &LocalKeyName,
) -> Option<&'a Job> {
    unfinished(state, group).find(|j| match j.kind {
        JobKind::Sync => j.keys.iter().any(|p| &p.key == key),
        JobKind::Rotate | JobKind::DeleteOnCloud => true,
        JobKind::CheckCloud => false,
    })
}

/// Any unfinished job on `group` (it needs the group's record until it ends).
pub(super) fn on_group<'a>(state: &'a State, group: &KeyName) -> Option<&'a Job> {
    unfinished(state, group).next()
}

/// The unfinished job whose imports the group's rotation policy shapes (`exp` of a sync's
/// imports, the validity of a rotation's new version).
pub(super) fn using_policy<'a>(state: &'a State, group: &KeyName) -> Option<&'a Job> {
    unfinished(state, group).find(|j| matches!(j.kind, JobKind::Sync | JobKind::Rotate))
}

fn unfinished<'a>(state: &'a State, group: &KeyName) -> impl Iterator<Item = &'a Job> + 'a {
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
