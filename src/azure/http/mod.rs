//! The one outbound HTTP client of the daemon (docs/security.md#invariants, the one outbound client).
//!
//! Owns every connection byokd makes: hyper 1 over rustls (ring, TLS 1.2+, system roots plus the
//! configured extra anchors, HTTP/2 when the server offers it through ALPN, keep-alive pooling
//! except for requests that carry a secret, which get a connection of their own).
//! The connector checks the [`Allowlist`] *before* any DNS lookup, then resolves through the
//! `[azure.resolve]` map or DNS; SNI and certificate verification always use the real host name.
//! A name that does not exist (NXDOMAIN, or absent from a configured map) fails at once with
//! [`AzureError::NameDoesNotResolve`]; a DNS outage is transient and retried.
//! It never follows a redirect, bounds response sizes and time, and retries throttling, transient
//! statuses and resets with back-off, but never blindly repeats a non-idempotent request whose
//! response was lost, or that got a 500/502/503/504 (the service may have committed it before a
//! gateway answered): that is [`AzureError::ResponseLost`], so the caller can look before retrying.
//! 408 and 429 mean Azure did not process the request and are retried for every method.
//!
//! It must never offer a way to disable certificate verification, connect to a host outside the
//!
//! Files: `options` (time-outs, retry and size limits), `metrics` (the counters), `request`
//! (one request and its response), `retry` (which statuses are retried, the server's hints and
//! the back-off), `attempt` (one attempt, and how it ended), `connector` (allowlist, resolve,
//! TCP and TLS), `trust` (the TLS configuration and its anchors), `body` (the zeroizing request
//! body), `tests`; this file holds the client and its retry loop.

mod attempt;
mod body;
mod connector;
mod metrics;
mod options;
mod request;
mod retry;
#[cfg(test)]
mod tests;
mod trust;

pub use metrics::{AzureMetrics, MetricsSnapshot};
pub use options::HttpOptions;
pub use request::{HttpRequest, HttpResponse};
pub use retry::{backoff, retry_after, status_may_have_committed};
pub use trust::check_extra_ca;

use super::AzureError;
use super::endpoints::Allowlist;
use crate::config::AzureSection;
use body::ReqBody;
use connector::Connector;
use http::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use retry::RETRY_STATUSES;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trust::tls_config;

/// THE outbound client. Cheap to share behind an `Arc`.
pub struct HttpClient {
    client: Client<Connector, ReqBody>,
    /// The same connector with no pool, for [`HttpRequest::single_use`] requests.
    single_use: Client<Connector, ReqBody>,
    allowlist: Arc<Allowlist>,
    metrics: Arc<AzureMetrics>,
    opts: HttpOptions,
    /// Reads the time of day for `Retry-After` dates.
    clock: crate::clock::SharedClock,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// What one attempt ended with.
enum Failure {
    /// Not worth retrying (refused, TLS verification, too large…).
    Fatal(AzureError),
    /// Transient; `sent` says whether the request may have reached the server.
    Transient { reason: String, sent: bool },
}

impl HttpClient {
    /// Builds the client: TLS roots are the system's plus `cfg.extra_ca`.
    pub fn new(
        cfg: &AzureSection,
        opts: HttpOptions,
        allowlist: Arc<Allowlist>,
        metrics: Arc<AzureMetrics>,
        clock: crate::clock::SharedClock,
    ) -> Result<Self, AzureError> {
        let tls = tls_config(&cfg.extra_ca)?;
        let resolve = cfg
            .resolve
            .iter()
            .map(|(h, a)| (h.to_ascii_lowercase(), *a))
            .collect();
        let connector = Connector {
            allowlist: allowlist.clone(),
            resolve: Arc::new(resolve),
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            connect_timeout: opts.connect_timeout,
            metrics: metrics.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(opts.pool_idle_timeout)
            .pool_max_idle_per_host(8)
            .build(connector.clone());
        let single_use = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Self {
            client,
            single_use,
            allowlist,
            metrics,
            opts,
            clock,
        })
    }

    pub fn metrics(&self) -> &Arc<AzureMetrics> {
        &self.metrics
    }

    pub fn allowlist(&self) -> &Arc<Allowlist> {
        &self.allowlist
    }

    /// Sends a request with retries (see the module doc). A final retryable status (e.g. 429 after
    /// the attempt or wait cap) is returned as a response for the caller to map.
    pub async fn send(&self, req: &HttpRequest) -> Result<HttpResponse, AzureError> {
        let target = match self.allowlist.check(&req.url) {
            Ok(t) => t,
            Err(e) => {
                AzureMetrics::inc(&self.metrics.refused);
                return Err(e);
            }
        };
        let mut slot = match &req.pace {
            Some(pace) => Some(pace.wait().await),
            None => None,
        };
        let deadline = Instant::now() + self.opts.total_timeout;
        let mut waited = Duration::ZERO;
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            if attempt > 1
                && let Some(pace) = &req.pace
            {
                slot = Some(pace.wait().await);
            }
            AzureMetrics::inc(&self.metrics.requests);
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(remaining, self.attempt(req, &target)).await {
                Ok(o) => o,
                Err(_) => Err(Failure::Transient {
                    reason: "total time-out".into(),
                    sent: true,
                }),
            };
            // The attempt has its answer (or failed): its CREATE slot counts from now.
            drop(slot.take());
            let (hint, reason, last) = match outcome {
                Ok(resp) if resp.status.is_redirection() => {
                    return Err(self.redirect(&target, &resp));
                }
                Ok(resp) if !req.idempotent && status_may_have_committed(resp.status) => {
                    let reason =
                        format!("status {} after the request was sent", resp.status.as_u16());
                    return Err(self.response_lost(req, &target, attempt, reason));
                }
                Ok(resp) if RETRY_STATUSES.contains(&resp.status.as_u16()) => {
                    if resp.status == StatusCode::TOO_MANY_REQUESTS {
                        AzureMetrics::inc(&self.metrics.throttled);
                    }
                    let hint = retry_after(&resp.headers, self.clock.now_system());
                    (hint, format!("status {}", resp.status.as_u16()), Some(resp))
                }
                Ok(resp) => return Ok(resp),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient { reason, sent }) => {
                    if sent && !req.idempotent {
                        return Err(self.response_lost(req, &target, attempt, reason));
                    }
                    (None, reason, None)
                }
            };
            let delay = hint.unwrap_or_else(|| backoff(self.opts.backoff_base, attempt));
            let over_budget = waited.saturating_add(delay) > self.opts.max_retry_wait
                || Instant::now() + delay >= deadline;
            if attempt >= self.opts.max_attempts || over_budget {
                tracing::warn!(host = %target.host, method = %req.method, attempt, reason = %reason,
                    delay_ms = delay.as_millis() as u64, "giving up: retry limit reached");
                return match last {
                    Some(resp) => Ok(resp),
                    None => Err(AzureError::Unreachable {
                        host: target.host.clone(),
                        attempts: attempt,
                        reason,
                    }),
                };
            }
            AzureMetrics::inc(&self.metrics.retries);
            tracing::warn!(event = "azure.retry", host = %target.host, method = %req.method, attempt, status = last.as_ref().map(|r| r.status.as_u16()),
                reason = %reason, delay_ms = delay.as_millis() as u64,
                "Azure request to {} retried after {} ms (attempt {attempt}): {reason}", target.host, delay.as_millis());
            super::retry_notice::send(super::retry_notice::RetryEvent::Waiting { delay, reason });
            tokio::time::sleep(delay).await;
            super::retry_notice::send(super::retry_notice::RetryEvent::Resumed);
            waited = waited.saturating_add(delay);
        }
    }
}
