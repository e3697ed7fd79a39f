//! A minimal mTLS HTTP/1.1 client for the control socket, used by the benchmarks: one kept-alive
//! connection, requests written by hand so the figures measure the daemon, not a client library.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A client configuration presenting `who`'s certificate from a control-rig directory.
pub fn client_config(dir: &Path, who: &str) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
        .unwrap();
    let cert = CertificateDer::from_pem_file(dir.join(format!("{who}.pem"))).unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{who}.key"))).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .unwrap(),
    )
}

pub type Conn = BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// A new TLS connection to the control port on loopback.
pub fn connect(config: &Arc<rustls::ClientConfig>, port: u16) -> Conn {
    let conn =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_nodelay(true).unwrap();
    BufReader::with_capacity(64 * 1024, rustls::StreamOwned::new(conn, tcp))
}

/// One request on a kept-alive connection; returns the status and the raw body.
pub fn request_raw(
    conn: &mut Conn,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Vec<u8>) {
    let head = match body {
        Some(b) => format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        // byokd refuses a state-changing request without a JSON type, body or not.
        None if matches!(method, "POST" | "PUT" | "PATCH" | "DELETE") => format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"
        ),
        None => format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    };
    conn.get_mut().write_all(head.as_bytes()).unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut len = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut out = vec![0u8; len];
    conn.read_exact(&mut out).unwrap();
    (status, out)
}

/// As [`request_raw`], the body parsed as JSON (`Null` when empty or not JSON).
pub fn request(conn: &mut Conn, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (status, raw) = request_raw(conn, method, path, body);
    (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
}
