//! Per-connection deadlines: a connection that is idle longer than `limits.idle_timeout_ms`,
//! or that takes longer than `limits.read_timeout_ms` to deliver a request once it started
//! sending one, is cut off (a slowloris client cannot hold a connection slot).
//!
//! It owns the activity tracking (an I/O wrapper and a phase) and the deadline check. It never
//! decides what to answer; the server drops the connection when [`Activity::expired`] says so.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request; the instant of the last traffic.
    Idle(Instant),
    /// A request has begun to arrive at this instant.
    Reading(Instant),
    /// The handler runs (it reads the body under its own deadline).
    Handling,
}

/// The connection's phase, shared by the I/O wrapper, the request handler and the watchdog.
#[derive(Debug, Clone)]
pub struct Activity(Arc<Mutex<Phase>>);

impl Activity {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Phase::Idle(Instant::now()))))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Phase) -> R) -> R {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    fn on_read(&self) {
        self.with(|p| {
            if let Phase::Idle(_) = p {
                *p = Phase::Reading(Instant::now());
            }
        });
    }

    fn on_write(&self) {
        self.with(|p| {
            if let Phase::Idle(_) = p {
                *p = Phase::Idle(Instant::now());
            }
        });
    }

    /// A request's head arrived: the handler runs. Returns when the request began.
    pub fn handling(&self) -> Instant {
        self.with(|p| {
            let began = match *p {
                Phase::Reading(t) => t,
                _ => Instant::now(),
            };
            *p = Phase::Handling;
            began
        })
    }

    /// The answer was produced; the connection waits for the next request.
    pub fn idle(&self) {
        self.with(|p| *p = Phase::Idle(Instant::now()));
    }

    /// Which deadline has passed, if any.
    pub fn expired(&self, read: Duration, idle: Duration) -> Option<&'static str> {
        let now = Instant::now();
        self.with(|p| match *p {
            Phase::Idle(t) if now.duration_since(t) >= idle => Some("idle time-out"),
            Phase::Reading(t) if now.duration_since(t) >= read => Some("read time-out"),
            _ => None,
        })
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// An I/O stream that reports its traffic to an [`Activity`].
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_request_must_arrive_within_the_read_deadline() {
        let a = Activity::new();
        let ms = Duration::from_millis;
        let (read, idle) = (ms(60), ms(300));
        std::thread::sleep(ms(100));
        assert_eq!(a.expired(read, idle), None, "idle, but not for long");
        a.on_read();
        assert_eq!(a.expired(read, idle), None);
        std::thread::sleep(ms(70));
        assert_eq!(a.expired(read, idle), Some("read time-out"));
        a.handling();
        std::thread::sleep(ms(350));
        assert_eq!(
            a.expired(read, idle),
            None,
            "a running handler is not cut off"
        );
        a.idle();
        a.on_write();
        std::thread::sleep(ms(310));
        assert_eq!(a.expired(read, idle), Some("idle time-out"));
    }
}
