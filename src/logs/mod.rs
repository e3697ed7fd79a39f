//! The service log: chained, stored, queryable, exportable and forwarded records of what byokd
//! did (the appliance's "System Logs", e.g. the "Azure Service" log).
//!
//! Owns: the record (`record`), the hash chain (`chain`), segment storage (`store`), filters
//! (`query`), export files (`export`), capture of `tracing` events that carry an `event` code
//! (`capture`), syslog forwarding (`forward`) and the systemd journal (`journald`).
//! Must never: hold a secret (producers pass names and ids only), block a key operation on a
//! slow collector, or lose a record silently (a failed write turns health degraded and is
//! reported to the operation).

pub mod capture;
pub mod chain;
pub mod events;
pub mod export;
pub mod forward;
pub mod journald;
pub mod query;
pub mod record;
pub mod store;

pub use events::Event;
pub use record::{Entry, Level, Record, Service};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

/// Where and how the log is kept and sent.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub limits: store::Limits,
    pub fsync_interval: Duration,
    pub syslog: Vec<forward::Target>,
    /// Send to the journal when running under systemd.
    pub journald: bool,
}

impl Settings {
    /// The settings a configuration names (`[logs]`; the directory defaults to
    /// `<state_dir>/logs`).
    pub fn from_config(c: &crate::config::Config) -> Settings {
        let l = &c.logs;
        Settings {
            dir: l.dir.clone().unwrap_or_else(|| c.state_dir.join("logs")),
            limits: store::Limits {
                max_segment_bytes: l.max_segment_bytes,
                max_total_bytes: l.max_total_bytes,
            },
            fsync_interval: Duration::from_millis(l.fsync_interval_ms.max(1)),
            syslog: l.syslog.iter().map(forward::Target::from_config).collect(),
            journald: l.journald,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("the service log is unavailable: {0}")]
    Unavailable(String),
}

/// Whether writing works, and what was lost while it did not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteHealth {
    /// The last write failure, while writes fail.
    pub error: Option<String>,
    /// Records that could not be stored since the log was opened.
    pub lost: u64,
    /// Lost records not yet reported by a record of their own.
    #[serde(skip)]
    unreported: u64,
}

/// The share of the log kept for records of peers without a certificate (see `store`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unattributed {
    /// Bytes such records take now.
    pub bytes: u64,
    /// The most they may take (a sixteenth of `logs.max_total_bytes`).
    pub reserve: u64,
    /// Whether the last one offered was refused (the share was full); it turns false again
    /// when one is stored (after old segments were dropped).
    pub refusing: bool,
    /// How many were refused since the log was opened (their failures still reach stderr,
    /// rate-limited).
    pub refused: u64,
}

/// The log's state for `/v1/health` and `byokctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub degraded: bool,
    pub dir: String,
    pub next_seq: u64,
    pub segments: usize,
    pub bytes: u64,
    pub write: WriteHealth,
    pub unattributed: Unattributed,
    pub forwarders: Vec<forward::Status>,
    pub journald: bool,
}

struct Inner {
    store: Mutex<store::Store>,
    health: Mutex<WriteHealth>,
    /// Refusals of unattributed records: (refusing now, refused in all).
    refusals: Mutex<(bool, u64)>,
    /// The last stored sequence number, for followers.
    tail: tokio::sync::watch::Sender<u64>,
    forwarders: Vec<forward::Forwarder>,
    journald: Option<journald::Journald>,
    dir: PathBuf,
    /// Dates the records (the daemon's one clock).
    clock: crate::clock::SharedClock,
}

/// The service log. Cheap to clone.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logs")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl Logs {
    /// Opens the store (repairing a torn last line), starts the fsync batcher and the
    /// forwarders. Must run inside a tokio runtime when syslog targets are configured.
    pub fn open(settings: &Settings, clock: crate::clock::SharedClock) -> Result<Logs, LogError> {
        let (store, report) = store::Store::open(&settings.dir, settings.limits.clone())?;
        let next = store.next_seq();
        let forwarders = settings
            .syslog
            .iter()
            .cloned()
            .map(forward::Forwarder::start)
            .collect();
        let journald = settings
            .journald
            .then(journald::Journald::from_env)
            .flatten();
        let logs = Logs {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                health: Mutex::new(WriteHealth::default()),
                refusals: Mutex::new((false, 0)),
                tail: tokio::sync::watch::channel(next.saturating_sub(1)).0,
                forwarders,
                journald,
                dir: settings.dir.clone(),
                clock,
            }),
        };
        for f in &logs.inner.forwarders {
            f.attach(Arc::downgrade(&logs.inner));
        }
        spawn_fsync(Arc::downgrade(&logs.inner), settings.fsync_interval);
        if report.truncated_bytes > 0 {
            let _ = logs.append(Entry::new(
                Service::System,
                Level::Warn,
                Event::LogRepaired.as_str(),
                format!(
                    "The last {} byte(s) of the log store were an incomplete record (byokd stopped mid-write) and were cut off",
                    report.truncated_bytes
                ),
            ));
        }
        Ok(logs)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Now, as a record timestamp, by the daemon's clock.
    fn now_ts(&self) -> String {
        record::ts_of(self.inner.clock.now())
    }

    /// Stores one record and hands it to the forwarders. A failure is returned *and* turns
    /// health degraded until a later write succeeds; that write is preceded by a record of
    /// how many were lost. A record of a peer without a certificate (`store::unattributed`)
    /// that its share of the log has no room for is refused instead: counted in the status,
    /// recorded once per run of refusals, not a write failure.
    pub fn append(&self, entry: Entry) -> Result<Record, LogError> {
        let mut store = self.inner.store.lock().unwrap_or_else(|p| p.into_inner());
        let lost = self.health().lost_pending();
        if let Some(n) = lost {
            let note = Entry::new(
                Service::System,
                Level::Warn,
                Event::LogWriteRecovered.as_str(),
                format!(
                    "The log store accepts records again; {n} record(s) could not be stored while it failed"
                ),
            );
            if let Ok(r) = store.append(note, self.now_ts()) {
                self.publish(&r);
                self.health_mut(|h| {
                    h.error = None;
                    h.unreported = 0;
                });
            }
        }
        let outsider = store::unattributed(&entry);
        match store.append(entry, self.now_ts()) {
            Err(store::StoreError::ReserveFull { reserve }) => {
                self.refused(&mut store, reserve);
                Err(store::StoreError::ReserveFull { reserve }.into())
            }
            Ok(r) => {
                if outsider {
                    self.inner
                        .refusals
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .0 = false;
                }
                self.health_mut(|h| h.error = None);
                self.publish(&r);
                Ok(r)
            }
            Err(e) => {
                self.health_mut(|h| {
                    h.error = Some(e.to_string());
                    h.lost += 1;
                    h.unreported += 1;
                });
                Err(e.into())
            }
        }
    }

    /// Counts a refused unattributed record; the first of a run is recorded.
    fn refused(&self, store: &mut store::Store, reserve: u64) {
        let first = {
            let mut r = self
                .inner
                .refusals
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let first = !r.0;
            *r = (true, r.1 + 1);
            first
        };
        if first {
            let note = Entry::new(
                Service::System,
                Level::Warn,
                Event::LogUnattributedRefused.as_str(),
                format!(
                    "Records of peers without a client certificate take their whole share of the log ({reserve} bytes, a sixteenth of logs.max_total_bytes); further ones are refused, not stored, until old segments are dropped (byokctl status counts them; stderr still gets them, rate-limited)"
                ),
            );
            if let Ok(r) = store.append(note, self.now_ts()) {
                self.publish(&r);
            }
        }
    }

    fn publish(&self, r: &Record) {
        for f in &self.inner.forwarders {
            f.send(r);
        }
        if let Some(j) = &self.inner.journald {
            j.send(r);
        }
        self.inner.tail.send_replace(r.seq);
    }

    fn health(&self) -> HealthView {
        HealthView(
            self.inner
                .health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    fn health_mut(&self, f: impl FnOnce(&mut WriteHealth)) {
        f(&mut self.inner.health.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The current write problem, if writes fail.
    pub fn write_problem(&self) -> Option<String> {
        self.health().0.error
    }

    /// Writes buffered records to disk now.
    pub fn sync(&self) -> Result<(), LogError> {
        let handle = self
            .inner
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sync_handle();
        if let Some(f) = handle {
            f.sync_data().map_err(|e| {
                let msg = format!("fsync of the log store failed: {e}");
                self.health_mut(|h| h.error = Some(msg.clone()));
                LogError::Unavailable(msg)
            })?;
        }
        Ok(())
    }

    pub fn status(&self) -> Status {
        let (next_seq, segments, bytes, outsiders, reserve) = {
            let s = self.inner.store.lock().unwrap_or_else(|p| p.into_inner());
            (
                s.next_seq(),
                s.segment_count(),
                s.total_bytes(),
                s.unattributed_bytes(),
                s.reserve(),
            )
        };
        let (refusing, refused) = *self
            .inner
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let write = self.health().0;
        let forwarders: Vec<forward::Status> =
            self.inner.forwarders.iter().map(|f| f.status()).collect();
        Status {
            degraded: write.error.is_some(),
            dir: self.inner.dir.display().to_string(),
            next_seq,
            segments,
            bytes,
            write,
            unattributed: Unattributed {
                bytes: outsiders,
                reserve,
                refusing,
                refused,
            },
            forwarders,
            journald: self.inner.journald.is_some(),
        }
    }

    /// Follows the last stored sequence number.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.tail.subscribe()
    }

    /// A page of matching records after `q.after`, oldest first; waits up to `q.wait` seconds
    /// for one when there is none.
    pub async fn query(&self, q: &query::Query) -> Result<Vec<Record>, LogError> {
        let mut tail = self.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait);
        loop {
            let page = self.page(q).await?;
            if !page.is_empty() || q.wait == 0 {
                return Ok(page);
            }
            if tokio::time::timeout_at(deadline, tail.changed())
                .await
                .is_err()
            {
                return Ok(page);
            }
        }
    }

    async fn page(&self, q: &query::Query) -> Result<Vec<Record>, LogError> {
        let dir = self.inner.dir.clone();
        let q = q.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            store::scan(&dir, |r| {
                if r.seq > q.after && q.filter.matches(&r) {
                    out.push(r);
                }
                out.len() < q.limit
            })?;
            Ok(out)
        })
        .await
        .map_err(|e| LogError::Unavailable(format!("log reader task: {e}")))?
    }

    /// Checks the stored chain.
    pub async fn verify(&self) -> Result<chain::Verdict, LogError> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || store::verify(&dir))
            .await
            .map_err(|e| LogError::Unavailable(format!("log verify task: {e}")))?
            .map_err(LogError::from)
    }
}

struct HealthView(WriteHealth);

impl HealthView {
    /// Records lost while writes failed, when the failure is still unreported.
    fn lost_pending(&self) -> Option<u64> {
        (self.0.unreported > 0).then_some(self.0.unreported)
    }
}

fn spawn_fsync(inner: Weak<Inner>, every: Duration) {
    let _ = std::thread::Builder::new()
        .name("byokd-log-fsync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(inner) = inner.upgrade() else { return };
                let logs = Logs { inner };
                let _ = logs.sync();
            }
        });
}

static SINK: RwLock<Option<Logs>> = RwLock::new(None);

/// Makes `logs` the destination of captured `tracing` events (see `capture`).
pub fn install(logs: Logs) {
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = Some(logs);
}

/// The installed log, if any.
pub fn installed() -> Option<Logs> {
    SINK.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The installed log's write problem, if any: operations report it.
pub fn write_problem() -> Option<String> {
    installed().and_then(|l| l.write_problem())
}
