//! Tells whoever issued an Azure request that the client is backing off before a retry (after a
//! 429, a 5xx or a transient failure), and when it goes on. A job runs its Azure calls inside
//! [`scope`] so it can show `waiting-retry`; outside a scope nothing is sent.

use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

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
pub struct RetryNotice(UnboundedSender<RetryEvent>);

impl RetryNotice {
    pub fn channel() -> (Self, UnboundedReceiver<RetryEvent>) {
        let (tx, rx) = unbounded_channel();
        (Self(tx), rx)
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
    // Outside a scope, or when the listener has gone, there is no one to tell.
    let _ = NOTICE.try_with(|n| n.0.send(event));
}
