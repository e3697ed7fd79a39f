//! Accepting connections: the TCP and unix socket loops, the unix socket's file, and the
//! connection limits (all connections, per peer address) with their 429 overflow answers.

use super::Shared;
use super::connection::{refuse, serve};
use crate::control::errors::{ApiError, ControlError};
use crate::control::fairness::{Peer, Permit};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

pub(super) fn bind_unix(path: &std::path::Path) -> Result<UnixListener, ControlError> {
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

pub(super) async fn accept_tcp(listener: TcpListener, shared: Arc<Shared>) {
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

pub(super) async fn accept_unix(listener: UnixListener, shared: Arc<Shared>) {
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
pub(super) fn admit<S>(stream: S, addr: SocketAddr, shared: &Arc<Shared>)
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
pub(super) fn admit_unix<S>(stream: S, shared: &Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    take_slot(stream, Peer::Unix, None, shared);
}

pub(super) fn take_slot<S>(stream: S, peer: Peer, mine: Option<Permit<Peer>>, shared: &Arc<Shared>)
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
pub(super) fn overflow<S>(stream: S, peer: Peer, answer: ApiError, shared: &Arc<Shared>)
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
