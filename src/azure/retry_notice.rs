//! Tells whoever issued an Azure request that the client is backing off before a retry (after a
//! 429, a 5xx or a transient failure), and when it goes on. A job runs its Azure calls inside
//! [`scope`] so it can show `waiting-retry`; outside a scope nothing is sent.
//!
//! The channel is bounded: the notices are display only, so one that finds it full is dropped.
//! How many calls are waiting right now is counted apart from the channel
//! ([`RetryEvents::waiting`]), so a dropped notice never leaves the listener believing a call
//! still waits.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::{Receiver, Sender, channel};

/// Notices queued for one listener before further ones are dropped.
pub const NOTICE_QUEUE: usize = 64;

/// What the client is doing about a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryEvent {
    /// Waiting `delay` before the next attempt; `reason` is e.g. "status 429".
    Waiting { delay: Duration, reason: String },
    /// The wait is over; the next attempt is being sent.
    Resumed,
}

/// The sending side, installed for a task with [`scope`].
#[derive(Debug, Clone)]
pub struct RetryNotice {
    tx: Sender<RetryEvent>,
    waiting: Arc<AtomicUsize>,
}

/// The listening side: the notices, and how many calls wait now.
#[derive(Debug)]
pub struct RetryEvents {
    rx: Receiver<RetryEvent>,
    waiting: Arc<AtomicUsize>,
}

impl RetryNotice {
    pub fn channel() -> (Self, RetryEvents) {
        let (tx, rx) = channel(NOTICE_QUEUE);
        let waiting = Arc::new(AtomicUsize::new(0));
        (
            Self {
                tx,
                waiting: waiting.clone(),
            },
            RetryEvents { rx, waiting },
        )
    }

    fn send(&self, event: RetryEvent) {
        match event {
            RetryEvent::Waiting { .. } => {
                self.waiting.fetch_add(1, Ordering::SeqCst);
            }
            RetryEvent::Resumed => {
                // Never below zero, whatever order the notices of several calls come in.
                let _ = self
                    .waiting
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            }
        }
        // Full (the notice is display only) or nobody listening: dropped.
        let _ = self.tx.try_send(event);
    }
}

impl RetryEvents {
    /// The next notice; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<RetryEvent> {
        self.rx.recv().await
    }

    /// Calls of the scope that are waiting for a retry right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

tokio::task_local! {
    static NOTICE: RetryNotice;
}

/// Runs `f` with `notice` receiving the retry events of the Azure calls it makes.
pub async fn scope<F: Future>(notice: RetryNotice, f: F) -> F::Output {
    NOTICE.scope(notice, f).await
}

/// The notice installed for the current task, so work it spawns can report to the same place.
pub fn current() -> Option<RetryNotice> {
    NOTICE.try_with(RetryNotice::clone).ok()
}

pub(crate) fn send(event: RetryEvent) {
    // Outside a scope there is no one to tell.
    let _ = NOTICE.try_with(|n| n.send(event));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting() -> RetryEvent {
        RetryEvent::Waiting {
            delay: Duration::from_millis(1),
            reason: "status 429".into(),
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_notices_but_keeps_the_count() {
        let (notice, mut events) = RetryNotice::channel();
        scope(notice, async {
            for _ in 0..NOTICE_QUEUE + 10 {
                send(waiting());
            }
            for _ in 0..NOTICE_QUEUE + 10 {
                send(RetryEvent::Resumed);
            }
        })
        .await;
        // Only the first NOTICE_QUEUE notices were kept: all of them `Waiting`.
        let mut seen = 0;
        while let Some(e) = events.recv().await {
            assert_eq!(e, waiting());
            seen += 1;
        }
        assert_eq!(seen, NOTICE_QUEUE);
        // Every `Resumed` was dropped from the queue, yet no call is counted as waiting.
        assert_eq!(events.waiting(), 0);
    }
}
