//! The control socket against hostile clients, end to end with the real daemon: a browser
//! holding an admin's certificate cannot be made to act for another site (curl sends the
//! browser's headers), peers without a certificate can neither flood nor flush the service
//! log, and one peer (idle connections) or one identity (long-polls) cannot lock the admin out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "control_rig/mod.rs"]
mod rig;

use rig::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `curl -i` as `who`: (status, lower-case header block, body).
fn curl_i(
    d: &Daemon,
    who: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra: &[&str],
) -> (u16, String, Value) {
    let mut args = vec!["-i"];
    args.extend_from_slice(extra);
    let (status, text) = d.curl_raw(who, method, path, body, &args);
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((text.as_str(), ""));
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn assert_secure_headers(head: &str) {
    for h in [
        "x-content-type-options: nosniff",
        "cache-control: no-store",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(h), "missing {h:?} in\n{head}");
    }
    assert!(
        !head.contains("access-control-"),
        "a CORS header in\n{head}"
    );
}

fn job_count(d: &Daemon) -> usize {
    let (s, v) = d.curl(Some(ADMIN), "GET", "/v1/jobs", None);
    assert_eq!(s, 200, "{v}");
    v["jobs"].as_array().unwrap().len()
}

#[test]
fn a_cross_site_request_is_refused_and_starts_no_job() {
    let d = Daemon::start();
    d.seed();
    let jobs = job_count(&d);
    let evil = ["-H", "Origin: https://evil.example"];
    let cross = ["-H", "Sec-Fetch-Site: cross-site"];
    let same_site = ["-H", "Sec-Fetch-Site: same-site"];
    let null = ["-H", "Origin: null"];
    let other_port = format!("Origin: https://localhost:{}", d.port + 1);
    let other_port = ["-H", other_port.as_str()];
    let own = format!("Origin: https://localhost:{}", d.port);
    let own = ["-H", own.as_str()];
    let own_site = ["-H", "Sec-Fetch-Site: same-origin"];
    // The reproduction: a page elsewhere POSTs as the admin whose certificate the browser holds.
    for (route, headers) in [
        ("/v1/groups/g1/check", [evil, cross].concat()),
        ("/v1/groups/g1/check", evil.to_vec()),
        ("/v1/groups/g1/check", cross.to_vec()),
        ("/v1/groups/g1/check", same_site.to_vec()),
        ("/v1/groups/g1/check", null.to_vec()),
        ("/v1/groups/g1/rotate", other_port.to_vec()),
        ("/v1/groups/g1/sync", [evil, cross].concat()),
        // A request is judged by every copy of a header, not by its first.
        ("/v1/groups/g1/check", [own, evil].concat()),
        ("/v1/groups/g1/check", [own_site, cross].concat()),
    ] {
        let (status, head, body) = curl_i(&d, Some(ADMIN), "POST", route, Some("{}"), &headers);
        assert_eq!(
            (status, code(&body)),
            (403, "cross_origin_refused"),
            "{route} {headers:?}: {body}"
        );
        assert!(
            body.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap()
                .contains("cross-"),
            "{body}"
        );
        assert_secure_headers(&head);
    }
    // Reads are refused too when a browser says another site asked.
    let (status, head, body) = curl_i(&d, Some(ADMIN), "GET", "/v1/groups", None, &cross);
    assert_eq!((status, code(&body)), (403, "cross_origin_refused"));
    assert_secure_headers(&head);
    // A body a form can send: text/plain (even when it is JSON), form-encoded, multipart, and a
    // body-less POST with a form type or with no type at all.
    for (body, ctype) in [
        (Some("{}"), "Content-Type: text/plain"),
        (
            Some("a=b"),
            "Content-Type: application/x-www-form-urlencoded",
        ),
        (
            Some("--x--"),
            "Content-Type: multipart/form-data; boundary=x",
        ),
        (None, "Content-Type: text/plain"),
        (None, "Content-Type: application/x-www-form-urlencoded"),
        (None, "Content-Type:"),
    ] {
        let (status, head, answer) = curl_i(
            &d,
            Some(ADMIN),
            "POST",
            "/v1/groups/g1/check",
            body,
            &["-H", ctype],
        );
        assert_eq!(
            (status, code(&answer)),
            (415, "unsupported_media_type"),
            "{ctype} {body:?}: {answer}"
        );
        assert_secure_headers(&head);
    }
    // A CORS preflight is refused, with no CORS header.
    let (status, head, body) = curl_i(
        &d,
        Some(ADMIN),
        "OPTIONS",
        "/v1/groups/g1/check",
        None,
        &[
            "-H",
            "Origin: https://evil.example",
            "-H",
            "Access-Control-Request-Method: POST",
            "-H",
            "Access-Control-Request-Headers: content-type",
        ],
    );
    assert_eq!(status, 403, "{body}");
    assert_secure_headers(&head);
    let (status, _, body) = curl_i(
        &d,
        Some(ADMIN),
        "OPTIONS",
        "/v1/groups/g1/check",
        None,
        &["-H", "Access-Control-Request-Method: POST"],
    );
    assert_eq!((status, code(&body)), (403, "cors_refused"));
    // None of that started a job.
    assert_eq!(job_count(&d), jobs, "a refused request started a job");
    // The daemon's own origin, a same-origin fetch, and a plain client (byokctl) do act.
    let own = format!("Origin: https://localhost:{}", d.port);
    let (status, head, body) = curl_i(
        &d,
        Some(ADMIN),
        "POST",
        "/v1/groups/g1/check",
        None,
        &["-H", &own, "-H", "Sec-Fetch-Site: same-origin"],
    );
    assert_eq!(status, 202, "{body}");
    assert_secure_headers(&head);
    let out = d.ctl(ADMIN, &["group", "check", "g1", "--no-wait"]);
    assert!(
        out.status.success(),
        "byokctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(job_count(&d), jobs + 2);
    // The refusal names the identity whose browser was used, in the service log.
    let (_, logs) = d.curl(
        Some(AUDITOR),
        "GET",
        "/v1/logs?service=control&limit=1000",
        None,
    );
    let refused: Vec<&Value> = logs["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "control.cross_origin.refused")
        .collect();
    assert!(!refused.is_empty(), "{logs}");
    assert_eq!(refused[0]["identity"], "admin");
}

#[test]
fn every_answer_carries_the_no_sniff_no_store_no_referrer_headers() {
    let d = Daemon::start_with(Options {
        max_body_bytes: 1024,
        ..Options::default()
    });
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(4000));
    for (who, method, path, body, want) in [
        (Some(ADMIN), "GET", "/v1/health", None, 200),
        (Some(ADMIN), "GET", "/v1/nowhere", None, 404),
        (Some(ADMIN), "PUT", "/v1/health", None, 405),
        (Some(AUDITOR), "POST", "/v1/groups", Some("{}"), 403),
        (Some(STRANGER), "GET", "/v1/groups", None, 403),
        (Some(ADMIN), "POST", "/v1/groups", Some(big.as_str()), 413),
        (Some(ADMIN), "POST", "/v1/groups", Some("{"), 400),
        (Some(ADMIN), "GET", "/v1/logs/export", None, 200),
    ] {
        let (status, head, _) = curl_i(&d, who, method, path, body, &[]);
        assert_eq!(status, want, "{method} {path}");
        assert_secure_headers(&head);
    }
}

/// A client configuration; `who: None` presents no certificate.
fn tls_config(d: &Daemon, who: Option<&str>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(d.path("ca.pem")).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match who {
        None => b.with_no_client_auth(),
        Some(who) => {
            let cert = CertificateDer::from_pem_file(d.path(&format!("{who}.pem"))).unwrap();
            let key = PrivateKeyDer::from_pem_file(d.path(&format!("{who}.key"))).unwrap();
            b.with_client_auth_cert(vec![cert], key).unwrap()
        }
    })
}

/// A TCP connection to the daemon from the loopback address `from` (loopback takes all of
/// 127/8), so a test can be several peers.
fn tcp_from(d: &Daemon, from: Ipv4Addr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from((from, 0)))?;
        sock.connect(SocketAddr::from(([127, 0, 0, 1], d.port)))
            .await
    })?;
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    Ok(s)
}

/// One TLS exchange: sends `request` (if any) and reads until the server closes or `wait`
/// passes. Returns what was read.
fn exchange(
    config: Arc<rustls::ClientConfig>,
    tcp: TcpStream,
    request: Option<&str>,
    wait: Duration,
) -> String {
    tcp.set_read_timeout(Some(wait)).unwrap();
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    if let Some(r) = request
        && tls.write_all(r.as_bytes()).is_err()
    {
        return String::new();
    }
    // What arrived before a close, a reset or the time-out is kept.
    let mut all = Vec::new();
    let _ = tls.read_to_end(&mut all);
    String::from_utf8_lossy(&all).to_string()
}

/// Every record of the service log, as the auditor reads them.
fn records(d: &Daemon) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (s, v) = d.curl(
            Some(AUDITOR),
            "GET",
            &format!("/v1/logs?after={after}&limit=1000"),
            None,
        );
        assert_eq!(s, 200, "{v}");
        let page = v["records"].as_array().unwrap().clone();
        if page.is_empty() {
            return out;
        }
        after = page.last().unwrap()["seq"].as_u64().unwrap();
        out.extend(page);
    }
}

/// A daemon whose failure window lasts the whole test (its summary is written when the daemon
/// stops) and whose log is small: 2,000 records of about 400 bytes each would pass its bound
/// many times over.
fn small_log_daemon() -> Daemon {
    Daemon::start_with(Options {
        auth_failure_window_secs: Some(3600),
        sections: "[logs]\nmax_segment_bytes = 16384\nmax_total_bytes = 131072\njournald = false\n"
            .into(),
        ..Options::default()
    })
}

/// Stops the daemon (which writes the open windows' summaries) and reads every stored record.
fn stopped_records(d: &mut Daemon) -> Vec<byokd::logs::Record> {
    assert!(d.stop().unwrap().success(), "{}", d.log());
    let mut after = Vec::new();
    byokd::logs::store::scan(&d.path("state/logs"), |r| {
        after.push(r);
        true
    })
    .unwrap();
    after
}

/// How many lines of the daemon's stderr contain `needle`.
fn stderr_lines(d: &Daemon, needle: &str) -> usize {
    d.log().lines().filter(|l| l.contains(needle)).count()
}

/// Records an auditor's denial; the records so far and the denial's sequence number.
fn an_attributed_record(d: &Daemon) -> (Vec<Value>, u64) {
    let (s, _) = d.curl(Some(AUDITOR), "POST", "/v1/groups", Some("{}"));
    assert_eq!(s, 403);
    let before = records(d);
    let denied = before
        .iter()
        .find(|r| r["event"] == "control.authz.denied" && r["identity"] == "auditor")
        .map(|r| r["seq"].as_u64().unwrap())
        .expect("the auditor's denial is recorded");
    (before, denied)
}

/// The records added since `before`, at most the few recorded one by one.
fn few_added<'a>(before: &[Value], during: &'a [Value]) -> &'a [Value] {
    let added = &during[before.len()..];
    assert!(
        added.len() <= byokd::control::failures::RECORDED_AT_ONCE as usize,
        "{added:#?}"
    );
    added
}

/// No segment was dropped, and the attributed record `kept` is still there.
fn nothing_dropped(after: &[byokd::logs::Record], kept: u64) {
    assert!(
        after.iter().all(|r| r.event != "log.dropped"),
        "the log dropped records"
    );
    assert!(
        after.iter().any(|r| r.seq == kept),
        "attributed record gone"
    );
}

/// 1,000 requests as `who` over four keep-alive connections: on each, 249 body-less JSON
/// `request`s (method and path), then `last`, which closes it. What each connection read.
fn pipelined(d: &Daemon, who: &str, request: &str, last: &str) -> Vec<String> {
    let config = tls_config(d, Some(who));
    let mut batch = format!(
        "{request} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"
    )
    .repeat(249);
    batch.push_str(&format!(
        "{last} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    ));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (config, batch) = (config.clone(), &batch);
                s.spawn(move || {
                    let tcp = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
                    exchange(config, tcp, Some(batch), Duration::from_secs(60))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// The count a `control.auth.failed.summary` message gives.
fn summary_count(m: &str) -> u64 {
    count_after(m, "control socket ")
}

/// The number that follows `word` in a summary's message.
fn count_after(m: &str, word: &str) -> u64 {
    m.split(word)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count after {word:?} in {m}"))
}

#[test]
fn handshakes_without_a_certificate_neither_flood_nor_flush_the_audit() {
    let mut d = small_log_daemon();
    // Attributed records first: the auditor denied twice.
    for _ in 0..2 {
        let (s, _) = d.curl(Some(AUDITOR), "POST", "/v1/groups", Some("{}"));
        assert_eq!(s, 403);
    }
    let before = records(&d);
    let denied: Vec<u64> = before
        .iter()
        .filter(|r| r["event"] == "control.authz.denied" && r["identity"] == "auditor")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(denied.len(), 2, "{before:#?}");
    let first_seq = before[0]["seq"].as_u64().unwrap();
    // 2,000 handshakes without a client certificate, eight at a time.
    let config = tls_config(&d, None);
    std::thread::scope(|s| {
        for _ in 0..8 {
            let config = config.clone();
            let d = &d;
            s.spawn(move || {
                for _ in 0..250 {
                    let tcp = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
                    let got = exchange(
                        config.clone(),
                        tcp,
                        Some("GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"),
                        Duration::from_secs(10),
                    );
                    assert!(!got.contains("HTTP/1.1"), "answered without a certificate");
                }
            });
        }
    });
    let during = records(&d);
    assert!(
        during.len() - before.len() <= byokd::control::failures::RECORDED_AT_ONCE as usize,
        "{:#?}",
        &during[before.len()..]
    );
    // The share those records may take is in the status.
    let (_, status) = d.ctl_json(AUDITOR, &["status"]);
    let u = &status["health"]["logs"]["unattributed"];
    assert_eq!(u["reserve"], 131072 / 16, "{status}");
    assert!(u["bytes"].as_u64().unwrap() > 0, "{u}");
    assert_eq!(u["refused"], 0, "{u}");
    // Stopping ends the window: its summary counts what was not recorded one by one.
    let after = stopped_records(&mut d);
    let pick = |ev: &str| -> Vec<&byokd::logs::Record> {
        after.iter().filter(|r| r.event == ev).collect()
    };
    let (failed, summaries) = (
        pick("control.auth.failed"),
        pick("control.auth.failed.summary"),
    );
    assert!(
        failed.len() as u64 <= byokd::control::failures::RECORDED_AT_ONCE,
        "{failed:#?}"
    );
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    let counted = failed.len() as u64 + summary_count(&summaries[0].message);
    // The rig's readiness probe (a bare TCP connect) is one more.
    assert!(
        (2000..=2001).contains(&counted),
        "{counted}: {summaries:#?}"
    );
    for r in failed.iter().chain(&summaries) {
        assert_eq!(r.service, byokd::logs::Service::Control);
        assert!(r.message.contains("127.0.0.1"), "{r:?}");
        assert!(r.identity.is_none(), "{r:?}");
    }
    let added = after.len() - before.len();
    assert!(added <= 30, "2,000 failed handshakes added {added} records");
    assert!(
        after.iter().all(|r| r.event != "log.dropped"),
        "the log dropped records"
    );
    assert_eq!(after[0].seq, first_seq);
    for seq in &denied {
        assert!(
            after.iter().any(|r| r.seq == *seq),
            "attributed record {seq} is gone"
        );
    }
    assert!(
        byokd::logs::store::verify(&d.path("state/logs"))
            .unwrap()
            .ok()
    );
    // stderr got as few lines.
    let warns = stderr_lines(&d, "Authentication failed on the control socket");
    assert!(warns <= 10, "{warns} WARN lines on stderr");
}

#[test]
fn idle_connections_from_one_peer_do_not_lock_out_the_admin() {
    let d = Daemon::start_with(Options {
        max_connections: 64,
        max_connections_per_peer: Some(16),
        handshake_timeout_ms: Some(1000),
        read_timeout_ms: 30_000,
        idle_timeout_ms: 30_000,
        ..Options::default()
    });
    // The handshake deadline, not the (much longer) read deadline, ends a silent connection.
    let mut silent = tcp_from(&d, Ipv4Addr::new(127, 0, 0, 2)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(silent.read(&mut buf), Ok(0)),
        "a connection without a handshake was not closed"
    );
    drop(silent);
    // 100 idle connections from 127.0.0.2, each opened again as soon as it is closed.
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..100)
        .map(|_| {
            let stop = stop.clone();
            let port = d.port;
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let held = rt.block_on(async {
                        let sock = tokio::net::TcpSocket::new_v4()?;
                        sock.bind(SocketAddr::from(([127, 0, 0, 2], 0)))?;
                        let mut s = sock
                            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
                            .await?;
                        let mut b = [0u8; 64];
                        // Hold it until the server closes it (or the test ends).
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            tokio::io::AsyncReadExt::read(&mut s, &mut b),
                        )
                        .await;
                        Ok::<_, std::io::Error>(())
                    });
                    if held.is_err() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut ok = 0;
    let mut answers = Vec::new();
    for _ in 0..40 {
        let (status, body) = d.curl(Some(ADMIN), "GET", "/v1/health", None);
        if status == 200 {
            ok += 1;
        } else {
            answers.push((status, body));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    assert!(
        ok >= 38,
        "only {ok} of 40 admin requests succeeded: {answers:?}"
    );
    // The peer's refusals did not flood stderr either.
    let lines = stderr_lines(&d, "control connection refused");
    assert!(lines <= 10, "{lines} refusal lines");
}

#[test]
fn seventy_auditor_long_polls_do_not_make_the_admin_get_429() {
    let d = Daemon::start_with(Options {
        max_connections: 64,
        max_connections_per_peer: Some(16),
        max_long_polls_per_identity: Some(8),
        ..Options::default()
    });
    let config = tls_config(&d, Some(AUDITOR));
    let (tx, rx) = std::sync::mpsc::channel();
    // 70 long-polls over five addresses (14 each, under the per-peer cap): the per-identity
    // cap is what holds them.
    let polls: Vec<_> = (0..70u8)
        .map(|i| {
            let config = config.clone();
            let tx = tx.clone();
            let tcp = tcp_from(&d, Ipv4Addr::new(127, 0, 0, 3 + i % 5)).unwrap();
            std::thread::spawn(move || {
                let got = exchange(
                    config,
                    tcp,
                    Some(
                        "GET /v1/logs?wait=20&after=999999999 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                    ),
                    Duration::from_secs(40),
                );
                // The receiver is gone only when the test already failed.
                let _ = tx.send(got);
            })
        })
        .collect();
    drop(tx);
    let mut early = Vec::new();
    for _ in 0..62 {
        early.push(rx.recv_timeout(Duration::from_secs(15)).unwrap());
    }
    // The connections were all opened before their handshakes, so a few may have found every
    // slot taken for a moment; the rest were refused for being over the identity's cap.
    let over_cap = early
        .iter()
        .filter(|a| a.contains("too_many_long_polls"))
        .count();
    assert!(over_cap >= 70 - 8 - 16, "{early:#?}");
    for a in &early {
        assert!(a.starts_with("HTTP/1.1 429"), "{a}");
        assert!(
            a.contains("too_many_long_polls") || a.contains("too_many_connections"),
            "{a}"
        );
        assert!(
            a.to_ascii_lowercase()
                .contains("x-content-type-options: nosniff"),
            "{a}"
        );
    }
    // Eight are waiting; the admin is served every time.
    for _ in 0..20 {
        let (status, body) = d.curl(Some(ADMIN), "GET", "/v1/health", None);
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = d.curl(Some(ADMIN), "GET", "/v1/logs?wait=1&after=999999999", None);
    assert_eq!(status, 200, "another identity may still wait: {body}");
    for p in polls {
        p.join().unwrap();
    }
    let waited: Vec<String> = rx.iter().collect();
    assert_eq!(waited.len(), 8);
    for w in &waited {
        assert!(w.starts_with("HTTP/1.1 200"), "{w}");
    }
}

#[test]
fn a_long_poll_is_counted_however_its_wait_is_spelled() {
    let d = Daemon::start_with(Options {
        max_connections: 64,
        max_connections_per_peer: Some(16),
        max_long_polls_per_identity: Some(2),
        ..Options::default()
    });
    let config = tls_config(&d, Some(AUDITOR));
    // The log handler decodes its query (percent-encoding, the last of repeated keys): every
    // spelling below waits 10 s there, so every one must count against the auditor's cap.
    let spellings = [
        "wait=0&wait=10",
        "w%61it=10",
        "wait=%31%30",
        "wait=0&w%61it=10",
        "wait=10",
        "after=999999999&wait=0&wait=10",
    ];
    let polls: Vec<_> = spellings
        .iter()
        .map(|q| {
            let config = config.clone();
            let tcp = tcp_from(&d, Ipv4Addr::new(127, 0, 0, 9)).unwrap();
            let request = format!(
                "GET /v1/logs?after=999999999&{q} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            );
            std::thread::spawn(move || {
                exchange(config, tcp, Some(&request), Duration::from_secs(30))
            })
        })
        .collect();
    let answers: Vec<String> = polls.into_iter().map(|p| p.join().unwrap()).collect();
    let refused = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 429") && a.contains("too_many_long_polls"))
        .count();
    let waited = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200"))
        .count();
    assert_eq!((refused, waited), (4, 2), "{answers:#?}");
}

#[test]
fn an_unmapped_certificate_neither_floods_nor_flushes_the_audit() {
    let mut d = small_log_daemon();
    let (before, denied) = an_attributed_record(&d);
    // 1,000 requests with a certificate of the console CA that no identity maps, pipelined
    // over four keep-alive connections: one record each would pass the log's bound three
    // times over.
    // The first one, recorded one by one, names no text of the caller's own (its path).
    let long = format!("/v1/{}", "a".repeat(4000));
    assert_eq!(d.curl(Some(STRANGER), "GET", &long, None).0, 403);
    let answers = pipelined(&d, STRANGER, "POST /v1/groups/g/sync", "GET /v1/health");
    for a in &answers {
        assert_eq!(a.matches("HTTP/1.1 403").count(), 250, "{a}");
        assert_eq!(a.matches("is not mapped to an identity").count(), 250);
    }
    let during = records(&d);
    let added = few_added(&before, &during);
    assert!(added.iter().all(|r| r["identity"].is_null()), "{added:#?}");
    assert!(
        added.iter().any(|r| r["message"]
            .as_str()
            .unwrap()
            .contains("a request to no route")),
        "{added:#?}"
    );
    assert!(
        added.iter().all(|r| !r.to_string().contains("aaaaaaaa")),
        "{added:#?}"
    );
    let after = stopped_records(&mut d);
    let summaries: Vec<_> = after
        .iter()
        .filter(|r| r.event == "control.auth.failed.summary")
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    let failed = after
        .iter()
        .filter(|r| r.event == "control.auth.failed")
        .count() as u64;
    let counted = failed + summary_count(&summaries[0].message);
    // The long path is one more, and the rig's readiness probe (a bare TCP connect) another.
    assert!(
        (1001..=1002).contains(&counted),
        "{counted}: {summaries:#?}"
    );
    nothing_dropped(&after, denied);
    let lines = stderr_lines(&d, "is not mapped");
    assert!(lines <= 10, "{lines} lines on stderr");
}

#[test]
fn a_page_driving_an_admins_browser_cannot_flush_the_audit() {
    let mut d = small_log_daemon();
    let (before, denied) = an_attributed_record(&d);
    // A page elsewhere makes the admin's browser send 1,000 requests: one record each, in the
    // admin's name, would pass the log's bound several times over.
    let config = tls_config(&d, Some(ADMIN));
    let request = "POST /v1/groups/payments/check HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}";
    std::thread::scope(|s| {
        for _ in 0..8 {
            let config = config.clone();
            let d = &d;
            s.spawn(move || {
                for _ in 0..125 {
                    let tcp = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
                    let got = exchange(config.clone(), tcp, Some(request), Duration::from_secs(10));
                    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
                    assert!(got.contains("cross_origin_refused"), "{got}");
                }
            });
        }
    });
    let during = records(&d);
    few_added(&before, &during);
    let after = stopped_records(&mut d);
    let refused: Vec<_> = after
        .iter()
        .filter(|r| r.event == "control.cross_origin.refused")
        .collect();
    let summaries: Vec<_> = after
        .iter()
        .filter(|r| r.event == "control.cross_origin.refused.summary")
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    for r in refused.iter().chain(&summaries) {
        assert_eq!(r.identity.as_deref(), Some("admin"), "{r:?}");
    }
    let m = &summaries[0].message;
    let count = count_after(m, "refused ");
    assert_eq!(refused.len() as u64 + count, 1000, "{m}");
    nothing_dropped(&after, denied);
    let lines = stderr_lines(&d, "Cross-origin request");
    assert!(lines <= 10, "{lines} lines on stderr");
}

#[test]
fn an_identity_denied_again_and_again_cannot_flush_the_audit() {
    let mut d = small_log_daemon();
    let (before, denied) = an_attributed_record(&d);
    // The auditor asks for what its role does not allow, 1,000 times over keep-alive: one
    // record each would pass the log's bound several times over.
    let answers = pipelined(&d, AUDITOR, "POST /v1/groups/g/rotate", "GET /v1/whoami");
    for a in &answers {
        assert_eq!(a.matches("HTTP/1.1 403").count(), 249, "{a}");
    }
    let during = records(&d);
    let added = few_added(&before, &during);
    assert!(
        added
            .iter()
            .all(|r| r["event"] == "control.authz.denied" && r["identity"] == "auditor"),
        "{added:#?}"
    );
    let after = stopped_records(&mut d);
    let one_by_one = after
        .iter()
        .filter(|r| r.event == "control.authz.denied")
        .count() as u64;
    let summaries: Vec<_> = after
        .iter()
        .filter(|r| r.event == "control.authz.denied.summary")
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    assert_eq!(summaries[0].identity.as_deref(), Some("auditor"));
    let m = &summaries[0].message;
    let count = count_after(m, "denied ");
    // The first denial (before the flood) and 996 of the flood's.
    assert_eq!(one_by_one + count, 1 + 996, "{m}");
    nothing_dropped(&after, denied);
    let lines = stderr_lines(&d, "Authorization denied");
    assert!(lines <= 10, "{lines} lines on stderr");
}

/// Asks `GET /v1/logs?wait=1` as the auditor until the answer has `status` (bounded: 15 s).
fn poll_until(d: &Daemon, status: u16, why: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut answers = Vec::new();
    loop {
        let got = d.curl(
            Some(AUDITOR),
            "GET",
            "/v1/logs?wait=1&after=999999999",
            None,
        );
        if got.0 == status {
            return;
        }
        answers.push(got);
        assert!(std::time::Instant::now() < deadline, "{why}: {answers:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_long_poll_dropped_by_its_client_gives_its_place_back() {
    let d = Daemon::start_with(Options {
        max_long_polls_per_identity: Some(1),
        ..Options::default()
    });
    // The auditor's one long-poll (30 s) holds the place...
    let conn = rustls::ClientConnection::new(
        tls_config(&d, Some(AUDITOR)),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        b"GET /v1/logs?wait=30&after=999999999 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    tls.flush().unwrap();
    poll_until(&d, 429, "the long-poll was not counted");
    // ... until its client goes away: the place comes back well before the 30 s.
    drop(tls);
    poll_until(&d, 200, "the dropped long-poll still holds the place");
}
