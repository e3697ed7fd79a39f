//! byokd-emulator: a faithful emulator of the Azure services byokd talks to — the Entra ID token
//! endpoint and the Key Vault keys data plane (api-version 7.5) with BYOK import — served over
//! real TLS from a generated test CA, for byokd's tests and benchmarks.
//!
//! It must never hold real credentials and never log secrets or private key bytes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), byokd_emulator::EmulatorError> {
//! use byokd_emulator::{AppConfig, Emulator, EmulatorConfig, VaultOptions};
//! let emu = Emulator::start(EmulatorConfig::default()).await?;
//! emu.add_app(AppConfig::with_secret("tenant-1", "app-1", "s3cret"))?;
//! emu.add_vault("myvault", VaultOptions::default())?;
//! // map login.microsoftonline.com and myvault.vault.azure.net to emu.addr(), trust emu.ca_pem()
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
// Handlers use the HTTP response itself as their error value; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

mod admin;
mod arm;
mod byok;
pub mod config;
mod entra;
mod error;
pub mod faults;
mod handle;
pub mod keys;
mod oct;
pub mod reqlog;
mod schema;
mod server;
mod state;
mod throttle;
mod tls;
mod util;
mod vault;

pub use byok::aes_kcv;
pub use config::{
    AppConfig, Cloud, EmulatorConfig, KeyPoolConfig, Permission, RecoveryLevel, RetryHeader, Sku,
    ThrottleConfig, VaultConfig, VaultOptions,
};
pub use error::EmulatorError;
pub use faults::{FaultAction, FaultRule, Op};
pub use handle::{Emulator, EmulatorHandle, ForeignKeyType};
pub use keys::{Curve, PublicKey};
pub use reqlog::RequestRecord;
pub use state::{DeletedView, ImportedPrivateKey, KeyView, Origin, VaultCounters, VersionView};
pub use tls::ADMIN_HOST;

/// Validate a JSON value against a definition of the bundled keys.json (for tests of clients).
pub fn validate_against_definition(
    value: &serde_json::Value,
    definition: &str,
) -> Result<(), String> {
    let schema = serde_json::json!({"$ref": format!("#/definitions/{definition}")});
    schema::validate(value, &schema, "$")
}
