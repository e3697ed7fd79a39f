//! Running the new version: the state migration (`byokd migrate-state`) and the health check.
//!
//! The health check starts the new binary as the daemon (`run`) with a notify socket of the
//! installer's own, exactly as systemd would, and passes when `READY=1` arrives within the
//! time-out (config, PIN, HSM login, state load and control socket all worked), followed by a
//! clean exit on SIGTERM. A PIN credential is provided by `credentials`, as systemd would. Both run as the daemon's user when the installer runs as root and the
//! configuration does not allow root, so files they write keep the daemon's ownership.

use super::UpgradeError;
use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How the new binary is run.
pub struct Runner {
    pub config: PathBuf,
    /// uid and gid to run as; `None` keeps the installer's.
    pub run_as: Option<(u32, u32)>,
    /// Where its output goes (overwritten per run).
    pub log: PathBuf,
}

impl Runner {
    fn command(&self, binary: &Path, action: &str) -> Result<Command, String> {
        let log = File::create(&self.log).map_err(|e| format!("{}: {e}", self.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        // Supplementary groups can only be dropped before exec, which std cannot do safely;
        // util-linux `setpriv` does it.
        let mut cmd = match self.run_as {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.arg("--config")
            .arg(&self.config)
            .arg(action)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        Ok(cmd)
    }

    /// The last lines the new binary wrote, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }

    /// Runs `byokd migrate-state` of the new binary.
    pub fn migrate(&self, binary: &Path, timeout: Duration) -> Result<(), String> {
        let mut child = self
            .command(binary, "migrate-state")?
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        match wait_until(&mut child, Instant::now() + timeout)? {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!(
                "migrate-state exited with {status}:\n{}",
                self.log_tail()
            )),
            None => {
                stop(&mut child, Duration::ZERO);
                Err(format!(
                    "migrate-state did not finish within {} s",
                    timeout.as_secs()
                ))
            }
        }
    }

    /// Starts the new daemon, waits for `READY=1`, stops it with SIGTERM. `credentials` becomes
    /// its `$CREDENTIALS_DIRECTORY`.
    pub fn health_check(
        &self,
        binary: &Path,
        socket: &Path,
        credentials: Option<&Path>,
        timeout: Duration,
    ) -> Result<(), String> {
        let _ = std::fs::remove_file(socket);
        let notify =
            UnixDatagram::bind(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(socket, Some(uid), Some(gid))
                .map_err(|e| format!("{}: {e}", socket.display()))?;
        }
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let mut cmd = self.command(binary, "run")?;
        cmd.env("NOTIFY_SOCKET", socket);
        if let Some(dir) = credentials {
            cmd.env("CREDENTIALS_DIRECTORY", dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let result = wait_ready(&notify, &mut child, Instant::now() + timeout);
        let _ = std::fs::remove_file(socket);
        match result {
            Ok(()) => match stop(&mut child, Duration::from_secs(15)) {
                Some(status) if status.success() => Ok(()),
                Some(status) => Err(format!(
                    "ready, but exited with {status} on SIGTERM:\n{}",
                    self.log_tail()
                )),
                None => Err("ready, but did not stop on SIGTERM within 15 s".into()),
            },
            Err(e) => {
                stop(&mut child, Duration::from_secs(5));
                Err(format!("{e}:\n{}", self.log_tail()))
            }
        }
    }
}

fn wait_ready(notify: &UnixDatagram, child: &mut Child, deadline: Instant) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited with {status} before it was ready"));
        }
        if Instant::now() >= deadline {
            return Err("not ready within the health-check time-out".into());
        }
        match notify.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.lines().any(|l| l == "READY=1") {
                    return Ok(());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("notify socket: {e}")),
        }
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>, String> {
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then SIGKILL after `grace`; returns the exit status if it stopped by itself.
fn stop(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if let Ok(Some(status)) = wait_until(child, Instant::now() + grace) {
        return Some(status);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Maps a state-lock check to an error when the daemon is running.
pub fn ensure_not_running(state_dir: &Path) -> Result<(), UpgradeError> {
    let lock = state_dir.join("state.lock");
    let file = match File::open(&lock) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(UpgradeError::io(&lock, e)),
    };
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(_released_on_drop) => Ok(()),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(UpgradeError::DaemonRunning { lock }),
        Err((_, errno)) => Err(UpgradeError::io(&lock, std::io::Error::from(errno))),
    }
}
