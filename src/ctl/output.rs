//! byokctl's output: every `-o` format (`table`, `wide`, `json`, `yaml`, `tsv`, `none`) of a
//! list or a record, the columns of a table, and writing to standard output without ever
//! panicking on a closed pipe (`byokctl job list | head -1`).
//!
//! It owns formatting and writing only; it never decides what to fetch. JSON and YAML keep the
//! API's field names and values; tables fit the terminal's width and are plain lines, never
//! wrapped, when standard output is not a terminal.

use super::CtlError;
use super::cli::Output;
use super::describe;
use super::grid::grid;
use serde::Serialize;
use serde_json::Value;
use std::io::Write;

/// A table column: its heading, the JSON field it shows, and whether only `-o wide` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub head: &'static str,
    pub field: &'static str,
    pub wide: bool,
}

/// A column of every table.
pub const fn col(head: &'static str, field: &'static str) -> Column {
    Column {
        head,
        field,
        wide: false,
    }
}

/// A column of `-o wide` (and `-o tsv`) only.
pub const fn wide(head: &'static str, field: &'static str) -> Column {
    Column {
        head,
        field,
        wide: true,
    }
}

/// Writes `text` and a newline to standard output. A reader that went away (a closed pipe)
/// ends the command quietly ([`CtlError::OutputClosed`]); any other write error is reported.
pub fn say(text: &str) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(written)
}

/// Writes `bytes` as they are (no newline added).
pub fn say_bytes(bytes: &[u8]) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(written)
}

fn written(e: std::io::Error) -> CtlError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CtlError::OutputClosed
    } else {
        CtlError::Other(format!("writing to standard output: {e}"))
    }
}

/// A note for the operator on standard error; a closed standard error is ignored.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Prints `v` in a machine format (`json`, `yaml`, `tsv`) or not at all (`none`); returns
/// false for the human formats (`table`, `wide`), which the caller prints its own way.
pub fn machine<T: Serialize>(format: Output, v: &T) -> Result<bool, CtlError> {
    match format {
        Output::Table | Output::Wide => Ok(false),
        Output::None => Ok(true),
        Output::Json => say(&serde_json::to_string_pretty(v).unwrap_or_default()).map(|()| true),
        Output::Yaml => say(yaml(v)?.trim_end()).map(|()| true),
        Output::Tsv => {
            say(&tsv_record(&serde_json::to_value(v).unwrap_or_default())).map(|()| true)
        }
    }
}

/// `v` as YAML, with the API's field names.
pub fn yaml<T: Serialize>(v: &T) -> Result<String, CtlError> {
    serde_norway::to_string(v).map_err(|e| CtlError::Other(format!("writing YAML: {e}")))
}

/// A list: the rows of `whole[field]` as a table (`table`, `wide`), as TSV with the API's
/// field names as the header (`tsv`), or the whole answer (`json`, `yaml`).
pub fn list<T: Serialize>(
    format: Output,
    answer: &T,
    field: &str,
    cols: &[Column],
) -> Result<(), CtlError> {
    let whole = serde_json::to_value(answer).unwrap_or_default();
    let rows = whole
        .get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    match format {
        Output::Table | Output::Wide => say(&table(rows, cols, format == Output::Wide)),
        Output::Tsv => say(&tsv(rows, cols)),
        _ => machine(format, answer).map(drop),
    }
}

/// One record: describe-style (`table`, `wide`) or in a machine format.
pub fn record<T: Serialize>(format: Output, v: &T) -> Result<(), CtlError> {
    if machine(format, v)? {
        return Ok(());
    }
    say(&describe::describe(v))
}

/// A table cell: the field's value as one line of text.
fn cell(row: &Value, field: &str) -> String {
    let v = row.get(field);
    match v {
        Some(Value::Object(o)) if field == "rotation" => format_rotation(o),
        Some(Value::Object(_)) if field == "progress" => progress_text(row),
        Some(Value::Array(a)) if field == "journal" => format_journal(a),
        Some(Value::Null) | None => "-".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
        Some(Value::Array(a)) if a.is_empty() => "-".to_owned(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// A job's progress in keys ("7/20 keys") where it pushes keys, else in percent.
pub fn progress_text(job: &Value) -> String {
    match key_counts(job) {
        Some((done, total)) => format!("{done}/{total} keys"),
        None => {
            let done = job.pointer("/progress/done").and_then(Value::as_u64);
            let total = job.pointer("/progress/total").and_then(Value::as_u64);
            match (done, total) {
                (Some(d), Some(t)) if t > 0 => format!("{}%", d.min(t) * 100 / t),
                _ => "-".to_owned(),
            }
        }
    }
}

/// A job's keys: (imported or failed, all), for a job that pushes keys.
pub fn key_counts(job: &Value) -> Option<(u64, u64)> {
    let keys = job.get("keys")?.as_array().filter(|k| !k.is_empty())?;
    let done = keys
        .iter()
        .filter(|k| {
            matches!(
                k.get("state").and_then(Value::as_str),
                Some("imported" | "failed")
            )
        })
        .count();
    Some((done as u64, keys.len() as u64))
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

/// Rows as a table: the narrow columns, or every column with `wide`; `(none)` for no rows.
pub fn table(rows: &[Value], cols: &[Column], wide: bool) -> String {
    let cols: Vec<&Column> = cols.iter().filter(|c| wide || !c.wide).collect();
    let heads: Vec<String> = cols.iter().map(|c| c.head.to_owned()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| cell(r, c.field)).collect())
        .collect();
    let mut out = grid(&heads, &cells, 0);
    if rows.is_empty() {
        out.push_str("\n(none)");
    }
    out
}

/// Rows as TSV: a header of the API's field names, then every column's raw text; a tab or a
/// newline inside a value is written `\t` or `\n`.
pub fn tsv(rows: &[Value], cols: &[Column]) -> String {
    let mut out = vec![cols.iter().map(|c| c.field).collect::<Vec<_>>().join("\t")];
    for r in rows {
        out.push(
            cols.iter()
                .map(|c| tsv_cell(r.get(c.field)))
                .collect::<Vec<_>>()
                .join("\t"),
        );
    }
    out.join("\n")
}

/// One record as TSV: a `field<TAB>value` line per leaf, nested fields as `a.b` and list items
/// as `a.0.b`.
pub fn tsv_record(v: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            Value::Object(o) if !o.is_empty() => {
                for (k, x) in o {
                    walk(&join(k), x, out);
                }
            }
            Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
                for (i, x) in a.iter().enumerate() {
                    walk(&join(&i.to_string()), x, out);
                }
            }
            leaf => out.push(format!("{prefix}\t{}", tsv_cell(Some(leaf)))),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.join("\n")
}

fn tsv_cell(v: Option<&Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.iter().all(|x| !x.is_object() && !x.is_array()) => a
            .iter()
            .map(|x| tsv_cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    };
    text.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const COLS: &[Column] = &[
        col("NAME", "name"),
        col("CREATED", "created"),
        wide("GROUPS", "groups"),
    ];

    #[test]
    fn tables_align_keep_rfc3339_times_and_widen_on_demand() {
        let rows = vec![
            json!({"name": "a", "created": "1970-01-01T00:00:00Z", "groups": ["g1", "g2"]}),
            json!({"name": "long-name", "created": null}),
        ];
        let t = table(&rows, COLS, false);
        assert_eq!(t.lines().next().unwrap(), "NAME       CREATED", "{t}");
        assert_eq!(t.lines().nth(1).unwrap(), "a          1970-01-01T00:00:00Z");
        assert_eq!(t.lines().nth(2).unwrap(), "long-name  -");
        let w = table(&rows, COLS, true);
        assert!(w.contains("1970-01-01T00:00:00Z  g1,g2"), "{w}");
        assert!(table(&[], COLS, false).ends_with("(none)"));
    }

    #[test]
    fn tsv_keeps_field_names_and_escapes_tabs() {
        let rows = vec![json!({"name": "a\tb", "created": null, "groups": ["g1", "g2"]})];
        assert_eq!(tsv(&rows, COLS), "name\tcreated\tgroups\na\\tb\t\tg1,g2");
        let rec = tsv_record(&json!({"a": {"b": 1}, "l": [{"x": true}], "s": ["p", "q"]}));
        assert_eq!(rec, "a.b\t1\nl.0.x\ttrue\ns\tp,q");
    }

    #[test]
    fn progress_counts_keys_where_a_job_pushes_keys() {
        let job = json!({"keys": [
            {"key": "a", "state": "imported"}, {"key": "b", "state": "pending"},
            {"key": "c", "state": "failed"}], "progress": {"done": 500, "total": 1000}});
        assert_eq!(progress_text(&job), "2/3 keys");
        let job = json!({"keys": [], "progress": {"done": 830, "total": 1000}});
        assert_eq!(progress_text(&job), "83%");
    }

    #[test]
    fn a_job_row_shows_its_typed_journal_by_step_code() {
        let job = json!({"id": "4", "journal": [
            {"step": "rotate.key-planned", "key": "g-20260101T000000Z-4"},
            {"step": "push.kek-planned", "key": null},
        ]});
        assert_eq!(
            cell(&job, "journal"),
            "rotate.key-planned (g-20260101T000000Z-4), push.kek-planned"
        );
    }
}
