//! byokctl's HTTP client: one TLS 1.3 connection per request, with the client certificate,
//! over TCP or the unix socket; hyper's HTTP/1.1 client on top.
//!
//! It owns connecting and one request/answer exchange. It never logs a body.

use super::CtlError;
use super::settings::{Settings, Target};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

pub struct Client {
    connector: TlsConnector,
    target: Target,
    server_name: ServerName<'static>,
    timeout: Duration,
    host_header: String,
}

/// An answer: status and JSON body (`null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

fn usage(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> CtlError {
    CtlError::Usage(format!("{what} {}: {e}", path.display()))
}

impl Client {
    pub fn new(s: &Settings, timeout: Duration) -> Result<Client, CtlError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(&s.ca).map_err(|e| usage("CA", &s.ca, e))?;
        for ca in cas {
            roots
                .add(ca.map_err(|e| usage("CA", &s.ca, e))?)
                .map_err(|e| usage("CA", &s.ca, e))?;
        }
        let chain = CertificateDer::pem_file_iter(&s.cert)
            .map_err(|e| usage("certificate", &s.cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| usage("certificate", &s.cert, e))?;
        let key = PrivateKeyDer::from_pem_file(&s.key).map_err(|e| usage("key", &s.key, e))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| CtlError::Other(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| CtlError::Usage(format!("client certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = ServerName::try_from(s.server_name.clone())
            .map_err(|e| CtlError::Usage(format!("server name {:?}: {e}", s.server_name)))?;
        let host_header = match &s.target {
            Target::Tcp { host, port } => format!("{host}:{port}"),
            Target::Unix(_) => s.server_name.clone(),
        };
        Ok(Client {
            connector: TlsConnector::from(Arc::new(config)),
            target: s.target.clone(),
            server_name,
            timeout,
            host_header,
        })
    }

    /// Sends one request and reads the answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, CtlError> {
        let (status, bytes, _) = self.call_raw(method, path, body, None).await?;
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                CtlError::Other(format!("the server's answer ({status}) is not JSON: {e}"))
            })?
        };
        Ok(Answer { status, body })
    }

    /// A GET whose successful answer is streamed into `out` (a download); an error answer
    /// comes back as JSON. Returns the bytes written.
    pub async fn download(
        &self,
        path: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<Result<u64, Answer>, CtlError> {
        self.download_as(Method::GET, path, out).await
    }

    /// As [`Client::download`], with another method (`POST /v1/backup`).
    pub async fn download_as(
        &self,
        method: Method,
        path: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<Result<u64, Answer>, CtlError> {
        let (status, bytes, n) = self.call_raw(method, path, None, Some(out)).await?;
        if status.is_success() {
            return Ok(Ok(n));
        }
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(Err(Answer { status, body }))
    }

    /// One exchange: status, body and its length. With `sink`, a successful answer's body goes
    /// there as it arrives instead (the returned body is then empty; the length counts it).
    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        sink: Option<&mut (dyn std::io::Write + Send)>,
    ) -> Result<(StatusCode, Vec<u8>, u64), CtlError> {
        let work = async {
            match &self.target {
                Target::Tcp { host, port } => {
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                        .await
                        .map_err(|e| {
                            CtlError::Connect(format!("cannot connect to {host}:{port}: {e}"))
                        })?;
                    let _ = tcp.set_nodelay(true);
                    self.exchange(tcp, method, path, body, sink).await
                }
                Target::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p).await.map_err(|e| {
                        CtlError::Connect(format!("cannot connect to {}: {e}", p.display()))
                    })?;
                    self.exchange(s, method, path, body, sink).await
                }
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                CtlError::Connect(format!(
                    "no answer within {} s (--timeout)",
                    self.timeout.as_secs()
                ))
            })?
    }

    async fn exchange<S>(
        &self,
        stream: S,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        sink: Option<&mut (dyn std::io::Write + Send)>,
    ) -> Result<(StatusCode, Vec<u8>, u64), CtlError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let tls = self
            .connector
            .connect(self.server_name.clone(), stream)
            .await
            .map_err(|e| classify(&e, "TLS handshake"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| classify(&e, "HTTP"))?;
        let driver = tokio::spawn(conn);
        // The daemon refuses a state-changing request without a JSON type, body or not
        // (its defence against cross-site requests).
        let json = body.is_some() || crate::control::browser::changes_state(&method);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host_header);
        if json {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
            .map_err(|e| CtlError::Other(format!("building the request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| refused_after_handshake(&e).unwrap_or_else(|| classify(&e, "request")))?;
        let status = resp.status();
        if let Some(out) = sink
            && status.is_success()
        {
            let mut body = resp.into_body();
            let mut n = 0usize;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    CtlError::Connect(format!(
                        "the download broke off before its end (the server aborted it or the connection failed: {e}); the daemon's log says why"
                    ))
                })?;
                if let Ok(data) = frame.into_data() {
                    out.write_all(&data)
                        .map_err(|e| CtlError::Other(format!("writing the download: {e}")))?;
                    n += data.len();
                }
            }
            driver.abort();
            return Ok((status, Vec::new(), n as u64));
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| classify(&e, "reading the answer"))?
            .to_bytes();
        driver.abort();
        let n = bytes.len() as u64;
        Ok((status, bytes.to_vec(), n))
    }
}

/// A TLS refusal (bad certificate, unknown CA, alert) is an authentication failure; anything
/// else is a connection failure.
fn classify(e: &(dyn std::error::Error + 'static), what: &str) -> CtlError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut tls = None;
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            tls = Some(r.to_string());
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            tls = Some(r.to_string());
        }
        cur = err.source();
    }
    match tls {
        Some(t) => CtlError::Auth(format!(
            "{what}: TLS refused: {t}. Check --cert/--key (issued by the console CA) and --ca"
        )),
        None => CtlError::Connect(format!("{what}: {e}")),
    }
}

/// In TLS 1.3 the client finishes its handshake before the server has checked the client
/// certificate, so a refused certificate shows up as the server's alert, or as the connection
/// closing before any answer. Nothing else closes a fresh connection that way (an over-limit
/// connection gets a 429 answer), so that is reported as an authentication failure.
fn refused_after_handshake(e: &hyper::Error) -> Option<CtlError> {
    if let CtlError::Auth(a) = classify(e, "request") {
        return Some(CtlError::Auth(a));
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut closed = e.is_incomplete_message() || e.is_closed();
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            closed |= matches!(
                io.kind(),
                BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
            );
        }
        cur = err.source();
    }
    closed.then(|| {
        CtlError::Auth(format!(
            "the server closed the connection right after the TLS handshake ({e}): it most likely refused the client certificate. Check that --cert was issued by the console CA"
        ))
    })
}
