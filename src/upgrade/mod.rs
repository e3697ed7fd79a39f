//! Firmware upgrades: verifying a signed bundle and installing it into the A/B layout.
//!
//! Owns `byokd upgrade`. The order is fixed so that nothing changes until the bundle is proven:
//! read and verify (signature over the manifest with the public key baked into this build, then
//! the SHA-256 of every file, and no file the manifest does not name) → refuse a downgrade across
//! state formats → refuse while the daemon holds the state → stage into the inactive slot → keep
//! the state for rollback → migrate it with the new binary → switch `current` by rename → health
//! check the new version (a PIN credential provided as systemd would) → on failure switch back and restore the state.

mod bundle;
mod credentials;
mod error;
mod health;
mod install;
mod layout;
mod manifest;
mod trust;

pub use bundle::{VerifiedBundle, verify_bundle};
pub use error::UpgradeError;
pub use health::ensure_not_running;
pub use install::{InstallOptions, Installed, install};
pub use layout::Layout;
pub use manifest::{Manifest, ManifestFile};
pub use trust::{trusted_key, trusted_key_hex};
