//! Durable state: the versioned envelope, atomic A/B generations and format migrations.
//!
//! Owns every byte byokd writes to its state directory. A write is temp file, fsync, rename,
//! fsync of the directory, into the slot that does not hold the newest generation, so the
//! previous generation always survives. Loading never starts empty by accident: a directory
//! with any state file in it either yields a checksummed generation or a clear error.

mod envelope;
mod error;
mod legacy;
mod state;
mod writer;

pub use envelope::{FORMAT_VERSION, MAGIC};
pub use error::StoreError;
pub use state::State;
pub use writer::{LoadReport, StagedWrite, Store};
