//! An in-memory sign-in ([`Session`], [`StartImport`]) over a [`FakeVault`], for the sync's unit
//! tests (test builds only). It signs in without asking anyone, treats a 401 as fixable by a new
//! token, and remembers the sign-ins and dropped tokens in order.

use super::JobError;
use super::fakes::{FakeHsm, FakeStore, FakeVault};
use super::ports::Session;
use super::sync_imports::{Batch, Outcome, StartImport, import_one};
use crate::azure::{AccessToken, AzureError, KeyVaultError};
use crate::model::{JobId, KeyGroup, KeyName};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Signs in to one fake vault; the job's state and HSM are shared with the test.
pub(in crate::jobs) struct FakeSession {
    pub(in crate::jobs) vault: FakeVault,
    pub(in crate::jobs) store: Arc<FakeStore>,
    pub(in crate::jobs) hsm: Arc<FakeHsm>,
    calls: Mutex<Vec<&'static str>>,
}

impl FakeSession {
    pub(in crate::jobs) fn new(vault: FakeVault, store: FakeStore, hsm: FakeHsm) -> Self {
        Self {
            vault,
            store: Arc::new(store),
            hsm: Arc::new(hsm),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// "sign in" and "drop token", in the order they were asked.
    pub(in crate::jobs) fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
}

impl Session for FakeSession {
    type Vault<'a> = FakeVault;

    async fn sign_in(&self, _id: JobId, _group: &KeyGroup) -> Result<AccessToken, JobError> {
        self.calls.lock().unwrap().push("sign in");
        let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
        Ok(AccessToken::new("fake-token".into(), expires))
    }

    async fn needs_new_token(&self, _group: &KeyGroup, err: &JobError) -> Result<bool, JobError> {
        Ok(matches!(
            err,
            JobError::Azure(AzureError::KeyVault(KeyVaultError::Unauthorized { .. }))
        ))
    }

    async fn drop_token(&self, _id: JobId, _group: &KeyGroup) -> Result<(), JobError> {
        self.calls.lock().unwrap().push("drop token");
        Ok(())
    }

    fn vault<'a>(&'a self, vault: &'a crate::model::Target, _token: &AccessToken) -> FakeVault {
        assert_eq!(
            vault.name(),
            self.vault.name(),
            "the fake session has one vault"
        );
        self.vault.clone()
    }
}

impl StartImport for FakeSession {
    fn import(
        &self,
        _token: &AccessToken,
        batch: Arc<Batch>,
        key: KeyName,
    ) -> impl Future<Output = Result<Outcome, JobError>> + Send + 'static {
        let (vault, store, hsm) = (self.vault.clone(), self.store.clone(), self.hsm.clone());
        async move { import_one((&vault, &*store, &*hsm), &batch, &key).await }
    }
}
