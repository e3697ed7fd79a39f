//! Older state formats and their migrations to the current one.
//!
//! When a persisted type changes shape, its old shape is frozen here and the format version
//! goes up. Each step migrates one version; `migrate` runs the chain.

use super::State;
use crate::model::{
    Credential, CredentialAuth, CredentialName, Guid, Job, JobKind, JobState, KekJournal, Key,
    KeyGroup, KeyName, KeyPush, LocalKeyName, StepMessage, VaultName,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format 1 (byokd 0.1 pre-release): credentials had no operator-set expiry and there was no
/// runtime designated-device setting.
#[derive(Deserialize)]
struct StateV1 {
    credentials: BTreeMap<CredentialName, CredentialV1>,
    groups: BTreeMap<KeyName, KeyGroup>,
    keys: BTreeMap<(KeyName, LocalKeyName), Key>,
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
            Ok(v2_to_v3(v2))
        }
        3 => postcard::from_bytes(payload).map_err(|e| format!("format 3 payload: {e}")),
        // Test-only next format: same shape as format 3, so the step is the identity.
        #[cfg(feature = "test-next-format")]
        4 => postcard::from_bytes(payload).map_err(|e| format!("format 4 payload: {e}")),
        other => Err(format!("unknown format version {other}")),
    }
}

/// Format 2 (byokd 0.1): jobs had no cancel request, KEK journals no purge intent, and there
/// were no grace-period or drift records.
#[derive(Serialize, Deserialize)]
struct StateV2 {
    credentials: BTreeMap<CredentialName, Credential>,
    groups: BTreeMap<KeyName, KeyGroup>,
    keys: BTreeMap<(KeyName, LocalKeyName), Key>,
    designated: Option<bool>,
    jobs: BTreeMap<u64, JobV2>,
    next_job_id: u64,
}

#[derive(Serialize, Deserialize)]
struct JobV2 {
    id: u64,
    kind: JobKind,
    group: KeyName,
    keys: Vec<KeyPush>,
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

fn v2_to_v3(v2: StateV2) -> State {
    let jobs = v2
        .jobs
        .into_iter()
        .map(|(id, j)| {
            let job = Job {
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
    State {
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
        groups: v1.groups,
        keys: v1.keys,
        designated: None,
        jobs: BTreeMap::new(),
        next_job_id: 1,
        grace: BTreeMap::new(),
        drift: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::KeyPushState;

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
                    group: KeyName::try_from("g".to_owned()).unwrap(),
                    keys: vec![KeyPush {
                        key: LocalKeyName::try_from("k".to_owned()).unwrap(),
                        state: KeyPushState::Imported {
                            version: "v1".into(),
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
        assert_eq!(state.next_job_id, 5);
        assert_eq!(state.designated, Some(true));
        let job = &state.jobs[&4];
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.progress, 900);
        assert_eq!(job.cancel_requested, None);
        assert!(state.grace.is_empty() && state.drift.is_empty());
        let kek = job.kek.as_ref().unwrap();
        assert!(kek.deleted && kek.purge_sent && kek.purged.is_none());
        // And it round-trips in the current format.
        let current = postcard::to_allocvec(&state).unwrap();
        assert_eq!(
            migrate(super::super::FORMAT_VERSION, &current).unwrap(),
            state
        );
    }
}
