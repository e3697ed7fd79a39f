//! Export files: the "Export File" button. JSON Lines or CSV, with the chain hashes, so an
//! export verifies offline.
//!
//! A filtered export keeps the chain checkable: records the filter leaves out between two
//! exported records appear as *link* rows (sequence number and hashes only, no content), so a
//! removed, inserted or reordered row breaks the chain. Every export ends with an *end* row
//! (how many records and rows came before it, the first row's `prev` and the last row's
//! sequence number and hash), so a file cut short (a download that broke off, a copy that
//! stopped) is reported as cut off, not taken for a shorter valid chain.
//!
//! CSV cells that a spreadsheet would run as a formula (they start with `=`, `+`, `-`, `@`, a
//! tab or a CR, per OWASP's CSV injection guidance) are written with a leading `'`; so that this
//! reads back exactly, a cell that starts with `'` gets one too, and reading drops one leading
//! `'` from every cell. The chain hashes cover the record, not its CSV form, so a CSV export
//! verifies the same as a JSON Lines one.
//!
//! Owns the two formats (writing, CSV quoting per RFC 4180 and formula protection, reading
//!
//! Files: `csv` (columns, RFC 4180 quoting, the formula guard, CSV rows written and read),
//! `writer` (the `Exporter`), `reader` (reading an export back and the offline check),
//! `tests`; this file holds the format and the rows that are not records.

mod csv;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use csv::{CSV_COLUMNS, csv_field, csv_rows, csv_value};
pub use reader::{Read, read, read_items, verify_text};
pub use writer::Exporter;

use super::chain::Item;
use serde::{Deserialize, Serialize};

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

#[derive(Serialize, Deserialize)]
struct LinkLine {
    link: bool,
    seq: u64,
    prev: String,
    hash: String,
}

/// The last row of every export. In JSON Lines it is `{"end":true,…}`; in CSV a row of kind
/// `end` with `last_seq` in the `seq` column, `first_prev` in `prev`, `last_hash` in `hash` and
/// the counts in `message` (`N record(s) in M row(s)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub end: bool,
    /// Full records before this row.
    pub records: u64,
    /// Rows before this row (records and links; the CSV header not counted).
    pub rows: u64,
    /// The first row's `prev` (none in an empty export).
    pub first_prev: Option<String>,
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
}

impl End {
    fn counts_text(&self) -> String {
        format!("{} record(s) in {} row(s)", self.records, self.rows)
    }

    fn parse_counts(text: &str) -> Option<(u64, u64)> {
        let (records, rest) = text.split_once(" record(s) in ")?;
        let rows = rest.strip_suffix(" row(s)")?;
        Some((records.parse().ok()?, rows.parse().ok()?))
    }
}

/// One row of an export as read back.
enum Row {
    Item(Item),
    End(End),
}
