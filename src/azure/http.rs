//! The one outbound HTTP client of the daemon (DESIGN.md invariant 3).
//!
//! Owns every connection byokd makes: hyper 1 over rustls (ring, TLS 1.2+, system roots plus the
//! configured extra anchors, HTTP/2 when the server offers it through ALPN, keep-alive pooling
//! except for requests that carry a secret, which get a connection of their own).
//! The connector checks the [`Allowlist`] *before* any DNS lookup, then resolves through the
//! `[azure.resolve]` map or DNS; SNI and certificate verification always use the real host name.
//! It never follows a redirect, bounds response sizes and time, and retries throttling, transient
//! statuses and resets with back-off, but never blindly repeats a non-idempotent request whose
//! response was lost, or that got a 500/502/503/504 (the service may have committed it before a
//! gateway answered): that is [`AzureError::ResponseLost`], so the caller can look before retrying.
//! 408 and 429 mean Azure did not process the request and are retried for every method.
//!
//! It must never offer a way to disable certificate verification, connect to a host outside the
//! allowlist, or log a header or body (tokens and secrets travel in them).

use super::endpoints::{Allowlist, Target};
use super::{AccessToken, AzureError};
use crate::config::AzureSection;
use bytes::{Buf, Bytes};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use zeroize::Zeroizing;

/// Statuses that are retried (azure-byok.md §5).
const RETRY_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// Whether a retryable status leaves it open if the server applied the request. Azure did not
/// process a request it answered 408 or 429; a 500, 502, 503 or 504 may come from a gateway after
/// the service committed it. A non-idempotent request (create, import, recover) that gets one of
/// these is never repeated blindly: it ends in [`AzureError::ResponseLost`].
pub fn status_may_have_committed(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

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

/// Counters the caller can read (e.g. for `byokctl status` or metrics export).
#[derive(Debug, Default)]
pub struct AzureMetrics {
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    response_lost: AtomicU64,
    refused: AtomicU64,
    connections: AtomicU64,
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

    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One outbound request. The body is kept in a zeroizing buffer (it may hold a client secret).
pub struct HttpRequest {
    pub method: Method,
    pub url: Uri,
    pub headers: HeaderMap,
    body: Option<Zeroizing<Vec<u8>>>,
    /// Whether repeating the request after a lost response is harmless.
    pub idempotent: bool,
    /// Whether the connection may go back to the pool afterwards (see [`HttpRequest::single_use`]).
    pooled: bool,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("body_len", &self.body.as_ref().map(|b| b.len()))
            .field("idempotent", &self.idempotent)
            .field("pooled", &self.pooled)
            .finish_non_exhaustive()
    }
}

impl HttpRequest {
    /// A request; `url` must be absolute. GET, HEAD, PUT-less reads and DELETE/PATCH callers
    /// decide idempotency explicitly.
    pub fn new(method: Method, url: &str, idempotent: bool) -> Result<Self, AzureError> {
        let url = url.parse::<Uri>().map_err(|_| AzureError::InvalidUrl {
            url: url.to_string(),
        })?;
        Ok(Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            idempotent,
            pooled: true,
        })
    }

    /// Sends the request on a connection of its own, closed once the response is read, never
    /// pooled. For a body that carries a secret (a token request's `client_secret` or client
    /// assertion): hyper, h2 and rustls keep copies of what they sent in their connection
    /// buffers, which a pooled connection would hold (unzeroed) until it idles out; a closed
    /// connection frees them, and the zeroing allocator wipes them.
    pub fn single_use(mut self) -> Self {
        self.pooled = false;
        self
    }

    /// A JSON body (sets `content-type`).
    pub fn json<T: serde::Serialize>(mut self, value: &T) -> Result<Self, AzureError> {
        let body = serde_json::to_vec(value).map_err(|e| AzureError::Encode {
            what: "request body",
            detail: e.to_string(),
        })?;
        self.body = Some(Zeroizing::new(body));
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(self)
    }

    /// A form-encoded body that is already in a zeroizing buffer (sets `content-type`).
    pub fn form(mut self, body: Zeroizing<Vec<u8>>) -> Self {
        self.body = Some(body);
        self.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        self
    }

    /// `Authorization: Bearer …`, marked sensitive (never indexed by HPACK, redacted in Debug).
    pub fn bearer(mut self, token: &AccessToken) -> Result<Self, AzureError> {
        let text = Zeroizing::new(format!("Bearer {}", token.expose_secret()));
        let mut value = HeaderValue::from_str(&text).map_err(|_| AzureError::Encode {
            what: "authorization header",
            detail: "the access token has characters not allowed in a header".into(),
        })?;
        value.set_sensitive(true);
        self.headers.insert(AUTHORIZATION, value);
        Ok(self)
    }
}

/// A complete response (body fully read, size-bounded).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

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
        let deadline = Instant::now() + self.opts.total_timeout;
        let mut waited = Duration::ZERO;
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            AzureMetrics::inc(&self.metrics.requests);
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(remaining, self.attempt(req, &target)).await {
                Ok(o) => o,
                Err(_) => Err(Failure::Transient {
                    reason: "total time-out".into(),
                    sent: true,
                }),
            };
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

    async fn attempt(&self, req: &HttpRequest, target: &Target) -> Result<HttpResponse, Failure> {
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(req.url.clone());
        for (name, value) in &req.headers {
            builder = builder.header(name, value.clone());
        }
        let body = ReqBody {
            data: req.body.as_ref().map(|b| ZBuf {
                bytes: b.clone(),
                pos: 0,
            }),
        };
        let request = builder.body(body).map_err(|e| {
            Failure::Fatal(AzureError::Encode {
                what: "request",
                detail: e.to_string(),
            })
        })?;
        let head_time = self.opts.connect_timeout + self.opts.read_timeout;
        let client = if req.pooled {
            &self.client
        } else {
            &self.single_use
        };
        let response = match tokio::time::timeout(head_time, client.request(request)).await {
            Err(_) => {
                return Err(Failure::Transient {
                    reason: "read time-out waiting for the response".into(),
                    sent: true,
                });
            }
            Ok(Err(e)) => return Err(classify(&e, target)),
            Ok(Ok(r)) => r,
        };
        let (parts, incoming) = response.into_parts();
        let limited = Limited::new(incoming, self.opts.max_response_bytes);
        let body = match tokio::time::timeout(self.opts.read_timeout, limited.collect()).await {
            Err(_) => {
                return Err(Failure::Transient {
                    reason: "read time-out in the response body".into(),
                    sent: true,
                });
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Failure::Fatal(AzureError::TooLarge {
                    host: target.host.clone(),
                    limit: self.opts.max_response_bytes,
                }));
            }
            Ok(Err(e)) => {
                return Err(Failure::Transient {
                    reason: format!("response body cut: {e}"),
                    sent: true,
                });
            }
            Ok(Ok(c)) => c.to_bytes(),
        };
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A non-idempotent request may have been applied but its outcome is unknown: counted, logged
    /// (without headers or body) and returned for the caller to look before repeating it.
    fn response_lost(
        &self,
        req: &HttpRequest,
        target: &Target,
        attempt: u32,
        reason: String,
    ) -> AzureError {
        AzureMetrics::inc(&self.metrics.response_lost);
        tracing::error!(host = %target.host, method = %req.method, attempt, reason = %reason,
            "outcome of a non-idempotent request is unknown; not retrying blindly");
        AzureError::ResponseLost {
            method: req.method.to_string(),
            host: target.host.clone(),
            path: req.url.path().to_string(),
            reason,
        }
    }

    /// A 3xx is never followed: the error names the Location host, which is checked (and so
    /// logged) against the allowlist for the operator's benefit.
    fn redirect(&self, from: &Target, resp: &HttpResponse) -> AzureError {
        let location = resp
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let location_host = location
            .parse::<Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase))
            .unwrap_or_else(|| from.host.clone());
        AzureMetrics::inc(&self.metrics.refused);
        tracing::error!(host = %from.host, location_host = %location_host, status = resp.status.as_u16(),
            reason = "redirects are never followed", "outbound redirect refused");
        AzureError::Redirect {
            status: resp.status.as_u16(),
            host: from.host.clone(),
            location_host,
        }
    }
}

/// Maps a client error: connect-phase failures were never sent.
fn classify(e: &hyper_util::client::legacy::Error, target: &Target) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(c) = s.downcast_ref::<ConnectError>() {
            return match c {
                ConnectError::NotAllowed { host, reason } => {
                    Failure::Fatal(AzureError::NotAllowed {
                        host: host.clone(),
                        reason,
                    })
                }
                ConnectError::Tls(detail) => Failure::Fatal(AzureError::Tls {
                    host: target.host.clone(),
                    detail: detail.clone(),
                }),
                other => Failure::Transient {
                    reason: other.to_string(),
                    sent: false,
                },
            };
        }
        source = s.source();
    }
    Failure::Transient {
        reason: format!("connection failed: {}", error_chain(e)),
        sent: !e.is_connect(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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

/// The rustls configuration: ring, TLS 1.2 and 1.3, system roots plus extra anchors, ALPN h2 then
/// http/1.1. Verification cannot be turned off.
fn tls_config(extra_ca: &[std::path::PathBuf]) -> Result<ClientConfig, AzureError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::warn!(error = %err, "some system trust anchors could not be loaded");
    }
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    add_extra_ca(&mut roots, extra_ca)?;
    if roots.is_empty() {
        return Err(AzureError::TrustAnchors {
            path: "(system store)".into(),
            detail: "no trust anchors: install ca-certificates or set azure.extra_ca".into(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| AzureError::TrustAnchors {
            path: "(tls)".into(),
            detail: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Checks that every `azure.extra_ca` file holds trust anchors byokd can use (for
/// `byokd check-config`; the client refuses the same files at start-up).
pub fn check_extra_ca(extra_ca: &[std::path::PathBuf]) -> Result<(), AzureError> {
    add_extra_ca(&mut rustls::RootCertStore::empty(), extra_ca)
}

fn add_extra_ca(
    roots: &mut rustls::RootCertStore,
    extra_ca: &[std::path::PathBuf],
) -> Result<(), AzureError> {
    for path in extra_ca {
        for cert in read_pem_certs(path)? {
            roots.add(cert).map_err(|e| AzureError::TrustAnchors {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        }
    }
    Ok(())
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, AzureError> {
    let err = |detail: String| AzureError::TrustAnchors {
        path: path.display().to_string(),
        detail,
    };
    let pem = crate::system::regular_file::read(path, crate::system::regular_file::TEXT_LIMIT)
        .map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// Why the connector could not open a connection.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{host} is not allowed: {reason}")]
    NotAllowed { host: String, reason: &'static str },
    #[error("DNS lookup of {host} failed: {source}")]
    Dns {
        host: String,
        source: std::io::Error,
    },
    #[error("no address for {host}")]
    NoAddress { host: String },
    #[error("TCP connect to {host} ({addr}) failed: {source}")]
    Tcp {
        host: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("TLS connection to {host} broke during the handshake: {source}")]
    TlsIo {
        host: String,
        source: std::io::Error,
    },
    #[error("connect time-out to {host}")]
    Timeout { host: String },
}

/// The custom connector: allowlist, then resolve map or DNS, then TCP, then TLS with the real name.
#[derive(Clone)]
struct Connector {
    allowlist: Arc<Allowlist>,
    resolve: Arc<BTreeMap<String, SocketAddr>>,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    metrics: Arc<AzureMetrics>,
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<AzureStream, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = AzureStream;
    type Error = ConnectError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // The allowlist comes first: a refused host is never looked up or connected.
        let checked = self.allowlist.check(&uri);
        let this = self.clone();
        Box::pin(async move {
            let target = match checked {
                Ok(t) => t,
                Err(AzureError::NotAllowed { host, reason }) => {
                    AzureMetrics::inc(&this.metrics.refused);
                    return Err(ConnectError::NotAllowed { host, reason });
                }
                Err(other) => {
                    return Err(ConnectError::NotAllowed {
                        host: other.to_string(),
                        reason: "refused",
                    });
                }
            };
            let host = target.host.clone();
            tokio::time::timeout(this.connect_timeout, this.connect(target))
                .await
                .map_err(|_| ConnectError::Timeout { host })?
        })
    }
}

impl Connector {
    async fn connect(self, target: Target) -> Result<AzureStream, ConnectError> {
        let Target { host, port } = target;
        let addrs: Vec<SocketAddr> = match self.resolve.get(&host) {
            Some(addr) => vec![*addr],
            None => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|source| ConnectError::Dns {
                    host: host.clone(),
                    source,
                })?
                .collect(),
        };
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(source) => {
                    last = Some(ConnectError::Tcp {
                        host: host.clone(),
                        addr,
                        source,
                    })
                }
            }
        }
        let tcp = match (tcp, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(e),
            (None, None) => return Err(ConnectError::NoAddress { host }),
        };
        let _ = tcp.set_nodelay(true);
        AzureMetrics::inc(&self.metrics.connections);
        let name = ServerName::try_from(host.clone())
            .map_err(|_| ConnectError::Tls(format!("{host} is not a valid TLS server name")))?;
        let stream = self.tls.connect(name, tcp).await.map_err(|source| {
            match source
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
            {
                Some(tls) => ConnectError::Tls(tls.to_string()),
                None => ConnectError::TlsIo {
                    host: host.clone(),
                    source,
                },
            }
        })?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        Ok(AzureStream {
            io: TokioIo::new(stream),
            h2,
        })
    }
}

/// A TLS connection as hyper wants it, reporting ALPN h2 to the pool.
struct AzureStream {
    io: TokioIo<TlsStream<TcpStream>>,
    h2: bool,
}

impl Connection for AzureStream {
    fn connected(&self) -> Connected {
        let c = Connected::new();
        if self.h2 { c.negotiated_h2() } else { c }
    }
}

impl hyper::rt::Read for AzureStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        hyper::rt::Read::poll_read(Pin::new(&mut self.io), cx, buf)
    }
}

impl hyper::rt::Write for AzureStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        hyper::rt::Write::poll_write(Pin::new(&mut self.io), cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        hyper::rt::Write::poll_flush(Pin::new(&mut self.io), cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        hyper::rt::Write::poll_shutdown(Pin::new(&mut self.io), cx)
    }
    fn is_write_vectored(&self) -> bool {
        hyper::rt::Write::is_write_vectored(&self.io)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        hyper::rt::Write::poll_write_vectored(Pin::new(&mut self.io), cx, bufs)
    }
}

/// A request body held in a zeroizing buffer. hyper and rustls copy it into their own write
/// buffers while sending; those are outside our control, ours is wiped when the body is dropped.
struct ReqBody {
    data: Option<ZBuf>,
}

struct ZBuf {
    bytes: Zeroizing<Vec<u8>>,
    pos: usize,
}

impl Buf for ZBuf {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
    fn chunk(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or(&[])
    }
    fn advance(&mut self, cnt: usize) {
        self.pos = self.pos.saturating_add(cnt).min(self.bytes.len());
    }
}

impl Body for ReqBody {
    type Data = ZBuf;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.remaining() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_hints_are_honoured_in_order() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        h.insert("x-ms-retry-after-ms", HeaderValue::from_static("20"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(20)));

        let mut d = HeaderMap::new();
        let later = httpdate::fmt_http_date(now + Duration::from_secs(3));
        d.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&d, now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn only_gateway_and_server_errors_leave_a_commit_open() {
        for s in [500, 502, 503, 504] {
            assert!(
                status_may_have_committed(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
        for s in [200, 400, 404, 408, 409, 429, 501] {
            assert!(
                !status_may_have_committed(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
        // Every status that may have committed is one idempotent requests retry.
        assert!(
            [500u16, 502, 503, 504]
                .iter()
                .all(|s| RETRY_STATUSES.contains(s))
        );
    }

    #[test]
    fn backoff_doubles_from_the_base_with_bounded_jitter() {
        let base = Duration::from_millis(1000);
        for (attempt, nominal) in [
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (4, 8000),
            (5, 16000),
            (9, 16000),
        ] {
            let d = backoff(base, attempt).as_millis() as u64;
            assert!(
                d >= nominal * 3 / 4 && d <= nominal * 5 / 4,
                "attempt {attempt}: {d}"
            );
        }
    }
}
