//! The state byokd persists: credentials, key groups, keys and runtime settings.

use super::StoreError;
use super::keys::Keys;
use super::tracked::Tracked;
use crate::model::JobId;
use crate::model::{
    Credential, CredentialName, DriftReport, GroupName, Job, Key, KeyGroup, PendingGrace,
};
use serde::{Deserialize, Serialize};

/// Everything byokd must not lose. Each map entry is one record of the store (see `db`); the
/// maps remember what changed, so a commit writes only that. The A/B files of formats 1-4 held
/// it as one postcard document (see `legacy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub credentials: Tracked<CredentialName, Credential>,
    pub groups: Tracked<GroupName, KeyGroup>,
    /// Keys by (group, key name), read from the store on demand (see `keys`).
    pub keys: Keys,
    /// The designated-device setting as last set through the control API; `None` means the
    /// configuration file's value applies.
    pub designated: Option<bool>,
    /// Jobs by id, with their journals; finished ones are pruned by retention.
    pub jobs: Tracked<JobId, Job>,
    /// The next job id to hand out.
    pub next_job_id: JobId,
    /// Previous Azure versions waiting out the grace period after a rotation, by group.
    pub grace: Tracked<GroupName, PendingGrace>,
    /// The last drift check's findings, by group.
    pub drift: Tracked<GroupName, DriftReport>,
}

/// The highest job id a loaded state may hand out next. A daemon starting a job a second needs
/// 292 billion years to get here, so a state above it was written by hand; loading it would
/// overflow the counter at the next job.
pub const MAX_NEXT_JOB_ID: u64 = i64::MAX as u64;

impl State {
    /// A copy with every key in memory, bound to no store: it stays readable after its store is
    /// closed (tests compare states across a reopen with it).
    pub fn in_memory(&self) -> Result<State, StoreError> {
        Ok(State {
            keys: self.keys.in_memory()?,
            ..self.clone()
        })
    }

    /// The keys of `group`, by name, uncommitted changes included.
    pub fn keys_in(&self, group: &GroupName) -> Result<Vec<Key>, StoreError> {
        self.keys.in_group(group)
    }

    pub fn groups_using<'a>(
        &'a self,
        credential: &'a CredentialName,
    ) -> impl Iterator<Item = &'a KeyGroup> + 'a {
        self.groups
            .values()
            .filter(move |g| &g.credential == credential)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::KeyName;

    #[test]
    fn smallest_name_is_valid() {
        assert_eq!(KeyName::smallest().as_str(), "0");
        assert!(KeyName::try_from("0").is_ok());
    }
}
