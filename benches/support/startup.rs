//! Timing this build's daemon from spawn to `READY=1` (sd_notify on a `NOTIFY_SOCKET` of the
//! bench's own) and reading the start-up phases it logs: shared by the suite's footprint section
//! and the 1M-key footprint bench.
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One start of the daemon: seconds from spawn to `READY=1`, and what it logged until stopped.
pub struct Start {
    pub ready_s: f64,
    pub log: String,
}

impl Start {
    /// The number in the start-up log's `field=` (`login_ms`, `hsm_ms`, `self_test_ms`), if
    /// the daemon logged it.
    pub fn field(&self, field: &str) -> Option<f64> {
        let pat = format!("{field}=");
        self.log
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&pat))
            .and_then(|v| {
                v.trim_matches(|c: char| !c.is_ascii_digit() && c != '.')
                    .parse()
                    .ok()
            })
    }
}

/// Spawns byokd on `config` with the SoftHSM configuration in `dir`, waits at most `wait` for
/// `READY=1`, stops it with SIGTERM and returns the start (its log is `dir/bench-start.log`).
pub fn time_to_ready(config: &Path, dir: &Path, wait: Duration) -> Start {
    let sock_path = dir.join("bench-notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    let log_path = dir.join("bench-start.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_byokd"))
        .args(["--config", config.to_str().unwrap(), "run"])
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("BYOKD_LOG", "info")
        .env("NO_COLOR", "1")
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    let ready_s = loop {
        let n = sock.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no READY=1: {e}\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )
        });
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break t.elapsed().as_secs_f64();
        }
    };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    Start {
        ready_s,
        log: std::fs::read_to_string(&log_path).unwrap(),
    }
}
