//! Capture: a `tracing` layer that turns events carrying an `event = "dotted.code"` field
//! into service log records, so producers log once, with fields, and the audit trail follows.
//!
//! Fields read: `event`, `message`, and where present `job`, `group`, `key`, `vault`, `kid`,
//! `version`, `identity`, `service`, and `record_level` (the record's level where it differs
//! from the event's, e.g. a skipped purge said at INFO on stderr is a WARN record). The
//! service defaults to the event's module
//! (`byokd::azure::…` → azure, `hsm`, `control`, `jobs`, anything else → system); the level
//! follows the event's (ERROR → ERROR, WARN → WARN, else INFO). Other fields are not recorded,
//! so a field that is not one of these never reaches the log. Events without `event` are
//! ignored here.

use super::record::{Entry, Level, Service};
use std::cell::Cell;
use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// The layer; records go to the installed log (see [`super::install`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct CaptureLayer;

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

#[derive(Default)]
struct Fields {
    event: Option<String>,
    message: Option<String>,
    service: Option<String>,
    record_level: Option<String>,
    identity: Option<String>,
    job: Option<u64>,
    group: Option<String>,
    key: Option<String>,
    vault: Option<String>,
    kid: Option<String>,
    version: Option<String>,
}

impl Fields {
    fn put(&mut self, name: &str, value: String) {
        let slot = match name {
            "event" => &mut self.event,
            "message" => &mut self.message,
            "service" => &mut self.service,
            "record_level" => &mut self.record_level,
            "identity" => &mut self.identity,
            "group" => &mut self.group,
            "key" => &mut self.key,
            "vault" => &mut self.vault,
            "kid" => &mut self.kid,
            "version" => &mut self.version,
            "job" => {
                self.job = value.parse().ok();
                return;
            }
            _ => return,
        };
        *slot = Some(value);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.put(field.name(), s);
    }
}

/// The service of a module path: `byokd::azure::http` → azure.
pub fn service_of_target(target: &str) -> Service {
    let module = target.split("::").nth(1).unwrap_or("");
    match module {
        "azure" => Service::Azure,
        "hsm" => Service::Hsm,
        "control" => Service::Control,
        "jobs" => Service::Jobs,
        _ => Service::System,
    }
}

/// The entry an event stands for, if it carries an event code.
pub fn entry_of(event: &tracing::Event<'_>) -> Option<Entry> {
    let mut f = Fields::default();
    event.record(&mut f);
    let code = f.event.take()?;
    let meta = event.metadata();
    let service = f
        .service
        .as_deref()
        .and_then(Service::parse)
        .unwrap_or_else(|| service_of_target(meta.target()));
    let level = match (
        f.record_level.as_deref().and_then(Level::parse),
        *meta.level(),
    ) {
        (Some(l), _) => l,
        (None, tracing::Level::ERROR) => Level::Error,
        (None, tracing::Level::WARN) => Level::Warn,
        (None, _) => Level::Info,
    };
    let mut e = Entry::new(service, level, &code, f.message.unwrap_or_default());
    e.identity = f.identity;
    e.job = f.job;
    e.group = f.group;
    e.key = f.key;
    e.vault = f.vault;
    e.kid = f.kid;
    e.version = f.version;
    Some(e)
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if INSIDE.with(Cell::get) {
            return;
        }
        let Some(entry) = entry_of(event) else { return };
        let Some(logs) = super::installed() else {
            return;
        };
        INSIDE.with(|i| i.set(true));
        // A failure is kept in the log's health (degraded) and reported by operations.
        let _ = logs.append(entry);
        INSIDE.with(|i| i.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn events_with_a_code_become_records_with_their_fields_only() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = crate::logs::Logs::open(&crate::logs::Settings {
            dir: tmp.path().join("logs"),
            limits: crate::logs::store::Limits {
                max_segment_bytes: 1 << 20,
                max_total_bytes: 4 << 20,
            },
            fsync_interval: std::time::Duration::from_millis(50),
            syslog: Vec::new(),
            journald: false,
        })
        .unwrap();
        crate::logs::install(logs);
        let subscriber = tracing_subscriber::registry().with(CaptureLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "byokd::azure::http", event = "azure.retry", job = 3u64, vault = "v1",
                other = "not-a-record-field", "retried after {} ms", 20);
            tracing::info!(target: "byokd::azure::http", "no event code: not a record");
            tracing::info!(target: "byokd::jobs::push", event = "azure.kek.not_purged", record_level = "warn",
                service = "azure", kid = %"https://v1.vault.azure.net/keys/k/1", "not purged");
            tracing::error!(target: "byokd::control::server", event = "control.x", identity = "auditor", "denied");
        });
        let mut got = Vec::new();
        crate::logs::store::scan(&tmp.path().join("logs"), |r| {
            got.push(r);
            true
        })
        .unwrap();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert_eq!(
            (
                got[0].service,
                got[0].level,
                got[0].job,
                got[0].vault.as_deref()
            ),
            (Service::Azure, Level::Warn, Some(3), Some("v1"))
        );
        assert_eq!(got[0].message, "retried after 20 ms");
        assert!(
            !serde_json::to_string(&got[0])
                .unwrap()
                .contains("not-a-record-field")
        );
        assert_eq!(
            (got[1].service, got[1].level),
            (Service::Azure, Level::Warn)
        );
        assert_eq!(
            got[1].kid.as_deref(),
            Some("https://v1.vault.azure.net/keys/k/1")
        );
        assert_eq!(
            (got[2].service, got[2].level),
            (Service::Control, Level::Error)
        );
        assert_eq!(got[2].identity.as_deref(), Some("auditor"));
    }
}
