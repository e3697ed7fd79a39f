//! Retention of finished jobs: at most `jobs.retain_count` of them, none that ended more than
//! `jobs.retain_days` ago. Unfinished jobs are never pruned, whatever their age or number.

use crate::config::JobsSection;
use crate::model::{Job, JobId};
use crate::store::Tracked;

const DAY_SECS: i64 = 86_400;

/// The retention rule in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    pub count: usize,
    pub max_age_secs: i64,
}

impl From<&JobsSection> for Retention {
    fn from(c: &JobsSection) -> Self {
        Self {
            count: c.retain_count,
            max_age_secs: i64::from(c.retain_days).saturating_mul(DAY_SECS),
        }
    }
}

impl Retention {
    /// Prunes `jobs` in place at time `now` (Unix seconds); returns the jobs removed (moved
    /// out, for the caller to put back should the removal not become durable).
    pub fn prune(&self, jobs: &mut Tracked<JobId, Job>, now: i64) -> Vec<Job> {
        let cutoff = now.saturating_sub(self.max_age_secs);
        // Newest finished first (by end time, then id); keep the first `count` not too old.
        let mut finished: Vec<(i64, JobId)> = jobs
            .values()
            .filter(|j| j.state.is_final())
            .map(|j| (j.ended.unwrap_or(j.created), j.id))
            .collect();
        finished.sort_unstable_by(|a, b| b.cmp(a));
        let gone: Vec<JobId> = finished
            .into_iter()
            .enumerate()
            .filter(|(n, (ended, _))| *n >= self.count || *ended < cutoff)
            .map(|(_, (_, id))| id)
            .collect();
        gone.iter().filter_map(|id| jobs.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{GroupName, JobKind, JobState};

    fn job(id: u64, state: JobState, ended: Option<i64>) -> Job {
        Job {
            id: JobId::new(id),
            kind: JobKind::Sync,
            group: GroupName::try_from("g".to_owned()).unwrap(),
            keys: Default::default(),
            started_by: "operator".into(),
            created: 1_000,
            started: Some(1_000),
            ended,
            state,
            progress: 0,
            steps: Default::default(),
            journal: Default::default(),
            kek: None,
            error: None,
            cancel_requested: None,
        }
    }

    fn jobs(list: Vec<Job>) -> Tracked<JobId, Job> {
        list.into_iter().map(|j| (j.id, j)).collect()
    }

    #[test]
    fn the_oldest_finished_jobs_beyond_the_count_go_and_unfinished_ones_stay() {
        let r = Retention {
            count: 2,
            max_age_secs: 10 * DAY_SECS,
        };
        let mut js = jobs(vec![
            job(1, JobState::Succeeded, Some(2_000)),
            job(2, JobState::Failed, Some(2_100)),
            job(3, JobState::Running, None),
            job(4, JobState::Cancelled, Some(2_200)),
            job(5, JobState::Succeeded, Some(2_300)),
            job(6, JobState::Pending, None),
            job(7, JobState::WaitingRetry, None),
        ]);
        assert_eq!(r.prune(&mut js, 3_000).len(), 2);
        let left: Vec<u64> = js.keys().map(|k| k.get()).collect();
        assert_eq!(left, vec![3, 4, 5, 6, 7]);
    }

    #[test]
    fn finished_jobs_older_than_the_age_go_and_old_unfinished_ones_stay() {
        let r = Retention {
            count: 100,
            max_age_secs: DAY_SECS,
        };
        let now = 50 * DAY_SECS;
        let mut js = jobs(vec![
            job(1, JobState::Succeeded, Some(now - DAY_SECS - 1)),
            job(2, JobState::Failed, Some(now - DAY_SECS)),
            job(3, JobState::WaitingApproval, None),
            job(4, JobState::Succeeded, Some(now - 5)),
        ]);
        assert_eq!(r.prune(&mut js, now).len(), 1);
        let left: Vec<u64> = js.keys().map(|k| k.get()).collect();
        assert_eq!(left, vec![2, 3, 4]);
        // The unfinished job is older than any cutoff and still stays.
        assert_eq!(r.prune(&mut js, now * 10).len(), 2);
        assert_eq!(js.keys().map(|k| k.get()).collect::<Vec<_>>(), vec![3]);
    }
}
