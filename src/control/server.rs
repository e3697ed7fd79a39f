//! The control server: accept loops on TCP and the optional unix socket, the connection limits
//! (all connections, and per peer address), the TLS handshake under its deadline, per-connection
//! deadlines, and one request's path from bytes to handler: an unmapped certificate refused
//! first, the cross-site checks (`browser`), the per-identity long-poll cap, the body under its
//! limits, dispatch, the headers every answer carries, and refusals counted (`failures`) rather
//! than written one by one.
//!
//! It owns sockets and connections. It never authorizes (handlers take an `Authorized` proof)
//! and never logs a body.

use super::browser::{self, Origins};
use super::errors::{ApiError, ControlError};
use super::failures::{Browser, Denied, Failures, Throttle};
use super::fairness::{Counts, Peer, Permit};
use super::handlers::{self, Chunk, Ctx, Input, Reply};
use super::identity::{Caller, IdentityMap};
use super::limits::{Activity, Tracked};
use super::routes::{self, Matched, Op};
use crate::config::Limits;
use crate::service::Service;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Every answer's body: JSON in one piece, or a streamed download.
type Body = BoxBody<Bytes, DownloadAborted>;

/// A streamed download that failed after its answer began: hyper then ends the connection
/// without the chunked body's last chunk, so the client sees an incomplete answer, never a
/// shorter complete one.
#[derive(Debug, thiserror::Error)]
#[error("the download was aborted: {0}")]
pub struct DownloadAborted(String);

/// A streamed download's body: chunks from a channel until [`Chunk::End`]. A producer that
/// aborts, or stops (its sender dropped) before `End`, aborts the body.
struct ChannelBody {
    chunks: tokio::sync::mpsc::Receiver<Chunk>,
    ended: bool,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = DownloadAborted;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if self.ended {
            return Poll::Ready(None);
        }
        let next = match self.chunks.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(c) => c,
        };
        Poll::Ready(match next {
            Some(Chunk::Data(b)) => Some(Ok(hyper::body::Frame::data(b))),
            Some(Chunk::End) => {
                self.ended = true;
                None
            }
            Some(Chunk::Abort(why)) => {
                self.ended = true;
                Some(Err(DownloadAborted(why)))
            }
            None => {
                self.ended = true;
                Some(Err(DownloadAborted(
                    "the producer stopped before the end".into(),
                )))
            }
        })
    }
}

fn download_response(d: super::handlers::Download) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed(ChannelBody {
        chunks: d.chunks,
        ended: false,
    }));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(d.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", d.filename)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// Connections over the limit that still get a clean 429 (beyond that they are closed at once).
const OVERFLOW_ANSWERS: usize = 16;

/// How often a repeated WARN about refused connections may reach stderr.
const REFUSAL_LINE_EVERY: Duration = Duration::from_secs(10);

struct Shared {
    ctx: Ctx,
    acceptor: TlsAcceptor,
    identities: IdentityMap,
    limits: Limits,
    connections: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
    /// Connections per peer address (TCP only).
    per_peer: Counts<Peer>,
    /// Waiting requests (long-polls) per identity.
    long_polls: Counts<String>,
    /// Refusals counted per peer or identity, recorded in bounded numbers.
    counted: Counted,
    refusals: Throttle,
    origins: Origins,
    shutdown: watch::Receiver<bool>,
}

/// A running control server. Call [`ControlServer::shutdown`] to stop it gracefully.
pub struct ControlServer {
    pub local_addr: SocketAddr,
    pub unix_socket: Option<PathBuf>,
    stop: watch::Sender<bool>,
    accept_loops: Vec<JoinHandle<()>>,
    connections: Arc<Semaphore>,
    max_connections: usize,
    counted: Counted,
}

/// The aggregators of refusals: failed authentication per peer, cross-origin refusals per
/// identity whose browser was used, authorization denials per identity.
#[derive(Clone)]
struct Counted {
    failures: Arc<Failures>,
    cross_origin: Arc<Failures<Browser>>,
    denials: Arc<Failures<Denied>>,
}

impl Counted {
    fn new(window: Duration, clock: &crate::clock::SharedClock) -> Self {
        Self {
            failures: Arc::new(Failures::new(window, clock.clone())),
            cross_origin: Arc::new(Failures::new(window, clock.clone())),
            denials: Arc::new(Failures::new(window, clock.clone())),
        }
    }

    /// Records the summaries of the windows that have ended (all of them with `all`).
    fn flush(&self, all: bool) {
        self.failures.flush(all);
        self.cross_origin.flush(all);
        self.denials.flush(all);
    }
}

/// Records the summaries of failure windows as they end.
async fn report_failures(counted: Counted) {
    let window = counted.failures.window();
    let tick = (window / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        counted.flush(false);
    }
}

/// Starts the control server if `[control]` is configured; `None` when it is not.
pub async fn start(
    service: Service,
    jobs: Option<crate::jobs::Jobs>,
    dual: crate::dual_control::DualControl,
) -> Result<Option<ControlServer>, ControlError> {
    let Some(control) = service.config().control.clone() else {
        tracing::warn!("no [control] section: the control socket is disabled");
        return Ok(None);
    };
    let limits = service.config().limits.clone();
    let tls = super::tls::server_config(&control)?;
    let leaf = super::tls::server_leaf(&control)?;
    let identities = IdentityMap::new(&control.identities)?;
    let (stop, shutdown) = watch::channel(false);
    let max_connections = limits.max_connections.max(1);
    let tcp = TcpListener::bind(control.listen)
        .await
        .map_err(|source| ControlError::Listen {
            addr: control.listen.to_string(),
            source,
        })?;
    let local_addr = tcp.local_addr().map_err(|source| ControlError::Listen {
        addr: control.listen.to_string(),
        source,
    })?;
    let counted = Counted::new(
        Duration::from_secs(limits.auth_failure_window_secs.max(1)),
        service.clock(),
    );
    let shared = Arc::new(Shared {
        ctx: Ctx {
            service,
            dual,
            jobs,
        },
        acceptor: TlsAcceptor::from(tls),
        identities,
        connections: Arc::new(Semaphore::new(max_connections)),
        overflow: Arc::new(Semaphore::new(OVERFLOW_ANSWERS)),
        per_peer: Counts::new(limits.connections_per_peer()),
        long_polls: Counts::new(limits.long_polls_per_identity()),
        counted: counted.clone(),
        refusals: Throttle::new(REFUSAL_LINE_EVERY),
        origins: Origins::of_certificate(leaf.as_ref(), local_addr.port()),
        limits,
        shutdown,
    });
    let mut accept_loops = vec![
        tokio::spawn(accept_tcp(tcp, shared.clone())),
        tokio::spawn(report_failures(counted.clone())),
    ];
    if let Some(path) = &control.unix_socket {
        let unix = bind_unix(path)?;
        accept_loops.push(tokio::spawn(accept_unix(unix, shared.clone())));
    }
    tracing::info!(
        listen = %local_addr,
        unix_socket = ?control.unix_socket,
        identities = control.identities.len(),
        max_connections,
        max_connections_per_peer = shared.per_peer.cap(),
        origins = ?shared.origins.list(),
        "control socket listening (TLS 1.3, client certificates required)"
    );
    Ok(Some(ControlServer {
        local_addr,
        unix_socket: control.unix_socket.clone(),
        stop,
        accept_loops,
        connections: shared.connections.clone(),
        max_connections,
        counted,
    }))
}

impl ControlServer {
    /// Stops accepting, lets open connections finish their request, and waits up to `grace`.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        for l in self.accept_loops {
            l.abort();
        }
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, self.connections.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "control connections still open after the grace time; closing them"
            );
        }
        if let Some(path) = self.unix_socket {
            let _ = std::fs::remove_file(path);
        }
        self.counted.flush(true);
        tracing::info!("control socket stopped");
    }
}

fn bind_unix(path: &std::path::Path) -> Result<UnixListener, ControlError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let err = |source| ControlError::Listen {
        addr: path.display().to_string(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

async fn accept_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                admit(stream, peer, &shared);
            }
            Err(e) => {
                tracing::warn!(error = %e, "control accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accept_unix(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => admit_unix(stream, &shared),
            Err(e) => {
                tracing::warn!(error = %e, "control accept failed (unix socket)");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Takes the peer's slot and a connection slot, or answers 429 (while overflow answers last),
/// or closes at once.
fn admit<S>(stream: S, addr: SocketAddr, shared: &Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = Peer::of(&addr);
    let Some(mine) = shared.per_peer.try_take(peer) else {
        let cap = shared.per_peer.cap();
        if let Some(suppressed) = shared.refusals.allow() {
            tracing::warn!(peer = %peer, limit = cap, suppressed,
                "control connection refused: {peer} already holds {cap} connections (limits.max_connections_per_peer); {suppressed} similar refusal line(s) suppressed before this one");
        }
        overflow(
            stream,
            peer,
            ApiError::too_many_connections_from_peer(cap),
            shared,
        );
        return;
    };
    take_slot(stream, peer, Some(mine), shared);
}

/// The unix socket (mode 0600, byokd's own user only) has no per-peer cap.
fn admit_unix<S>(stream: S, shared: &Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    take_slot(stream, Peer::Unix, None, shared);
}

fn take_slot<S>(stream: S, peer: Peer, mine: Option<Permit<Peer>>, shared: &Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Ok(permit) = shared.connections.clone().try_acquire_owned() {
        let shared = shared.clone();
        tokio::spawn(async move {
            serve(stream, peer, shared).await;
            drop(permit);
            drop(mine);
        });
        return;
    }
    let limit = shared.limits.max_connections;
    if let Some(suppressed) = shared.refusals.allow() {
        tracing::warn!(peer = %peer, limit, suppressed,
            "control connection refused: too many connections (limits.max_connections); {suppressed} similar refusal line(s) suppressed before this one");
    }
    overflow(stream, peer, ApiError::too_many_connections(limit), shared);
}

/// Answers 429 on an over-limit connection while overflow answers last, else closes it.
fn overflow<S>(stream: S, peer: Peer, answer: ApiError, shared: &Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Ok(permit) = shared.overflow.clone().try_acquire_owned() {
        let shared = shared.clone();
        tokio::spawn(async move {
            refuse(stream, peer, answer, shared).await;
            drop(permit);
        });
    }
}

fn read_timeout(l: &Limits) -> Duration {
    Duration::from_millis(l.read_timeout_ms.max(1))
}

fn handshake_timeout(l: &Limits) -> Duration {
    Duration::from_millis(l.handshake_timeout_ms.max(1))
}

/// The TLS handshake within `limits.handshake_timeout_ms`; a failure is counted against the
/// peer (see `failures`), never written out one line per connection.
async fn handshake<S>(
    stream: S,
    shared: &Shared,
    peer: Peer,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = handshake_timeout(&shared.limits);
    match tokio::time::timeout(deadline, shared.acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            shared
                .counted
                .failures
                .failed(peer, &format!("TLS handshake refused ({e})"));
            None
        }
        Err(_) => {
            shared.counted.failures.failed(
                peer,
                &format!(
                    "no TLS handshake within {} ms (limits.handshake_timeout_ms)",
                    deadline.as_millis()
                ),
            );
            None
        }
    }
}

fn http1(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(None::<Duration>)
        .max_header_size(limits.max_header_bytes.max(1024))
        .max_buf_size(limits.max_header_bytes.max(8192).saturating_add(8192));
    b
}

/// Serves one connection: handshake, identity, then requests until close or a deadline.
async fn serve<S>(stream: S, peer: Peer, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(tls) = handshake(stream, &shared, peer).await else {
        return;
    };
    let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        return; // The verifier requires a certificate; this cannot happen.
    };
    let caller = Arc::new(shared.identities.identify(cert.as_ref()));
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(tls, activity.clone()));
    let svc = {
        let (shared, caller, activity) = (shared.clone(), caller.clone(), activity.clone());
        hyper::service::service_fn(move |req| {
            let (shared, caller, activity) = (shared.clone(), caller.clone(), activity.clone());
            async move {
                Ok::<_, std::convert::Infallible>(
                    handle(req, &shared, peer, &caller, &activity).await,
                )
            }
        })
    };
    let conn = http1(&shared.limits).serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    let (read, idle) = (
        read_timeout(&shared.limits),
        Duration::from_millis(shared.limits.idle_timeout_ms.max(1)),
    );
    let tick = (read.min(idle) / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %peer, identity = %caller.log_name(), error = %e, "control connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(tick) => {
                if let Some(why) = activity.expired(read, idle) {
                    tracing::info!(peer = %peer, identity = %caller.log_name(), reason = why, "control connection cut off");
                    return;
                }
            }
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(read, conn.as_mut()).await;
                return;
            }
        }
    }
}

/// Answers one request on an over-limit connection with 429, then closes.
async fn refuse<S>(stream: S, peer: Peer, answer: ApiError, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let work = async {
        let tls = handshake(stream, &shared, peer).await?;
        let svc = hyper::service::service_fn(move |_req| {
            let answer = answer.clone();
            async move { Ok::<_, std::convert::Infallible>(error_response(&answer, true)) }
        });
        let mut b = http1(&shared.limits);
        b.keep_alive(false);
        b.serve_connection(TokioIo::new(tls), svc).await.ok()
    };
    let time = handshake_timeout(&shared.limits).saturating_add(read_timeout(&shared.limits));
    let _ = tokio::time::timeout(time, work).await;
}

fn json_response(status: StatusCode, body: &serde_json::Value, close: bool) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(
        Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    browser::secure_headers(h);
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// An error answer's code, kept on the response for the request log.
#[derive(Debug, Clone, Copy)]
struct ErrorCode(&'static str);

fn error_response(e: &ApiError, close: bool) -> Response<Body> {
    let mut resp = json_response(e.status, &e.body(), close);
    resp.extensions_mut().insert(ErrorCode(e.code));
    resp
}

/// Whether a request waits for something to happen (a long-poll), as its handler will read
/// the query (see [`handlers::wait_secs`]).
fn is_long_poll(op: Op, query: &str) -> bool {
    handlers::wait_secs(op, query) > 0
}

/// The answer to one request, and the route it matched.
async fn answer(
    req: Request<Incoming>,
    shared: &Shared,
    peer: Peer,
    caller: &Caller,
    began: tokio::time::Instant,
) -> (Option<&'static str>, Response<Body>) {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    // A certificate of the console CA that maps to no identity may do nothing: refused before
    // anything else, and counted against its peer address like a failed handshake, so such a
    // certificate can neither flood the log nor take the share of identified callers.
    if caller.identity.is_none() {
        let e = super::authz::unmapped(caller);
        shared.counted.failures.failed(
            peer,
            &format!("{} refused: {}", target(&method, &path), e.message),
        );
        return (None, error_response(&e, false));
    }
    if let Err(e) = browser::check_origin(&method, req.headers(), &shared.origins) {
        return (None, error_response(&e, true));
    }
    match routes::matching(&method, &path) {
        Matched::NotFound => {
            let e = ApiError::not_found(format!(
                "no route {method} {path}; the API is under /v1 (see api/openapi.json)"
            ));
            (None, error_response(&e, false))
        }
        Matched::WrongMethod(allowed) => {
            let list = allowed
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let e = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{path} allows only {list} (see api/openapi.json or `byokctl --help`)"),
            );
            let mut resp = error_response(&e, false);
            if let Ok(v) = HeaderValue::from_str(&list) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            (None, resp)
        }
        Matched::Found(route, params) => {
            if let Err(e) = browser::check_content_type(&method, req.headers()) {
                return (Some(route.path), error_response(&e, true));
            }
            let _waiting = if is_long_poll(route.op, &query) {
                match shared.long_polls.try_take(caller.log_name()) {
                    Some(p) => Some(p),
                    None => {
                        let e = ApiError::too_many_long_polls(
                            &caller.log_name(),
                            shared.long_polls.cap(),
                        );
                        return (Some(route.path), error_response(&e, true));
                    }
                }
            } else {
                None
            };
            let deadline = began + read_timeout(&shared.limits);
            let close = route.op.carries_secret();
            let resp = match read_body(req, &shared.limits, deadline).await {
                Err(e) => error_response(&e, true),
                Ok(body) => {
                    let input = Input {
                        params,
                        query,
                        body,
                    };
                    match handlers::dispatch(&shared.ctx, caller, route.op, input).await {
                        Ok(Reply {
                            download: Some(d), ..
                        }) => download_response(d),
                        Ok(reply) => json_response(reply.status, &reply.body, close),
                        Err(e) => error_response(&e, close),
                    }
                }
            };
            (Some(route.path), resp)
        }
    }
}

/// What a request aims at, for records of refusals made before routing: the method and the
/// route's template, never the caller's own text (a path can be as long as the header limit).
fn target(method: &http::Method, path: &str) -> String {
    match routes::matching(method, path) {
        Matched::Found(r, _) => format!("{method} {}", r.path),
        _ => "a request to no route".to_owned(),
    }
}

/// One request: checks, route, body under limits, dispatch, answer, log.
async fn handle(
    req: Request<Incoming>,
    shared: &Shared,
    peer: Peer,
    caller: &Caller,
    activity: &Activity,
) -> Response<Body> {
    let began = activity.handling();
    let started = std::time::Instant::now();
    let method = req.method().clone();
    // What a refused cross-origin request aimed at (the refusal comes before routing).
    let aimed = target(&method, req.uri().path());
    let (route, mut resp) = answer(req, shared, peer, caller, began).await;
    browser::secure_headers(resp.headers_mut());
    let status = resp.status();
    let code = resp.extensions().get::<ErrorCode>().map_or("", |c| c.0);
    let fields = (caller.log_name(), caller.role_name(), route.unwrap_or("-"));
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if caller.identity.is_none() {
        // Counted and recorded by `failures` (see `answer`).
        tracing::debug!(peer = %peer, identity = %fields.0, method = %method, status = status.as_u16(), "control request of an unmapped certificate");
    } else if matches!(code, "cross_origin_refused" | "cors_refused") {
        // Counted per identity: a page elsewhere sets the pace, so it must not set the log's.
        shared.counted.cross_origin.failed(
            Browser(fields.0.clone()),
            &format!("{aimed} (role {}) from another site", fields.1),
        );
    } else if status == StatusCode::FORBIDDEN {
        // Counted per identity: asking again and again must not push older records out.
        shared.counted.denials.failed(
            Denied(fields.0.clone()),
            &format!("{method} {} (role {})", fields.2, fields.1),
        );
    } else if status.is_server_error() {
        tracing::warn!(identity = %fields.0, role = fields.1, route = fields.2, method = %method, status = status.as_u16(), elapsed_ms, "control request");
    } else {
        tracing::info!(identity = %fields.0, role = fields.1, route = fields.2, method = %method, status = status.as_u16(), elapsed_ms, "control request");
    }
    activity.idle();
    resp
}

/// How much of an over-limit body is read and discarded before answering 413, so the client
/// sees the answer instead of a reset.
const DRAIN_CAP: u64 = 1024 * 1024;

/// Reads the body within the size limit and the request's read deadline.
async fn read_body(
    req: Request<Incoming>,
    limits: &Limits,
    deadline: tokio::time::Instant,
) -> Result<zeroize::Zeroizing<Vec<u8>>, ApiError> {
    let max = limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > (max as u64).saturating_add(DRAIN_CAP)) {
        return Err(ApiError::payload_too_large(max));
    }
    let mut body = req.into_body();
    let mut out = zeroize::Zeroizing::new(Vec::new());
    let mut seen: u64 = 0;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                ApiError::bad_request("bad_body", "the request body could not be read")
            })?;
            if let Ok(data) = frame.into_data() {
                seen = seen.saturating_add(data.len() as u64);
                if seen > max as u64 {
                    out.clear();
                    if seen > (max as u64).saturating_add(DRAIN_CAP) {
                        break;
                    }
                } else {
                    out.extend_from_slice(&data);
                }
            }
        }
        Ok::<(), ApiError>(())
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(())) if seen > max as u64 => Err(ApiError::payload_too_large(max)),
        Ok(r) => r.map(|()| out),
        Err(_) => Err(ApiError::request_timeout()),
    }
}
