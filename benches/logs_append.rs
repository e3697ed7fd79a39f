//! Benchmark (not a test): sustained service log append throughput with fsync batching and
//! TLS syslog forwarding on, and p50/p99 append latency, side by side for a collector that
//! keeps up, a slow collector (reads 4 KiB every 5 ms) and a collector that is down. Appends
//! must not be slowed by the slow or down collector (drops are counted instead).
//!
//! Run: `cargo bench --bench logs_append` (env `BENCH_RECORDS`, default 20000 per mode).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use byokd::logs::forward::{Target, Transport};
use byokd::logs::{Entry, Level, Logs, Service, Settings, store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

enum Collector {
    Fast,
    Slow,
    Down,
}

/// A TLS collector on loopback (its certificate in `dir/ca.pem`); returns its port.
async fn collector(kind: &Collector, dir: &std::path::Path) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
    if matches!(kind, Collector::Down) {
        drop(listener);
        return port;
    }
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let slow = matches!(kind, Collector::Slow);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if slow {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            });
        }
    });
    port
}

async fn run(kind: Collector, name: &str, records: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let port = collector(&kind, tmp.path()).await;
    let settings = Settings {
        dir: tmp.path().join("logs"),
        limits: store::Limits {
            max_segment_bytes: 4 << 20,
            max_total_bytes: 64 << 20,
        },
        fsync_interval: Duration::from_millis(200),
        syslog: vec![Target {
            transport: Transport::Tls,
            address: format!("127.0.0.1:{port}"),
            ca_file: Some(tmp.path().join("ca.pem")),
            server_name: Some("localhost".into()),
            queue: 10_000,
        }],
        journald: false,
    };
    let logs = Logs::open(&settings, byokd::clock::SystemClock::shared()).unwrap();
    let mut lat = Vec::with_capacity(records);
    let started = Instant::now();
    let l2 = logs.clone();
    let lat = tokio::task::spawn_blocking(move || {
        for n in 0..records {
            let t = Instant::now();
            l2.append(
                Entry::new(
                    Service::Azure,
                    Level::Info,
                    "azure.key.imported",
                    format!("Key k{n} imported into bench-vault/payments as version 0123456789abcdef0123456789abcdef"),
                )
                .job(n as u64)
                .group("payments")
                .key(format!("k{n}"))
                .vault("bench-vault"),
            )
            .unwrap();
            lat.push(t.elapsed());
        }
        lat
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    logs.sync().unwrap();
    let mut sorted = lat.clone();
    sorted.sort();
    let p = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let f = &logs.status().forwarders[0];
    println!(
        "{name:<22} {:>9.0} records/s   p50 {:>7.1} µs   p99 {:>7.1} µs   max {:>8.1} µs   forwarded {:>6}  dropped {:>6}",
        records as f64 / elapsed.as_secs_f64(),
        p(0.50).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6,
        sorted.last().unwrap().as_secs_f64() * 1e6,
        f.sent,
        f.dropped
    );
}

fn main() {
    let records: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "service log append, {records} records per mode, fsync every 200 ms, one TLS syslog collector"
    );
    rt.block_on(async {
        run(Collector::Fast, "collector keeps up", records).await;
        run(Collector::Slow, "slow collector", records).await;
        run(Collector::Down, "collector down", records).await;
    });
}
