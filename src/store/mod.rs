//! Durable state: a redb store of postcard-encoded records, committed in groups by one writer
//! thread, and the migrations from older formats.
//!
//! Owns every byte byokd writes to its state directory. Each credential, key group, key, job,
//! grace and drift record is one entry of its table; a commit writes the entries that changed
//! (see `tracked`), so its cost follows the change, not the size of the state. A write is
//! acknowledged only once redb has made it durable; a damaged or truncated store is refused at
//! start with an error naming the file, never started empty. Formats 1-4 were A/B envelope
//! files (`state.a`, `state.b`); the first start of this build migrates them (see `handle`).

pub mod backup;
mod commit;
mod db;
mod envelope;
mod error;
mod group_target;
mod handle;
mod legacy;
mod slots;
mod state;
mod tracked;

pub use commit::Pending;
pub use envelope::MAGIC;
pub use error::StoreError;
pub use handle::{LoadReport, Store};
pub use state::State;
pub use tracked::Tracked;

/// The state format this build writes: 5 is the redb store, 6 its groups naming their target
/// (see `group_target`). Older formats are migrated on load (1-4 from their A/B files, see
/// `legacy`).
#[cfg(not(feature = "test-next-format"))]
pub const FORMAT_VERSION: u16 = 6;
/// Test-only build (`test-next-format`): one format past the shipped one, reached by a trivial
/// migration, so the upgrade tests can cross a state format.
#[cfg(feature = "test-next-format")]
pub const FORMAT_VERSION: u16 = 7;

/// An A/B state file of the last A/B format (4) holding `state`, generation `generation`: what
/// byokd before the redb store wrote (every group a Key Vault target). Tests lay down
/// pre-migration states with it.
#[doc(hidden)]
pub fn ab_slot_bytes(state: &State, generation: u64) -> Result<Vec<u8>, StoreError> {
    let v4 = legacy::StateV4::of(state).map_err(StoreError::Encode)?;
    envelope::encode_with(envelope::LAST_AB_FORMAT, generation, |buf| {
        postcard::to_extend(&v4, buf)
    })
    .map_err(StoreError::Encode)
}
