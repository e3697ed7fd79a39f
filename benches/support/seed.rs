//! Seeds a state directory straight through the store API (no HSM calls): a credential, one big
//! group and any number of small groups, each key with a fake HSM id. Listing and start-up never
//! touch the HSM, so this measures the daemon's own cost of holding the state.

use byokd::model::{
    Credential, CredentialAuth, CredentialName, GroupName, Guid, HsmKeyId, Key, KeyGroup, KeyName,
    KeyType, RotationPolicy, Storage, VaultName,
};
use std::path::Path;

/// What to seed.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    /// Keys in the group `bench-group`.
    pub big_group_keys: usize,
    /// Further groups `g-00000`…, each with `keys_per_group` keys.
    pub small_groups: usize,
    pub keys_per_group: usize,
    /// Rotation on for every group.
    pub rotation: bool,
}

impl Seed {
    /// `keys` keys, five a group in `keys / 5` small groups, rotation off: the shape of the
    /// store and 1M-key footprint benches.
    pub fn five_a_group(keys: usize) -> Seed {
        Seed {
            big_group_keys: 0,
            small_groups: keys / 5,
            keys_per_group: 5,
            rotation: false,
        }
    }

    pub fn total_keys(&self) -> usize {
        self.big_group_keys + self.small_groups * self.keys_per_group
    }
}

/// The credential `bench` of the seeded states (a secret credential whose sealed secret is
/// zeros: the benches never sign in with it).
pub fn credential(tenant: &str, client: &str) -> Credential {
    let name = CredentialName::try_from("bench".to_owned()).unwrap();
    Credential {
        name,
        tenant_id: Guid::parse(tenant).unwrap(),
        client_id: Guid::parse(client).unwrap(),
        auth: CredentialAuth::Secret {
            sealed: vec![0; 48],
        },
        fingerprint: "00000000".into(),
        created: 1_800_000_000,
        expires: None,
    }
}

/// Writes the seeded state as one committed generation into `dir`.
pub fn seed(dir: &Path, tenant: &str, client: &str, s: Seed) {
    let (mut store, mut state, _) = byokd::store::Store::open(dir).unwrap();
    let cred = credential(tenant, client);
    let cred_name = cred.name.clone();
    state.credentials.insert(cred_name.clone(), cred);
    let key_type = KeyType::parse("RSA-2048", Default::default()).unwrap();
    let rotation = RotationPolicy {
        enabled: s.rotation,
        ..RotationPolicy::default()
    };
    let mut serial: u64 = 0;
    let mut add_group = |state: &mut byokd::store::State, name: String, keys: usize| {
        let group = GroupName::try_from(name).unwrap();
        state.groups.insert(
            group.clone(),
            KeyGroup {
                name: group.clone(),
                credential: cred_name.clone(),
                target: byokd::model::Target::KeyVault(
                    VaultName::try_from("bench-kv".to_owned()).unwrap(),
                ),
                key_type,
                key_ops: key_type.default_ops(),
                rotation,
                last_rotated: None,
                created: 1_800_000_000,
            },
        );
        for i in 0..keys {
            serial += 1;
            let name = KeyName::try_from(format!("key-{i:05}")).unwrap();
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&serial.to_be_bytes());
            state
                .keys
                .insert(
                    (group.clone(), name.clone()),
                    Key {
                        name,
                        group: group.clone(),
                        hsm_id: HsmKeyId(id),
                        check_digits: "ABCD".into(),
                        key_type,
                        storage: Storage::Protected,
                        created: 1_800_000_000,
                        azure_version: (i % 2 == 0).then(|| format!("{serial:032x}").into()),
                    },
                )
                .unwrap();
        }
    };
    add_group(&mut state, "bench-group".to_owned(), s.big_group_keys);
    for g in 0..s.small_groups {
        add_group(&mut state, format!("g-{g:05}"), s.keys_per_group);
    }
    store.commit(&mut state).unwrap();
}
