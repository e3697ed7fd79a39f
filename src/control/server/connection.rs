//! One connection: the TLS handshake under its deadline, the HTTP/1 settings, the identity of
//! the client certificate, and the read and idle deadlines until the connection closes.

use super::request::handle;
use super::response::error_response;
use super::{Shared, read_timeout};
use crate::config::Limits;
use crate::control::errors::ApiError;
use crate::control::fairness::Peer;
use crate::control::limits::{Activity, Tracked};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

fn handshake_timeout(l: &Limits) -> Duration {
    Duration::from_millis(l.handshake_timeout_ms.max(1))
}

/// The TLS handshake within `limits.handshake_timeout_ms`; a failure is counted against the
/// peer (see `failures`), never written out one line per connection.
pub(super) async fn handshake<S>(
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
pub(super) async fn serve<S>(stream: S, peer: Peer, shared: Arc<Shared>)
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
pub(super) async fn refuse<S>(stream: S, peer: Peer, answer: ApiError, shared: Arc<Shared>)
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
