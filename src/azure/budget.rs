//! Per-vault CREATE pacing (docs/byok-protocol.md#throttling-and-retries): Key Vault allows 10 CREATE transactions (key
//! create and, as byokd assumes, import) per vault "in a given 10-second interval", and does not
//! publish how it counts. byokd therefore paces so that no window of the configured length ever
//! holds more than the budget: it keeps, per vault, the send times of the last `budget` CREATEs
//! (a sliding window of send times, all jobs together) and gives the next one the first time at
//! which it would not make a window too full. At steady state this is the full budget, and a
//! burst never exceeds it (a token bucket of the same size sends up to twice the budget in one
//! window).
//!
//! Slots are reserved in call order, so waiting callers are served first come, first served and
//! never spin. A caller that has to wait for the window to slide waits a fifth of a slot
//! (`window / budget`) longer: Azure starts counting when a request arrives, later than byokd
//! reserves it (the first request also opens the connection), and the guard absorbs that phase
//! difference and network jitter. The guard is part of the recorded send time, so each window
//! of `window` holds at most the budget even measured from the arrivals; it costs a fiftieth of
//! the rate.
//!
//! Every attempt of a CREATE takes a slot, the retries of one Azure refused with a 429 too (see
//! [`Pace`]): a retry sent outside the window's accounting would arrive in a slot promised to a
//! later CREATE and draw a 429 in its turn, and so on down the queue.
//!
//! Owns only timing: it never sends anything; the HTTP client retries a 429 (honouring
//! `Retry-After`) and takes a new slot before each attempt.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Extra wait for a caller that has to wait, as a divisor of one slot (`window / budget`): a
/// fifth of a slot (see the module doc).
const GUARD_PER_SLOT: u32 = 5;

/// The CREATE budget of every vault byokd talks to, keyed by vault host (lower case).
#[derive(Debug)]
pub struct CreateBudget {
    per_window: usize,
    window: Duration,
    guard: Duration,
    /// Per vault: the promised send times of the last `per_window` CREATEs, oldest first (never
    /// decreasing; those in the future belong to callers still waiting).
    vaults: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl CreateBudget {
    /// `per_window` CREATEs in any `window` for each vault; `per_window == 0` disables pacing.
    pub fn new(per_window: u32, window: Duration) -> Self {
        let window = window.max(Duration::from_millis(1));
        let guard = window / per_window.saturating_mul(GUARD_PER_SLOT).max(1);
        Self {
            per_window: per_window as usize,
            window,
            guard,
            vaults: Mutex::new(HashMap::new()),
        }
    }

    /// Whether calls are paced at all.
    pub fn enabled(&self) -> bool {
        self.per_window > 0
    }

    /// Reserves one CREATE of `vault_host` at `now`; returns how long to wait before sending
    /// (zero when the window has room and nobody is waiting).
    pub fn reserve(&self, vault_host: &str, now: Instant) -> Duration {
        if !self.enabled() {
            return Duration::ZERO;
        }
        let mut map = match self.vaults.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let sends = map
            .entry(vault_host.to_ascii_lowercase())
            .or_insert_with(|| VecDeque::with_capacity(self.per_window));
        // A send at least one window before `now` shares no window with any send from now on.
        while sends.front().is_some_and(|&t| t + self.window <= now) {
            sends.pop_front();
        }
        // Behind every caller already waiting (first come, first served)...
        let mut at = sends.back().map_or(now, |&last| last.max(now));
        if sends.len() >= self.per_window {
            // ...and, with the window full, one window (and the guard) after the send that
            // would otherwise be the budget-plus-first in it.
            if let Some(oldest) = sends.pop_front() {
                at = at.max(oldest + self.window + self.guard);
            }
        }
        sends.push_back(at);
        at.saturating_duration_since(now)
    }

    /// Waits for one CREATE slot of `vault_host`.
    pub async fn acquire(&self, vault_host: &str) {
        let wait = self.reserve(vault_host, Instant::now());
        if !wait.is_zero() {
            tracing::debug!(
                vault = vault_host,
                wait_ms = wait.as_millis() as u64,
                "pacing a CREATE within the vault's window"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// A request's share of a vault's CREATE budget: the HTTP client waits for a slot before each
/// attempt, the first and every retry.
#[derive(Debug, Clone)]
pub struct Pace {
    budget: Arc<CreateBudget>,
    vault_host: String,
}

impl Pace {
    /// CREATEs of `vault_host` under `budget`.
    pub fn new(budget: Arc<CreateBudget>, vault_host: &str) -> Self {
        Self {
            budget,
            vault_host: vault_host.to_owned(),
        }
    }

    /// Waits for the next attempt's slot.
    pub async fn wait(&self) {
        self.budget.acquire(&self.vault_host).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "v.vault.azure.net";

    /// The most sends any half-open window of `window` holds.
    fn fullest_window(sends: &[Instant], window: Duration) -> usize {
        let mut s = sends.to_vec();
        s.sort();
        (0..s.len())
            .map(|i| s[i..].iter().take_while(|&&t| t < s[i] + window).count())
            .max()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn the_eleventh_waits_a_whole_window_not_a_tenth() {
        let b = CreateBudget::new(10, Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(b.reserve(V, now), Duration::ZERO);
        }
        // A token bucket would send the 11th after 1 s; the window makes it wait for the
        // first send to leave it, plus the guard (a fifth of a slot).
        let w11 = b.reserve(V, now);
        let w12 = b.reserve("V.vault.azure.net", now);
        assert_eq!(w11, Duration::from_millis(10_200), "{w11:?}");
        assert_eq!(w12, Duration::from_millis(10_200), "{w12:?}");
        // Another vault has its own window.
        assert_eq!(b.reserve("w.vault.azure.net", now), Duration::ZERO);
        // Five seconds on, the window is still full.
        let later = now + Duration::from_secs(5);
        assert_eq!(b.reserve(V, later), Duration::from_millis(5_200));
    }

    #[tokio::test]
    async fn a_steady_trickle_is_never_delayed() {
        let b = CreateBudget::new(10, Duration::from_secs(10));
        let start = Instant::now();
        // One CREATE per second for a minute is exactly the budget: nobody waits.
        for i in 0..60 {
            assert_eq!(
                b.reserve(V, start + Duration::from_secs(i)),
                Duration::ZERO,
                "send {i}"
            );
        }
    }

    #[tokio::test]
    async fn no_window_ever_holds_more_than_the_budget() {
        // Arrivals in bursts and gaps of many shapes (a fixed pseudo-random sequence), several
        // budgets and windows: every send time the budget hands out is checked.
        for (per_window, window_ms) in [(10u32, 10_000u64), (10, 100), (3, 1_000), (1, 50)] {
            let window = Duration::from_millis(window_ms);
            let b = CreateBudget::new(per_window, window);
            let start = Instant::now();
            let mut now = start;
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let mut sends = Vec::new();
            for _ in 0..2_000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Mostly bursts (no time passes), sometimes a gap of up to 1.5 windows.
                if seed.is_multiple_of(4) {
                    now += window.mul_f64((seed >> 8) as f64 % 1500.0 / 1000.0);
                }
                sends.push(now + b.reserve(V, now));
            }
            assert!(
                sends.windows(2).all(|p| p[0] <= p[1]),
                "first come, first served"
            );
            let most = fullest_window(&sends, window);
            assert!(
                most <= per_window as usize,
                "{most} sends in one window of {window_ms} ms, budget {per_window}"
            );
            // The window is not left idle either: back to back, the budget is used but for the
            // guard (a fiftieth).
            let b = CreateBudget::new(per_window, window);
            let last = (0..per_window * 20)
                .map(|_| start + b.reserve(V, start))
                .max()
                .unwrap();
            let span = last.duration_since(start).as_secs_f64();
            let ideal = 19.0 * window.as_secs_f64();
            let bound = ideal * (1.0 + 1.0 / f64::from(GUARD_PER_SLOT * per_window)) + 1e-9;
            assert!(span <= bound, "{span} s for 20 windows' worth");
        }
    }

    #[tokio::test]
    async fn zero_disables_pacing_and_the_window_scales() {
        let off = CreateBudget::new(0, Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(off.reserve(V, now), Duration::ZERO);
        }
        let fast = CreateBudget::new(10, Duration::from_millis(100));
        for _ in 0..10 {
            assert_eq!(fast.reserve(V, now), Duration::ZERO);
        }
        assert_eq!(fast.reserve(V, now), Duration::from_millis(102));
    }
}
