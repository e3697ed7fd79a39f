//! Key Vault keys API, api-version 7.5: the KEK, the BYOK import and the key lifecycle calls.
//!
//! Owns the typed requests and responses (matching `keyvault-spec/keyvault-7.5/keys.json`) and the
//! mapping of Key Vault errors — by status, then `error.code`, then `innererror.code`, never by
//! message text — into [`KeyVaultError`], whose text tells the operator what to do.
//!
//! It must never build or look inside the transfer blob (`key_hsm` arrives encoded), never send a
//! request outside the allowlist (every URL, `nextLink` included, goes through `azure::http`), and
//!
//! Files: `types` (the JSON bodies), `recovery` (`recoveryLevel`), `errors` (the operation and
//! the error mapping), `request` (URLs, name checks and the one send path), `keys` (the KEK,
//! the import and the live key calls), `deleted` (delete, deleted keys, purge, recover).

mod deleted;
mod errors;
mod keys;
mod recovery;
mod request;
#[cfg(test)]
mod tests;
mod types;

pub use errors::{KeyVaultError, KvOp};
pub use recovery::RecoveryLevel;
pub use types::{
    DeletedKeyBundle, ImportRequest, JsonWebKey, Kek, KeyAttributes, KeyBundle, KeyItem, KeyUpdate,
};

use super::budget::CreateBudget;
use super::endpoints::CloudEndpoints;
use super::http::HttpClient;
use std::sync::Arc;

/// The pinned data-plane API version.
pub const API_VERSION: &str = "7.5";
/// Page size asked for when listing versions.
pub const PAGE_SIZE: u32 = 25;
/// Most `nextLink` pages followed for one listing (bounded everything).
pub const MAX_PAGES: usize = 400;

/// The Key Vault data-plane client.
pub struct KeyVault {
    http: Arc<HttpClient>,
    endpoints: CloudEndpoints,
    budget: Arc<CreateBudget>,
}

impl KeyVault {
    /// A client without CREATE pacing; see [`KeyVault::with_budget`].
    pub fn new(http: Arc<HttpClient>, endpoints: CloudEndpoints) -> Self {
        Self {
            http,
            endpoints,
            budget: Arc::new(CreateBudget::new(0, std::time::Duration::from_secs(10))),
        }
    }

    /// Paces key creates and imports within each vault's CREATE budget (docs/byok-protocol.md#throttling-and-retries).
    pub fn with_budget(mut self, budget: Arc<CreateBudget>) -> Self {
        self.budget = budget;
        self
    }
}
