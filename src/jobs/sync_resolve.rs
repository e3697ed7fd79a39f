//! Finding a sync's imports again after their answer was lost (a restart, a timeout): every
//! version of the group's Azure key carries its key's fingerprint tag, so one listing tells
//! which import went through. A tag is only a hint: a version found by it is recorded only
//! once Azure's public key of that version is the HSM key's (the same check an import's answer
//! gets), and the job fails naming the version otherwise. A key not found is marked not
//! started, to be imported again.

use super::JobError;
use super::ports::{JobStore, KeyHsm, LocalKeys, Vault};
use crate::azure::jwk::{FINGERPRINT_TAG, jwk_matches};
use crate::azure::{AzureError, KeyVaultError};
use crate::hsm::KeyIdentity;
use crate::model::{AzureVersion, JobId, KeyGroup, KeyName, KeySyncState};
use std::collections::HashMap;

/// Resolves every key of the job whose import was sent but whose answer never arrived, with one
/// listing of the Azure versions: a version carrying its fingerprint tag, and holding the HSM
/// key's public key, is recorded, otherwise the key is marked not started. Returns whether there
/// was any such key.
pub(super) async fn resolve_sent<S: JobStore + LocalKeys>(
    kv: &impl Vault,
    store: &S,
    hsm: &impl KeyHsm,
    id: JobId,
    group: &KeyGroup,
) -> Result<bool, JobError> {
    let sent: Vec<(KeyName, String)> = store
        .key_syncs(id)
        .await?
        .into_iter()
        .filter_map(|p| match p.state {
            KeySyncState::ImportSent { fingerprint } => Some((p.key, fingerprint)),
            _ => None,
        })
        .collect();
    if sent.is_empty() {
        return Ok(false);
    }
    let tagged = tagged_versions(kv, group.name.as_str()).await?;
    for (key, fp) in sent {
        match tagged.get(&fp) {
            Some(version) => {
                let local = store.key(&group.name, &key).await?;
                let identity = hsm.key_identity(local.hsm_id).await?;
                confirm_public_key(kv, group.name.as_str(), version, &identity, &key).await?;
                let message =
                    format!("Key {key} was imported before the job stopped, as version {version}");
                store
                    .record_sync(id, &group.name, &key, version, vec![message], None)
                    .await?;
            }
            None => {
                let message = format!("Key {key} was not imported (Azure has no such version)");
                store.mark_not_started(id, &key, message).await?;
            }
        }
    }
    Ok(true)
}

/// Fingerprint tag → version, for every version of the Azure key `name`.
async fn tagged_versions(
    kv: &impl Vault,
    name: &str,
) -> Result<HashMap<String, AzureVersion>, JobError> {
    match kv.list_versions(name).await {
        Ok(items) => Ok(items
            .iter()
            .filter_map(|i| {
                let fp = i.tags.as_ref()?.get(FINGERPRINT_TAG)?;
                Some((fp.clone(), i.azure_version()))
            })
            .collect()),
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => Ok(HashMap::new()),
        Err(e) => Err(e.into()),
    }
}

/// The version of the Azure key `name` that carries this fingerprint tag, if any, once Azure's
/// key of it is `identity` (local key `key`'s); a tagged version holding another public key
/// (or, for an AES key, not an oct key) fails with [`JobError::PublicKeyMismatch`].
pub(super) async fn find_by_fingerprint(
    kv: &impl Vault,
    name: &str,
    fp: &str,
    identity: &KeyIdentity,
    key: &KeyName,
) -> Result<Option<AzureVersion>, JobError> {
    let Some(version) = tagged_versions(kv, name).await?.remove(fp) else {
        return Ok(None);
    };
    confirm_public_key(kv, name, &version, identity, key).await?;
    Ok(Some(version))
}

/// Reads `version` of the Azure key `name` and checks it holds the key `identity`.
pub(super) async fn confirm_public_key(
    kv: &impl Vault,
    name: &str,
    version: &AzureVersion,
    identity: &KeyIdentity,
    key: &KeyName,
) -> Result<(), JobError> {
    let bundle = kv.get_version(name, version).await?;
    if jwk_matches(&bundle.key, identity) {
        Ok(())
    } else {
        Err(JobError::PublicKeyMismatch {
            kid: bundle.kid().to_owned(),
            key: key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::jwk::fingerprint;
    use crate::jobs::fakes::{FakeHsm, FakeStore, FakeVault, ec_key, group, local_key};
    use crate::model::KeySync;

    const ID: JobId = crate::model::JobId::new(5);

    /// The identity of the fake HSM's key `seed`.
    fn public(seed: u8) -> KeyIdentity {
        let spki_der = ec_key(seed).0;
        KeyIdentity::Public(crate::hsm::PublicKeyInfo {
            check_digits: crate::hsm::check_digits(&spki_der),
            spki_der,
        })
    }

    fn key(name: &str, state: KeySyncState) -> KeySync {
        KeySync {
            key: KeyName::try_from(name).unwrap(),
            state,
        }
    }

    /// The sent state of an import of the fake HSM's key `seed`.
    fn sent(seed: u8) -> KeySyncState {
        KeySyncState::ImportSent {
            fingerprint: fingerprint(&ec_key(seed).0),
        }
    }

    fn local(seeds: &[(&str, u8)]) -> Vec<crate::model::Key> {
        seeds.iter().map(|(n, s)| local_key(n, *s, None)).collect()
    }

    #[tokio::test]
    async fn imports_sent_before_a_restart_are_found_by_their_fingerprint_tag() {
        // k1's import went through (Azure has a version tagged with its fingerprint and holding
        // its public key), k2's never arrived, k3 was recorded before the restart.
        let vault = FakeVault::new()
            .with_imported("payments", "v1", 1)
            .with_imported("payments", "v3", 3);
        let imported = KeySyncState::Imported {
            version: "v3".into(),
        };
        let store = FakeStore::default()
            .with_keys([
                key("k1", sent(1)),
                key("k2", sent(2)),
                key("k3", imported.clone()),
            ])
            .with_local(local(&[("k1", 1), ("k2", 2), ("k3", 3)]));
        let hsm = FakeHsm::default();
        assert!(
            resolve_sent(&vault, &store, &hsm, ID, &group())
                .await
                .unwrap()
        );
        assert_eq!(
            store.key_states(),
            [
                key(
                    "k1",
                    KeySyncState::Imported {
                        version: "v1".into()
                    }
                ),
                key("k2", KeySyncState::NotStarted),
                key("k3", imported),
            ]
        );
        // Recorded once, and nothing was imported or changed in the vault.
        assert_eq!(
            store.recorded(),
            [(KeyName::try_from("k1").unwrap(), AzureVersion::new("v1"))]
        );
        assert!(vault.changes().is_empty());
    }

    #[tokio::test]
    async fn a_tagged_version_holding_another_public_key_is_never_recorded() {
        // Azure's version carries k1's fingerprint tag but holds key 9's public key.
        let vault = FakeVault::new().with_imported("payments", "v1", 9);
        let stolen_tag = fingerprint(&ec_key(9).0);
        let store = FakeStore::default()
            .with_keys([key(
                "k1",
                KeySyncState::ImportSent {
                    fingerprint: stolen_tag.clone(),
                },
            )])
            .with_local(local(&[("k1", 1)]));
        let hsm = FakeHsm::default();
        let err = resolve_sent(&vault, &store, &hsm, ID, &group())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JobError::PublicKeyMismatch { key, kid } if key == "k1" && kid.ends_with("/v1")),
            "{err:?}"
        );
        assert!(store.recorded().is_empty());
        // The import's own lost-answer path applies the same check.
        let k1 = KeyName::try_from("k1").unwrap();
        let found = find_by_fingerprint(&vault, "payments", &stolen_tag, &public(1), &k1).await;
        assert!(
            matches!(found, Err(JobError::PublicKeyMismatch { .. })),
            "{found:?}"
        );
        let own = find_by_fingerprint(&vault, "payments", &stolen_tag, &public(9), &k1)
            .await
            .unwrap();
        assert_eq!(own, Some(AzureVersion::new("v1")));
    }

    #[tokio::test]
    async fn nothing_sent_means_no_listing_and_a_missing_key_means_not_imported() {
        let hsm = FakeHsm::default();
        let store = FakeStore::default().with_keys([key("k1", KeySyncState::NotStarted)]);
        assert!(
            !resolve_sent(&FakeVault::new(), &store, &hsm, ID, &group())
                .await
                .unwrap()
        );
        // The Azure key does not exist at all: the sent import did not go through.
        let store = FakeStore::default()
            .with_keys([key("k1", sent(1))])
            .with_local(local(&[("k1", 1)]));
        assert!(
            resolve_sent(&FakeVault::new(), &store, &hsm, ID, &group())
                .await
                .unwrap()
        );
        assert_eq!(store.key_states(), [key("k1", KeySyncState::NotStarted)]);
        assert!(store.recorded().is_empty());
    }
}
