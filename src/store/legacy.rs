//! Older state formats and their migrations to the current one.
//!
//! When a persisted type changes shape, its old shape is frozen here and the format version
//! goes up. Each step migrates one version; `migrate` runs the chain.
//!
//! Format 3 journalled rotation and delete-on-cloud intents as step messages only;
//! [`typed_journal`] reads their known prefixes once, here, into the typed journal of format 4.
//! Nothing else in byokd reads a step message for a decision.

use super::State;
use super::group_target::KeyGroupV5;
use crate::model::{
    CheckCloudStep, Credential, CredentialAuth, CredentialName, DriftReport, GroupName, Guid, Job,
    JobKind, JobState, JobStep, KekJournal, Key, KeyGroup, KeyName, KeySync, KeySyncState,
    PendingGrace, RotateStep, StepMessage, SyncStep, VaultName,
};
use crate::model::{DeleteCloudStep, JobId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format 1 (byokd 0.1 pre-release): credentials had no operator-set expiry and there was no
/// runtime designated-device setting.
#[derive(Deserialize)]
struct StateV1 {
    credentials: BTreeMap<CredentialName, CredentialV1>,
    groups: BTreeMap<GroupName, KeyGroupV5>,
    keys: BTreeMap<(GroupName, KeyName), Key>,
}

#[derive(Deserialize)]
struct CredentialV1 {
    name: CredentialName,
    tenant_id: Guid,
    client_id: Guid,
    auth: CredentialAuth,
    fingerprint: String,
    created: i64,
}

/// Decodes a payload of format `format` and migrates it to the current [`State`].
pub fn migrate(format: u16, payload: &[u8]) -> Result<State, String> {
    match format {
        1 => {
            let v1: StateV1 =
                postcard::from_bytes(payload).map_err(|e| format!("format 1 payload: {e}"))?;
            Ok(v1_to_current(v1))
        }
        2 => {
            let v2: StateV2 =
                postcard::from_bytes(payload).map_err(|e| format!("format 2 payload: {e}"))?;
            Ok(v3_to_v4(v2_to_v3(v2)))
        }
        3 => {
            let v3: StateV3 =
                postcard::from_bytes(payload).map_err(|e| format!("format 3 payload: {e}"))?;
            Ok(v3_to_v4(v3))
        }
        4 => {
            let v4: StateV4 =
                postcard::from_bytes(payload).map_err(|e| format!("format 4 payload: {e}"))?;
            Ok(v4.into())
        }
        other => Err(format!("unknown format version {other}")),
    }
}

/// Format 2 (byokd 0.1): jobs had no cancel request, KEK journals no purge intent, and there
/// were no grace-period or drift records.
#[derive(Serialize, Deserialize)]
struct StateV2 {
    credentials: BTreeMap<CredentialName, Credential>,
    groups: BTreeMap<GroupName, KeyGroupV5>,
    keys: BTreeMap<(GroupName, KeyName), Key>,
    designated: Option<bool>,
    jobs: BTreeMap<u64, JobV2>,
    next_job_id: u64,
}

#[derive(Serialize, Deserialize)]
struct JobV2 {
    id: u64,
    kind: JobKind,
    group: GroupName,
    keys: Vec<KeySync>,
    started_by: String,
    created: i64,
    started: Option<i64>,
    ended: Option<i64>,
    state: JobState,
    progress: u16,
    steps: Vec<StepMessage>,
    kek: Option<KekJournalV2>,
    error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct KekJournalV2 {
    vault: VaultName,
    name: String,
    kid: Option<String>,
    deleted: bool,
    purged: Option<bool>,
}

fn v2_to_v3(v2: StateV2) -> StateV3 {
    let jobs = v2
        .jobs
        .into_iter()
        .map(|(id, j)| {
            let job = JobV3 {
                id: j.id,
                kind: j.kind,
                group: j.group,
                keys: j.keys,
                started_by: j.started_by,
                created: j.created,
                started: j.started,
                ended: j.ended,
                state: j.state,
                progress: j.progress,
                steps: j.steps,
                // A purge that was in flight at the upgrade is looked for, not waited for.
                kek: j.kek.map(|k| KekJournal {
                    vault: k.vault,
                    name: k.name,
                    kid: k.kid,
                    deleted: k.deleted,
                    purged: k.purged,
                    purge_sent: k.deleted && k.purged.is_none(),
                }),
                error: j.error,
                cancel_requested: None,
            };
            (id, job)
        })
        .collect();
    StateV3 {
        credentials: v2.credentials,
        groups: v2.groups,
        keys: v2.keys,
        designated: v2.designated,
        jobs,
        next_job_id: v2.next_job_id,
        grace: BTreeMap::new(),
        drift: BTreeMap::new(),
    }
}

/// Format 3 (byokd 0.2): a job's journal was its step messages, plus the typed KEK and key
/// states of a push.
#[derive(Serialize, Deserialize)]
pub(super) struct StateV3 {
    credentials: BTreeMap<CredentialName, Credential>,
    groups: BTreeMap<GroupName, KeyGroupV5>,
    keys: BTreeMap<(GroupName, KeyName), Key>,
    designated: Option<bool>,
    jobs: BTreeMap<u64, JobV3>,
    next_job_id: u64,
    grace: BTreeMap<GroupName, PendingGrace>,
    drift: BTreeMap<GroupName, DriftReport>,
}

#[derive(Serialize, Deserialize)]
struct JobV3 {
    id: u64,
    kind: JobKind,
    group: GroupName,
    keys: Vec<KeySync>,
    started_by: String,
    created: i64,
    started: Option<i64>,
    ended: Option<i64>,
    state: JobState,
    progress: u16,
    steps: Vec<StepMessage>,
    kek: Option<KekJournal>,
    error: Option<String>,
    cancel_requested: Option<String>,
}

fn v3_to_v4(v3: StateV3) -> State {
    let jobs = v3
        .jobs
        .into_iter()
        .map(|(id, j)| {
            let journal = typed_journal(j.kind, &j.steps, j.kek.as_ref(), &j.keys);
            let job = Job {
                id: JobId::new(j.id),
                kind: j.kind,
                group: j.group,
                keys: j.keys,
                started_by: j.started_by,
                created: j.created,
                started: j.started,
                ended: j.ended,
                state: j.state,
                progress: j.progress,
                steps: j.steps,
                journal,
                kek: j.kek,
                error: j.error,
                cancel_requested: j.cancel_requested,
            };
            (JobId::new(id), job)
        })
        .collect();
    State {
        credentials: v3.credentials.into(),
        groups: current_groups(v3.groups),
        keys: v3.keys.into(),
        designated: v3.designated,
        jobs,
        next_job_id: JobId::new(v3.next_job_id),
        grace: v3.grace.into(),
        drift: v3.drift.into(),
    }
}

/// The typed journal of a format-3 job. Rotation and delete on cloud journalled their intents
/// as step messages with known prefixes (the only place byokd ever reads them); a push's steps
/// follow from its typed KEK and key states.
fn typed_journal(
    kind: JobKind,
    steps: &[StepMessage],
    kek: Option<&KekJournal>,
    keys: &[KeySync],
) -> Vec<JobStep> {
    let mut journal: Vec<JobStep> = steps
        .iter()
        .filter_map(|s| step_of_message(kind, &s.message))
        .collect();
    if matches!(kind, JobKind::Sync | JobKind::Rotate) {
        journal.extend(sync_steps(kek, keys).into_iter().map(JobStep::Sync));
    }
    journal
}

/// The typed step a format-3 step message announced, by its known prefix.
fn step_of_message(kind: JobKind, message: &str) -> Option<JobStep> {
    let first_word = |rest: &str| {
        rest.split(' ')
            .next()
            .and_then(|w| KeyName::try_from(w.to_owned()).ok())
    };
    match kind {
        JobKind::Rotate => {
            if let Some(rest) = message.strip_prefix("Generating key ") {
                first_word(rest).map(|key| RotateStep::KeyPlanned { key }.into())
            } else if let Some(rest) = message.strip_prefix("Key ")
                && rest.contains(" generated in the HSM")
            {
                first_word(rest).map(|key| RotateStep::KeyGenerated { key }.into())
            } else {
                None
            }
        }
        JobKind::DeleteOnCloud => {
            let step =
                if message.starts_with("The vault has no soft-delete (recovery level Purgeable)") {
                    DeleteCloudStep::NoSoftDelete
                } else if message.starts_with("Deleting Azure key") {
                    DeleteCloudStep::DeleteSent
                } else if message.starts_with("Azure key ")
                    && message.contains(" deleted (recovery level ")
                {
                    DeleteCloudStep::Deleted
                } else if message.starts_with("Purging the deleted key") {
                    DeleteCloudStep::PurgeSent
                } else {
                    return None;
                };
            Some(step.into())
        }
        JobKind::CheckCloud => message
            .strip_prefix("Azure lists ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .map(|versions| CheckCloudStep::Listed { versions }.into()),
        // Format 3 had no recover or purge job.
        JobKind::Sync | JobKind::Recover | JobKind::Purge => None,
    }
}

/// A push's typed steps, from the KEK and key states format 3 already kept.
fn sync_steps(kek: Option<&KekJournal>, keys: &[KeySync]) -> Vec<SyncStep> {
    let mut steps = Vec::new();
    if let Some(k) = kek {
        steps.push(SyncStep::KekPlanned);
        if k.kid.is_some() {
            steps.push(SyncStep::KekCreated);
        }
    }
    for p in keys {
        match &p.state {
            KeySyncState::ImportSent { .. } => {
                steps.push(SyncStep::ImportSent { key: p.key.clone() })
            }
            KeySyncState::Imported { version } => {
                steps.push(SyncStep::ImportSent { key: p.key.clone() });
                steps.push(SyncStep::Imported {
                    key: p.key.clone(),
                    version: version.clone(),
                });
            }
            KeySyncState::NotStarted | KeySyncState::Failed { .. } => {}
        }
    }
    if let Some(k) = kek {
        if k.deleted && k.kid.is_some() {
            steps.push(SyncStep::KekDeleted);
        }
        if k.purge_sent {
            steps.push(SyncStep::KekPurgeSent);
        }
        if let Some(purged) = k.purged {
            steps.push(SyncStep::KekSettled { purged });
        }
    }
    steps
}

/// Format 4 (byokd 0.3, the last A/B format): the current state's shape except for its group
/// records, which named a vault (see `group_target`).
#[derive(Serialize, Deserialize)]
pub(super) struct StateV4 {
    credentials: BTreeMap<CredentialName, Credential>,
    groups: BTreeMap<GroupName, KeyGroupV5>,
    keys: BTreeMap<(GroupName, KeyName), Key>,
    designated: Option<bool>,
    jobs: BTreeMap<JobId, Job>,
    next_job_id: JobId,
    grace: BTreeMap<GroupName, PendingGrace>,
    drift: BTreeMap<GroupName, DriftReport>,
}

impl From<StateV4> for State {
    fn from(v4: StateV4) -> Self {
        State {
            credentials: v4.credentials.into(),
            groups: current_groups(v4.groups),
            keys: v4.keys.into(),
            designated: v4.designated,
            jobs: v4.jobs.into(),
            next_job_id: v4.next_job_id,
            grace: v4.grace.into(),
            drift: v4.drift.into(),
        }
    }
}

impl StateV4 {
    /// `state` in the format-4 shape; fails on a Managed HSM group, which format 4 cannot hold.
    pub(super) fn of(state: &State) -> Result<Self, String> {
        let groups = state
            .groups
            .iter()
            .map(|(n, g)| {
                super::group_target::to_v5(g)
                    .map(|g| (n.clone(), g))
                    .ok_or_else(|| {
                        format!("group {n} targets a Managed HSM, which format 4 cannot hold")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            credentials: state
                .credentials
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            groups,
            keys: state
                .keys
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            designated: state.designated,
            jobs: state.jobs.iter().map(|(k, v)| (*k, v.clone())).collect(),
            next_job_id: state.next_job_id,
            grace: state
                .grace
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            drift: state
                .drift
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

/// Groups of formats 1-4, each a Key Vault target now.
fn current_groups(groups: BTreeMap<GroupName, KeyGroupV5>) -> super::Tracked<GroupName, KeyGroup> {
    groups
        .into_iter()
        .map(|(n, g)| (n, g.into()))
        .collect::<BTreeMap<_, _>>()
        .into()
}

/// Format 1 straight to the current shape.
fn v1_to_current(v1: StateV1) -> State {
    let credentials = v1
        .credentials
        .into_iter()
        .map(|(name, c)| {
            let cred = Credential {
                name: c.name,
                tenant_id: c.tenant_id,
                client_id: c.client_id,
                auth: c.auth,
                fingerprint: c.fingerprint,
                created: c.created,
                expires: None,
            };
            (name, cred)
        })
        .collect();
    State {
        credentials,
        groups: current_groups(v1.groups),
        keys: v1.keys.into(),
        designated: None,
        jobs: Default::default(),
        next_job_id: JobId::new(1),
        grace: Default::default(),
        drift: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::KeySyncState;

    #[test]
    fn a_format_2_job_journal_is_migrated_with_no_cancel_and_a_pending_purge_looked_for() {
        let v2 = StateV2 {
            credentials: BTreeMap::new(),
            groups: BTreeMap::new(),
            keys: BTreeMap::new(),
            designated: Some(true),
            jobs: BTreeMap::from([(
                4,
                JobV2 {
                    id: 4,
                    kind: JobKind::Sync,
                    group: GroupName::try_from("g".to_owned()).unwrap(),
                    keys: vec![KeySync {
                        key: KeyName::try_from("k".to_owned()).unwrap(),
                        state: KeySyncState::Imported {
                            version: crate::model::AzureVersion::new("v1"),
                        },
                    }],
                    started_by: "operator".into(),
                    created: 10,
                    started: Some(11),
                    ended: None,
                    state: JobState::Running,
                    progress: 900,
                    steps: vec![StepMessage {
                        at: 11,
                        message: "hello".into(),
                    }],
                    kek: Some(KekJournalV2 {
                        vault: VaultName::try_from("contoso-kv".to_owned()).unwrap(),
                        name: "byokd-kek-4".into(),
                        kid: Some("kid".into()),
                        deleted: true,
                        purged: None,
                    }),
                    error: None,
                },
            )]),
            next_job_id: 5,
        };
        let bytes = postcard::to_allocvec(&v2).unwrap();
        let state = migrate(2, &bytes).unwrap();
        assert_eq!(state.next_job_id, JobId::new(5));
        assert_eq!(state.designated, Some(true));
        let job = &state.jobs[&JobId::new(4)];
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.progress, 900);
        assert_eq!(job.cancel_requested, None);
        assert!(state.grace.is_empty() && state.drift.is_empty());
        let kek = job.kek.as_ref().unwrap();
        assert!(kek.deleted && kek.purge_sent && kek.purged.is_none());
        // And it round-trips in the current format.
        let current = postcard::to_allocvec(&StateV4::of(&state).unwrap()).unwrap();
        assert_eq!(
            migrate(super::super::envelope::LAST_AB_FORMAT, &current).unwrap(),
            state
        );
    }
}
