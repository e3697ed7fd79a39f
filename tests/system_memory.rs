//! No secret lingers in the running daemon's memory once the operation that needed it is done.
//! The test reads the whole address space of the real `byokd` as root, through
//! `/proc/<pid>/maps` and `/proc/<pid>/mem` (what `gcore` would dump), and searches it for the
//! HSM PIN after start-up, for client secrets after they were sent over the control API, and for
//! the client secret 10 s after a sync job sent it to the sign-in host (the token request's
//! connection is never pooled, so no live HTTP/2 or TLS buffer keeps the form body), also when
//! the sign-in host refused it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod control_rig;
mod system_support;

use common::softhsm::SoftHsmDir;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;
use system_support::Running;

/// Where each occurrence of `needle` sits: `(address, mapping line)`.
fn find_in_memory(pid: u32, needle: &[u8]) -> Vec<(u64, String)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut hits = Vec::new();
    let mut scanned = 0u64;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (range, perms) = (fields.next().unwrap(), fields.next().unwrap());
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        let mut buf = vec![0u8; (end - start) as usize];
        let Ok(n) = mem.read_at(&mut buf, start) else {
            continue;
        };
        scanned += n as u64;
        for (i, w) in buf[..n].windows(needle.len()).enumerate() {
            if w == needle {
                hits.push((start + i as u64, line.to_owned()));
            }
        }
    }
    assert!(scanned > 1024 * 1024, "read only {scanned} bytes of memory");
    hits
}

fn daemon_pid_by_config(config: &std::path::Path) -> u32 {
    let needle = config.to_str().unwrap();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains(needle) && cmdline.contains("byokd") && !cmdline.contains("byokctl") {
            return pid;
        }
    }
    panic!("no byokd process runs with {needle}");
}

#[test]
fn the_hsm_pin_is_not_in_memory_after_the_hsm_login() {
    // A PIN long and odd enough not to occur by chance.
    const PIN: &str = "PIN-mem-7f3c9a1e5b2d4068";
    let hsm = SoftHsmDir::new();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &hsm.conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "memory",
            "--so-pin",
            "so-5678",
            "--pin",
            PIN,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("hsm-pin");
    std::fs::write(&pin, format!("{PIN}\n")).unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("byokd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\nallow_root = true\n[hsm]\nmodule = {:?}\ntoken_label = \"memory\"\npin_file = {pin:?}\n",
            dir.path().join("state"),
            hsm.module.display().to_string()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_byokd"));
    cmd.arg("--config")
        .arg(&config)
        .arg("run")
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("BYOKD_LOG", "info");
    let mut daemon = Running::spawn(cmd);
    daemon.wait_for_log("byokd ready");
    std::thread::sleep(Duration::from_millis(300));
    let hits = find_in_memory(daemon.pid(), PIN.as_bytes());
    assert!(
        hits.is_empty(),
        "the HSM PIN is in byokd's memory at {} place(s):\n{hits:#x?}",
        hits.len()
    );
    assert!(daemon.terminate().success());
}

#[test]
fn client_secrets_are_not_in_memory_after_the_credential_calls_finished() {
    let first = "cs-mem-first-4c1d8e2f9a7b6035e1";
    let second = "cs-mem-second-b9e07a3d5f1c2846d0";
    let daemon = control_rig::Daemon::start();
    for (name, secret) in [("mem1", first), ("mem2", second)] {
        let (status, body) = daemon.curl(
            Some(control_rig::ADMIN),
            "POST",
            "/v1/credentials",
            Some(&format!(
                r#"{{"name":"{name}","tenant_id":"{}","client_id":"{}","secret":"{secret}"}}"#,
                control_rig::TENANT,
                control_rig::CLIENT
            )),
        );
        assert_eq!(status, 201, "{body}");
    }
    let (status, _) = daemon.curl(Some(control_rig::ADMIN), "GET", "/v1/credentials", None);
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let pid = daemon_pid_by_config(&daemon.config);
    let mut report = String::new();
    for secret in [first, second] {
        let hits = find_in_memory(pid, secret.as_bytes());
        if !hits.is_empty() {
            report.push_str(&format!("{secret}: {} place(s): {hits:#x?}\n", hits.len()));
        }
    }
    assert!(
        report.is_empty(),
        "client secrets remain in byokd's memory:\n{report}"
    );
}

/// The client secret as the emulator knows it; long and odd enough not to occur by chance.
const SYNC_SECRET: &str = "cs-mem-sync-7d2f9b41e8c3a6055f";

/// The emulator (whose app knows [`SYNC_SECRET`]) and a daemon pointed at it, with credential
/// `name` added over the control API holding `secret`. The runtime and the CA directory must
/// outlive the emulator.
fn daemon_with_secret_credential(
    name: &str,
    secret: &str,
) -> (
    tokio::runtime::Runtime,
    tempfile::TempDir,
    byokd_emulator::EmulatorHandle,
    control_rig::Daemon,
) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let (emu, options) = control_rig::emulator_and_options(
        &rt,
        &ca_dir.path().join("emulator-ca.pem"),
        (control_rig::TENANT, control_rig::CLIENT, SYNC_SECRET),
        "byokd-mem",
    );
    let daemon = control_rig::Daemon::start_with(options);
    let (status, body) = daemon.curl(
        Some(control_rig::ADMIN),
        "POST",
        "/v1/credentials",
        Some(&format!(
            r#"{{"name":"{name}","tenant_id":"{}","client_id":"{}","secret":"{secret}"}}"#,
            control_rig::TENANT,
            control_rig::CLIENT
        )),
    );
    assert_eq!(status, 201, "{body}");
    (rt, ca_dir, emu, daemon)
}

#[test]
fn the_client_secret_is_not_in_memory_ten_seconds_after_a_sync_job_ended() {
    let (_rt, _ca_dir, emu, daemon) = daemon_with_secret_credential("mem", SYNC_SECRET);
    create_group_and_sync(&daemon, "memg", "mem");
    std::thread::sleep(Duration::from_secs(10));
    let pid = daemon_pid_by_config(&daemon.config);
    let hits = find_in_memory(pid, SYNC_SECRET.as_bytes());
    assert!(
        hits.is_empty(),
        "the client secret is in byokd's memory 10 s after the job ended, at {} place(s):\n{hits:#x?}",
        hits.len()
    );

    // A certificate credential's client assertion (a bearer proof until its exp) goes the same
    // way: no form body `client_assertion=<JWT>` is left once the job is over.
    const CERT_CLIENT: &str = "5b1e7c3d-2f4a-4b8e-9c6d-1a2b3c4d5e6f";
    let (status, body) = daemon.curl(
        Some(control_rig::ADMIN),
        "POST",
        "/v1/credentials",
        Some(&format!(
            r#"{{"name":"memcert","tenant_id":"{}","client_id":"{CERT_CLIENT}","certificate":true}}"#,
            control_rig::TENANT
        )),
    );
    assert_eq!(status, 201, "{body}");
    let (_, cert) = daemon.curl(
        Some(control_rig::ADMIN),
        "GET",
        "/v1/credentials/memcert/certificate",
        None,
    );
    let pem = cert["certificate_pem"].as_str().unwrap();
    let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    emu.add_app(byokd_emulator::AppConfig::with_certificate(
        control_rig::TENANT,
        CERT_CLIENT,
        der.contents,
    ))
    .unwrap();
    create_group_and_sync(&daemon, "memcertg", "memcert");
    std::thread::sleep(Duration::from_secs(10));
    // The JWT starts with the base64url of `{"`: `eyJ`.
    let hits = find_in_memory(pid, b"client_assertion=eyJ");
    assert!(
        hits.is_empty(),
        "a client assertion is in byokd's memory 10 s after the job ended, at {} place(s):\n{hits:#x?}",
        hits.len()
    );
    drop(emu);
}

/// Creates `group` (RSA-2048, in the emulator's vault) with `credential`, one key, and syncs it
/// (byokctl waits for the job to end).
fn create_group_and_sync(daemon: &control_rig::Daemon, group: &str, credential: &str) {
    for args in [
        &[
            "group",
            "create",
            group,
            "--credential",
            credential,
            "--vault",
            "byokd-mem",
            "--key-type",
            "RSA-2048",
        ][..],
        &["key", "create", group, "k1"],
        &["key", "sync", group, "k1"],
    ] {
        let out = daemon.ctl(control_rig::ADMIN, args);
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            daemon.log()
        );
    }
    let (_, key) = daemon.curl(
        Some(control_rig::ADMIN),
        "GET",
        &format!("/v1/groups/{group}/keys/k1"),
        None,
    );
    assert!(key["version"].is_string(), "the sync pushed the key: {key}");
}

/// A secret the sign-in host does not know: its token requests are refused.
const REFUSED_SECRET: &str = "cs-mem-refused-4e91c07b2a5d83f6";

#[test]
fn a_refused_client_secret_is_not_in_memory_ten_seconds_after_the_failed_sync() {
    let (_rt, _ca_dir, emu, daemon) = daemon_with_secret_credential("wrong", REFUSED_SECRET);
    for args in [
        &[
            "group",
            "create",
            "--no-verify",
            "wrongg",
            "--credential",
            "wrong",
            "--vault",
            "byokd-mem",
            "--key-type",
            "RSA-2048",
        ][..],
        &["key", "create", "wrongg", "k1"],
    ] {
        let out = daemon.ctl(control_rig::ADMIN, args);
        assert!(out.status.success(), "{args:?}: {}", daemon.log());
    }
    // Entra refuses the secret: the sync fails, and the error path keeps no copy of the body.
    let out = daemon.ctl(control_rig::ADMIN, &["key", "sync", "wrongg", "k1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("AADSTS7000215"),
        "the sign-in host refused the secret: {stderr}"
    );
    std::thread::sleep(Duration::from_secs(10));
    let pid = daemon_pid_by_config(&daemon.config);
    let hits = find_in_memory(pid, REFUSED_SECRET.as_bytes());
    assert!(
        hits.is_empty(),
        "a refused client secret is in byokd's memory 10 s after the failed sync, at {} place(s):\n{hits:#x?}",
        hits.len()
    );
    drop(emu);
}

/// A client that keeps its connection open after adding a credential (as an API client with a
/// connection pool does) leaves no copy of the secret in the daemon's TLS or HTTP buffers: byokd
/// closes a connection once it has answered a request that carries a secret.
#[test]
fn a_secret_sent_on_a_kept_alive_connection_is_not_in_memory_after_the_answer() {
    use std::io::{BufRead, Write};
    let secret = "cs-mem-keepalive-0d5c3b9e7f21a468";
    let daemon = control_rig::Daemon::start();
    let body = format!(
        r#"{{"name":"memka","tenant_id":"{}","client_id":"{}","secret":"{secret}"}}"#,
        control_rig::TENANT,
        control_rig::CLIENT
    );
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-tls1_3", "-servername", "localhost"])
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", daemon.port))
        .arg("-CAfile")
        .arg(daemon.path("ca.pem"))
        .arg("-cert")
        .arg(daemon.path(&format!("{}.pem", control_rig::ADMIN)))
        .arg("-key")
        .arg(daemon.path(&format!("{}.key", control_rig::ADMIN)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The client's side stays open (stdin is kept) and asks to keep the connection alive.
    let mut stdin = client.stdin.take().unwrap();
    write!(
        stdin,
        "POST /v1/credentials HTTP/1.1\r\nhost: localhost\r\nconnection: keep-alive\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut answer = std::io::BufReader::new(client.stdout.take().unwrap());
    let mut status = String::new();
    answer.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 201"), "{status}");
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if answer.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    assert!(head.contains("connection: close"), "{head}");
    // The daemon closed its side: the client sees the end of the stream.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut answer, &mut rest).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let pid = daemon_pid_by_config(&daemon.config);
    let hits = find_in_memory(pid, secret.as_bytes());
    drop(stdin);
    let _ = client.kill();
    let _ = client.wait();
    assert!(
        hits.is_empty(),
        "a secret sent on a kept-alive connection is in byokd's memory at {} place(s):\n{hits:#x?}",
        hits.len()
    );
}
