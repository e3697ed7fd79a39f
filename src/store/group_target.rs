//! Format 5 → 6: a key group names its target, a Key Vault or a Managed HSM pool.
//!
//! Up to format 5 a group record held a vault name; [`KeyGroupV5`] freezes that shape, and
//! every group of an older format becomes a Key Vault target. The A/B formats (1-4) and the
//! group records of a format-5 store are read through it; nothing else changes shape here.

use crate::model::{
    CredentialName, GroupName, KeyGroup, KeyOp, KeyType, RotationPolicy, Target, VaultName,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::Tracked;

/// The first format whose group records name their target.
pub(super) const FORMAT: u16 = 6;

/// A key group as formats 1-5 stored it: always in a Key Vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct KeyGroupV5 {
    name: GroupName,
    credential: CredentialName,
    vault: VaultName,
    key_type: KeyType,
    key_ops: Vec<KeyOp>,
    rotation: RotationPolicy,
    last_rotated: Option<i64>,
    created: i64,
}

impl From<KeyGroupV5> for KeyGroup {
    /// An existing group's key is in a Key Vault: that was the only target there was.
    fn from(g: KeyGroupV5) -> Self {
        KeyGroup {
            name: g.name,
            credential: g.credential,
            target: Target::KeyVault(g.vault),
            key_type: g.key_type,
            key_ops: g.key_ops,
            rotation: g.rotation,
            last_rotated: g.last_rotated,
            created: g.created,
        }
    }
}

/// The format-5 shape of a current group, for tests that lay down older states: `None` for a
/// Managed HSM group, which no older format can hold.
pub(super) fn to_v5(g: &KeyGroup) -> Option<KeyGroupV5> {
    Some(KeyGroupV5 {
        name: g.name.clone(),
        credential: g.credential.clone(),
        vault: g.target.vault()?.clone(),
        key_type: g.key_type,
        key_ops: g.key_ops.clone(),
        rotation: g.rotation,
        last_rotated: g.last_rotated,
        created: g.created,
    })
}

/// The group records of a format-5 store as current groups, every one marked changed so the
/// migration's commit rewrites it in the new shape.
pub(super) fn upgrade(old: Tracked<GroupName, KeyGroupV5>) -> Tracked<GroupName, KeyGroup> {
    let map: BTreeMap<GroupName, KeyGroup> = old
        .iter()
        .map(|(n, g)| (n.clone(), KeyGroup::from(g.clone())))
        .collect();
    let mut groups = Tracked::committed(map);
    groups.mark_all_changed();
    groups
}

#[cfg(test)]
mod tests {
    use super::super::db::{self, Batch, Table};
    use super::super::{FORMAT_VERSION, Store};
    use super::*;
    use crate::model::RsaExponent;

    fn v5_group(name: &str, vault: &str) -> KeyGroupV5 {
        let key_type = KeyType::rsa(2048, RsaExponent::F4).unwrap();
        KeyGroupV5 {
            name: GroupName::try_from(name).unwrap(),
            credential: CredentialName::try_from("app").unwrap(),
            vault: VaultName::try_from(vault).unwrap(),
            key_type,
            key_ops: key_type.default_ops(),
            rotation: RotationPolicy::default(),
            last_rotated: Some(1_770_000_000),
            created: 1_760_000_000,
        }
    }

    /// A format-5 store holding `groups`, as byokd before Managed HSM targets wrote it.
    fn format_5_store(dir: &std::path::Path, groups: &[KeyGroupV5]) {
        let path = dir.join(db::FILE);
        let database = db::create(&path).unwrap();
        let mut batch = Batch::default();
        for g in groups {
            batch.push_raw(
                Table::Groups,
                postcard::to_allocvec(&g.name).unwrap(),
                postcard::to_allocvec(g).unwrap(),
            );
        }
        batch.keep_format(5);
        db::apply(&database, &path, &[batch]).unwrap();
    }

    #[test]
    fn a_format_5_store_migrates_its_groups_to_key_vault_targets_durably() {
        let dir = tempfile::tempdir().unwrap();
        let old = [v5_group("payments", "contoso-kv"), v5_group("hr", "hr-kv")];
        format_5_store(dir.path(), &old);
        assert_eq!(Store::newest_format(dir.path()).unwrap(), Some(5));

        let (store, state, report) = Store::open(dir.path()).unwrap();
        assert_eq!(report.migrated_from, Some(5));
        for g in &old {
            let now = &state.groups[&g.name];
            assert_eq!(now, &KeyGroup::from(g.clone()));
            assert_eq!(now.target, Target::KeyVault(g.vault.clone()));
            assert_eq!(now.last_rotated, Some(1_770_000_000));
        }
        drop(store);

        // Written in the new shape: the next start loads format 6 records as they are.
        assert_eq!(
            Store::newest_format(dir.path()).unwrap(),
            Some(FORMAT_VERSION)
        );
        let (_store, again, report) = Store::open(dir.path()).unwrap();
        assert_eq!(report.migrated_from, None);
        assert_eq!(again.groups.len(), 2);
        assert_eq!(
            again.groups[&old[0].name].target,
            Target::KeyVault(VaultName::try_from("contoso-kv").unwrap())
        );
    }

    #[test]
    fn a_managed_hsm_group_has_no_format_5_shape() {
        let mut g = KeyGroup::from(v5_group("g", "kv1"));
        assert!(to_v5(&g).is_some());
        g.target = Target::ManagedHsm(crate::model::HsmPoolName::try_from("pool1").unwrap());
        assert!(to_v5(&g).is_none());
    }
}
