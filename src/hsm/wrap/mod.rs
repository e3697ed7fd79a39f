//! Wrapping a target key for Azure's BYOK transfer, and the start-up self-test that picks how.
//!
//! Owns: the wrap strategies (`native`: CKM_RSA_AES_KEY_WRAP in one call; `two-step`: an
//! ephemeral on-token AES-256 key, the token's RFC 5649 wrap, then CKM_RSA_PKCS_OAEP; `host`:
//! unwrap on the host, trim, check, re-wrap with the `rsa` and `aes-kw` crates), their
//! known-answer self-tests, the `WrapReport` that says why each was or was not chosen, and the
//! session objects (imported KEK, ephemeral AES keys) those calls need.
//! Must never: choose `two-step` for a token whose padded key wrap is not byte-identical to
//! RFC 5649 (SoftHSM 2.6.1's CKM_AES_KEY_WRAP_PAD is not), run `host` unless the configuration
//! allows it, leave a session object behind on any path, or let key material reach an error, a
//! log or `Debug` (errors carry lengths, mechanism names and return codes only).
//!
//!
//! Files: `verdict` (the strategies, the KEK and the `WrapReport`), `plan` (what the worker
//! wraps with), `objects` (session objects destroyed on drop), `mechanism` (the OAEP and
//! CKM_RSA_AES_KEY_WRAP parameters), `kat` (the known-answer tests), `self_test` (choosing the
//! strategies at start-up), `strategies` (one wrap by each strategy), `transfer` (wrapping a
//! token key for a push), `tests`.

mod conformance;
mod kat;
mod mechanism;
mod objects;
mod plan;
mod self_test;
mod strategies;
#[cfg(test)]
mod tests;
mod transfer;
mod verdict;

#[cfg(test)]
pub(crate) use conformance::edge_scalar;
pub(crate) use plan::Plan;
pub(crate) use self_test::self_test;
pub(crate) use transfer::wrap_for_transfer;
pub use verdict::{
    EncodingCheck, KekPublicKey, KeyFamily, KeyTypeCheck, StrategyCheck, WrapReport, WrapStrategy,
};
