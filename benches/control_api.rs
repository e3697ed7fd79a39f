//! Benchmark (not a test): requests per second and p50/p99 latency of
//! `GET /v1/groups/{g}/keys` with 10,000 keys, over a new TLS connection per request and over
//! one kept-alive connection. Runs the real daemon on a SoftHSM token; the keys are written
//! straight into the state (listing never touches the HSM).
//!
//! Run: `cargo bench --bench control_api` (env `BENCH_REQUESTS`, default 200 per mode).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/control_rig/mod.rs"]
mod rig;

use byokd::model::{
    Credential, CredentialAuth, CredentialName, Guid, HsmKeyId, Key, KeyGroup, KeyName, KeyType,
    LocalKeyName, RotationPolicy, Storage, VaultName,
};
use rig::{ADMIN, Daemon, Options};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: usize = 10_000;

fn seed(dir: &Path) {
    let (mut store, mut state, _) = byokd::store::Store::open(dir).unwrap();
    let cred = CredentialName::try_from("bench".to_owned()).unwrap();
    state.credentials.insert(
        cred.clone(),
        Credential {
            name: cred.clone(),
            tenant_id: Guid::parse(rig::TENANT).unwrap(),
            client_id: Guid::parse(rig::CLIENT).unwrap(),
            auth: CredentialAuth::Secret {
                sealed: vec![0; 48],
            },
            fingerprint: "00000000".into(),
            created: 1_800_000_000,
            expires: None,
        },
    );
    let group = KeyName::try_from("bench-group".to_owned()).unwrap();
    let key_type = KeyType::parse("RSA-2048", Default::default()).unwrap();
    state.groups.insert(
        group.clone(),
        KeyGroup {
            name: group.clone(),
            credential: cred,
            vault: VaultName::try_from("bench-kv".to_owned()).unwrap(),
            key_type,
            key_ops: key_type.default_ops(),
            rotation: RotationPolicy::default(),
            last_rotated: None,
            created: 1_800_000_000,
        },
    );
    for i in 0..KEYS {
        let name = LocalKeyName::try_from(format!("key-{i:05}")).unwrap();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        state.keys.insert(
            (group.clone(), name.clone()),
            Key {
                name,
                group: group.clone(),
                hsm_id: HsmKeyId(id),
                check_digits: "ABCD".into(),
                key_type,
                storage: Storage::Protected,
                created: 1_800_000_000,
                azure_version: (i % 2 == 0).then(|| format!("{i:032x}")),
            },
        );
    }
    store.commit(&state).unwrap();
}

fn client_config(d: &Daemon) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(d.path("ca.pem")).unwrap())
        .unwrap();
    let cert = CertificateDer::from_pem_file(d.path(&format!("{ADMIN}.pem"))).unwrap();
    let key = PrivateKeyDer::from_pem_file(d.path(&format!("{ADMIN}.key"))).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .unwrap(),
    )
}

type Conn = BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

fn connect(config: &Arc<rustls::ClientConfig>, port: u16) -> Conn {
    let conn =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_nodelay(true).unwrap();
    BufReader::with_capacity(64 * 1024, rustls::StreamOwned::new(conn, tcp))
}

/// One GET; returns the body length.
fn get(conn: &mut Conn, path: &str) -> usize {
    conn.get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
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
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).unwrap();
    len
}

fn report(mode: &str, mut lat: Vec<Duration>, total: Duration, bytes: usize) {
    lat.sort();
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
    };
    println!(
        "{mode:<28} {:>5} req  {:>8.1} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} KiB per answer)",
        lat.len(),
        lat.len() as f64 / total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        bytes / 1024
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
    let config = client_config(&d);
    let path = "/v1/groups/bench-group/keys";
    let mut warm = connect(&config, d.port);
    let bytes = get(&mut warm, path);
    drop(warm);
    println!("GET {path} with {KEYS} keys, {n} requests per mode");

    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let mut c = connect(&config, d.port);
        get(&mut c, path);
        lat.push(t.elapsed());
    }
    report("new TLS connection each", lat, start.elapsed(), bytes);

    let mut lat = Vec::with_capacity(n);
    let mut c = connect(&config, d.port);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        get(&mut c, path);
        lat.push(t.elapsed());
    }
    report("kept-alive connection", lat, start.elapsed(), bytes);
}
