//! Export files: the "Export File" button. JSON Lines or CSV, with the chain hashes, so an
//! export verifies offline.
//!
//! A filtered export keeps the chain checkable: records the filter leaves out between two
//! exported records appear as *link* rows (sequence number and hashes only, no content), so a
//! removed, inserted or reordered row breaks the chain. Owns the two formats (writing, CSV
//! quoting per RFC 4180, reading back) and the offline check. Never reads the store itself.

use super::chain::{Item, Verdict, Verifier};
use super::query::Filter;
use super::record::Record;
use serde::{Deserialize, Serialize};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "jsonl" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/jsonl",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 16] = [
    "kind", "seq", "ts", "service", "level", "event", "identity", "job", "group", "key", "vault",
    "kid", "version", "message", "prev", "hash",
];

#[derive(Serialize, Deserialize)]
struct LinkLine {
    link: bool,
    seq: u64,
    prev: String,
    hash: String,
}

/// Quotes a CSV field when it holds a comma, quote, CR or LF (RFC 4180), doubling quotes.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_row(fields: &[&str]) -> String {
    let mut row = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    row.push_str("\r\n");
    row
}

fn record_csv(r: &Record) -> String {
    let seq = r.seq.to_string();
    let job = r.job.map(|j| j.to_string()).unwrap_or_default();
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let (identity, group, key, vault, kid, version) = (
        o(&r.identity),
        o(&r.group),
        o(&r.key),
        o(&r.vault),
        o(&r.kid),
        o(&r.version),
    );
    csv_row(&[
        "record",
        &seq,
        &r.ts,
        r.service.as_str(),
        r.level.as_str(),
        &r.event,
        &identity,
        &job,
        &group,
        &key,
        &vault,
        &kid,
        &version,
        &r.message,
        &r.prev,
        &r.hash,
    ])
}

/// Writes an export as records arrive, oldest first.
pub struct Exporter<W: Write> {
    out: W,
    format: Format,
    filter: Filter,
    pending: Vec<(u64, String, String)>,
    started: bool,
    pub records: u64,
}

impl<W: Write> Exporter<W> {
    pub fn new(mut out: W, format: Format, filter: Filter) -> std::io::Result<Self> {
        if format == Format::Csv {
            out.write_all(csv_row(&CSV_COLUMNS).as_bytes())?;
        }
        Ok(Self {
            out,
            format,
            filter,
            pending: Vec::new(),
            started: false,
            records: 0,
        })
    }

    /// Takes the next stored record: exported in full if it matches, else kept as a link
    /// (written only if a later record is exported).
    pub fn push(&mut self, r: &Record) -> std::io::Result<()> {
        if !self.filter.matches(r) {
            if self.started {
                self.pending.push((r.seq, r.prev.clone(), r.hash.clone()));
            }
            return Ok(());
        }
        for (seq, prev, hash) in std::mem::take(&mut self.pending) {
            let line = match self.format {
                Format::Jsonl => {
                    let mut s = serde_json::to_string(&LinkLine {
                        link: true,
                        seq,
                        prev,
                        hash,
                    })
                    .map_err(std::io::Error::other)?;
                    s.push('\n');
                    s
                }
                Format::Csv => csv_row(&[
                    "link",
                    &seq.to_string(),
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    &prev,
                    &hash,
                ]),
            };
            self.out.write_all(line.as_bytes())?;
        }
        let line = match self.format {
            Format::Jsonl => {
                let mut s = serde_json::to_string(r).map_err(std::io::Error::other)?;
                s.push('\n');
                s
            }
            Format::Csv => record_csv(r),
        };
        self.out.write_all(line.as_bytes())?;
        self.started = true;
        self.records += 1;
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<(W, u64)> {
        self.out.flush()?;
        Ok((self.out, self.records))
    }
}

/// Splits CSV text into rows of fields (RFC 4180: quoted fields may hold commas, doubled
/// quotes and line breaks). Returns the rows or where the text stops being CSV.
pub fn csv_rows(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut line = 1usize;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            '"' => return Err(format!("line {line}: a quote inside an unquoted field")),
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {line}: a quoted field is not closed"));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

fn item_from_csv(row: &[String]) -> Result<Item, String> {
    if row.len() != CSV_COLUMNS.len() {
        return Err(format!(
            "{} fields where the export has {}",
            row.len(),
            CSV_COLUMNS.len()
        ));
    }
    let seq = row[1]
        .parse::<u64>()
        .map_err(|_| format!("bad sequence number {:?}", row[1]))?;
    let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
    match row[0].as_str() {
        "link" => Ok(Item::Link {
            seq,
            prev: row[14].clone(),
            hash: row[15].clone(),
        }),
        "record" => {
            let service = super::record::Service::parse(&row[3])
                .ok_or_else(|| format!("bad service {:?}", row[3]))?;
            let level = super::record::Level::parse(&row[4])
                .filter(|l| l.as_str() == row[4])
                .ok_or_else(|| format!("bad level {:?}", row[4]))?;
            let job = match row[7].as_str() {
                "" => None,
                j => Some(j.parse::<u64>().map_err(|_| format!("bad job {j:?}"))?),
            };
            Ok(Item::Full(Box::new(Record {
                seq,
                ts: row[2].clone(),
                service,
                level,
                event: row[5].clone(),
                identity: opt(&row[6]),
                job,
                group: opt(&row[8]),
                key: opt(&row[9]),
                vault: opt(&row[10]),
                kid: opt(&row[11]),
                version: opt(&row[12]),
                message: row[13].clone(),
                prev: row[14].clone(),
                hash: row[15].clone(),
            })))
        }
        k => Err(format!("unknown row kind {k:?}")),
    }
}

fn item_from_json(line: &str) -> Result<Item, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if v.get("link").is_some() {
        let l: LinkLine = serde_json::from_value(v).map_err(|e| e.to_string())?;
        return Ok(Item::Link {
            seq: l.seq,
            prev: l.prev,
            hash: l.hash,
        });
    }
    serde_json::from_value::<Record>(v)
        .map(|r| Item::Full(Box::new(r)))
        .map_err(|e| e.to_string())
}

/// Reads an export (either format, told apart by its first line) into chain items; stops at
/// the first row that does not parse, returning it with the items before it.
pub fn read_items(text: &str) -> (Vec<Item>, Option<String>) {
    let mut items = Vec::new();
    if text.starts_with("kind,") {
        let rows = match csv_rows(text) {
            Ok(r) => r,
            Err(e) => return (items, Some(e)),
        };
        if rows
            .first()
            .map(|r| r.iter().map(String::as_str).collect::<Vec<_>>())
            != Some(CSV_COLUMNS.to_vec())
        {
            return (items, Some("the CSV header is not an export's".into()));
        }
        for (n, row) in rows.iter().enumerate().skip(1) {
            match item_from_csv(row) {
                Ok(i) => items.push(i),
                Err(e) => return (items, Some(format!("row {n}: {e}"))),
            }
        }
    } else {
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            match item_from_json(line) {
                Ok(i) => items.push(i),
                Err(e) => return (items, Some(format!("line {}: {e}", n + 1))),
            }
        }
    }
    (items, None)
}

/// Checks an export's chain offline: each full record against its hash, each row against the
/// one before it. Reports the first broken row.
pub fn verify_text(text: &str) -> Verdict {
    let (items, unreadable) = read_items(text);
    let mut v = Verifier::new(None);
    for i in &items {
        if v.feed(i).is_err() {
            return v.finish();
        }
    }
    if let Some(e) = unreadable {
        v.unreadable(e);
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_commas_quotes_and_line_breaks_and_reads_them_back() {
        let tricky = [
            "plain",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "crlf\r\nend",
            "",
            "\"",
        ];
        let text: String = tricky.iter().map(|t| csv_row(&[t, "x"])).collect();
        let rows = csv_rows(&text).unwrap();
        assert_eq!(rows.len(), tricky.len());
        for (row, t) in rows.iter().zip(tricky) {
            assert_eq!(row, &vec![t.to_owned(), "x".to_owned()]);
        }
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("q\"q"), "\"q\"\"q\"");
    }
}
