//! Validation with line numbers: syntax, unknown keys, types, values and semantic checks, all
//! collected so that `byokd check-config` prints every problem at once.

use super::Config;
use serde_spanned::Spanned;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use toml::de::{DeTable, DeValue};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Path,
    Bool,
    Int,
    Addr,
    OneOf(&'static [&'static str]),
    Table(&'static [(&'static str, Kind)]),
    MapOf(&'static Kind),
    ArrayOf(&'static Kind),
}

const HSM: &[(&str, Kind)] = &[
    ("module", Kind::Path),
    ("token_label", Kind::Str),
    ("pin_file", Kind::Str),
    ("allow_host_wrap", Kind::Bool),
];
const AZURE: &[(&str, Kind)] = &[
    ("cloud", Kind::OneOf(&["public", "china", "usgov"])),
    ("resolve", Kind::MapOf(&Kind::Addr)),
    ("extra_ca", Kind::ArrayOf(&Kind::Path)),
    ("connect_timeout_ms", Kind::Int),
    ("read_timeout_ms", Kind::Int),
    ("total_timeout_ms", Kind::Int),
    ("max_attempts", Kind::Int),
    ("max_retry_wait_ms", Kind::Int),
    ("retry_base_ms", Kind::Int),
    ("kek_size", Kind::Int),
    ("assertion_alg", Kind::OneOf(&["PS256", "RS256"])),
    ("vault_create_budget", Kind::Int),
    ("vault_budget_window_ms", Kind::Int),
    ("vault_concurrent_imports", Kind::Int),
];
const IDENTITY: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("role", Kind::OneOf(&["admin", "operator", "auditor"])),
    ("fingerprint", Kind::Str),
    ("cn", Kind::Str),
];
const CONTROL: &[(&str, Kind)] = &[
    ("listen", Kind::Addr),
    ("unix_socket", Kind::Path),
    ("server_cert", Kind::Path),
    ("server_key", Kind::Path),
    ("client_ca", Kind::Path),
    ("approval_window_secs", Kind::Int),
    ("identities", Kind::ArrayOf(&Kind::Table(IDENTITY))),
];
const LIMITS: &[(&str, Kind)] = &[
    ("hsm_request_timeout_ms", Kind::Int),
    ("max_body_bytes", Kind::Int),
    ("max_header_bytes", Kind::Int),
    ("max_connections", Kind::Int),
    ("max_connections_per_peer", Kind::Int),
    ("handshake_timeout_ms", Kind::Int),
    ("max_long_polls_per_identity", Kind::Int),
    ("auth_failure_window_secs", Kind::Int),
    ("read_timeout_ms", Kind::Int),
    ("idle_timeout_ms", Kind::Int),
    ("max_keys", Kind::Int),
    ("max_groups", Kind::Int),
    ("max_credentials", Kind::Int),
];
const SYSLOG: &[(&str, Kind)] = &[
    ("transport", Kind::OneOf(&["udp", "tcp", "tls"])),
    ("address", Kind::Str),
    ("ca_file", Kind::Path),
    ("server_name", Kind::Str),
    ("queue", Kind::Int),
];
const LOGS: &[(&str, Kind)] = &[
    ("dir", Kind::Path),
    ("max_segment_bytes", Kind::Int),
    ("max_total_bytes", Kind::Int),
    ("fsync_interval_ms", Kind::Int),
    ("journald", Kind::Bool),
    ("syslog", Kind::ArrayOf(&Kind::Table(SYSLOG))),
];
const HARDENING: &[(&str, Kind)] = &[("mlock", Kind::OneOf(&["required", "best-effort"]))];
const LIFECYCLE: &[(&str, Kind)] = &[("grace_days", Kind::Int), ("drift_check_hours", Kind::Int)];
const JOBS: &[(&str, Kind)] = &[("retain_count", Kind::Int), ("retain_days", Kind::Int)];
const TOP: &[(&str, Kind)] = &[
    ("state_dir", Kind::Path),
    ("designated", Kind::Bool),
    ("allow_root", Kind::Bool),
    ("hsm", Kind::Table(HSM)),
    ("azure", Kind::Table(AZURE)),
    ("control", Kind::Table(CONTROL)),
    ("limits", Kind::Table(LIMITS)),
    ("hardening", Kind::Table(HARDENING)),
    ("logs", Kind::Table(LOGS)),
    ("lifecycle", Kind::Table(LIFECYCLE)),
    ("jobs", Kind::Table(JOBS)),
];
const REQUIRED: &[(&str, &[&str])] = &[
    ("", &["hsm"]),
    ("hsm", &["module", "token_label"]),
    ("control", &["server_cert", "server_key", "client_ca"]),
    ("control.identities", &["name", "role"]),
    ("logs.syslog", &["transport", "address"]),
];

/// Reads and checks a configuration file.
pub fn check_file(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            line: None,
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    check_text(&text)
}

/// Checks configuration text and returns the config, or every problem found.
pub fn check_text(text: &str) -> Result<Config, Vec<Problem>> {
    let lines = LineIndex::new(text);
    let (doc, errors) = DeTable::parse_recoverable(text);
    let mut problems: Vec<Problem> = errors
        .iter()
        .map(|e| Problem {
            line: e.span().map(|s| lines.line(s.start)),
            message: first_line(e.message()),
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut walker = Walker {
        lines: &lines,
        problems: &mut problems,
        key_lines: BTreeMap::new(),
    };
    walker.table("", doc.get_ref(), TOP, doc.span().start);
    let key_lines = walker.key_lines;
    if !problems.is_empty() {
        return Err(problems);
    }
    let config: Config = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            return Err(vec![Problem {
                line: e.span().map(|s| lines.line(s.start)),
                message: first_line(e.message()),
            }]);
        }
    };
    semantic(&config, &key_lines, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn logs_semantic(l: &super::schema::LogsSection, bad: &mut impl FnMut(&str, String)) {
    if l.dir.as_ref().is_some_and(|d| !d.is_absolute()) {
        bad("logs.dir", "logs.dir must be an absolute path".into());
    }
    if l.max_segment_bytes < 4096 {
        bad(
            "logs.max_segment_bytes",
            "logs.max_segment_bytes must be at least 4096".into(),
        );
    }
    if l.max_total_bytes < l.max_segment_bytes.saturating_mul(2) {
        bad(
            "logs.max_total_bytes",
            "logs.max_total_bytes must be at least twice logs.max_segment_bytes".into(),
        );
    }
    if l.fsync_interval_ms == 0 || l.fsync_interval_ms > 60_000 {
        bad(
            "logs.fsync_interval_ms",
            "logs.fsync_interval_ms must be from 1 to 60000".into(),
        );
    }
    for (i, t) in l.syslog.iter().enumerate() {
        let key = format!("logs.syslog.{i}");
        let port_ok = t
            .address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            bad(
                &key,
                format!("logs.syslog address {:?} must be host:port", t.address),
            );
        }
        if t.transport == super::schema::SyslogTransport::Tls && t.ca_file.is_none() {
            bad(
                &key,
                "a tls syslog collector needs ca_file (the CA its certificate chains to)".into(),
            );
        }
        if t.queue == 0 {
            bad(&key, "logs.syslog queue must be at least 1".into());
        }
    }
}

/// The control socket's fairness limits: per-peer and per-identity caps below the global one,
/// deadlines and windows within sane bounds.
fn fairness_semantic(l: &super::schema::Limits, bad: &mut impl FnMut(&str, String)) {
    let below = l.max_connections.saturating_sub(1).max(1);
    for (name, v) in [
        (
            "limits.max_connections_per_peer",
            l.max_connections_per_peer,
        ),
        (
            "limits.max_long_polls_per_identity",
            l.max_long_polls_per_identity,
        ),
    ] {
        if let Some(v) = v
            && !(1..=below).contains(&v)
        {
            bad(
                name,
                format!(
                    "{name} {v} must be from 1 to {below} (less than limits.max_connections, {})",
                    l.max_connections
                ),
            );
        }
    }
    if !(100..=60_000).contains(&l.handshake_timeout_ms) {
        bad(
            "limits.handshake_timeout_ms",
            format!(
                "limits.handshake_timeout_ms {} must be from 100 to 60000",
                l.handshake_timeout_ms
            ),
        );
    }
    if !(1..=3600).contains(&l.auth_failure_window_secs) {
        bad(
            "limits.auth_failure_window_secs",
            format!(
                "limits.auth_failure_window_secs {} must be from 1 to 3600",
                l.auth_failure_window_secs
            ),
        );
    }
}

fn semantic(c: &Config, at: &BTreeMap<String, usize>, problems: &mut Vec<Problem>) {
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            line: at.get(key).copied(),
            message,
        })
    };
    if !c.state_dir.is_absolute() {
        bad(
            "state_dir",
            format!("state_dir {:?} must be an absolute path", c.state_dir),
        );
    }
    if !c.hsm.module.is_absolute() {
        bad(
            "hsm.module",
            format!(
                "hsm.module {:?} must be an absolute path to the PKCS#11 module",
                c.hsm.module
            ),
        );
    } else if !c.hsm.module.is_file() {
        bad(
            "hsm.module",
            format!(
                "hsm.module {:?} does not exist; install the HSM vendor's PKCS#11 library or fix the path",
                c.hsm.module
            ),
        );
    }
    if c.hsm.token_label.is_empty() || c.hsm.token_label.len() > 32 {
        bad(
            "hsm.token_label",
            "hsm.token_label must be 1-32 characters (a PKCS#11 token label)".into(),
        );
    }
    let pin = &c.hsm.pin_file;
    if pin.is_empty() || (!pin.starts_with('/') && (pin.contains('/') || pin == "." || pin == ".."))
    {
        bad(
            "hsm.pin_file",
            format!(
                "hsm.pin_file {pin:?} must be a credential name (read from $CREDENTIALS_DIRECTORY) or an absolute path"
            ),
        );
    }
    for host in c.azure.resolve.keys() {
        if host.is_empty() || host.contains(['/', ':', ' ']) {
            bad(
                "azure.resolve",
                format!("azure.resolve key {host:?} must be a bare host name"),
            );
        }
    }
    logs_semantic(&c.logs, &mut bad);
    fairness_semantic(&c.limits, &mut bad);
    if ![2048, 3072, 4096].contains(&c.azure.kek_size) {
        bad(
            "azure.kek_size",
            format!(
                "azure.kek_size {} must be 2048, 3072 or 4096",
                c.azure.kek_size
            ),
        );
    }
    if c.azure.vault_budget_window_ms == 0 {
        bad(
            "azure.vault_budget_window_ms",
            "azure.vault_budget_window_ms must be at least 1 (Azure's window is 10000)".to_owned(),
        );
    }
    if !(1..=32).contains(&c.azure.vault_concurrent_imports) {
        bad(
            "azure.vault_concurrent_imports",
            format!(
                "azure.vault_concurrent_imports {} must be 1 to 32",
                c.azure.vault_concurrent_imports
            ),
        );
    }
    for (name, v) in [
        (
            "limits.hsm_request_timeout_ms",
            c.limits.hsm_request_timeout_ms as usize,
        ),
        ("limits.max_body_bytes", c.limits.max_body_bytes),
        ("limits.max_header_bytes", c.limits.max_header_bytes),
        ("limits.max_connections", c.limits.max_connections),
        ("limits.read_timeout_ms", c.limits.read_timeout_ms as usize),
        ("limits.idle_timeout_ms", c.limits.idle_timeout_ms as usize),
        ("limits.max_keys", c.limits.max_keys),
        ("limits.max_groups", c.limits.max_groups),
        ("limits.max_credentials", c.limits.max_credentials),
        ("jobs.retain_count", c.jobs.retain_count),
        ("jobs.retain_days", c.jobs.retain_days as usize),
    ] {
        if v == 0 {
            bad(name, format!("{name} must be greater than 0"));
        }
    }
    if c.lifecycle.grace_days > 3650 {
        bad(
            "lifecycle.grace_days",
            format!(
                "lifecycle.grace_days {} must be at most 3650 (0 never disables the previous version)",
                c.lifecycle.grace_days
            ),
        );
    }
    if c.lifecycle.drift_check_hours > 8760 {
        bad(
            "lifecycle.drift_check_hours",
            format!(
                "lifecycle.drift_check_hours {} must be at most 8760 (0 checks on demand only)",
                c.lifecycle.drift_check_hours
            ),
        );
    }
    if let Some(control) = &c.control {
        if control.approval_window_secs == 0 {
            bad(
                "control.approval_window_secs",
                "control.approval_window_secs must be greater than 0".into(),
            );
        }
        for (i, id) in control.identities.iter().enumerate() {
            let key = format!("control.identities.{i}");
            match (&id.fingerprint, &id.cn) {
                (None, None) | (Some(_), Some(_)) => {
                    bad(
                        &key,
                        format!(
                            "identity {:?} needs exactly one of fingerprint or cn",
                            id.name
                        ),
                    );
                }
                (Some(fp), None) => {
                    let hex: String = fp.chars().filter(|c| *c != ':').collect();
                    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        bad(
                            &key,
                            format!(
                                "identity {:?}: fingerprint must be a SHA-256 (64 hex digits, colons allowed)",
                                id.name
                            ),
                        );
                    }
                }
                (None, Some(_)) => {}
            }
        }
    }
}

struct Walker<'a> {
    lines: &'a LineIndex,
    problems: &'a mut Vec<Problem>,
    key_lines: BTreeMap<String, usize>,
}

impl Walker<'_> {
    fn table(&mut self, path: &str, table: &DeTable<'_>, schema: &[(&str, Kind)], start: usize) {
        for (key, value) in table.iter() {
            let name: &str = key.get_ref();
            let full = join(path, name);
            let line = self.lines.line(key.span().start);
            self.key_lines.insert(full.clone(), line);
            match schema.iter().find(|(k, _)| *k == name) {
                Some((_, kind)) => self.value(&full, value, *kind),
                None => {
                    let known: Vec<&str> = schema.iter().map(|(k, _)| *k).collect();
                    let where_ = if path.is_empty() {
                        "at the top level".to_owned()
                    } else {
                        format!("in [{path}]")
                    };
                    self.problem(
                        line,
                        format!(
                            "unknown key {name:?} {where_}; known keys: {}",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        let schema_path = strip_indexes(path);
        for (section, required) in REQUIRED {
            if *section == schema_path {
                for req in *required {
                    if !table.iter().any(|(k, _)| k.get_ref().as_ref() == *req) {
                        let what = if path.is_empty() {
                            format!("section [{req}]")
                        } else {
                            format!("key {req:?} in [{path}]")
                        };
                        self.problem(self.lines.line(start), format!("missing required {what}"));
                    }
                }
            }
        }
    }

    fn value(&mut self, path: &str, value: &Spanned<DeValue<'_>>, kind: Kind) {
        let line = self.lines.line(value.span().start);
        let v = value.get_ref();
        let wrong = |want: &str| format!("{path} must be {want}, not a {}", v.type_str());
        match kind {
            Kind::Str | Kind::Path => match v.as_str() {
                Some(s) if matches!(kind, Kind::Path) && s.is_empty() => {
                    self.problem(line, format!("{path} must not be empty"))
                }
                Some(_) => {}
                None => self.problem(line, wrong("a string")),
            },
            Kind::Bool => {
                if !v.is_bool() {
                    self.problem(line, wrong("true or false"));
                }
            }
            Kind::Int => match v
                .as_integer()
                .map(|i| i.as_str().replace('_', "").parse::<u64>())
            {
                Some(Ok(_)) => {}
                _ => self.problem(line, wrong("a non-negative integer")),
            },
            Kind::Addr => match v.as_str() {
                Some(s) if s.parse::<SocketAddr>().is_ok() => {}
                Some(s) => self.problem(line, format!("{path}: {s:?} is not an ip:port address")),
                None => self.problem(line, wrong("an \"ip:port\" string")),
            },
            Kind::OneOf(allowed) => match v.as_str() {
                Some(s) if allowed.contains(&s) => {}
                Some(s) => self.problem(
                    line,
                    format!("{path}: {s:?} is not one of {}", allowed.join(", ")),
                ),
                None => self.problem(line, wrong(&format!("one of {}", allowed.join(", ")))),
            },
            Kind::Table(schema) => match v.as_table() {
                Some(t) => self.table(path, t, schema, value.span().start),
                None => self.problem(line, wrong("a table")),
            },
            Kind::MapOf(inner) => match v.as_table() {
                Some(t) => {
                    for (k, item) in t.iter() {
                        let name: &str = k.get_ref();
                        self.value(&join(path, name), item, *inner);
                    }
                }
                None => self.problem(line, wrong("a table")),
            },
            Kind::ArrayOf(inner) => match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.value(&format!("{path}.{i}"), item, *inner);
                    }
                }
                None => self.problem(line, wrong("an array")),
            },
        }
    }

    fn problem(&mut self, line: usize, message: String) {
        self.problems.push(Problem {
            line: Some(line),
            message,
        });
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn strip_indexes(path: &str) -> String {
    path.split('.')
        .filter(|p| !p.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(".")
}

fn first_line(msg: &str) -> String {
    msg.lines().next().unwrap_or(msg).trim().to_owned()
}

struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        Self(text.match_indices('\n').map(|(i, _)| i).collect())
    }
    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}
