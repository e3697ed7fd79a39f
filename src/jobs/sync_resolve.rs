//! Finding a sync's imports again after their answer was lost (a restart, a timeout): every
//! version of the group's Azure key carries its key's fingerprint tag, so one listing tells
//! which import went through. A key found is recorded with its version; a key not found is
//! marked not started, to be imported again.

use super::JobError;
use super::ports::{JobStore, Vault};
use crate::azure::jwk::FINGERPRINT_TAG;
use crate::azure::{AzureError, KeyVaultError};
use crate::model::{AzureVersion, JobId, KeyGroup, KeyName, KeySyncState};
use std::collections::HashMap;

/// Resolves every key of the job whose import was sent but whose answer never arrived, with one
/// listing of the Azure versions: a version carrying its fingerprint tag is recorded, otherwise
/// the key is marked not started. Returns whether there was any such key.
pub(super) async fn resolve_sent(
    kv: &impl Vault,
    store: &impl JobStore,
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

/// The version of the Azure key `name` that carries this fingerprint tag, if any.
pub(super) async fn find_by_fingerprint(
    kv: &impl Vault,
    name: &str,
    fp: &str,
) -> Result<Option<AzureVersion>, JobError> {
    Ok(tagged_versions(kv, name).await?.remove(fp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::fakes::{FakeStore, FakeVault, group};
    use crate::model::KeySync;

    const ID: JobId = crate::model::JobId::new(5);

    fn key(name: &str, state: KeySyncState) -> KeySync {
        KeySync {
            key: KeyName::try_from(name).unwrap(),
            state,
        }
    }

    fn sent(fp: &str) -> KeySyncState {
        KeySyncState::ImportSent {
            fingerprint: fp.into(),
        }
    }

    #[tokio::test]
    async fn imports_sent_before_a_restart_are_found_by_their_fingerprint_tag() {
        // k1's import went through (Azure has a version tagged with its fingerprint), k2's
        // never arrived, k3 was recorded before the restart.
        let vault = FakeVault::new()
            .with_version("payments", "v1", "fp-k1")
            .with_version("payments", "v3", "fp-k3");
        let imported = KeySyncState::Imported {
            version: "v3".into(),
        };
        let store = FakeStore::default().with_keys([
            key("k1", sent("fp-k1")),
            key("k2", sent("fp-k2")),
            key("k3", imported.clone()),
        ]);
        assert!(resolve_sent(&vault, &store, ID, &group()).await.unwrap());
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
    async fn nothing_sent_means_no_listing_and_a_missing_key_means_not_imported() {
        let store = FakeStore::default().with_keys([key("k1", KeySyncState::NotStarted)]);
        assert!(
            !resolve_sent(&FakeVault::new(), &store, ID, &group())
                .await
                .unwrap()
        );
        // The Azure key does not exist at all: the sent import did not go through.
        let store = FakeStore::default().with_keys([key("k1", sent("fp-k1"))]);
        assert!(
            resolve_sent(&FakeVault::new(), &store, ID, &group())
                .await
                .unwrap()
        );
        assert_eq!(store.key_states(), [key("k1", KeySyncState::NotStarted)]);
        assert!(store.recorded().is_empty());
    }
}
