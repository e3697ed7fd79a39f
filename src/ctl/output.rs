//! byokctl's output: human tables (the default) or the server's JSON (`--output json`), and
//! the progress bar drawn while a job runs.
//!
//! It owns formatting only; it never decides what to fetch.

use serde_json::Value;
use std::io::{IsTerminal, Write};

/// A column: its heading and the JSON field it shows.
pub type Column = (&'static str, &'static str);

fn cell(v: Option<&Value>, field: &str) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) if is_time(field) => format_time(s),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
        Some(Value::Array(a)) if field == "journal" => format_journal(a),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x), ""))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Object(o)) if field == "rotation" => format_rotation(o),
        Some(Value::Object(o)) if field == "drift" => format_drift(o),
        Some(Value::Object(o)) if field == "pending_grace" => format_grace(o),
        Some(other) => other.to_string(),
    }
}

fn is_time(field: &str) -> bool {
    matches!(
        field,
        "created"
            | "expires"
            | "last_rotated"
            | "next_rotation"
            | "requested_at"
            | "expires_at"
            | "decided_at"
            | "started"
            | "ended"
            | "not_after"
    )
}

/// A job's typed journal: each step's code, with the key it is about.
fn format_journal(steps: &[Value]) -> String {
    steps
        .iter()
        .map(|s| {
            let code = s.get("step").and_then(Value::as_str).unwrap_or("?");
            match s.get("key").and_then(Value::as_str) {
                Some(key) => format!("{code} ({key})"),
                None => code.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The last drift check: when, and each finding on its own line.
fn format_drift(o: &serde_json::Map<String, Value>) -> String {
    let checked = o
        .get("checked")
        .and_then(Value::as_str)
        .map_or_else(|| "?".to_owned(), format_time);
    let findings = o
        .get("findings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if findings.is_empty() {
        return format!("checked {checked}: Azure matches");
    }
    let mut out = format!("checked {checked}: {} finding(s)", findings.len());
    for f in findings {
        out.push_str(&format!(
            "\n    {}: {}",
            f.get("code").and_then(Value::as_str).unwrap_or("?"),
            f.get("message").and_then(Value::as_str).unwrap_or("")
        ));
    }
    out
}

fn format_grace(o: &serde_json::Map<String, Value>) -> String {
    let versions = o
        .get("versions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let due = o
        .get("due")
        .and_then(Value::as_str)
        .map_or_else(|| "?".to_owned(), format_time);
    format!("disable {versions} at {due}")
}

fn format_rotation(o: &serde_json::Map<String, Value>) -> String {
    let on = o.get("enabled").and_then(Value::as_bool).unwrap_or(false);
    let every = o
        .get("rotate_every_months")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let keep = o
        .get("keep_valid_months")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    format!(
        "{} every {every}mo, valid {keep}mo",
        if on { "on" } else { "off" }
    )
}

/// An API time (RFC 3339) as `YYYY-MM-DD HH:MM:SSZ`; other text as it is.
pub fn format_time(t: &str) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    crate::contract::Timestamp::parse(t)
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.unix()).ok())
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| t.to_owned())
}

/// Prints rows as an aligned table.
pub fn table(rows: &[Value], cols: &[Column]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|(_, f)| cell(r.get(*f), f)).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<&str>| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(cols.iter().map(|(h, _)| *h).collect())];
    for r in &cells {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        out.push("(none)".to_owned());
    }
    out.join("\n")
}

/// Prints one object as `field: value` lines, in its own order.
pub fn record(v: &Value) -> String {
    let Some(o) = v.as_object() else {
        return cell(Some(v), "");
    };
    let width = o.keys().map(String::len).max().unwrap_or(0);
    o.iter()
        .map(|(k, val)| format!("{k:<width$}  {}", cell(Some(val), k)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A job's progress on stderr: a bar on a terminal, one line per change otherwise.
pub struct Progress {
    tty: bool,
    last: String,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last: String::new(),
        }
    }

    pub fn update(&mut self, state: &str, done: u64, total: u64, step: &str) {
        let width = 30usize;
        let filled = (done.min(total) * width as u64)
            .checked_div(total)
            .unwrap_or(0) as usize;
        let bar = format!(
            "[{}{}] {done}/{total} {state} {step}",
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        if bar == self.last {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{bar}")
        } else {
            writeln!(err, "{bar}")
        };
        let _ = err.flush();
        self.last = bar;
    }

    pub fn finish(&mut self) {
        if self.tty && !self.last.is_empty() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_format_times() {
        let rows = vec![
            json!({"name": "a", "created": "1970-01-01T00:00:00Z", "groups": ["g1", "g2"]}),
            json!({"name": "long-name", "created": null}),
        ];
        let t = table(
            &rows,
            &[
                ("NAME", "name"),
                ("CREATED", "created"),
                ("GROUPS", "groups"),
            ],
        );
        assert_eq!(
            t.lines().next().unwrap(),
            "NAME       CREATED               GROUPS"
        );
        assert!(t.contains("1970-01-01 00:00:00Z  g1,g2"));
        assert!(table(&[], &[("NAME", "name")]).ends_with("(none)"));
    }

    #[test]
    fn a_job_record_shows_its_typed_journal_by_step_code() {
        let job = json!({"id": "4", "journal": [
            {"step": "rotate.key-planned", "key": "g-20260101T000000Z-4"},
            {"step": "push.kek-planned", "key": null},
        ]});
        assert!(
            record(&job)
                .contains("journal  rotate.key-planned (g-20260101T000000Z-4), push.kek-planned"),
            "{}",
            record(&job)
        );
    }
}
