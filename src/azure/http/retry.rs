//! When to retry: the retried statuses, which of them leave a commit open, the server's
//! retry hints, and the back-off between attempts.

use http::StatusCode;
use http::header::{HeaderMap, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// Statuses that are retried (docs/byok-protocol.md#throttling-and-retries).
pub(super) const RETRY_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// Whether a retryable status leaves it open if the server applied the request. Azure did not
/// process a request it answered 408 or 429; a 500, 502, 503 or 504 may come from a gateway after
/// the service committed it. A non-idempotent request (create, import, recover) that gets one of
/// these is never repeated blindly: it ends in [`AzureError::ResponseLost`].
pub fn status_may_have_committed(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// `x-ms-retry-after-ms`, then `retry-after-ms`, then `Retry-After` (seconds or an HTTP date).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for name in ["x-ms-retry-after-ms", "retry-after-ms"] {
        if let Some(ms) = text(name).and_then(|t| t.parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let value = text(RETRY_AFTER.as_str())?;
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential back-off with ±25 % jitter: base × 1, 2, 4, 8, 16 (then capped at 16).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(4);
    let nominal = base.saturating_mul(factor);
    let jitter: f64 = 0.75 + rand::random::<f64>() * 0.5;
    nominal.mul_f64(jitter)
}
