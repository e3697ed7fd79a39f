//! What a job kind is given at construction instead of reaching for it: the configuration
//! values it needs, read once when the runner is made. `config/check.rs` has validated them, so
//! nothing here or in a kind checks or clamps them again.

use crate::config::{AssertionAlg, Config};

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
