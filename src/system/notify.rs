//! The systemd notification protocol (`sd_notify(3)`): one datagram per message to the unix
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
//!
//! The chain is: `STATUS=` lines during start-up, `READY=1` once the HSM login, the state load
//! and the control socket are done, then `WATCHDOG=1` every half of `$WATCHDOG_USEC` from a task
//! on the daemon's runtime (a wedged runtime stops the pings and systemd restarts the service),
//! then `STOPPING=1` on SIGTERM. Without `$NOTIFY_SOCKET` every call does nothing, so byokd runs
//! the same outside systemd. A failed send is logged at DEBUG and never stops the daemon.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends notifications to systemd, or nowhere when byokd is not run by it.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (the watchdog is ours only
    /// when `$WATCHDOG_PID` is unset or is our pid).
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let addr = socket_addr(name.as_encoded_bytes())?;
            let socket = UnixDatagram::unbound().ok()?;
            Some((socket, addr))
        });
        let ours = std::env::var("WATCHDOG_PID")
            .map(|pid| pid.trim() == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && ours)
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    /// Whether a notification socket is configured.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog time-out systemd set, if any.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `STATUS=<text>`: one line shown by `systemctl status`.
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", one_line(text)));
    }

    /// `READY=1` with a status line. Send only when byokd serves requests.
    pub fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nSTATUS={}\nMAINPID={}",
            one_line(status),
            std::process::id()
        ));
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// `WATCHDOG=1`: byokd is alive.
    pub fn watchdog_ping(&self) {
        self.send("WATCHDOG=1");
    }

    /// Starts the watchdog pings at half the time-out on the current tokio runtime. Without a
    /// watchdog time-out it does nothing. The pings stop when the returned handle is dropped.
    pub fn start_watchdog(self: &std::sync::Arc<Self>) -> Watchdog {
        let Some(timeout) = self.watchdog.filter(|_| self.enabled()) else {
            return Watchdog(None);
        };
        let period = (timeout / 2).max(Duration::from_millis(10));
        let notifier = std::sync::Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                notifier.watchdog_ping();
            }
        });
        tracing::info!(
            period_ms = period.as_millis() as u64,
            "systemd watchdog pings started"
        );
        Watchdog(Some(task))
    }

    fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
        {
            tracing::debug!(error = %e, "sd_notify send failed");
        }
    }
}

/// The running watchdog pings; dropping it stops them.
#[derive(Debug)]
pub struct Watchdog(Option<tokio::task::JoinHandle<()>>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

fn socket_addr(name: &[u8]) -> Option<SocketAddr> {
    match name.split_first() {
        Some((b'@', abstract_name)) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name).ok()
        }
        Some((b'/', _)) => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name)).ok()
        }
        _ => None,
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn abstract_and_path_socket_names_are_understood_and_others_are_not() {
        assert!(socket_addr(b"@/org/freedesktop/systemd1/notify").is_some());
        assert!(socket_addr(b"/run/systemd/notify").is_some());
        assert!(socket_addr(b"relative").is_none());
        assert!(socket_addr(b"").is_none());
    }

    #[test]
    fn a_status_line_cannot_inject_another_notification() {
        assert_eq!(one_line("ok\nREADY=1"), "ok READY=1");
    }

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: None,
        };
        n.ready("serving");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(
            text.starts_with("READY=1\nSTATUS=serving\nMAINPID="),
            "{text}"
        );
    }
}
