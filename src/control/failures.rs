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
//! Cross-origin refusals are counted the same way per identity whose browser was used
//! ([`Browser`]): a page elsewhere can make that browser send requests as fast as it likes, and
//! each refusal would otherwise be a record in the identity's name, so the page could flush the
//! audit through it (`control.cross_origin.refused`, then `control.cross_origin.refused.summary`).
//! Authorization denials are counted per identity too ([`Denied`]): a mapped identity whose
//! role may not do something (an auditor, say) must not be able to push the log's older
//! records out by asking again and again (`control.authz.denied`, then
//! `control.authz.denied.summary`).
//! What is counted, and how it is recorded, is a [`Subject`].
//!
//! It also owns [`Throttle`], which rate-limits a repeated WARN line and counts what it
//! suppressed. It never decides whether a peer is refused (TLS does).

use super::fairness::Peer;
use crate::logs::Event;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Failures per peer and window recorded one by one.
pub const RECORDED_AT_ONCE: u64 = 4;
/// Peer addresses (or other subjects) tracked one by one per window.
pub const MAX_PEERS: usize = 32;

/// What failures are counted for, and how its records are written.
pub trait Subject: Clone + Eq + Hash + std::fmt::Display + std::fmt::Debug {
    /// Records one of the first failures of a window; `last_alone` (the window) on the last one
    /// recorded alone.
    fn failed(&self, error: &str, last_alone: Option<Duration>);
    /// Records the failures of a window that were not recorded alone.
    fn summary(&self, count: u64, first: &str, last: &str, last_error: &str);
    /// The event of a window's summary.
    const SUMMARY: Event;
    /// What the summary of the failures of subjects beyond the [`MAX_PEERS`] tracked one by one
    /// says.
    fn others(count: u64, first: &str, last: &str, last_error: &str) -> String;
}

/// "; further failures … are counted in one summary record" on the last one recorded alone.
fn more_note(whose: &dyn std::fmt::Display, last_alone: Option<Duration>) -> String {
    last_alone.map_or(String::new(), |w| {
        format!(
            "; further ones {whose} in the next {} s are counted in one summary record",
            w.as_secs().max(1)
        )
    })
}

impl Subject for Peer {
    fn failed(&self, error: &str, last_alone: Option<Duration>) {
        let more = more_note(&format_args!("from {self}"), last_alone);
        tracing::warn!(event = Event::ControlAuthFailed.as_str(), service = "control", peer = %self, error = %error,
            "Authentication failed on the control socket from {self}: {error}{more}");
    }

    fn summary(&self, count: u64, first: &str, last: &str, last_error: &str) {
        tracing::warn!(event = Self::SUMMARY.as_str(), service = "control", peer = %self, count,
            "Authentication failed on the control socket {count} more time(s) from {self} between {first} and {last} (the last error: {last_error}); these were not recorded one by one");
    }

    const SUMMARY: Event = Event::ControlAuthFailedSummary;

    fn others(count: u64, first: &str, last: &str, last_error: &str) -> String {
        format!(
            "Authentication failed on the control socket {count} time(s) from addresses beyond the {MAX_PEERS} tracked one by one, between {first} and {last} (the last error: {last_error})"
        )
    }
}

/// The browser of an identity, made by a page of another site to call the control API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Browser(pub String);

impl std::fmt::Display for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the browser of {}", self.0)
    }
}

impl Subject for Browser {
    fn failed(&self, error: &str, last_alone: Option<Duration>) {
        let more = more_note(&format_args!("through {self}"), last_alone);
        tracing::warn!(event = Event::ControlCrossOriginRefused.as_str(), service = "control", identity = %self.0,
            "Cross-origin request refused: {self} was made to call {error}{more}");
    }

    fn summary(&self, count: u64, first: &str, last: &str, last_error: &str) {
        tracing::warn!(event = Self::SUMMARY.as_str(), service = "control", identity = %self.0, count,
            "Cross-origin requests refused {count} more time(s) through {self} between {first} and {last} (the last: {last_error}); these were not recorded one by one. A web page elsewhere is using that browser's client certificate: close it, and keep the certificate out of everyday browsers");
    }

    const SUMMARY: Event = Event::ControlCrossOriginRefusedSummary;

    fn others(count: u64, first: &str, last: &str, last_error: &str) -> String {
        format!(
            "Cross-origin requests refused {count} time(s) through the browsers of identities beyond the {MAX_PEERS} tracked one by one, between {first} and {last} (the last: {last_error})"
        )
    }
}

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
    fn new(now: Instant, ts: String, error: &str) -> Tally {
        Tally {
            opened: now,
            first: ts.clone(),
            last: ts,
            count: 0,
            recorded: 0,
            last_error: error.to_owned(),
        }
    }

    fn add(&mut self, error: &str, ts: String) {
        self.count += 1;
        self.last = ts;
        error.clone_into(&mut self.last_error);
    }

    fn unrecorded(&self) -> u64 {
        self.count - self.recorded
    }
}

/// An identity whose requests its role does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Denied(pub String);

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Subject for Denied {
    fn failed(&self, error: &str, last_alone: Option<Duration>) {
        let more = more_note(&format_args!("of {self}"), last_alone);
        tracing::warn!(event = Event::ControlAuthzDenied.as_str(), service = "control", identity = %self.0,
            "Authorization denied: {self} may not call {error}{more}");
    }

    fn summary(&self, count: u64, first: &str, last: &str, last_error: &str) {
        tracing::warn!(event = Self::SUMMARY.as_str(), service = "control", identity = %self.0, count,
            "Authorization denied {count} more time(s) to {self} between {first} and {last} (the last: {last_error}); these were not recorded one by one");
    }

    const SUMMARY: Event = Event::ControlAuthzDeniedSummary;

    fn others(count: u64, first: &str, last: &str, last_error: &str) -> String {
        format!(
            "Authorization denied {count} time(s) to identities beyond the {MAX_PEERS} tracked one by one, between {first} and {last} (the last: {last_error})"
        )
    }
}

#[derive(Debug)]
struct State<K> {
    peers: HashMap<K, Tally>,
    /// Failures from subjects beyond [`MAX_PEERS`] in this window.
    others: Option<Tally>,
}

/// The aggregator. One per control server and kind of subject.
#[derive(Debug)]
pub struct Failures<K = Peer> {
    state: Mutex<State<K>>,
    window: Duration,
    /// Dates the first and last failure a summary names.
    clock: crate::clock::SharedClock,
}

impl<K: Subject> Failures<K> {
    pub fn new(window: Duration, clock: crate::clock::SharedClock) -> Self {
        Self {
            clock,
            state: Mutex::new(State {
                peers: HashMap::new(),
                others: None,
            }),
            window: window.max(Duration::from_millis(10)),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A subject failed (a peer to authenticate, a browser's request to be same-origin);
    /// records it now or counts it for the window's summary.
    pub fn failed(&self, peer: K, error: &str) {
        match self.note(peer.clone(), error) {
            Some(r) => r.emit(),
            None => {
                tracing::debug!(subject = %peer, error = %error, "control failure counted in a summary")
            }
        }
    }

    /// Counts a failure; the report to record now, if it is one of the first of its window.
    fn note(&self, peer: K, error: &str) -> Option<Report<K>> {
        let now = Instant::now();
        let ts = crate::logs::record::ts_of(self.clock.now());
        let mut st = self.lock();
        let tracked = st.peers.len();
        let tally = match st.peers.get_mut(&peer) {
            Some(t) => t,
            None if tracked < MAX_PEERS => st
                .peers
                .entry(peer.clone())
                .or_insert_with(|| Tally::new(now, ts.clone(), error)),
            None => {
                st.others
                    .get_or_insert_with(|| Tally::new(now, ts.clone(), error))
                    .add(error, ts);
                return None;
            }
        };
        tally.add(error, ts);
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
    fn ended(&self, all: bool) -> Vec<Report<K>> {
        let now = Instant::now();
        let due = |t: &Tally| all || now.duration_since(t.opened) >= self.window;
        let mut st = self.lock();
        let keys: Vec<K> = st
            .peers
            .iter()
            .filter(|(_, t)| due(t))
            .map(|(p, _)| p.clone())
            .collect();
        let mut out: Vec<Report<K>> = keys
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
enum Report<K> {
    /// One of the first failures of a subject's window; `last_alone` (the window) on the last
    /// one recorded alone.
    Failed {
        peer: K,
        error: String,
        last_alone: Option<Duration>,
    },
    /// The failures of a window not recorded alone; `peer` is `None` for the subjects beyond
    /// [`MAX_PEERS`].
    Summary {
        peer: Option<K>,
        count: u64,
        tally: Tally,
    },
}

impl<K: Subject> Report<K> {
    /// Writes the record (and its WARN line).
    fn emit(&self) {
        match self {
            Report::Failed {
                peer,
                error,
                last_alone,
            } => peer.failed(error, *last_alone),
            Report::Summary {
                peer: Some(peer),
                count,
                tally: t,
            } => peer.summary(*count, &t.first, &t.last, &t.last_error),
            Report::Summary {
                peer: None,
                count,
                tally: t,
            } => {
                let m = K::others(*count, &t.first, &t.last, &t.last_error);
                tracing::warn!(
                    event = K::SUMMARY.as_str(),
                    service = "control",
                    count,
                    "{m}"
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
        let f = Failures::new(
            Duration::from_millis(50),
            crate::clock::SystemClock::shared(),
        );
        let a = Peer::Ip("10.0.0.1".parse().unwrap());
        let reports: Vec<Report<Peer>> = (0..10)
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
        let f = Failures::new(
            Duration::from_secs(3600),
            crate::clock::SystemClock::shared(),
        );
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
