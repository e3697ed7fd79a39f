//! Time-outs, retry and size limits of the client.

use crate::config::AzureSection;
use std::time::Duration;

/// Time-outs, retry and size limits of the client.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Waiting for the response head, and again for the whole body, per attempt.
    pub read_timeout: Duration,
    /// The whole call: every attempt and every back-off wait.
    pub total_timeout: Duration,
    /// Attempts per call, the first included (at least 1).
    pub max_attempts: u32,
    /// The most time spent sleeping between attempts of one call.
    pub max_retry_wait: Duration,
    /// First back-off step; later ones double (1, 2, 4, 8, 16 × base), with ±25 % jitter.
    pub backoff_base: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self::from_config(&AzureSection::default())
    }
}

impl HttpOptions {
    pub fn from_config(cfg: &AzureSection) -> Self {
        Self {
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            read_timeout: Duration::from_millis(cfg.read_timeout_ms),
            total_timeout: Duration::from_millis(cfg.total_timeout_ms),
            max_attempts: cfg.max_attempts.max(1),
            max_retry_wait: Duration::from_millis(cfg.max_retry_wait_ms),
            backoff_base: Duration::from_millis(cfg.retry_base_ms),
            max_response_bytes: 4 * 1024 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}
