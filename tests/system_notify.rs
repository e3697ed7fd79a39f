//! The systemd notification chain of the real `byokd` binary, with the test as the service
//! manager: it binds its own `NOTIFY_SOCKET`, sets `WATCHDOG_USEC`, and checks that `READY=1`
//! comes only once byokd is ready, that watchdog pings follow at half the time-out, and that
//! SIGTERM brings `STOPPING=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod system_support;

use common::softhsm::SoftHsmDir;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};
use system_support::Running;

/// Collects datagrams until `stop` says so or `limit` passes.
fn receive_until(
    socket: &UnixDatagram,
    limit: Duration,
    mut stop: impl FnMut(&str) -> bool,
) -> Vec<(Instant, String)> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = stop(&text);
            got.push((Instant::now(), text));
            if done {
                break;
            }
        }
    }
    got
}

#[test]
fn ready_comes_after_start_up_then_watchdog_pings_then_stopping_on_sigterm() {
    let hsm = SoftHsmDir::new();
    hsm.init_token("notify");
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("hsm-pin");
    std::fs::write(&pin, common::softhsm::USER_PIN).unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("byokd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\nallow_root = true\n[hsm]\nmodule = {:?}\ntoken_label = \"notify\"\npin_file = {pin:?}\n",
            hsm.module.display().to_string()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_byokd"));
    cmd.arg("--config")
        .arg(&config)
        .arg("run")
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("BYOKD_LOG", "info")
        .env("NOTIFY_SOCKET", &socket_path)
        // 400 ms: pings every 200 ms.
        .env("WATCHDOG_USEC", "400000");
    let mut daemon = Running::spawn(cmd);

    // Start-up: STATUS lines, then READY=1, by which time the HSM login and the state load are
    // done (the state directory exists and the daemon logged its readiness).
    let start = receive_until(&socket, Duration::from_secs(60), |m| m.contains("READY=1"));
    let ready = start.last().map(|(_, m)| m.clone()).unwrap_or_default();
    assert!(
        ready.contains("READY=1"),
        "no READY=1: {start:?}\n{}",
        daemon.log()
    );
    assert!(state.is_dir(), "READY=1 before the state was loaded");
    assert!(ready.contains("STATUS=ready"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", daemon.pid())),
        "{ready}"
    );
    assert!(
        start[0].1.starts_with("STATUS=logging in to the HSM"),
        "{start:?}"
    );
    assert_eq!(
        start.iter().filter(|(_, m)| m.contains("READY=1")).count(),
        1
    );

    // Watchdog: at least two pings, about 200 ms apart, and nothing else.
    let pings = receive_until(&socket, Duration::from_secs(5), {
        let mut n = 0;
        move |m| {
            n += usize::from(m == "WATCHDOG=1");
            n >= 3
        }
    });
    let ping_times: Vec<Instant> = pings
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    assert!(ping_times.len() >= 2, "{pings:?}");
    for pair in ping_times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(100) && gap <= Duration::from_millis(400),
            "pings {gap:?} apart; want ~200 ms"
        );
    }

    // SIGTERM → STOPPING=1, then a clean exit.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stop = receive_until(&socket, Duration::from_secs(10), |m| {
        m.contains("STOPPING=1")
    });
    assert!(
        stop.iter().any(|(_, m)| m.starts_with("STOPPING=1")),
        "{stop:?}\n{}",
        daemon.log()
    );
    assert!(
        daemon.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_watchdog_that_belongs_to_another_pid_is_not_pinged() {
    let hsm = SoftHsmDir::new();
    hsm.init_token("notify2");
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("hsm-pin");
    std::fs::write(&pin, common::softhsm::USER_PIN).unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("byokd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\nallow_root = true\n[hsm]\nmodule = {:?}\ntoken_label = \"notify2\"\npin_file = {pin:?}\n",
            dir.path().join("state"),
            hsm.module.display().to_string()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_byokd"));
    cmd.arg("--config")
        .arg(&config)
        .arg("run")
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        // The watchdog belongs to another process (e.g. a wrapper): byokd must not ping for it.
        .env("WATCHDOG_PID", "1");
    let mut daemon = Running::spawn(cmd);
    let start = receive_until(&socket, Duration::from_secs(60), |m| m.contains("READY=1"));
    assert!(
        start.iter().any(|(_, m)| m.contains("READY=1")),
        "{start:?}\n{}",
        daemon.log()
    );
    let after = receive_until(&socket, Duration::from_millis(800), |_| false);
    assert!(after.iter().all(|(_, m)| m != "WATCHDOG=1"), "{after:?}");
    assert!(daemon.terminate().success());
}
