//! Older state formats and their migrations to the current one.
//!
//! When a persisted type changes shape, its old shape is frozen here and the format version
//! goes up. Each step migrates one version; `migrate` runs the chain.

use super::State;
use crate::model::{
    Credential, CredentialAuth, CredentialName, Guid, Key, KeyGroup, KeyName, LocalKeyName,
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

/// Decodes a payload of format `format` and migrates it to the current [`State`].
pub fn migrate(format: u16, payload: &[u8]) -> Result<State, String> {
    match format {
        1 => {
            let v1: StateV1 =
                postcard::from_bytes(payload).map_err(|e| format!("format 1 payload: {e}"))?;
            Ok(v1_to_v2(v1))
        }
        2 => postcard::from_bytes(payload).map_err(|e| format!("format 2 payload: {e}")),
        // Test-only next format: same shape as format 2, so the step is the identity.
        #[cfg(feature = "test-next-format")]
        3 => postcard::from_bytes(payload).map_err(|e| format!("format 3 payload: {e}")),
        other => Err(format!("unknown format version {other}")),
    }
}

fn v1_to_v2(v1: StateV1) -> State {
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
    }
}
