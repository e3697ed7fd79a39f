//! The TOML configuration (`/etc/byokd/byokd.toml` or `--config PATH`) and `byokd check-config`.
//!
//! Owns parsing and validation of every setting. Unknown keys are refused. Every problem is
//! reported with its line, so `check-config` can list them all at once. The HSM PIN is never a
//! configuration value: only the name or path of the file that holds it is.

mod check;
mod pin;
mod schema;

pub use check::{Inspection, Problem, check_file, check_text, inspect, read_file, setting_names};
pub use pin::{PinError, PinOwner, check_pin_file, read_pin};
pub use schema::*;

/// The default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/byokd/byokd.toml";
