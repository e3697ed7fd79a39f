//! The client's counters (requests, retries, throttling, lost responses, refusals,
//! connections) and a copy of them at one moment.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the caller can read (e.g. for `byokctl status` or metrics export).
#[derive(Debug, Default)]
pub struct AzureMetrics {
    pub(super) requests: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) throttled: AtomicU64,
    pub(super) response_lost: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) connections: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Attempts sent (each retry counts).
    pub requests: u64,
    /// Retries made after a retryable status or a reset.
    pub retries: u64,
    /// 429 responses received.
    pub throttled: u64,
    /// Non-idempotent calls that ended in [`AzureError::ResponseLost`] (lost response or 5xx).
    pub response_lost: u64,
    /// Requests or redirects refused by the allowlist.
    pub refused: u64,
    /// New TCP+TLS connections opened (pooled reuse does not count).
    pub connections: u64,
}

impl AzureMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            response_lost: self.response_lost.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }

    pub(super) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
