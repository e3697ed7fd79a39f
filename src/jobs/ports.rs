//! What a job kind is given instead of reaching for it: the configuration values it needs, read
//! once when the runner is made (`config/check.rs` has validated them, so nothing here or in a
//! kind checks or clamps them again), and the narrow interfaces through which a kind's state
//! machine reaches Key Vault ([`Vault`], opened through a signed-in [`Session`]), the HSM
//! ([`KeyHsm`]) and the state ([`JobStore`], [`LocalKeys`], in `job_store`). The real implementations wrap the Azure client with the
//! job's token, the HSM handle and the [`crate::service::Service`]; the kinds' unit tests give
//! in-memory ones (`fakes`, test builds only). Only `hsm/` calls PKCS#11.

use super::JobError;
pub(super) use super::job_store::{JobStore, KekChange, LocalKeys};
use crate::azure::{
    AccessToken, AzureError, DeletedKeyBundle, ImportRequest, Kek, KeyBundle, KeyItem, KeyUpdate,
    KeyVault,
};
use crate::config::{AssertionAlg, Config};
use crate::hsm::{Hsm, HsmError, KekPublicKey, KeyIdentity, WrapStrategy};
use crate::model::{
    AzureVersion, HsmKeyId, JobId, KeyGroup, KeyType, RotationPolicy, Target, add_months,
};

/// The configuration values the job kinds use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JobSettings {
    /// `azure.kek_size`: bits of the RSA-HSM key exchange key.
    pub(super) kek_bits: u32,
    /// `azure.vault_concurrent_imports`: imports in flight per vault, over all its jobs.
    pub(super) vault_concurrent_imports: usize,
    /// `azure.assertion_alg`: how a certificate credential signs its client assertion.
    pub(super) assertion_alg: AssertionAlg,
    /// `lifecycle.grace_days`: days the previous versions stay enabled after a rotation.
    pub(super) grace_days: u32,
}

impl JobSettings {
    pub(super) fn from_config(config: &Config) -> Self {
        Self {
            kek_bits: config.azure.kek_size,
            vault_concurrent_imports: config.azure.vault_concurrent_imports as usize,
            assertion_alg: config.azure.assertion_alg,
            grace_days: config.lifecycle.grace_days,
        }
    }
}

/// The Key Vault calls the cloud kinds make, on one vault, signed in.
pub(super) trait Vault {
    /// The vault or Managed HSM pool, whose kind and name the job's steps and errors say.
    fn target(&self) -> &Target;
    async fn get_key(&self, key: &str) -> Result<KeyBundle, AzureError>;
    async fn delete_key(&self, key: &str) -> Result<DeletedKeyBundle, AzureError>;
    async fn get_deleted_key(&self, key: &str) -> Result<DeletedKeyBundle, AzureError>;
    async fn purge_deleted_key(&self, key: &str) -> Result<(), AzureError>;
    async fn recover_deleted_key(&self, key: &str) -> Result<KeyBundle, AzureError>;
    /// Every version of the key, with its tags.
    async fn list_versions(&self, key: &str) -> Result<Vec<KeyItem>, AzureError>;
    /// One version of the key.
    async fn get_version(&self, key: &str, version: &AzureVersion)
    -> Result<KeyBundle, AzureError>;
    /// Creates an RSA-HSM key exchange key that expires at `exp` (Unix seconds).
    async fn create_kek(&self, name: &str, bits: u32, exp: i64) -> Result<Kek, AzureError>;
    /// Imports a BYOK transfer blob as a new version of the key.
    async fn import_key(&self, key: &str, request: &ImportRequest)
    -> Result<KeyBundle, AzureError>;
    /// Changes one version's attributes.
    async fn update_key(
        &self,
        key: &str,
        version: &AzureVersion,
        update: &KeyUpdate,
    ) -> Result<KeyBundle, AzureError>;
}

/// Signing in for a job and opening vaults with its token: what the sync's orchestration needs
/// from Entra ID and the Key Vault client.
pub(super) trait Session {
    /// A vault opened with a token.
    type Vault<'a>: Vault
    where
        Self: 'a;
    /// A Key Vault token for the group's credential, with the job's steps around it.
    async fn sign_in(&self, id: JobId, group: &KeyGroup) -> Result<AccessToken, JobError>;
    /// Whether `err` is Key Vault refusing the token (401) in a way a new token can fix; a
    /// challenge naming another tenant than the credential's is turned into a clear error.
    async fn needs_new_token(&self, group: &KeyGroup, err: &JobError) -> Result<bool, JobError>;
    /// Forgets the group credential's token after a 401 and records why.
    async fn drop_token(&self, id: JobId, group: &KeyGroup) -> Result<(), JobError>;
    /// The Key Vault or Managed HSM `target`, signed in with `token`.
    fn vault<'a>(&'a self, target: &'a Target, token: &AccessToken) -> Self::Vault<'a>;
}

/// The Azure client on one Key Vault or Managed HSM with a job's token.
pub(super) struct SignedIn<'a> {
    kv: &'a KeyVault,
    token: AccessToken,
    vault: &'a Target,
}

impl<'a> SignedIn<'a> {
    pub(super) fn new(kv: &'a KeyVault, token: AccessToken, vault: &'a Target) -> Self {
        Self { kv, token, vault }
    }
}

impl Vault for SignedIn<'_> {
    fn target(&self) -> &Target {
        self.vault
    }

    async fn get_key(&self, key: &str) -> Result<KeyBundle, AzureError> {
        self.kv.get_key(&self.token, self.vault, key, None).await
    }

    async fn delete_key(&self, key: &str) -> Result<DeletedKeyBundle, AzureError> {
        self.kv.delete_key(&self.token, self.vault, key).await
    }

    async fn get_deleted_key(&self, key: &str) -> Result<DeletedKeyBundle, AzureError> {
        self.kv.get_deleted_key(&self.token, self.vault, key).await
    }

    async fn purge_deleted_key(&self, key: &str) -> Result<(), AzureError> {
        self.kv
            .purge_deleted_key(&self.token, self.vault, key)
            .await
    }

    async fn recover_deleted_key(&self, key: &str) -> Result<KeyBundle, AzureError> {
        self.kv
            .recover_deleted_key(&self.token, self.vault, key)
            .await
    }

    async fn list_versions(&self, key: &str) -> Result<Vec<KeyItem>, AzureError> {
        self.kv.list_versions(&self.token, self.vault, key).await
    }

    async fn get_version(
        &self,
        key: &str,
        version: &AzureVersion,
    ) -> Result<KeyBundle, AzureError> {
        self.kv
            .get_key(&self.token, self.vault, key, Some(version.as_str()))
            .await
    }

    async fn create_kek(&self, name: &str, bits: u32, exp: i64) -> Result<Kek, AzureError> {
        self.kv
            .create_kek(&self.token, self.vault, name, bits, exp)
            .await
    }

    async fn import_key(
        &self,
        key: &str,
        request: &ImportRequest,
    ) -> Result<KeyBundle, AzureError> {
        self.kv
            .import_key(&self.token, self.vault, key, request)
            .await
    }

    async fn update_key(
        &self,
        key: &str,
        version: &AzureVersion,
        update: &KeyUpdate,
    ) -> Result<KeyBundle, AzureError> {
        self.kv
            .update_key(&self.token, self.vault, key, version.as_str(), update)
            .await
    }
}

/// The HSM operations a sync and a drift check need. Key generation goes with its record
/// through [`LocalKeys`].
pub(super) trait KeyHsm {
    /// The wrap strategy for a key type; refuses (naming the failed encoding class) a type no
    /// strategy wraps conformingly.
    fn strategy_for(&self, key_type: KeyType) -> Result<WrapStrategy, HsmError>;
    /// The transfer blob's `generator`: byokd and the token's maker, model and firmware.
    fn generator(&self) -> String;
    /// What identifies HSM key `key` outside the token: its public half (SPKI), or for an AES
    /// key its size and KCV.
    async fn key_identity(&self, key: HsmKeyId) -> Result<KeyIdentity, HsmError>;
    /// Wraps private key `key` under the vault's KEK for a BYOK import.
    async fn wrap_for_transfer(
        &self,
        key: HsmKeyId,
        kek: &KekPublicKey,
    ) -> Result<Vec<u8>, HsmError>;
}

impl KeyHsm for Hsm {
    fn strategy_for(&self, key_type: KeyType) -> Result<WrapStrategy, HsmError> {
        self.wrap_report().strategy_for(key_type)
    }

    fn generator(&self) -> String {
        crate::azure::transfer_blob::generator_of(self.report())
    }

    async fn key_identity(&self, key: HsmKeyId) -> Result<KeyIdentity, HsmError> {
        Hsm::key_identity(self, key).await
    }

    async fn wrap_for_transfer(
        &self,
        key: HsmKeyId,
        kek: &KekPublicKey,
    ) -> Result<Vec<u8>, HsmError> {
        Hsm::wrap_for_transfer(self, key, kek).await
    }
}

/// How long the versions a sync makes stay valid (their `exp`), chosen by whoever runs the sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Validity {
    /// No `exp`: the version stays valid until it is disabled.
    Unlimited,
    /// `exp` this many calendar months after the import.
    Months(u32),
}

impl Validity {
    /// A sync job's versions: "keep key valid for N months" where the group's rotation policy
    /// is on, no expiry where it is off.
    pub(super) fn of_policy(policy: &RotationPolicy) -> Self {
        if policy.enabled {
            Self::Months(policy.keep_valid_months)
        } else {
            Self::Unlimited
        }
    }

    /// The `exp` of a version imported at `now` (Unix seconds).
    pub(super) fn expiry(self, now: i64) -> Option<i64> {
        match self {
            Self::Unlimited => None,
            Self::Months(months) => {
                let now = time::OffsetDateTime::from_unix_timestamp(now)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                Some(add_months(now, months).unix_timestamp())
            }
        }
    }
}
