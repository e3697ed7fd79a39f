//! Generates the committed state fixtures used by the migration tests in tests/store_crash.rs:
//! `tests/fixtures/state-v1.bin` (format 1) and `tests/fixtures/state-v3.bin` (format 3, whose
//! rotation and delete-on-cloud journals are step messages only). Run once with
//! `cargo test --test fixture_gen -- --ignored` when a fixture must be recreated; the committed
//! bytes are what the migration tests load. Each old shape is frozen here as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use byokd::model::{
    Credential, CredentialAuth, CredentialName, DriftReport, GroupName, Guid, JobKind, JobState,
    KekJournal, Key, KeyName, KeyOp, KeySync, KeySyncState, KeyType, PendingGrace, RotationPolicy,
    RsaExponent, StepMessage, VaultName,
};
use serde::Serialize;
use sha2::Digest;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct CredentialV1 {
    name: CredentialName,
    tenant_id: Guid,
    client_id: Guid,
    auth: CredentialAuth,
    fingerprint: String,
    created: i64,
}

/// A key group as formats 1-5 held it: always in a Key Vault.
#[derive(Serialize)]
struct KeyGroupV5 {
    name: GroupName,
    credential: CredentialName,
    vault: VaultName,
    key_type: KeyType,
    key_ops: Vec<KeyOp>,
    rotation: RotationPolicy,
    last_rotated: Option<i64>,
    created: i64,
}

#[derive(Serialize)]
struct StateV1 {
    credentials: BTreeMap<CredentialName, CredentialV1>,
    groups: BTreeMap<GroupName, KeyGroupV5>,
    keys: BTreeMap<(GroupName, byokd::model::KeyName), byokd::model::Key>,
}

#[test]
#[ignore = "regenerates the committed fixture"]
fn write_state_v1_fixture() {
    let cred = CredentialName::try_from("legacy-app").unwrap();
    let state = StateV1 {
        credentials: BTreeMap::from([(
            cred.clone(),
            CredentialV1 {
                name: cred.clone(),
                tenant_id: Guid::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap(),
                client_id: Guid::parse("11111111-2222-3333-4444-555555555555").unwrap(),
                auth: CredentialAuth::Secret {
                    sealed: b"BS1-not-a-real-sealed-secret".to_vec(),
                },
                fingerprint: "0badf00d".into(),
                created: 1_760_000_000,
            },
        )]),
        groups: legacy_groups(&cred),
        keys: BTreeMap::new(),
    };
    write_fixture("state-v1.bin", 1, &state);
}

/// The one key group both fixtures hold, using credential `cred`.
fn legacy_groups(cred: &CredentialName) -> BTreeMap<GroupName, KeyGroupV5> {
    let group = GroupName::try_from("legacy-group").unwrap();
    let rsa = KeyType::rsa(2048, RsaExponent::F4).unwrap();
    BTreeMap::from([(
        group.clone(),
        KeyGroupV5 {
            name: group,
            credential: cred.clone(),
            vault: VaultName::try_from("legacy-vault").unwrap(),
            key_type: rsa,
            key_ops: rsa.default_ops(),
            rotation: RotationPolicy::default(),
            last_rotated: None,
            created: 1_760_000_000,
        },
    )])
}

/// Writes `payload` in the state envelope of format `format` (generation 5).
fn write_fixture(file: &str, format: u16, state: &impl Serialize) {
    let payload = postcard::to_allocvec(state).unwrap();
    let mut out = b"BYOKDST\0".to_vec();
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&5u64.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    let sum = sha2::Sha256::digest(&out);
    out.extend_from_slice(&sum);
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(path, out).unwrap();
}

/// Format 3 as byokd 0.2 wrote it.
#[derive(Serialize)]
struct StateV3 {
    credentials: BTreeMap<CredentialName, Credential>,
    groups: BTreeMap<GroupName, KeyGroupV5>,
    keys: BTreeMap<(GroupName, KeyName), Key>,
    designated: Option<bool>,
    jobs: BTreeMap<u64, JobV3>,
    next_job_id: u64,
    grace: BTreeMap<GroupName, PendingGrace>,
    drift: BTreeMap<GroupName, DriftReport>,
}

#[derive(Serialize)]
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

fn job_v3(id: u64, kind: JobKind, state: JobState, messages: &[&str]) -> JobV3 {
    JobV3 {
        id,
        kind,
        group: GroupName::try_from("legacy-group").unwrap(),
        keys: vec![],
        started_by: "operator".into(),
        created: 1_765_000_000,
        started: Some(1_765_000_001),
        ended: state_is_final(state).then_some(1_765_000_009),
        state,
        progress: 500,
        steps: messages
            .iter()
            .map(|m| StepMessage {
                at: 1_765_000_002,
                message: (*m).to_owned(),
            })
            .collect(),
        kek: None,
        error: None,
        cancel_requested: None,
    }
}

fn state_is_final(state: JobState) -> bool {
    matches!(
        state,
        JobState::Succeeded | JobState::Failed | JobState::Cancelled
    )
}

fn kek(id: u64, kid: bool, deleted: bool, purge_sent: bool, purged: Option<bool>) -> KekJournal {
    KekJournal {
        vault: VaultName::try_from("legacy-vault").unwrap(),
        name: format!("byokd-kek-{id}"),
        kid: kid.then(|| format!("https://legacy-vault.vault.azure.net/keys/byokd-kek-{id}/abc")),
        deleted,
        purged,
        purge_sent,
    }
}

/// Format 3, with one unfinished job of each kind killed mid-journal (and a finished check).
#[test]
#[ignore = "regenerates the committed fixture"]
fn write_state_v3_fixture() {
    let cred = CredentialName::try_from("legacy-app").unwrap();
    let planned = "legacy-group-20251206T055320Z-1";
    let mut rotate = job_v3(
        1,
        JobKind::Rotate,
        JobState::Running,
        &[
            "Rotate key material queued by operator",
            &format!("Generating key {planned} in the HSM (RSA-2048)"),
            &format!("Key {planned} generated in the HSM (check digits A1B2C3)"),
            "Creating key exchange key byokd-kek-1 (RSA-HSM 2048) in vault legacy-vault",
            "Key exchange key created: https://legacy-vault.vault.azure.net/keys/byokd-kek-1/abc",
            &format!("Importing key {planned} into legacy-vault/legacy-group"),
        ],
    );
    rotate.keys = vec![KeySync {
        key: KeyName::try_from(planned).unwrap(),
        state: KeySyncState::ImportSent {
            fingerprint: "f00d".into(),
        },
    }];
    rotate.kek = Some(kek(1, true, false, false, None));
    let delete = job_v3(
        2,
        JobKind::DeleteOnCloud,
        JobState::Running,
        &[
            "Delete key material on cloud requested by alice; waiting for a second admin to approve 7 (expires at 2025-12-06T06:00:00Z)",
            "Approved by bob; queued",
            "Deleting Azure key legacy-vault/legacy-group (all versions); local keys are not touched",
            "Azure key legacy-vault/legacy-group deleted (recovery level Recoverable+Purgeable)",
            "Waiting for the deleted key to be listed",
            "Purging the deleted key",
        ],
    );
    let delete_no_soft = job_v3(
        3,
        JobKind::DeleteOnCloud,
        JobState::Running,
        &[
            "Approved by bob; queued",
            "The vault has no soft-delete (recovery level Purgeable): the delete is final",
            "Deleting Azure key legacy-vault/legacy-group (all versions); local keys are not touched",
        ],
    );
    let mut sync = job_v3(
        4,
        JobKind::Sync,
        JobState::Running,
        &[
            "Synchronize HSM protected key(s) queued by operator",
            "Importing key k0 into legacy-vault/legacy-group",
            "Key k0 imported as version v0",
            "1 of 2 key(s) pushed",
            "Importing key k1 into legacy-vault/legacy-group",
            "Key exchange key byokd-kek-4 deleted",
            "Purging key exchange key byokd-kek-4",
        ],
    );
    sync.keys = vec![
        KeySync {
            key: KeyName::try_from("k0").unwrap(),
            state: KeySyncState::Imported {
                version: "v0".into(),
            },
        },
        KeySync {
            key: KeyName::try_from("k1").unwrap(),
            state: KeySyncState::ImportSent {
                fingerprint: "beef".into(),
            },
        },
    ];
    sync.kek = Some(kek(4, true, true, true, None));
    let check = job_v3(
        5,
        JobKind::CheckCloud,
        JobState::Succeeded,
        &[
            "Check cloud state queued by operator",
            "Azure lists 2 version(s) of legacy-vault/legacy-group",
            "Azure matches the appliance: no drift",
        ],
    );
    let state = StateV3 {
        credentials: BTreeMap::from([(
            cred.clone(),
            Credential {
                name: cred.clone(),
                tenant_id: Guid::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap(),
                client_id: Guid::parse("11111111-2222-3333-4444-555555555555").unwrap(),
                auth: CredentialAuth::Secret {
                    sealed: b"BS1-not-a-real-sealed-secret".to_vec(),
                },
                fingerprint: "0badf00d".into(),
                created: 1_760_000_000,
                expires: None,
            },
        )]),
        groups: legacy_groups(&cred),
        keys: BTreeMap::new(),
        designated: Some(true),
        jobs: [rotate, delete, delete_no_soft, sync, check]
            .into_iter()
            .map(|j| (j.id, j))
            .collect(),
        next_job_id: 6,
        grace: BTreeMap::new(),
        drift: BTreeMap::new(),
    };
    write_fixture("state-v3.bin", 3, &state);
}
