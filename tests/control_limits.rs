//! Control socket limits end to end: a slowloris client is cut off within the read time-out, an
//! idle connection within the idle time-out, the connection limit refuses cleanly with 429 and
//! serves again when load drops, and the daemon keeps serving throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "control_rig/mod.rs"]
mod rig;

use rig::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A raw TLS connection as `who`, handshake completed.
fn connect(d: &Daemon, who: &str) -> Tls {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(d.path("ca.pem")).unwrap())
        .unwrap();
    let cert = CertificateDer::from_pem_file(d.path(&format!("{who}.pem"))).unwrap();
    let key = PrivateKeyDer::from_pem_file(d.path(&format!("{who}.key"))).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Reads until the server closes; returns what was read and how long it took.
fn read_until_closed(tls: &mut Tls, started: Instant) -> (String, Duration) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&all).to_string(), started.elapsed())
}

fn options() -> Options {
    Options {
        read_timeout_ms: 1500,
        idle_timeout_ms: 3000,
        max_connections: 4,
        ..Options::default()
    }
}

#[test]
fn a_slowloris_client_is_cut_off_within_the_read_timeout() {
    let d = Daemon::start_with(options());
    let mut tls = connect(&d, ADMIN);
    let started = Instant::now();
    tls.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    // Trickle one header byte every 200 ms, forever; the server must hang up.
    let mut cut_off = None;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        if tls.write_all(b"x").and_then(|()| tls.flush()).is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 1];
        tls.sock.set_nonblocking(true).unwrap();
        let r = tls.read(&mut probe);
        tls.sock.set_nonblocking(false).unwrap();
        if matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
        {
            cut_off = Some(started.elapsed());
            break;
        }
    }
    let t = cut_off.expect("the slow client was never cut off");
    assert!(t >= Duration::from_millis(1200), "cut off too early: {t:?}");
    assert!(t <= Duration::from_millis(3500), "cut off too late: {t:?}");
    assert!(d.log().contains("read time-out"), "{}", d.log());
    // A slow body is cut off as well (408, then close).
    let mut tls = connect(&d, ADMIN);
    let started = Instant::now();
    tls.write_all(
        b"PUT /v1/config/designated HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    let (answer, t) = read_until_closed(&mut tls, started);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("send each request whole"), "{answer}");
    assert!(t <= Duration::from_millis(3500), "{t:?}");
    assert_eq!(
        d.curl(Some(ADMIN), "GET", "/v1/health", None).0,
        200,
        "still serving"
    );
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let d = Daemon::start_with(options());
    let mut tls = connect(&d, AUDITOR);
    tls.write_all(b"GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    tls.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let started = Instant::now();
    let (_, t) = read_until_closed(&mut tls, started);
    assert!(
        t >= Duration::from_millis(2500) && t <= Duration::from_millis(5500),
        "idle close after {t:?}"
    );
}

#[test]
fn the_connection_limit_refuses_cleanly_and_serves_again_when_load_drops() {
    let d = Daemon::start_with(Options {
        idle_timeout_ms: 20_000,
        read_timeout_ms: 2000,
        max_connections: 4,
        ..Options::default()
    });
    let held: Vec<Tls> = (0..4).map(|_| connect(&d, AUDITOR)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (status, answer) = d.curl(Some(ADMIN), "GET", "/v1/health", None);
    assert_eq!(
        (status, code(&answer)),
        (429, "too_many_connections"),
        "{answer}"
    );
    let out = d.ctl(ADMIN, &["status"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "byokctl must fail while the limit is hit"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = d.curl(Some(ADMIN), "GET", "/v1/health", None);
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served again after load dropped: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.ctl(ADMIN, &["status"]).status.success());
}

#[test]
fn the_daemon_shuts_down_gracefully_on_sigterm() {
    let mut d = Daemon::start();
    assert_eq!(d.curl(Some(ADMIN), "GET", "/v1/health", None).0, 200);
    let status = d.stop().expect("daemon was running");
    assert!(status.success(), "exit {status:?}: {}", d.log());
    assert!(d.log().contains("control socket stopped"), "{}", d.log());
    assert!(
        !d.unix_socket.exists(),
        "the unix socket is removed on shutdown"
    );
}
