//! The control server: accept loops on TCP and the optional unix socket, the connection limits
//! (all connections, and per peer address), the TLS handshake under its deadline, per-connection
//! deadlines, and one request's path from bytes to handler: an unmapped certificate refused
//! first, the cross-site checks (`browser`), the per-identity long-poll cap, the body under its
//! limits, dispatch, the headers every answer carries, and refusals counted (`failures`) rather
//! than written one by one.
//!
//! It owns sockets and connections. It never authorizes (handlers take an `Authorized` proof)
//!
//! Files: `accept` (the accept loops, the unix socket and the connection limits),
//! `connection` (the TLS handshake, the HTTP/1 builder and one connection's deadlines),
//! `request` (one request from bytes to handler, and its log line), `response` (answer bodies:
//! JSON, error and streamed download); this file holds start-up, shutdown and the state the
//! connections share.

mod accept;
mod connection;
mod request;
mod response;

use super::browser::Origins;
use super::errors::ControlError;
use super::failures::{Browser, Denied, Failures, Throttle};
use super::fairness::{Counts, Peer};
use super::handlers::Ctx;
use super::identity::IdentityMap;
use crate::config::Limits;
use crate::service::Service;
use accept::{accept_tcp, accept_unix, bind_unix};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Connections over the limit that still get a clean 429 (beyond that they are closed at once).
const OVERFLOW_ANSWERS: usize = 16;

/// How often a repeated WARN about refused connections may reach stderr.
const REFUSAL_LINE_EVERY: Duration = Duration::from_secs(10);

fn read_timeout(l: &Limits) -> Duration {
    Duration::from_millis(l.read_timeout_ms.max(1))
}

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
