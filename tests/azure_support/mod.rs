//! Test rig for the Azure client: a test CA (rcgen) and a scripted HTTPS/1.1 server on loopback
//! that counts connections and records requests.
#![allow(dead_code)]

use byokd::azure::{AccessToken, Allowlist, Azure, AzureMetrics, HttpOptions};
use byokd::clock::{SharedClock, SystemClock};
use byokd::config::{AzureSection, Cloud};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub const VAULT: &str = "myvault";
pub const VAULT_HOST: &str = "myvault.vault.azure.net";
pub const LOGIN_HOST: &str = "login.microsoftonline.com";

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_path: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "byokd test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, issuer.pem()).unwrap();
        Self {
            dir,
            ca_path,
            issuer,
        }
    }

    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        let chain = vec![cert.der().clone(), self.issuer.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }
}

/// What the server does with the next request.
#[derive(Clone, Debug)]
pub enum Reply {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Read the request, then drop the connection without answering.
    Drop,
    /// Read the request, then hold the connection open without answering.
    Hang,
}

pub fn json(status: u16, body: serde_json::Value) -> Reply {
    Reply::Respond {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

pub fn with_header(reply: Reply, name: &str, value: &str) -> Reply {
    match reply {
        Reply::Respond {
            status,
            mut headers,
            body,
        } => {
            headers.push((name.into(), value.into()));
            Reply::Respond {
                status,
                headers,
                body,
            }
        }
        r => r,
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub host: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    fallback: Arc<Mutex<Reply>>,
}

impl Server {
    pub async fn start(tls: Arc<rustls::ServerConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Self {
            addr,
            connections: Arc::new(AtomicUsize::new(0)),
            requests: Arc::new(Mutex::new(Vec::new())),
            script: Arc::new(Mutex::new(VecDeque::new())),
            fallback: Arc::new(Mutex::new(json(200, serde_json::json!({})))),
        };
        let (conns, reqs, script, fallback) = (
            server.connections.clone(),
            server.requests.clone(),
            server.script.clone(),
            server.fallback.clone(),
        );
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (acceptor, reqs, script, fallback) = (
                    acceptor.clone(),
                    reqs.clone(),
                    script.clone(),
                    fallback.clone(),
                );
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut io = BufReader::new(tls);
                    while let Some(rec) = read_request(&mut io).await {
                        reqs.lock().unwrap().push(rec);
                        let reply = script
                            .lock()
                            .unwrap()
                            .pop_front()
                            .unwrap_or_else(|| fallback.lock().unwrap().clone());
                        match reply {
                            Reply::Drop => return,
                            Reply::Hang => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                return;
                            }
                            Reply::Respond {
                                status,
                                headers,
                                body,
                            } => {
                                let mut out = format!(
                                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n",
                                    body.len()
                                );
                                for (k, v) in headers {
                                    out.push_str(&format!("{k}: {v}\r\n"));
                                }
                                out.push_str("\r\n");
                                out.push_str(&body);
                                if io.get_mut().write_all(out.as_bytes()).await.is_err() {
                                    return;
                                }
                                let _ = io.get_mut().flush().await;
                            }
                        }
                    }
                });
            }
        });
        server
    }

    pub fn push(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }

    pub fn set_fallback(&self, reply: Reply) {
        *self.fallback.lock().unwrap() = reply;
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(io: &mut R) -> Option<Recorded> {
    let mut line = String::new();
    if io.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        io.read_line(&mut h).await.ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await.ok()?;
    let host = headers.get("host").cloned().unwrap_or_default();
    Some(Recorded {
        method,
        path,
        host,
        headers,
        body,
    })
}

/// Fast client options: 10 ms back-off base, short time-outs.
pub fn fast_options() -> HttpOptions {
    HttpOptions {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        total_timeout: Duration::from_secs(20),
        max_attempts: 5,
        max_retry_wait: Duration::from_secs(10),
        backoff_base: Duration::from_millis(10),
        max_response_bytes: 1024 * 1024,
        pool_idle_timeout: Duration::from_secs(30),
    }
}

pub fn section(pki: &Pki, resolve: &[(&str, SocketAddr)]) -> AzureSection {
    AzureSection {
        cloud: Cloud::Public,
        resolve: resolve.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
        extra_ca: vec![pki.ca_path.clone()],
        ..AzureSection::default()
    }
}

pub fn azure(
    pki: &Pki,
    resolve: &[(&str, SocketAddr)],
    vaults: &[&str],
    opts: HttpOptions,
) -> Azure {
    azure_clocked(pki, resolve, vaults, opts, SystemClock::shared())
}

/// As [`azure`], reading the time from `clock`.
pub fn azure_clocked(
    pki: &Pki,
    resolve: &[(&str, SocketAddr)],
    vaults: &[&str],
    opts: HttpOptions,
    clock: SharedClock,
) -> Azure {
    let allowlist = Arc::new(Allowlist::new(Cloud::Public, vaults.iter().copied()).unwrap());
    Azure::with_options(
        &section(pki, resolve),
        opts,
        allowlist,
        AzureMetrics::new(),
        clock,
    )
    .unwrap()
}

/// A server for the vault and login hosts, and a client pointed at it.
pub async fn rig() -> (Pki, Server, Azure) {
    rig_clocked(SystemClock::shared()).await
}

/// As [`rig`], with the client reading the time from `clock`.
pub async fn rig_clocked(clock: SharedClock) -> (Pki, Server, Azure) {
    let pki = Pki::new();
    let server = Server::start(pki.server_config(&[VAULT_HOST, LOGIN_HOST])).await;
    let az = azure_clocked(
        &pki,
        &[(VAULT_HOST, server.addr), (LOGIN_HOST, server.addr)],
        &[VAULT],
        fast_options(),
        clock,
    );
    (pki, server, az)
}

pub fn token() -> AccessToken {
    AccessToken::new(
        "test-access-token".into(),
        SystemTime::now() + Duration::from_secs(3600),
    )
}

/// The Key Vault named `name`, as the client's calls take it.
#[allow(dead_code)]
pub fn vault_target(name: &str) -> byokd::model::Target {
    byokd::model::Target::KeyVault(name.parse().expect("a valid vault name"))
}
