//! Older state formats and their migrations to the current one.
//!
//! When a persisted type changes shape, its old shape is frozen here and the format version
//! goes up. Each step migrates one version; `migrate` runs the chain.

use super::State;
use crate::model::{
    Credential, CredentialAuth, CredentialName, Guid, Job, Key, KeyGroup, KeyName, LocalKeyName,
};
use serde::Deserialize;
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

/// Format 2 (byokd 0.1 with push jobs): no grace-period or drift records.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct StateV2 {
    credentials: BTreeMap<CredentialName, Credential>,
    groups: BTreeMap<KeyName, KeyGroup>,
    keys: BTreeMap<(KeyName, LocalKeyName), Key>,
    designated: Option<bool>,
    jobs: BTreeMap<u64, Job>,
    next_job_id: u64,
}

/// Decodes a payload of format `format` and migrates it to the current [`State`].
pub fn migrate(format: u16, payload: &[u8]) -> Result<State, String> {
    match format {
        1 => {
            let v1: StateV1 =
                postcard::from_bytes(payload).map_err(|e| format!("format 1 payload: {e}"))?;
            Ok(v2_to_v3(v1_to_v2(v1)))
        }
        2 => {
            let v2: StateV2 =
                postcard::from_bytes(payload).map_err(|e| format!("format 2 payload: {e}"))?;
            Ok(v2_to_v3(v2))
        }
        3 => postcard::from_bytes(payload).map_err(|e| format!("format 3 payload: {e}")),
        other => Err(format!("unknown format version {other}")),
    }
}

fn v2_to_v3(v2: StateV2) -> State {
    State {
        credentials: v2.credentials,
        groups: v2.groups,
        keys: v2.keys,
        designated: v2.designated,
        jobs: v2.jobs,
        next_job_id: v2.next_job_id,
        grace: BTreeMap::new(),
        drift: BTreeMap::new(),
    }
}

fn v1_to_v2(v1: StateV1) -> StateV2 {
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
    StateV2 {
        credentials,
        groups: v1.groups,
        keys: v1.keys,
        designated: None,
        jobs: BTreeMap::new(),
        next_job_id: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_2_payload_migrates_with_empty_lifecycle_records() {
        let v2 = StateV2 {
            credentials: BTreeMap::new(),
            groups: BTreeMap::new(),
            keys: BTreeMap::new(),
            designated: Some(true),
            jobs: BTreeMap::new(),
            next_job_id: 42,
        };
        let payload = postcard::to_allocvec(&v2).unwrap();
        let state = migrate(2, &payload).unwrap();
        assert_eq!(state.designated, Some(true));
        assert_eq!(state.next_job_id, 42);
        assert!(state.grace.is_empty() && state.drift.is_empty());
        // A format 2 payload is not a valid format 3 payload: the version decides.
        assert!(migrate(3, &payload).is_err());
    }
}
