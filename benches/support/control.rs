//! The control-socket figures (requests per second, p50/p99 latency) of one GET path, over a new
//! TLS connection per request and over one kept-alive connection.

use super::client::{Conn, connect, request_raw};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The figures of one mode.
pub struct Figure {
    pub mode: &'static str,
    pub requests: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub body_bytes: usize,
}

fn get(conn: &mut Conn, path: &str) -> usize {
    let (status, body) = request_raw(conn, "GET", path, None);
    assert_eq!(status, 200, "GET {path}");
    body.len()
}

fn figure(mode: &'static str, mut lat: Vec<Duration>, total: Duration, bytes: usize) -> Figure {
    lat.sort();
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
        .as_secs_f64()
            * 1e3
    };
    Figure {
        mode,
        requests: lat.len(),
        per_second: lat.len() as f64 / total.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        body_bytes: bytes,
    }
}

/// `n` GETs of `path` per mode.
pub fn measure(config: &Arc<rustls::ClientConfig>, port: u16, path: &str, n: usize) -> Vec<Figure> {
    let bytes = get(&mut connect(config, port), path);
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        get(&mut connect(config, port), path);
        lat.push(t.elapsed());
    }
    let fresh = figure("new TLS connection each", lat, start.elapsed(), bytes);
    let mut lat = Vec::with_capacity(n);
    let mut c = connect(config, port);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        get(&mut c, path);
        lat.push(t.elapsed());
    }
    let kept = figure("kept-alive connection", lat, start.elapsed(), bytes);
    vec![fresh, kept]
}
