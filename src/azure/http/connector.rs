//! The connector: the allowlist before any lookup, then the resolve map or DNS, TCP and TLS
//! with the real host name, under the connect time-out; and the stream it hands to hyper.

use super::AzureMetrics;
use crate::azure::AzureError;
use crate::azure::endpoints::{Allowlist, Destination};
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Why the connector could not open a connection.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("{host} is not allowed: {reason}")]
    NotAllowed { host: String, reason: &'static str },
    #[error("DNS lookup of {host} failed: {source}")]
    Dns {
        host: String,
        source: std::io::Error,
    },
    /// The name does not exist (NXDOMAIN, or no address record), or it is not in a configured
    /// `[azure.resolve]` map: repeating the lookup cannot help.
    #[error("{host}: name does not resolve")]
    NoSuchName { host: String },
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
pub(super) struct Connector {
    pub(super) allowlist: Arc<Allowlist>,
    pub(super) resolve: Arc<BTreeMap<String, SocketAddr>>,
    pub(super) tls: tokio_rustls::TlsConnector,
    pub(super) connect_timeout: Duration,
    pub(super) metrics: Arc<AzureMetrics>,
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
    async fn connect(self, target: Destination) -> Result<AzureStream, ConnectError> {
        let Destination { host, port } = target;
        let addrs: Vec<SocketAddr> = match self.resolve.get(&host) {
            Some(addr) => vec![*addr],
            // A configured map is the whole of name resolution: a name it lacks does not exist.
            None if !self.resolve.is_empty() => {
                return Err(ConnectError::NoSuchName { host });
            }
            None => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|source| dns_error(&host, source))?
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

/// Sorts a failed lookup: a name that does not exist is permanent, anything else (no server
/// reachable, SERVFAIL, a time-out) may recover. The standard library reports getaddrinfo's
/// code only as text, so this reads glibc's and musl's texts for EAI_NONAME and EAI_NODATA (the
/// daemon runs in the C locale under its unit).
pub(super) fn dns_error(host: &str, source: std::io::Error) -> ConnectError {
    const NO_SUCH_NAME: [&str; 4] = [
        "Name or service not known",
        "No address associated with hostname",
        "Name does not resolve",
        "Name has no usable address",
    ];
    let text = source.to_string();
    if NO_SUCH_NAME.iter().any(|t| text.contains(t)) {
        ConnectError::NoSuchName {
            host: host.to_string(),
        }
    } else {
        ConnectError::Dns {
            host: host.to_string(),
            source,
        }
    }
}

/// A TLS connection as hyper wants it, reporting ALPN h2 to the pool.
pub(super) struct AzureStream {
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
