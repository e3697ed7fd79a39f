//! Every setting the file may hold: its type and range (every integer has an upper bound),
//! section by section, and the settings each section requires.

#[derive(Clone, Copy)]
pub(super) enum Kind {
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
    // 0 chooses from the token and the cores; at most hsm::MAX_SESSIONS.
    ("sessions", Kind::Int(0, 32)),
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
pub(super) const TOP: &[(&str, Kind)] = &[
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
pub(super) const REQUIRED: &[(&str, &[&str])] = &[
    ("", &["hsm"]),
    ("hsm", &["module", "token_label"]),
    ("control", &["server_cert", "server_key", "client_ca"]),
    ("control.identities", &["name", "role"]),
    ("logs.syslog", &["transport", "address"]),
];

/// Every setting's dotted name (`azure.kek_size`, `control.identities.role`,
/// `logs.syslog.queue`): what docs/configuration.md must document, no more and no less (a test
/// keeps the two equal).
pub fn setting_names() -> Vec<String> {
    fn walk(prefix: &str, table: &[(&str, Kind)], out: &mut Vec<String>) {
        for (name, kind) in table {
            let full = if prefix.is_empty() {
                (*name).to_owned()
            } else {
                format!("{prefix}.{name}")
            };
            match kind {
                Kind::Table(inner) | Kind::ArrayOf(Kind::Table(inner)) => walk(&full, inner, out),
                _ => out.push(full),
            }
        }
    }
    let mut out = Vec::new();
    walk("", TOP, &mut out);
    out
}
