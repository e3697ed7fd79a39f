//! The checks across settings, and of values whose rule is more than a type and a range
//! (absolute paths, names, the logs' sizes, the fairness caps, identities).

use super::Problem;
use crate::config::Config;
use std::collections::BTreeMap;

fn logs_semantic(
    l: &crate::config::schema::LogsSection,
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
        if t.transport == crate::config::schema::SyslogTransport::Tls && t.ca_file.is_none() {
            bad(
                &key,
                "a tls syslog collector needs ca_file (the CA its certificate chains to)".into(),
            );
        }
    }
}

/// The control socket's fairness limits: per-peer and per-identity caps below the global one
/// (their own ranges, and those of the deadlines and windows, are checked with their types).
fn fairness_semantic(l: &crate::config::schema::Limits, bad: &mut impl FnMut(&str, String)) {
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
pub(super) fn semantic(
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
