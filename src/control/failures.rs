//! Failures of peers without a usable client certificate (refused or unfinished TLS handshakes,
//! and requests made with a certificate of the console CA that maps to no identity), aggregated
//! so that nobody without a certificate of a configured identity can flood the service log or
//! stderr.
//!
//! Per peer address (see [`Peer`]) and window (`limits.auth_failure_window_secs`): the first
//! [`RECORDED_AT_ONCE`] failures are recorded one by one (`control.auth.failed`), so a
//! misconfigured client shows up at once; the rest are counted and recorded as one
//! `control.auth.failed.summary` when the window ends, with the count, the first and last time
//! and the last error. At most [`MAX_PEERS`] addresses are tracked per window; failures from
//! further addresses share one summary. So one window writes at most
//! `MAX_PEERS × (RECORDED_AT_ONCE + 1) + 1` records and as many WARN lines, whatever the flood.
//!
//! It also owns [`Throttle`], which rate-limits a repeated WARN line and counts what it
//! suppressed. It never decides whether a peer is refused (TLS does).

use super::fairness::Peer;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Failures per peer and window recorded one by one.
pub const RECORDED_AT_ONCE: u64 = 4;
/// Peer addresses tracked one by one per window.
pub const MAX_PEERS: usize = 32;

#[derive(Debug, Clone)]
struct Tally {
    opened: Instant,
    first: String,
    last: String,
    count: u64,
    recorded: u64,
    last_error: String,
}

impl Tally {
    fn new(now: Instant, error: &str) -> Tally {
        let ts = crate::logs::record::now_ts();
        Tally {
            opened: now,
            first: ts.clone(),
            last: ts,
            count: 0,
            recorded: 0,
            last_error: error.to_owned(),
        }
    }

    fn add(&mut self, error: &str) {
        self.count += 1;
        self.last = crate::logs::record::now_ts();
        error.clone_into(&mut self.last_error);
    }

    fn unrecorded(&self) -> u64 {
        self.count - self.recorded
    }
}

#[derive(Debug, Default)]
struct State {
    peers: HashMap<Peer, Tally>,
    /// Failures from addresses beyond [`MAX_PEERS`] in this window.
    others: Option<Tally>,
}

/// The aggregator. One per control server.
#[derive(Debug)]
pub struct Failures {
    state: Mutex<State>,
    window: Duration,
}

impl Failures {
    pub fn new(window: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            window: window.max(Duration::from_millis(10)),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A peer failed to authenticate; records it now or counts it for the window's summary.
    pub fn failed(&self, peer: Peer, error: &str) {
        match self.note(peer, error) {
            Some(r) => r.emit(),
            None => {
                tracing::debug!(peer = %peer, error = %error, "TLS handshake failed (counted in a summary)")
            }
        }
    }

    /// Counts a failure; the report to record now, if it is one of the first of its window.
    fn note(&self, peer: Peer, error: &str) -> Option<Report> {
        let now = Instant::now();
        let mut st = self.lock();
        let tracked = st.peers.len();
        let tally = match st.peers.get_mut(&peer) {
            Some(t) => t,
            None if tracked < MAX_PEERS => st.peers.entry(peer).or_insert(Tally::new(now, error)),
            None => {
                st.others
                    .get_or_insert_with(|| Tally::new(now, error))
                    .add(error);
                return None;
            }
        };
        tally.add(error);
        if tally.recorded >= RECORDED_AT_ONCE {
            return None;
        }
        tally.recorded += 1;
        Some(Report::Failed {
            peer,
            error: error.to_owned(),
            last_alone: (tally.recorded == RECORDED_AT_ONCE).then_some(self.window),
        })
    }

    /// Records the summaries of windows that have ended (all of them with `all`).
    pub fn flush(&self, all: bool) {
        for r in self.ended(all) {
            r.emit();
        }
    }

    /// Takes the windows that have ended (all of them with `all`) and sums them up.
    fn ended(&self, all: bool) -> Vec<Report> {
        let now = Instant::now();
        let due = |t: &Tally| all || now.duration_since(t.opened) >= self.window;
        let mut st = self.lock();
        let keys: Vec<Peer> = st
            .peers
            .iter()
            .filter(|(_, t)| due(t))
            .map(|(p, _)| *p)
            .collect();
        let mut out: Vec<Report> = keys
            .into_iter()
            .filter_map(|p| st.peers.remove(&p).map(|t| (p, t)))
            .filter(|(_, t)| t.unrecorded() > 0)
            .map(|(p, t)| Report::Summary {
                peer: Some(p),
                count: t.unrecorded(),
                tally: t,
            })
            .collect();
        if st.others.as_ref().is_some_and(due)
            && let Some(t) = st.others.take()
        {
            out.push(Report::Summary {
                peer: None,
                count: t.count,
                tally: t,
            });
        }
        out
    }
}

/// What is recorded about failures: one failure, or a window's summary.
#[derive(Debug)]
enum Report {
    /// One of the first failures of a peer's window; `last_alone` (the window) on the last one
    /// recorded alone.
    Failed {
        peer: Peer,
        error: String,
        last_alone: Option<Duration>,
    },
    /// The failures of a window not recorded alone; `peer` is `None` for the addresses beyond
    /// [`MAX_PEERS`].
    Summary {
        peer: Option<Peer>,
        count: u64,
        tally: Tally,
    },
}

impl Report {
    /// Writes the record (and its WARN line).
    fn emit(&self) {
        match self {
            Report::Failed {
                peer,
                error,
                last_alone,
            } => {
                let more = last_alone.map_or(String::new(), |w| {
                    format!(
                        "; further failures from {peer} in the next {} s are counted in one summary record",
                        w.as_secs().max(1)
                    )
                });
                tracing::warn!(event = crate::logs::Event::ControlAuthFailed.as_str(), service = "control", peer = %peer, error = %error,
                    "Authentication failed on the control socket from {peer}: {error}{more}");
            }
            Report::Summary {
                peer: Some(peer),
                count,
                tally: t,
            } => {
                tracing::warn!(event = crate::logs::Event::ControlAuthFailedSummary.as_str(), service = "control", peer = %peer, count,
                    "Authentication failed on the control socket {count} more time(s) from {peer} between {} and {} (the last error: {}); these were not recorded one by one",
                    t.first, t.last, t.last_error);
            }
            Report::Summary {
                peer: None,
                count,
                tally: t,
            } => {
                tracing::warn!(
                    event = crate::logs::Event::ControlAuthFailedSummary.as_str(),
                    service = "control",
                    count,
                    "Authentication failed on the control socket {count} time(s) from addresses beyond the {MAX_PEERS} tracked one by one, between {} and {} (the last error: {})",
                    t.first,
                    t.last,
                    t.last_error
                );
            }
        }
    }
}

/// Lets a repeated line through at most once per interval and counts what it held back.
#[derive(Debug)]
pub struct Throttle {
    state: Mutex<(Option<Instant>, u64)>,
    every: Duration,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Self {
            state: Mutex::new((None, 0)),
            every,
        }
    }

    /// `Some(suppressed since the last line)` when a line may be written now.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.0 {
            Some(t) if now.duration_since(t) < self.every => {
                st.1 += 1;
                None
            }
            _ => {
                let n = st.1;
                *st = (Some(now), 0);
                Some(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_line_through_per_interval_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        let t0 = Throttle::new(Duration::ZERO);
        assert_eq!(t0.allow(), Some(0));
        assert_eq!(t0.allow(), Some(0));
    }

    #[test]
    fn a_window_records_its_first_failures_then_one_summary_of_the_rest() {
        let f = Failures::new(Duration::from_millis(50));
        let a = Peer::Ip("10.0.0.1".parse().unwrap());
        let reports: Vec<Report> = (0..10)
            .filter_map(|_| f.note(a, "no certificate"))
            .collect();
        assert_eq!(reports.len() as u64, RECORDED_AT_ONCE);
        assert!(matches!(
            reports.last(),
            Some(Report::Failed {
                last_alone: Some(_),
                ..
            })
        ));
        assert!(f.ended(false).is_empty(), "the window is still open");
        std::thread::sleep(Duration::from_millis(60));
        let ended = f.ended(false);
        assert!(
            matches!(ended.as_slice(), [Report::Summary { peer: Some(p), count: 6, .. }] if *p == a),
            "{ended:?}"
        );
        // A new window starts over; one without failures beyond the first is not summed up.
        assert!(f.note(a, "again").is_some());
        assert!(f.ended(true).is_empty());
    }

    #[test]
    fn failures_are_counted_per_peer_and_the_peer_table_is_bounded() {
        let f = Failures::new(Duration::from_secs(3600));
        let a = Peer::Ip("10.0.0.1".parse().unwrap());
        for _ in 0..100 {
            f.failed(a, "no certificate");
        }
        for i in 0..200u32 {
            f.failed(Peer::Ip(std::net::IpAddr::from(i.to_be_bytes())), "x");
        }
        let st = f.lock();
        assert_eq!(st.peers.len(), MAX_PEERS);
        let t = &st.peers[&a];
        assert_eq!((t.count, t.recorded), (100, RECORDED_AT_ONCE));
        assert_eq!(
            st.others.as_ref().unwrap().count,
            200 - (MAX_PEERS as u64 - 1)
        );
    }
}
