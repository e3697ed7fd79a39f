//! Reading an export back (either format) into chain items and its end row, and checking its
//! chain offline.

use super::csv::{CSV_COLUMNS, LEGACY_CSV_COLUMNS, csv_rows, row_from_csv};
use super::{End, LinkLine, Row};
use crate::logs::chain::{Item, Verdict, Verifier};
use crate::logs::record::Record;

fn row_from_json(line: &str) -> Result<Row, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if v.get("end").is_some() {
        return serde_json::from_value::<End>(v)
            .map(Row::End)
            .map_err(|e| e.to_string());
    }
    if v.get("link").is_some() {
        let l: LinkLine = serde_json::from_value(v).map_err(|e| e.to_string())?;
        return Ok(Row::Item(Item::Link {
            seq: l.seq,
            prev: l.prev,
            hash: l.hash,
        }));
    }
    serde_json::from_value::<Record>(v)
        .map(|r| Row::Item(Item::Full(Box::new(r))))
        .map_err(|e| e.to_string())
}

/// An export as read back: its chain items, its end row, and the first problem reading it.
#[derive(Debug, Default)]
pub struct Read {
    pub items: Vec<Item>,
    pub end: Option<End>,
    /// The first row that does not parse, or a row after the end row; reading stops there.
    pub unreadable: Option<String>,
}

impl Read {
    fn take(&mut self, where_: String, row: Result<Row, String>) -> bool {
        if self.end.is_some() {
            self.unreadable = Some(format!("{where_}: a row after the end row"));
            return false;
        }
        match row {
            Ok(Row::Item(i)) => self.items.push(i),
            Ok(Row::End(e)) => self.end = Some(e),
            Err(e) => {
                self.unreadable = Some(format!("{where_}: {e}"));
                return false;
            }
        }
        true
    }
}

/// Reads an export (either format, told apart by its first line) into chain items and its
/// end row; stops at the first row that does not parse.
pub fn read(text: &str) -> Read {
    let mut out = Read::default();
    if text.starts_with("kind,") {
        let rows = match csv_rows(text) {
            Ok(r) => r,
            Err(e) => {
                out.unreadable = Some(e);
                return out;
            }
        };
        let header = rows
            .first()
            .map(|r| r.iter().map(String::as_str).collect::<Vec<_>>())
            .unwrap_or_default();
        let width = header.len();
        if !(width == CSV_COLUMNS.len() || width == LEGACY_CSV_COLUMNS)
            || header != CSV_COLUMNS[..width]
        {
            out.unreadable = Some("the CSV header is not an export's".into());
            return out;
        }
        for (n, row) in rows.iter().enumerate().skip(1) {
            if !out.take(format!("row {n}"), row_from_csv(row, width)) {
                break;
            }
        }
    } else {
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            if !out.take(format!("line {}", n + 1), row_from_json(line)) {
                break;
            }
        }
    }
    out
}

/// Reads an export into chain items (the end row left out); stops at the first row that does
/// not parse, returning it with the items before it.
pub fn read_items(text: &str) -> (Vec<Item>, Option<String>) {
    let r = read(text);
    (r.items, r.unreadable)
}

/// Checks an export's chain offline: each full record against its hash, each row against the
/// one before it, and the end row against what came before it (a file without one was cut
/// off). Reports the first broken row.
pub fn verify_text(text: &str) -> Verdict {
    let read = read(text);
    let mut v = Verifier::new(None);
    for i in &read.items {
        if v.feed(i).is_err() {
            return v.finish();
        }
    }
    if let Some(e) = read.unreadable {
        v.unreadable(e);
        return v.finish();
    }
    let seen = End {
        end: true,
        records: read
            .items
            .iter()
            .filter(|i| matches!(i, Item::Full(_)))
            .count() as u64,
        rows: read.items.len() as u64,
        first_prev: read.items.first().map(|i| i.prev().to_owned()),
        last_seq: read.items.last().map(Item::seq),
        last_hash: read.items.last().map(|i| i.hash().to_owned()),
    };
    let after = seen
        .last_seq
        .map_or("its start".to_owned(), |s| format!("record {s}"));
    match read.end {
        None => v.unreadable(format!(
            "the export has no end row: it was cut off after {after} ({} row(s) read)",
            seen.rows
        )),
        Some(end) if end != seen => v.unreadable(format!(
            "the end row does not match the rows before it (it says {} after record {}, the file has {} after {after}): rows were cut off or removed",
            end.counts_text(),
            end.last_seq.map_or("none".to_owned(), |s| s.to_string()),
            seen.counts_text(),
        )),
        Some(_) => {}
    }
    v.finish()
}
