//! Benchmark (not a test): requests per second and p50/p99 latency of
//! `GET /v1/groups/{g}/keys` with 10,000 keys, over a new TLS connection per request and over
//! one kept-alive connection. Runs the real daemon on a SoftHSM token; the keys are written
//! straight into the state (listing never touches the HSM).
//!
//! Run: `cargo bench --bench control_api` (env `BENCH_REQUESTS`, default 200 per mode).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/control_rig/mod.rs"]
mod rig;
#[path = "support/mod.rs"]
mod support;

use rig::{ADMIN, Daemon, Options};
use std::path::Path;
use support::client::client_config;
use support::{control, seed};

const KEYS: usize = 10_000;

fn seed(dir: &Path) {
    seed::seed(
        dir,
        rig::TENANT,
        rig::CLIENT,
        seed::Seed {
            big_group_keys: KEYS,
            small_groups: 0,
            keys_per_group: 0,
            rotation: false,
        },
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let d = Daemon::start_with(Options {
        seed_state: Some(seed),
        max_body_bytes: 65536,
        idle_timeout_ms: 60_000,
        ..Options::default()
    });
    let config = client_config(d.dir.path(), ADMIN);
    let path = "/v1/groups/bench-group/keys";
    println!("GET {path} with {KEYS} keys, {n} requests per mode");
    for f in control::measure(&config, d.port, path, n) {
        println!(
            "{:<28} {:>5} req  {:>8.1} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} KiB per answer)",
            f.mode,
            f.requests,
            f.per_second,
            f.p50_ms,
            f.p99_ms,
            f.body_bytes / 1024
        );
    }
}
