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
//! never spin. Azure counts a request when it arrives, which byokd cannot see; what it does see
//! is the answer, and Azure counted the request before it answered. So once a CREATE is
//! answered its slot is moved to the time of the answer (see [`Slot`]), and the next CREATE that
//! needs that slot to leave the window waits one window from the answer: however long the
//! request spent queued, on the network or in Azure, the two arrivals are more than a window
//! apart. This costs one round trip per window at steady state. A slot whose CREATE is still
//! unanswered counts from its reserved time plus a guard of a fifth of a slot (`window /
//! budget`), as a stand-in for the phase difference between byokd's send and Azure's count.
//!
//! Every attempt of a CREATE takes a slot, the retries of one Azure refused with a 429 too (see
//! [`Pace`]): a retry sent outside the window's accounting would arrive in a slot promised to a
//! later CREATE and draw a 429 in its turn, and so on down the queue.
//!
//! Owns only timing: it never sends anything; the HTTP client retries a 429 (honouring
//! `Retry-After`) and takes a new slot before each attempt.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Extra wait for a caller that has to wait on an unanswered CREATE, as a divisor of one slot
/// (`window / budget`): a fifth of a slot (see the module doc).
const GUARD_PER_SLOT: u32 = 5;

/// One CREATE's place in its vault's window.
#[derive(Debug, Clone, Copy)]
struct Send {
    ticket: u64,
    /// The reserved send time, or once answered the time of the answer.
    at: Instant,
    answered: bool,
}

/// One vault's CREATEs: the last ones in reservation order, and the next ticket.
#[derive(Debug, Default)]
struct Sends {
    next_ticket: u64,
    /// The latest reserved send time (first come, first served).
    last_reserved: Option<Instant>,
    sends: VecDeque<Send>,
}

/// The CREATE budget of every vault byokd talks to, keyed by vault host (lower case).
#[derive(Debug)]
pub struct CreateBudget {
    per_window: usize,
    window: Duration,
    guard: Duration,
    vaults: Mutex<HashMap<String, Sends>>,
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

    fn vaults(&self) -> MutexGuard<'_, HashMap<String, Sends>> {
        self.vaults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves one CREATE of `vault_host` at `now`; returns how long to wait before sending
    /// (zero when the window has room and nobody is waiting) and the slot's ticket for
    /// [`CreateBudget::answered`].
    pub fn reserve(&self, vault_host: &str, now: Instant) -> (Duration, u64) {
        if !self.enabled() {
            return (Duration::ZERO, 0);
        }
        let mut map = self.vaults();
        let v = map.entry(vault_host.to_ascii_lowercase()).or_default();
        // A send a window before `now` shares no window with any send from now on.
        v.sends.retain(|s| s.at + self.window > now);
        // Behind every caller already waiting (first come, first served)...
        let mut at = v.last_reserved.map_or(now, |last| last.max(now));
        if v.sends.len() >= self.per_window {
            // ...and, with the window full, one window after the send that would otherwise be
            // the budget-plus-first in it.
            let mut counted: Vec<Instant> = v.sends.iter().map(|s| self.counted(s)).collect();
            counted.sort_unstable();
            if let Some(&oldest) = counted.get(counted.len() - self.per_window) {
                at = at.max(oldest + self.window);
            }
        }
        let ticket = v.next_ticket;
        v.next_ticket = v.next_ticket.wrapping_add(1);
        v.last_reserved = Some(at);
        v.sends.push_back(Send {
            ticket,
            at,
            answered: false,
        });
        // Only the latest `per_window` can bound a later send.
        while v.sends.len() > self.per_window {
            let earliest = (0..v.sends.len()).min_by_key(|&i| self.counted(&v.sends[i]));
            if let Some(i) = earliest {
                v.sends.remove(i);
            }
        }
        (at.saturating_duration_since(now), ticket)
    }

    /// When Azure may have counted `send`: by its answer, or for one still unanswered by the
    /// reserved time plus the guard.
    fn counted(&self, send: &Send) -> Instant {
        if send.answered {
            send.at
        } else {
            send.at + self.guard
        }
    }

    /// The CREATE of slot `ticket` of `vault_host` was answered (or failed) at `now`: Azure
    /// counted it, if at all, before then.
    pub fn answered(&self, vault_host: &str, ticket: u64, now: Instant) {
        if !self.enabled() {
            return;
        }
        let mut map = self.vaults();
        let Some(v) = map.get_mut(&vault_host.to_ascii_lowercase()) else {
            return;
        };
        if let Some(s) = v.sends.iter_mut().find(|s| s.ticket == ticket) {
            s.at = s.at.max(now);
            s.answered = true;
        }
    }

    /// Waits for one CREATE slot of `vault_host`; the slot counts from its answer once the
    /// returned [`Slot`] is dropped.
    pub async fn acquire(self: &Arc<Self>, vault_host: &str) -> Slot {
        let (wait, ticket) = self.reserve(vault_host, Instant::now());
        if !wait.is_zero() {
            tracing::debug!(
                vault = vault_host,
                wait_ms = wait.as_millis() as u64,
                "pacing a CREATE within the vault's window"
            );
            tokio::time::sleep(wait).await;
        }
        Slot {
            budget: self.clone(),
            vault_host: vault_host.to_owned(),
            ticket,
        }
    }
}

/// A CREATE's slot while its attempt is under way: dropping it (once the attempt has its answer
/// or has failed) moves the slot to that moment.
#[derive(Debug)]
pub struct Slot {
    budget: Arc<CreateBudget>,
    vault_host: String,
    ticket: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.budget
            .answered(&self.vault_host, self.ticket, Instant::now());
    }
}

/// A request's share of a vault's CREATE budget: the HTTP client waits for a slot before each
/// attempt, the first and every retry, and holds it until the attempt ends.
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

    /// Waits for the next attempt's slot; drop it when the attempt has ended.
    pub async fn wait(&self) -> Slot {
        self.budget.acquire(&self.vault_host).await
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
            assert_eq!(b.reserve(V, now).0, Duration::ZERO);
        }
        // A token bucket would send the 11th after 1 s; the window makes it wait for the
        // first send to leave it, plus the guard (a fifth of a slot).
        let w11 = b.reserve(V, now).0;
        let w12 = b.reserve("V.vault.azure.net", now).0;
        assert_eq!(w11, Duration::from_millis(10_200), "{w11:?}");
        assert_eq!(w12, Duration::from_millis(10_200), "{w12:?}");
        // Another vault has its own window.
        assert_eq!(b.reserve("w.vault.azure.net", now).0, Duration::ZERO);
        // Five seconds on, the window is still full.
        let later = now + Duration::from_secs(5);
        assert_eq!(b.reserve(V, later).0, Duration::from_millis(5_200));
    }

    #[tokio::test]
    async fn a_steady_trickle_is_never_delayed() {
        let b = CreateBudget::new(10, Duration::from_secs(10));
        let start = Instant::now();
        // One CREATE per second for a minute is exactly the budget: nobody waits.
        for i in 0..60 {
            assert_eq!(
                b.reserve(V, start + Duration::from_secs(i)).0,
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
                sends.push(now + b.reserve(V, now).0);
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
                .map(|_| start + b.reserve(V, start).0)
                .max()
                .unwrap();
            let span = last.duration_since(start).as_secs_f64();
            let ideal = 19.0 * window.as_secs_f64();
            let bound = ideal * (1.0 + 1.0 / f64::from(GUARD_PER_SLOT * per_window)) + 1e-9;
            assert!(span <= bound, "{span} s for 20 windows' worth");
        }
    }

    #[tokio::test]
    async fn an_answered_create_counts_from_its_answer() {
        let b = CreateBudget::new(10, Duration::from_secs(10));
        let t0 = Instant::now();
        let tickets: Vec<u64> = (0..10).map(|_| b.reserve(V, t0).1).collect();
        // Answered 3 s after they were sent (a slow network, a busy service): Azure may have
        // counted them as late as that, so the 11th waits a window from the answers.
        for t in &tickets {
            b.answered(V, *t, t0 + Duration::from_secs(3));
        }
        assert_eq!(b.reserve(V, t0).0, Duration::from_secs(13));
        // Answered at once: a window from the answer, sooner than the guard would allow.
        let fast = CreateBudget::new(10, Duration::from_secs(10));
        for _ in 0..10 {
            let (_, t) = fast.reserve(V, t0);
            fast.answered(V, t, t0 + Duration::from_millis(100));
        }
        assert_eq!(fast.reserve(V, t0).0, Duration::from_millis(10_100));
    }

    #[tokio::test]
    async fn arrivals_late_by_more_than_the_guard_never_overfill_a_window() {
        // Four callers back to back (as a vault's concurrent imports); each send reaches the
        // service 0 to 3 guards after its slot (queues, scheduling, the network) and is answered
        // a little later. Counted at arrival, as Azure counts, no window holds more than the
        // budget: the slot that frees a later one moves to the answer.
        let (per_window, window) = (10u32, Duration::from_millis(2_500));
        let guard = window / (per_window * GUARD_PER_SLOT);
        let b = CreateBudget::new(per_window, window);
        let start = Instant::now();
        let mut callers = [start; 4];
        let mut arrivals = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..400 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let (c, now) = callers
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|(_, t)| *t)
                .unwrap();
            let (wait, ticket) = b.reserve(V, now);
            let late = guard.mul_f64((seed % 3000) as f64 / 1000.0);
            let arrival = now + wait + late;
            let answer = arrival + Duration::from_millis(seed % 40);
            b.answered(V, ticket, answer);
            arrivals.push(arrival);
            callers[c] = answer;
        }
        let most = fullest_window(&arrivals, window);
        assert!(most <= per_window as usize, "{most} arrivals in one window");
        // And the budget is still used: 400 sends in not much more than 39 windows.
        let span = arrivals.iter().max().unwrap().duration_since(start);
        assert!(span < window.mul_f64(39.0 * 1.15), "{span:?}");
    }

    #[tokio::test]
    async fn zero_disables_pacing_and_the_window_scales() {
        let off = CreateBudget::new(0, Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(off.reserve(V, now).0, Duration::ZERO);
        }
        let fast = CreateBudget::new(10, Duration::from_millis(100));
        for _ in 0..10 {
            assert_eq!(fast.reserve(V, now).0, Duration::ZERO);
        }
        assert_eq!(fast.reserve(V, now).0, Duration::from_millis(102));
    }
}
