//! Per-vault throttling windows (docs/byok-protocol.md#throttling-and-retries): Azure allows each budget's transactions "in a
//! given 10-second interval" and does not say how it counts, so the emulator enforces the strict
//! reading: no window of (10 s × time factor) ever holds more accepted transactions than the
//! budget (a sliding window of arrival times). A 429's hint says when the oldest one leaves the
//! window.

use std::collections::{HashMap, VecDeque};
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

/// All windows of one vault: per budget, the arrival times of the transactions it accepted
/// within the last window, oldest first.
#[derive(Debug, Default)]
pub(crate) struct VaultWindows {
    windows: HashMap<Budget, VecDeque<Instant>>,
}

impl VaultWindows {
    /// Accept one transaction at `now` if the window ending at `now` holds fewer than the
    /// budget; on refusal, return how long until the oldest one leaves it. A refused transaction
    /// is not counted.
    pub fn take(
        &mut self,
        cfg: &ThrottleConfig,
        budget: Budget,
        now: Instant,
    ) -> Result<(), Duration> {
        if !cfg.enabled {
            return Ok(());
        }
        let limit = match budget {
            Budget::Create => cfg.create_per_window,
            Budget::OtherRsa2048Ec => cfg.other_rsa2048_ec,
            Budget::OtherRsa3072 => cfg.other_rsa3072,
            Budget::OtherRsa4096 => cfg.other_rsa4096,
        }
        .max(1) as usize;
        let window = Duration::from_secs_f64((10.0 * cfg.time_factor).max(0.000_001));
        let sent = self.windows.entry(budget).or_default();
        while sent.front().is_some_and(|&t| t + window <= now) {
            sent.pop_front();
        }
        if sent.len() < limit {
            sent.push_back(now);
            return Ok(());
        }
        // Full: room again once the oldest of the window leaves it.
        let oldest = sent.front().copied().unwrap_or(now);
        Err((oldest + window).saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn budgets_follow_the_documented_limits_per_key_type() {
        let cfg = ThrottleConfig::default();
        let now = Instant::now();
        let mut w = VaultWindows::default();
        for (budget, limit) in [
            (Budget::Create, 10),
            (Budget::OtherRsa2048Ec, 2000),
            (Budget::OtherRsa3072, 500),
            (Budget::OtherRsa4096, 250),
        ] {
            for _ in 0..limit {
                assert!(w.take(&cfg, budget, now).is_ok());
            }
            // Full until the whole window has passed.
            let wait = w.take(&cfg, budget, now).unwrap_err();
            assert_eq!(wait, Duration::from_secs(10), "{budget:?}");
        }
    }

    #[test]
    fn an_eleventh_create_within_ten_seconds_is_refused_until_the_window_slides() {
        let cfg = ThrottleConfig::default();
        let t0 = Instant::now();
        let mut w = VaultWindows::default();
        // Ten CREATEs spread over 9 s: all accepted (a token bucket would take ~19).
        for i in 0..10 {
            assert!(w.take(&cfg, Budget::Create, t0 + MS(i * 1000)).is_ok());
        }
        // The 11th at 9.5 s: refused, the hint says when the first leaves the window.
        let wait = w.take(&cfg, Budget::Create, t0 + MS(9_500)).unwrap_err();
        assert_eq!(wait, MS(500));
        // The refusal is not counted; just before 10 s still refused, at 10 s accepted.
        assert!(w.take(&cfg, Budget::Create, t0 + MS(9_999)).is_err());
        assert!(w.take(&cfg, Budget::Create, t0 + MS(10_000)).is_ok());
        // Now the window (1 s .. 10 s] is full again: the next waits for the send at 1 s.
        let wait = w.take(&cfg, Budget::Create, t0 + MS(10_000)).unwrap_err();
        assert_eq!(wait, MS(1_000));
    }

    #[test]
    fn time_factor_scales_the_window_and_off_means_unlimited() {
        let cfg = ThrottleConfig {
            time_factor: 0.01,
            ..ThrottleConfig::default()
        };
        let now = Instant::now();
        let mut w = VaultWindows::default();
        for _ in 0..10 {
            assert!(w.take(&cfg, Budget::Create, now).is_ok());
        }
        assert!(w.take(&cfg, Budget::Create, now + MS(99)).is_err());
        assert!(w.take(&cfg, Budget::Create, now + MS(100)).is_ok());
        let off = ThrottleConfig {
            enabled: false,
            ..ThrottleConfig::default()
        };
        for _ in 0..100 {
            assert!(w.take(&off, Budget::Create, now).is_ok());
        }
    }
}
