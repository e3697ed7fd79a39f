//! Per-vault CREATE pacing (docs/byok-protocol.md#throttling-and-retries): Key Vault allows 10 CREATE transactions (key
//! create and, as byokd assumes, import) per 10 s per vault. Every CREATE-class call takes a slot
//! from its vault's token bucket before it is sent, so pushes run at the budget instead of into
//! 429s. Slots are reserved in call order (the bucket may go negative), so waiting callers are
//! served first come, first served and never spin. A caller that has to wait sleeps a fifth of a
//! slot longer than the bucket says: Azure starts counting when the first request arrives, later
//! than byokd does (the first request also opens the connection), and the guard absorbs that
//! phase difference and network jitter. The guard is not charged to the bucket, so the long-run
//! rate stays the full budget.
//!
//! Owns only timing: it never sends anything, and a 429 that still arrives is the HTTP client's
//! to retry (honouring `Retry-After`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Extra wait, in slots, for a caller that has to wait (see the module doc).
const GUARD_SLOTS: f64 = 0.2;

/// One vault's bucket: `tokens` may go below zero by the slots already promised to waiters.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The CREATE budget of every vault byokd talks to, keyed by vault host (lower case).
#[derive(Debug)]
pub struct CreateBudget {
    per_window: u32,
    window: Duration,
    vaults: Mutex<HashMap<String, Bucket>>,
}

impl CreateBudget {
    /// `per_window` CREATEs per `window` for each vault; `per_window == 0` disables pacing.
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window: window.max(Duration::from_millis(1)),
            vaults: Mutex::new(HashMap::new()),
        }
    }

    /// Whether calls are paced at all.
    pub fn enabled(&self) -> bool {
        self.per_window > 0
    }

    /// Reserves one CREATE slot of `vault_host` at `now`; returns how long to wait before
    /// sending (zero when a slot is free).
    pub fn reserve(&self, vault_host: &str, now: Instant) -> Duration {
        if !self.enabled() {
            return Duration::ZERO;
        }
        let limit = f64::from(self.per_window);
        let rate = limit / self.window.as_secs_f64();
        let mut map = match self.vaults.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let b = map
            .entry(vault_host.to_ascii_lowercase())
            .or_insert(Bucket {
                tokens: limit,
                at: now,
            });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(limit);
        b.at = now;
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((-b.tokens + GUARD_SLOTS) / rate)
        }
    }

    /// Waits for one CREATE slot of `vault_host`.
    pub async fn acquire(&self, vault_host: &str) {
        let wait = self.reserve(vault_host, Instant::now());
        if !wait.is_zero() {
            tracing::debug!(
                vault = vault_host,
                wait_ms = wait.as_millis() as u64,
                "pacing a CREATE within the vault's budget"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_bucket_then_one_slot_per_tenth_of_the_window() {
        let b = CreateBudget::new(10, Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(b.reserve("v.vault.azure.net", now), Duration::ZERO);
        }
        // The 11th and 12th wait one and two slots.
        let w11 = b.reserve("v.vault.azure.net", now);
        let w12 = b.reserve("V.vault.azure.net", now);
        assert!((w11.as_secs_f64() - 1.2).abs() < 1e-6, "{w11:?}");
        assert!((w12.as_secs_f64() - 2.2).abs() < 1e-6, "{w12:?}");
        // Another vault has its own budget.
        assert_eq!(b.reserve("w.vault.azure.net", now), Duration::ZERO);
        // Five seconds on, the two promised slots are spent and three more are free.
        let later = now + Duration::from_secs(5);
        for _ in 0..3 {
            assert_eq!(b.reserve("v.vault.azure.net", later), Duration::ZERO);
        }
        assert!(b.reserve("v.vault.azure.net", later) > Duration::ZERO);
    }

    #[tokio::test]
    async fn zero_disables_pacing_and_the_window_scales() {
        let off = CreateBudget::new(0, Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(off.reserve("v", now), Duration::ZERO);
        }
        let fast = CreateBudget::new(10, Duration::from_millis(100));
        for _ in 0..10 {
            assert_eq!(fast.reserve("v", now), Duration::ZERO);
        }
        let w = fast.reserve("v", now);
        assert!((w.as_secs_f64() - 0.012).abs() < 1e-6, "{w:?}");
    }
}
