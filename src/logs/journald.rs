//! The systemd journal: each record as a journal entry with fields (`BYOKD_SEQ`,
//! `BYOKD_EVENT`, `BYOKD_SERVICE`, …, `MESSAGE`, `PRIORITY`), spoken in the journal's native
//! protocol on its datagram socket. Used only when byokd runs under systemd (`JOURNAL_STREAM`
//! or `INVOCATION_ID` set); a send that fails is counted, never retried, never blocking.

use super::record::{Level, Record};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The journal's native socket.
pub const SOCKET: &str = "/run/systemd/journal/socket";

pub struct Journald {
    socket: UnixDatagram,
    path: PathBuf,
    pub failed: AtomicU64,
}

impl Journald {
    /// A sender when running under systemd with the journal's socket present.
    pub fn from_env() -> Option<Journald> {
        let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some()
            || std::env::var_os("INVOCATION_ID").is_some();
        if !under_systemd || !Path::new(SOCKET).exists() {
            return None;
        }
        Journald::to(Path::new(SOCKET))
    }

    /// A sender to a given socket path.
    pub fn to(path: &Path) -> Option<Journald> {
        Some(Journald {
            socket: UnixDatagram::unbound().ok()?,
            path: path.to_owned(),
            failed: AtomicU64::new(0),
        })
    }

    pub fn send(&self, r: &Record) {
        let _ = self.socket.set_nonblocking(true);
        if self.socket.send_to(&entry(r), &self.path).is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Appends one field: `NAME=value\n`, or the binary form when the value holds a line break.
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    } else {
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
}

/// A record as a native-protocol journal entry.
pub fn entry(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, "MESSAGE", &r.message);
    let priority = match r.level {
        Level::Info => "6",
        Level::Warn => "4",
        Level::Error => "3",
    };
    field(&mut out, "PRIORITY", priority);
    field(&mut out, "SYSLOG_IDENTIFIER", "byokd");
    field(&mut out, "BYOKD_SEQ", &r.seq.to_string());
    field(&mut out, "BYOKD_TS", &r.ts);
    field(&mut out, "BYOKD_SERVICE", r.service.as_str());
    field(&mut out, "BYOKD_LEVEL", r.level.as_str());
    field(&mut out, "BYOKD_EVENT", &r.event);
    if let Some(j) = r.job {
        field(&mut out, "BYOKD_JOB", &j.to_string());
    }
    for (name, v) in [
        ("BYOKD_IDENTITY", &r.identity),
        ("BYOKD_GROUP", &r.group),
        ("BYOKD_KEY", &r.key),
        ("BYOKD_VAULT", &r.vault),
        ("BYOKD_KID", &r.kid),
        ("BYOKD_VERSION", &r.version),
        ("BYOKD_CREDENTIAL", &r.credential),
        ("BYOKD_APPROVAL", &r.approval),
    ] {
        if let Some(v) = v {
            field(&mut out, name, v);
        }
    }
    field(&mut out, "BYOKD_HASH", &r.hash);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::{Entry, Service};

    #[test]
    fn entries_reach_a_native_socket_with_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let j = Journald::to(&path).unwrap();
        let r = Record::seal(
            7,
            "2026-01-01T00:00:00.000Z".into(),
            crate::logs::chain::GENESIS.into(),
            Entry::new(
                Service::Azure,
                Level::Warn,
                "azure.kek.not_purged",
                "two\nlines",
            )
            .job(3)
            .vault("v1"),
        );
        j.send(&r);
        let mut buf = vec![0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        let got = &buf[..n];
        let text = String::from_utf8_lossy(got);
        assert!(text.contains("PRIORITY=4\n"), "{text}");
        assert!(text.contains("BYOKD_EVENT=azure.kek.not_purged\n"));
        assert!(text.contains("BYOKD_JOB=3\n") && text.contains("BYOKD_VAULT=v1\n"));
        let mut binary = b"MESSAGE\n".to_vec();
        binary.extend_from_slice(&9u64.to_le_bytes());
        binary.extend_from_slice(b"two\nlines\n");
        assert!(got.starts_with(&binary));
        assert_eq!(j.failed.load(Ordering::Relaxed), 0);
    }
}
