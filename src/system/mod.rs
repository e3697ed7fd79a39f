//! The daemon's contract with the host: process hardening before any secret is read, and the
//! systemd notification protocol (readiness, watchdog, status, stopping).
//!
//! Owns every process-wide security setting (memory locking, dumpability, core limits, umask,
//! the root refusal, configuration file permissions) and the `NOTIFY_SOCKET` datagrams. It must
//! never read, hold or log a secret, and never change a setting after start-up.

mod hardening;
mod notify;
pub mod regular_file;

pub use hardening::{HardeningError, HardeningReport, MlockOutcome, check_config_file, harden};
pub use notify::{Notifier, Watchdog};
