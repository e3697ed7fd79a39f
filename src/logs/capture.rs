//! Capture: a `tracing` layer that turns events carrying an `event = "dotted.code"` field
//! into service log records, so producers log once, with fields, and the audit trail follows.
//!
//! Fields read: `event`, `message`, and where present `job`, `group`, `key`, `vault`, `kid`,
//! `version`, `credential`, `approval`, `identity`, `service`, and `record_level` (the record's level where it differs
//! from the event's, e.g. a skipped purge said at INFO on stderr is a WARN record). The
//! service defaults to the event's module
//! (`byokd::azure::…` → azure, `hsm`, `control`, `jobs`, anything else → system); the level
//! follows the event's (ERROR → ERROR, WARN → WARN, else INFO). Other fields are not recorded,
//! so a field that is not one of these never reaches the log. Events without `event` are
//! ignored here.
//!
//! Context: an event that names no `identity` (or no `job`) takes it from the nearest enclosing
//! span that carries one. Jobs run inside a `job` span with the job id and the identity that
//! started it, and the scheduler inside a span with identity `scheduler`, so every record a job
//! causes (an Azure retry deep in the HTTP client included) names who started the job.

use super::record::{Entry, Level, Service};
use std::cell::Cell;
use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

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
    credential: Option<String>,
    approval: Option<String>,
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
            "credential" => &mut self.credential,
            "approval" => &mut self.approval,
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
    e.credential = f.credential;
    e.approval = f.approval;
    Some(e)
}

/// The `identity` and `job` a span carries, kept in its extensions for the events inside it.
#[derive(Debug, Default, Clone)]
struct SpanContext {
    identity: Option<String>,
    job: Option<u64>,
}

impl<S> tracing_subscriber::Layer<S> for CaptureLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if f.identity.is_none() && f.job.is_none() {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanContext {
                identity: f.identity,
                job: f.job,
            });
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if INSIDE.with(Cell::get) {
            return;
        }
        let Some(mut entry) = entry_of(event) else {
            return;
        };
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if entry.identity.is_some() && entry.job.is_some() {
                    break;
                }
                if let Some(c) = span.extensions().get::<SpanContext>() {
                    if entry.identity.is_none() {
                        entry.identity.clone_from(&c.identity);
                    }
                    if entry.job.is_none() {
                        entry.job = c.job;
                    }
                }
            }
        }
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
        let logs = crate::logs::Logs::open(
            &crate::logs::Settings {
                dir: tmp.path().join("logs"),
                limits: crate::logs::store::Limits {
                    max_segment_bytes: 1 << 20,
                    max_total_bytes: 4 << 20,
                },
                fsync_interval: std::time::Duration::from_millis(50),
                syslog: Vec::new(),
                journald: false,
            },
            crate::clock::SystemClock::shared(),
        )
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
            let job = tracing::info_span!("job", job = 9u64, identity = "operator");
            let _in_job = job.enter();
            let inner = tracing::info_span!("request", attempt = 2u64);
            let _in_inner = inner.enter();
            tracing::info!(target: "byokd::azure::http", event = "azure.ctx", "inside the job");
            tracing::info!(target: "byokd::jobs::push", event = "jobs.cancelled", identity = "admin", "explicit wins");
        });
        let mut got = Vec::new();
        crate::logs::store::scan(&tmp.path().join("logs"), |r| {
            got.push(r);
            true
        })
        .unwrap();
        assert_eq!(got.len(), 5, "{got:#?}");
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
        assert_eq!(got[2].job, None);
        // The enclosing job span supplies job and identity; an explicit field wins.
        assert_eq!(
            (got[3].job, got[3].identity.as_deref()),
            (Some(9), Some("operator"))
        );
        assert_eq!(
            (got[4].job, got[4].identity.as_deref()),
            (Some(9), Some("admin"))
        );
    }
}
