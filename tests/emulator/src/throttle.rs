//! Per-vault token buckets (docs/byok-protocol.md#throttling-and-retries).
//!
//! A bucket holds `limit` tokens and refills `limit` per (10 s × time factor), continuously.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::ThrottleConfig;

/// Which budget a transaction draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Budget {
    /// Key create and import.
    Create,
    /// Other ops on RSA-2048 / EC keys (and on keys that do not exist).
    OtherRsa2048Ec,
    /// Other ops on RSA-3072 keys.
    OtherRsa3072,
    /// Other ops on RSA-4096 keys.
    OtherRsa4096,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// All buckets of one vault.
#[derive(Debug, Default)]
pub(crate) struct VaultBuckets {
    buckets: HashMap<Budget, Bucket>,
}

impl VaultBuckets {
    /// Take one token; on refusal, return how long until one is available.
    pub fn take(
        &mut self,
        cfg: &ThrottleConfig,
        budget: Budget,
        now: Instant,
    ) -> Result<(), Duration> {
        if !cfg.enabled {
            return Ok(());
        }
        let limit = f64::from(match budget {
            Budget::Create => cfg.create_per_window,
            Budget::OtherRsa2048Ec => cfg.other_rsa2048_ec,
            Budget::OtherRsa3072 => cfg.other_rsa3072,
            Budget::OtherRsa4096 => cfg.other_rsa4096,
        })
        .max(1.0);
        let window = (10.0 * cfg.time_factor).max(0.000_001);
        let rate = limit / window; // tokens per second
        let b = self.buckets.entry(budget).or_insert(Bucket {
            tokens: limit,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(limit);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / rate;
            Err(Duration::from_secs_f64(wait))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_follow_the_documented_limits_per_key_type() {
        let cfg = ThrottleConfig::default();
        let now = Instant::now();
        let mut b = VaultBuckets::default();
        for (budget, limit) in [
            (Budget::Create, 10),
            (Budget::OtherRsa2048Ec, 2000),
            (Budget::OtherRsa3072, 500),
            (Budget::OtherRsa4096, 250),
        ] {
            for _ in 0..limit {
                assert!(b.take(&cfg, budget, now).is_ok());
            }
            let wait = b.take(&cfg, budget, now).unwrap_err();
            // One token per (10 s / limit).
            let expected = 10.0 / f64::from(limit);
            assert!(
                (wait.as_secs_f64() - expected).abs() < 1e-6,
                "{budget:?} {wait:?}"
            );
        }
        // A tenth of the window later, one CREATE is available again.
        assert!(
            b.take(&cfg, Budget::Create, now + Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            b.take(&cfg, Budget::Create, now + Duration::from_secs(1))
                .is_err()
        );
    }

    #[test]
    fn time_factor_scales_the_window_and_off_means_unlimited() {
        let cfg = ThrottleConfig {
            time_factor: 0.01,
            ..ThrottleConfig::default()
        };
        let now = Instant::now();
        let mut b = VaultBuckets::default();
        for _ in 0..10 {
            assert!(b.take(&cfg, Budget::Create, now).is_ok());
        }
        assert!(b.take(&cfg, Budget::Create, now).is_err());
        assert!(
            b.take(&cfg, Budget::Create, now + Duration::from_millis(100))
                .is_ok()
        );
        let off = ThrottleConfig {
            enabled: false,
            ..ThrottleConfig::default()
        };
        for _ in 0..100 {
            assert!(b.take(&off, Budget::Create, now).is_ok());
        }
    }
}
