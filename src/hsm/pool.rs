//! The queues between the async side and the HSM session workers.
//!
//! Owns: two bounded lanes of requests, the rule for which a free worker takes next, and the
//! count of live workers (the last one out tells whoever waits for the pool to stop). Knows
//! nothing of PKCS#11: the items are opaque to it.
//!
//! The rule, and why: key generation is long (RSA-4096 takes seconds on some tokens) while a
//! wrap, a signature or a public-key read takes milliseconds. A priority lane alone would still
//! leave a sync's wrap waiting for a generation to finish whenever every session is busy
//! generating, so with two sessions or more one session is kept out of the bulk lane: bulk
//! requests run on at most `sessions - 1` sessions at once, and a fast request is taken first by
//! any free worker. A wrap therefore waits behind other fast requests only, never behind a
//! batch of generations. With one session, fast requests still go first between generations.
//! Must never: block the async side (pushes never wait), or hand out work after `close` once
//! both lanes are empty.

use super::HsmError;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use tokio::sync::oneshot;

/// Which lane a request waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Short requests a job waits on: wrap, sign, public key, attributes, seal, unseal.
    Fast,
    /// Key generation and other long or whole-token requests.
    Bulk,
}

struct Lanes<T> {
    fast: VecDeque<T>,
    bulk: VecDeque<T>,
    bulk_running: usize,
    closed: bool,
    live_workers: usize,
    stop_waiters: Vec<oneshot::Sender<()>>,
}

/// The lanes, shared by the `Hsm` handles (which push) and the workers (which take).
pub(crate) struct Pool<T> {
    lanes: Mutex<Lanes<T>>,
    ready: Condvar,
    depth: usize,
    bulk_limit: usize,
}

impl<T> Pool<T> {
    /// A pool for `workers` workers, each lane holding at most `depth` waiting requests.
    pub(crate) fn new(workers: usize, depth: usize) -> Self {
        Self {
            lanes: Mutex::new(Lanes {
                fast: VecDeque::new(),
                bulk: VecDeque::new(),
                bulk_running: 0,
                closed: false,
                live_workers: workers,
                stop_waiters: Vec::new(),
            }),
            ready: Condvar::new(),
            depth,
            bulk_limit: workers.saturating_sub(1).max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lanes<T>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item`; `Busy` when its lane is full, `WorkerGone` once the pool is closed.
    pub(crate) fn push(&self, item: T, lane: Lane) -> Result<(), HsmError> {
        let mut l = self.lock();
        if l.closed {
            return Err(HsmError::WorkerGone);
        }
        let queue = match lane {
            Lane::Fast => &mut l.fast,
            Lane::Bulk => &mut l.bulk,
        };
        if queue.len() >= self.depth {
            return Err(HsmError::Busy);
        }
        queue.push_back(item);
        drop(l);
        self.ready.notify_one();
        Ok(())
    }

    /// For a worker: the next request to serve, waiting for one; `None` when the pool is closed
    /// and both lanes are empty. A `Bulk` item must be followed by `bulk_done`.
    pub(crate) fn next(&self) -> Option<(T, Lane)> {
        let mut l = self.lock();
        loop {
            if let Some(item) = l.fast.pop_front() {
                return Some((item, Lane::Fast));
            }
            if l.bulk_running < self.bulk_limit
                && let Some(item) = l.bulk.pop_front()
            {
                l.bulk_running += 1;
                return Some((item, Lane::Bulk));
            }
            if l.closed && l.bulk.is_empty() {
                return None;
            }
            l = self.ready.wait(l).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// For a worker: a `Bulk` item it took is served.
    pub(crate) fn bulk_done(&self) {
        let mut l = self.lock();
        l.bulk_running = l.bulk_running.saturating_sub(1);
        let waiting = !l.bulk.is_empty() || l.closed;
        drop(l);
        if waiting {
            self.ready.notify_all();
        }
    }

    /// Takes no more requests; the workers serve what is queued, then stop.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// A oneshot answered when the last worker has stopped (at once if none is left).
    pub(crate) fn on_stopped(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut l = self.lock();
        if l.live_workers == 0 {
            let _ = tx.send(());
        } else {
            l.stop_waiters.push(tx);
        }
        rx
    }

    /// For a worker that has released everything it held: one fewer is live. Returns whether
    /// it was the last, after answering those waiting in `on_stopped`.
    pub(crate) fn worker_stopped(&self) -> bool {
        let mut l = self.lock();
        l.live_workers = l.live_workers.saturating_sub(1);
        if l.live_workers > 0 {
            return false;
        }
        for w in l.stop_waiters.drain(..) {
            let _ = w.send(());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_requests_go_first_and_one_session_stays_out_of_the_bulk_lane() {
        let p = Pool::new(3, 4);
        for i in 0..4 {
            p.push(("gen", i), Lane::Bulk).unwrap();
        }
        assert!(matches!(
            p.push(("gen", 9), Lane::Bulk),
            Err(HsmError::Busy)
        ));
        // Two workers take generations; the third session is not given a third one.
        assert_eq!(p.next().map(|(x, _)| x), Some(("gen", 0)));
        assert_eq!(p.next().map(|(x, _)| x), Some(("gen", 1)));
        p.push(("wrap", 0), Lane::Fast).unwrap();
        assert_eq!(p.next(), Some((("wrap", 0), Lane::Fast)));
        // A generation ends: the next one may start.
        p.bulk_done();
        assert_eq!(p.next(), Some((("gen", 2), Lane::Bulk)));
        // Closed: what is queued is still served, then nothing.
        p.close();
        assert!(matches!(
            p.push(("wrap", 1), Lane::Fast),
            Err(HsmError::WorkerGone)
        ));
        p.bulk_done();
        assert_eq!(p.next(), Some((("gen", 3), Lane::Bulk)));
        p.bulk_done();
        p.bulk_done();
        assert_eq!(p.next(), None);
    }

    #[test]
    fn one_session_serves_both_lanes_and_the_last_worker_out_says_so() {
        let p = Pool::new(1, 2);
        p.push(1, Lane::Bulk).unwrap();
        p.push(2, Lane::Fast).unwrap();
        assert_eq!(p.next(), Some((2, Lane::Fast)));
        assert_eq!(p.next(), Some((1, Lane::Bulk)));
        p.bulk_done();
        let mut stopped = p.on_stopped();
        assert!(stopped.try_recv().is_err());
        assert!(p.worker_stopped());
        assert!(stopped.try_recv().is_ok());
        assert!(p.on_stopped().try_recv().is_ok());
    }
}
