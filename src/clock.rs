//! The daemon's one clock: every decision that depends on the time of day (rotation due times,
//! grace deadlines, approval expiry, token renewal, job and record timestamps, certificate
//! validity) reads it. It is built once at start-up and handed to the service, the jobs, the
//! Azure client, dual control and the service log, so tests move time instead of sleeping.
//!
//! Only this file reads the system's wall clock (a test below greps `src/` for it). Monotonic
//! `Instant`s for time-outs, pacing and elapsed-time metrics are not the time of day, decide
//! nothing a moved clock should change, and stay where they are used.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use time::OffsetDateTime;

/// Tells the current time in UTC.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;

    /// Unix seconds, UTC.
    fn now_unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Milliseconds since the Unix epoch, UTC.
    fn now_ms(&self) -> i64 {
        i64::try_from(self.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// The same instant as a [`SystemTime`] (for APIs that take one).
    fn now_system(&self) -> SystemTime {
        SystemTime::from(self.now())
    }
}

/// The clock handed around the daemon.
pub type SharedClock = Arc<dyn Clock>;

/// A Unix time as the API and step messages show every time: RFC 3339, UTC
/// (`2026-12-07T04:05:06Z`); the bare number only if it is no calendar date.
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as the daemon shares it.
    pub fn shared() -> SharedClock {
        Arc::new(Self)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to (tests and benchmarks).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// A manual clock starting at the system's time now.
    pub fn starting_now() -> Self {
        Self::new(OffsetDateTime::now_utc())
    }

    pub fn set(&self, at: OffsetDateTime) {
        *self.lock() = at;
    }

    pub fn advance(&self, by: time::Duration) {
        *self.lock() += by;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OffsetDateTime> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.lock()
    }
}

/// Every `.rs` file below `dir` (source checks in tests).
#[cfg(test)]
pub(crate) fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads of the time of day; only this file may make them.
    const WALL_CLOCK_READS: &[&str] = &[
        "SystemTime::now",
        "OffsetDateTime::now_utc",
        "OffsetDateTime::now_local",
        "UtcDateTime::now",
        "Utc::now",
        "Local::now",
    ];

    #[test]
    fn only_this_file_reads_the_wall_clock() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        assert!(files.len() > 50, "src/ not found at {}", src.display());
        let mut found = Vec::new();
        for file in files.iter().filter(|f| !f.ends_with("src/clock.rs")) {
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if WALL_CLOCK_READS.iter().any(|r| line.contains(r)) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            found.is_empty(),
            "read the time from the injected crate::clock::Clock instead:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let c = ManualClock::new(at);
        assert_eq!(c.now_unix(), 1_800_000_000);
        c.advance(time::Duration::seconds(61));
        assert_eq!(c.now_unix(), 1_800_000_061);
        assert_eq!(c.now_ms(), 1_800_000_061_000);
        assert_eq!(
            c.now_system(),
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_061)
        );
    }
}
