//! Validation with line numbers: syntax, unknown keys, the type and range of every value (every
//! integer has an upper bound), and the checks across settings, all collected so that
//! `byokd check-config` prints every problem at once. The files a configuration names are
//! checked by `daemon::preflight`.

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
    /// An integer from the first bound to the second, both included. Every integer setting has
    /// an upper bound: past it a value overflows a time-out, a tokio semaphore or a channel.
    Int(u64, u64),
    Addr,
    OneOf(&'static [&'static str]),
    Table(&'static [(&'static str, Kind)]),
    MapOf(&'static Kind),
    ArrayOf(&'static Kind),
}

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;
const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

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
    ("connect_timeout_ms", Kind::Int(1, 10 * MINUTE_MS)),
    ("read_timeout_ms", Kind::Int(1, HOUR_MS)),
    ("total_timeout_ms", Kind::Int(1, DAY_MS)),
    ("max_attempts", Kind::Int(1, 100)),
    ("max_retry_wait_ms", Kind::Int(0, DAY_MS)),
    ("retry_base_ms", Kind::Int(0, HOUR_MS)),
    ("kek_size", Kind::Int(2048, 4096)),
    ("assertion_alg", Kind::OneOf(&["PS256", "RS256"])),
    ("vault_create_budget", Kind::Int(0, 100_000)),
    ("vault_budget_window_ms", Kind::Int(1, HOUR_MS)),
    ("vault_concurrent_imports", Kind::Int(1, 32)),
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
    ("approval_window_secs", Kind::Int(1, 7 * 24 * 3600)),
    ("identities", Kind::ArrayOf(&Kind::Table(IDENTITY))),
];
const LIMITS: &[(&str, Kind)] = &[
    ("hsm_request_timeout_ms", Kind::Int(1, HOUR_MS)),
    ("max_body_bytes", Kind::Int(1, 64 * MIB)),
    ("max_header_bytes", Kind::Int(1, MIB)),
    ("max_connections", Kind::Int(1, 65_536)),
    ("max_connections_per_peer", Kind::Int(1, 65_536)),
    ("handshake_timeout_ms", Kind::Int(100, 60_000)),
    ("max_long_polls_per_identity", Kind::Int(1, 65_536)),
    ("auth_failure_window_secs", Kind::Int(1, 3_600)),
    ("read_timeout_ms", Kind::Int(1, HOUR_MS)),
    ("idle_timeout_ms", Kind::Int(1, DAY_MS)),
    ("max_keys", Kind::Int(1, 10_000_000)),
    ("max_groups", Kind::Int(1, 1_000_000)),
    ("max_credentials", Kind::Int(1, 1_000_000)),
];
const SYSLOG: &[(&str, Kind)] = &[
    ("transport", Kind::OneOf(&["udp", "tcp", "tls"])),
    ("address", Kind::Str),
    ("ca_file", Kind::Path),
    ("server_name", Kind::Str),
    ("queue", Kind::Int(1, 1_000_000)),
];
const LOGS: &[(&str, Kind)] = &[
    ("dir", Kind::Path),
    ("max_segment_bytes", Kind::Int(4096, GIB)),
    ("max_total_bytes", Kind::Int(8192, 1024 * GIB)),
    ("fsync_interval_ms", Kind::Int(1, MINUTE_MS)),
    ("journald", Kind::Bool),
    ("syslog", Kind::ArrayOf(&Kind::Table(SYSLOG))),
];
const HARDENING: &[(&str, Kind)] = &[("mlock", Kind::OneOf(&["required", "best-effort"]))];
const LIFECYCLE: &[(&str, Kind)] = &[
    ("grace_days", Kind::Int(0, 3650)),
    ("drift_check_hours", Kind::Int(0, 8760)),
];
const JOBS: &[(&str, Kind)] = &[
    ("retain_count", Kind::Int(1, 1_000_000)),
    ("retain_days", Kind::Int(1, 36_500)),
];
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

/// What checking a configuration's text found: every problem, and the configuration when one
/// could be built (with the settings that had a problem left at their defaults, so that the
/// checks of the other settings still run).
pub struct Inspection {
    pub config: Option<Config>,
    pub problems: Vec<Problem>,
    lines: BTreeMap<String, usize>,
}

impl Inspection {
    /// The line of a setting (`"control.server_cert"`, `"logs.syslog.0"`), when the file sets it.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }
}

/// Reads and checks a configuration file.
pub fn check_file(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = read_file(path)?;
    check_text(&text)
}

/// Reads a configuration file's text.
pub fn read_file(path: &Path) -> Result<String, Vec<Problem>> {
    use crate::system::regular_file;
    let problem = |e: String| {
        vec![Problem {
            line: None,
            message: format!("cannot read {}: {e}", path.display()),
        }]
    };
    let bytes =
        regular_file::read(path, regular_file::TEXT_LIMIT).map_err(|e| problem(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| problem(e.to_string()))
}

/// Checks configuration text and returns the config, or every problem found.
pub fn check_text(text: &str) -> Result<Config, Vec<Problem>> {
    let found = inspect(text);
    match found.config {
        Some(config) if found.problems.is_empty() => Ok(config),
        _ => Err(found.problems),
    }
}

/// Checks configuration text: syntax, keys, types and ranges of every value, then the checks
/// across settings. A value of the wrong type or out of range does not hide the problems of the
/// others: it is reported and left out, and the rest is checked as if it were not set.
pub fn inspect(text: &str) -> Inspection {
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
        return Inspection {
            config: None,
            problems,
            lines: BTreeMap::new(),
        };
    }
    let mut walker = Walker {
        lines: &lines,
        problems: &mut problems,
        key_lines: BTreeMap::new(),
        bad_keys: Vec::new(),
    };
    walker.table("", doc.get_ref(), TOP, doc.span().start);
    let Walker {
        key_lines,
        bad_keys,
        ..
    } = walker;
    let config = match toml::from_str::<toml::Table>(text) {
        Ok(mut table) => {
            for key in &bad_keys {
                prune(&mut table, key);
            }
            toml::Value::Table(table).try_into::<Config>().ok()
        }
        Err(_) => None,
    };
    if let Some(c) = &config {
        semantic(c, &key_lines, &bad_keys, &mut problems);
    } else if problems.is_empty() {
        // The walker accepts everything serde does; this is a safety net.
        if let Err(e) = toml::from_str::<Config>(text) {
            problems.push(Problem {
                line: e.span().map(|s| lines.line(s.start)),
                message: first_line(e.message()),
            });
        }
    }
    Inspection {
        config,
        problems,
        lines: key_lines,
    }
}

/// Removes the setting at a dotted path (`limits.max_connections`,
/// `control.identities.0.role`). A bad item of an array removes the whole array.
fn prune(table: &mut toml::Table, key: &str) {
    let parts: Vec<&str> = key.split('.').collect();
    let cut = match parts.iter().rposition(|p| p.parse::<usize>().is_err()) {
        // `extra_ca.1`: drop `extra_ca`; `identities.0.role`: drop `role` in item 0.
        Some(i) => i + 1,
        None => return,
    };
    let mut here = toml::Value::Table(std::mem::take(table));
    prune_value(&mut here, &parts[..cut]);
    if let toml::Value::Table(t) = here {
        *table = t;
    }
}

fn prune_value(v: &mut toml::Value, parts: &[&str]) {
    match (parts, v) {
        ([last], toml::Value::Table(t)) => {
            t.remove(*last);
        }
        ([first, rest @ ..], toml::Value::Table(t)) => {
            if let Some(next) = t.get_mut(*first) {
                prune_value(next, rest);
            }
        }
        ([first, rest @ ..], toml::Value::Array(items)) => {
            if let Some(next) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                prune_value(next, rest);
            }
        }
        _ => {}
    }
}

fn logs_semantic(
    l: &super::schema::LogsSection,
    skip: &[String],
    bad: &mut impl FnMut(&str, String),
) {
    if l.dir.as_ref().is_some_and(|d| !d.is_absolute()) {
        bad("logs.dir", "logs.dir must be an absolute path".into());
    }
    let sizes_checked = ["logs.max_segment_bytes", "logs.max_total_bytes"]
        .iter()
        .all(|k| !skip.iter().any(|s| s == k));
    if sizes_checked && l.max_total_bytes < l.max_segment_bytes.saturating_mul(2) {
        bad(
            "logs.max_total_bytes",
            "logs.max_total_bytes must be at least twice logs.max_segment_bytes".into(),
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
    }
}

/// The control socket's fairness limits: per-peer and per-identity caps below the global one
/// (their own ranges, and those of the deadlines and windows, are checked with their types).
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
}

/// The checks across settings, and of values whose rule is more than a type and a range.
/// `skip` lists the settings already reported (and left at their defaults).
fn semantic(
    c: &Config,
    at: &BTreeMap<String, usize>,
    skip: &[String],
    problems: &mut Vec<Problem>,
) {
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
    logs_semantic(&c.logs, skip, &mut bad);
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
    if let Some(control) = &c.control {
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
    /// Settings with a problem, left out of the configuration the checks across settings see.
    bad_keys: Vec<String>,
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
                        &full,
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
                        let line = self.lines.line(start);
                        self.problems.push(Problem {
                            line: Some(line),
                            message: format!("missing required {what}"),
                        });
                    }
                }
            }
        }
    }

    fn value(&mut self, path: &str, value: &Spanned<DeValue<'_>>, kind: Kind) {
        let line = self.lines.line(value.span().start);
        let v = value.get_ref();
        let found = v.type_str();
        let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        let wrong = |want: &str| format!("{path} must be {want}, not {article} {found}");
        let problem = match kind {
            Kind::Str | Kind::Path => match v.as_str() {
                Some("") if matches!(kind, Kind::Path) => Some(format!("{path} must not be empty")),
                Some(_) => None,
                None => Some(wrong("a string")),
            },
            Kind::Bool => (!v.is_bool()).then(|| wrong("true or false")),
            Kind::Int(min, max) => match v.as_integer() {
                Some(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) if (min..=max).contains(&n) => None,
                    _ => Some(format!(
                        "{path} = {i} is out of range: it must be a whole number from {min} to {max}"
                    )),
                },
                None => Some(wrong(&format!("a whole number from {min} to {max}"))),
            },
            Kind::Addr => match v.as_str() {
                Some(s) if s.parse::<SocketAddr>().is_ok() => None,
                Some(s) => Some(format!("{path}: {s:?} is not an ip:port address")),
                None => Some(wrong("an \"ip:port\" string")),
            },
            Kind::OneOf(allowed) => match v.as_str() {
                Some(s) if allowed.contains(&s) => None,
                Some(s) => Some(format!(
                    "{path}: {s:?} is not one of {}",
                    allowed.join(", ")
                )),
                None => Some(wrong(&format!("one of {}", allowed.join(", ")))),
            },
            Kind::Table(schema) => match v.as_table() {
                Some(t) => {
                    self.table(path, t, schema, value.span().start);
                    None
                }
                None => Some(wrong("a table")),
            },
            Kind::MapOf(inner) => match v.as_table() {
                Some(t) => {
                    for (k, item) in t.iter() {
                        let name: &str = k.get_ref();
                        self.value(&join(path, name), item, *inner);
                    }
                    None
                }
                None => Some(wrong("a table")),
            },
            Kind::ArrayOf(inner) => match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let key = format!("{path}.{i}");
                        self.key_lines
                            .insert(key.clone(), self.lines.line(item.span().start));
                        self.value(&key, item, *inner);
                    }
                    None
                }
                None => Some(wrong("an array")),
            },
        };
        if let Some(message) = problem {
            self.problem(path, line, message);
        }
    }

    fn problem(&mut self, key: &str, line: usize, message: String) {
        self.bad_keys.push(key.to_owned());
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
