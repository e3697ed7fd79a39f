//! Generates `tests/fixtures/state-v1.bin`, the committed format-1 state fixture used by the
//! migration test. Run once with `cargo test --test fixture_gen -- --ignored` when the fixture
//! must be recreated; the committed bytes are what the migration test loads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use byokd::model::{
    CredentialAuth, CredentialName, Guid, KeyGroup, KeyName, KeyType, RotationPolicy, RsaExponent,
    VaultName,
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

#[derive(Serialize)]
struct StateV1 {
    credentials: BTreeMap<CredentialName, CredentialV1>,
    groups: BTreeMap<KeyName, KeyGroup>,
    keys: BTreeMap<(KeyName, byokd::model::LocalKeyName), byokd::model::Key>,
}

#[test]
#[ignore = "regenerates the committed fixture"]
fn write_state_v1_fixture() {
    let cred = CredentialName::try_from("legacy-app").unwrap();
    let group = KeyName::try_from("legacy-group").unwrap();
    let rsa = KeyType::rsa(2048, RsaExponent::F4).unwrap();
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
        groups: BTreeMap::from([(
            group.clone(),
            KeyGroup {
                name: group,
                credential: cred,
                vault: VaultName::try_from("legacy-vault").unwrap(),
                key_type: rsa,
                key_ops: rsa.default_ops(),
                rotation: RotationPolicy::default(),
                last_rotated: None,
                created: 1_760_000_000,
            },
        )]),
        keys: BTreeMap::new(),
    };
    let payload = postcard::to_allocvec(&state).unwrap();
    let mut out = b"BYOKDST\0".to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&5u64.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    let sum = sha2::Sha256::digest(&out);
    out.extend_from_slice(&sum);
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state-v1.bin"),
        out,
    )
    .unwrap();
}
