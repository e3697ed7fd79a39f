//! Syslog forwarding: RFC 5424 messages to configured collectors over UDP, TCP (octet
//! counting, RFC 6587) or TLS (RFC 5425, rustls with a configured CA).
//!
//! Each collector has a bounded queue and its own task: a collector that is down never blocks
//! an append (a full queue drops the record and counts it), the task reconnects with back-off,
//! and when delivery resumes after drops a record says how many were lost. The 5424 header and
//! structured data come from the `syslog` crate; the framing is written here. The structured
//! data under SD-ID `byokd@32473` carries the record's fields and chain hashes.

use super::record::{Level, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use syslog::{Facility, Formatter5424, LogFormat, Severity};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// The SD-ID of byokd's structured data (private enterprise number style).
pub const SD_ID: &str = "byokd@32473";

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// One collector.
#[derive(Debug, Clone)]
pub struct Target {
    pub transport: Transport,
    /// `host:port`.
    pub address: String,
    /// CA certificate(s) (PEM) the collector's TLS certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// The name the collector's certificate must carry (default: the address's host).
    pub server_name: Option<String>,
    /// Records held while the collector is unreachable.
    pub queue: usize,
}

impl Target {
    pub fn from_config(c: &crate::config::SyslogTarget) -> Target {
        Target {
            transport: match c.transport {
                crate::config::SyslogTransport::Udp => Transport::Udp,
                crate::config::SyslogTransport::Tcp => Transport::Tcp,
                crate::config::SyslogTransport::Tls => Transport::Tls,
            },
            address: c.address.clone(),
            ca_file: c.ca_file.clone(),
            server_name: c.server_name.clone(),
            queue: c.queue.max(1),
        }
    }

    fn host(&self) -> &str {
        self.address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
    }
}

/// A collector's counters, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub transport: Transport,
    pub address: String,
    pub connected: bool,
    pub sent: u64,
    pub dropped: u64,
    pub queued: usize,
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    connected: AtomicBool,
    sent: AtomicU64,
    dropped: AtomicU64,
    /// Drops not yet reported by a record.
    unreported: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

/// A running forwarder (its task lives as long as the runtime).
pub struct Forwarder {
    target: Target,
    tx: mpsc::Sender<Vec<u8>>,
    counters: Arc<Counters>,
    log: Arc<OnceLock<Weak<super::Inner>>>,
    formatter: Formatter5424,
}

/// The 5424 severity of a level.
fn severity(l: Level) -> Severity {
    match l {
        Level::Info => Severity::LOG_INFO,
        Level::Warn => Severity::LOG_WARNING,
        Level::Error => Severity::LOG_ERR,
    }
}

/// The structured data of a record: every field, under [`SD_ID`].
pub fn structured_data(r: &Record) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut p = BTreeMap::new();
    p.insert("seq".to_owned(), r.seq.to_string());
    p.insert("ts".to_owned(), r.ts.clone());
    p.insert("service".to_owned(), r.service.as_str().to_owned());
    p.insert("level".to_owned(), r.level.as_str().to_owned());
    p.insert("event".to_owned(), r.event.clone());
    let opt = [
        ("identity", &r.identity),
        ("group", &r.group),
        ("key", &r.key),
        ("vault", &r.vault),
        ("kid", &r.kid),
        ("version", &r.version),
        ("credential", &r.credential),
        ("approval", &r.approval),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            p.insert(k.to_owned(), v.clone());
        }
    }
    if let Some(j) = r.job {
        p.insert("job".to_owned(), j.to_string());
    }
    p.insert("prev".to_owned(), r.prev.clone());
    p.insert("hash".to_owned(), r.hash.clone());
    BTreeMap::from([(SD_ID.to_owned(), p)])
}

/// One record as an RFC 5424 message (no framing). MSGID is the record's sequence number.
pub fn format_5424(f: &Formatter5424, r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    // One line per message: a message's line breaks become spaces (the record keeps them).
    let msg = r.message.replace(['\r', '\n'], " ");
    let _ = f.format(
        &mut out,
        severity(r.level),
        (
            u32::try_from(r.seq % u64::from(u32::MAX)).unwrap_or(0),
            structured_data(r),
            msg,
        ),
    );
    out
}

/// Octet-counting frame (RFC 6587 3.4.1, RFC 5425 4.3): `LEN SP MSG`.
pub fn octet_frame(msg: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg);
    out
}

fn formatter() -> Formatter5424 {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    Formatter5424 {
        facility: Facility::LOG_DAEMON,
        hostname: host,
        process: "byokd".to_owned(),
        pid: std::process::id(),
    }
}

impl Forwarder {
    /// Starts the collector's task on the current tokio runtime (no task without one: the
    /// records then count as dropped).
    pub fn start(target: Target) -> Forwarder {
        let (tx, rx) = mpsc::channel(target.queue);
        let counters = Arc::new(Counters::default());
        let log = Arc::new(OnceLock::new());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(run(target.clone(), rx, counters.clone(), log.clone()));
        }
        Forwarder {
            target,
            tx,
            counters,
            log,
            formatter: formatter(),
        }
    }

    pub(super) fn attach(&self, inner: Weak<super::Inner>) {
        let _ = self.log.set(inner);
    }

    /// Queues a record; never waits. A full queue drops it and counts the drop.
    pub fn send(&self, r: &Record) {
        if self.tx.try_send(format_5424(&self.formatter, r)).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.counters.unreported.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn status(&self) -> Status {
        Status {
            transport: self.target.transport,
            address: self.target.address.clone(),
            connected: self.counters.connected.load(Ordering::Relaxed),
            sent: self.counters.sent.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            queued: self.target.queue.saturating_sub(self.tx.capacity()),
            last_error: self
                .counters
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// A connection to a collector.
enum Conn {
    Udp(tokio::net::UdpSocket),
    Stream {
        writer: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
        closed: Arc<AtomicBool>,
    },
}

async fn connect(t: &Target) -> Result<Conn, String> {
    match t.transport {
        Transport::Udp => {
            let s = tokio::net::UdpSocket::bind(if t.address.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            })
            .await
            .map_err(|e| e.to_string())?;
            s.connect(&t.address).await.map_err(|e| e.to_string())?;
            Ok(Conn::Udp(s))
        }
        Transport::Tcp => {
            let s = tokio::net::TcpStream::connect(&t.address)
                .await
                .map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            Ok(stream(s))
        }
        Transport::Tls => {
            let config = tls_config(t)?;
            let name = t.server_name.clone().unwrap_or_else(|| t.host().to_owned());
            let name = rustls_pki_types::ServerName::try_from(name)
                .map_err(|e| format!("bad TLS server name: {e}"))?;
            let s = tokio::net::TcpStream::connect(&t.address)
                .await
                .map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, s)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            Ok(stream(tls))
        }
    }
}

/// Splits a stream: a reader task notices the collector closing (syslog collectors never send
/// data, so any end of the read side means the connection is gone).
fn stream<S>(s: S) -> Conn
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut r, w) = tokio::io::split(s);
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            match tokio::io::AsyncReadExt::read(&mut r, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        flag.store(true, Ordering::Release);
    });
    Conn::Stream {
        writer: Box::new(w),
        closed,
    }
}

/// The trust anchors in a collector's `ca_file` (also checked by `byokd check-config`).
pub fn collector_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    use crate::system::regular_file;
    let pem = regular_file::read(path, regular_file::TEXT_LIMIT)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(roots)
}

fn tls_config(t: &Target) -> Result<rustls::ClientConfig, String> {
    let path = t.ca_file.as_ref().ok_or("a TLS collector needs ca_file")?;
    let roots = collector_roots(path)?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

async fn deliver(conn: &mut Conn, t: &Target, msg: &[u8]) -> Result<(), String> {
    match conn {
        Conn::Udp(s) => s.send(msg).await.map(drop).map_err(|e| e.to_string()),
        Conn::Stream { writer, closed } => {
            if closed.load(Ordering::Acquire) {
                return Err(format!("{} closed the connection", t.address));
            }
            writer
                .write_all(&octet_frame(msg))
                .await
                .map_err(|e| e.to_string())?;
            writer.flush().await.map_err(|e| e.to_string())
        }
    }
}

async fn run(
    t: Target,
    mut rx: mpsc::Receiver<Vec<u8>>,
    c: Arc<Counters>,
    log: Arc<OnceLock<Weak<super::Inner>>>,
) {
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(100);
    while let Some(msg) = rx.recv().await {
        loop {
            if conn.is_none() {
                match connect(&t).await {
                    Ok(k) => conn = Some(k),
                    Err(e) => {
                        fail(&c, e);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            let Some(k) = conn.as_mut() else { continue };
            match deliver(k, &t, &msg).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    c.connected.store(true, Ordering::Relaxed);
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    // Once the backlog is delivered, so the report finds room in the queue.
                    if rx.is_empty() {
                        report_drops(&t, &c, &log);
                    }
                    break;
                }
                Err(e) => {
                    conn = None;
                    fail(&c, e);
                }
            }
        }
    }
}

fn fail(c: &Counters, e: String) {
    c.connected.store(false, Ordering::Relaxed);
    *c.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
}

/// After a delivery, records the drops since the last report (the record goes to every output,
/// this collector included).
fn report_drops(t: &Target, c: &Counters, log: &OnceLock<Weak<super::Inner>>) {
    let n = c.unreported.swap(0, Ordering::Relaxed);
    if n == 0 {
        return;
    }
    let Some(inner) = log.get().and_then(Weak::upgrade) else {
        return;
    };
    let logs = super::Logs { inner };
    let _ = logs.append(super::Entry::new(
        super::Service::System,
        Level::Warn,
        super::Event::LogForwardDropped.as_str(),
        format!(
            "Delivery to syslog collector {} ({:?}) resumed; {n} record(s) were dropped while it was unreachable (queue of {} full)",
            t.address, t.transport, t.queue
        ),
    ));
}
