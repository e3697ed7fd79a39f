//! Writing an export as records arrive: full records, link rows for the records the filter
//! leaves out between two exported ones, and the end row.

use super::csv::{CSV_COLUMNS, csv_chain_row, csv_row, record_csv};
use super::{End, Format, LinkLine};
use crate::logs::query::Filter;
use crate::logs::record::Record;
use std::io::Write;

/// Writes an export as records arrive, oldest first; [`Exporter::finish`] writes the end row.
pub struct Exporter<W: Write> {
    out: W,
    format: Format,
    filter: Filter,
    pending: Vec<(u64, String, String)>,
    started: bool,
    pub records: u64,
    rows: u64,
    first_prev: Option<String>,
    last: Option<(u64, String)>,
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
            rows: 0,
            first_prev: None,
            last: None,
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
                Format::Csv => csv_chain_row("link", &seq.to_string(), "", &prev, &hash),
            };
            self.out.write_all(line.as_bytes())?;
            self.rows += 1;
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
        self.rows += 1;
        self.first_prev.get_or_insert_with(|| r.prev.clone());
        self.last = Some((r.seq, r.hash.clone()));
        Ok(())
    }

    /// Writes the end row and flushes; returns the writer and the number of records.
    pub fn finish(mut self) -> std::io::Result<(W, u64)> {
        let end = End {
            end: true,
            records: self.records,
            rows: self.rows,
            first_prev: self.first_prev.take(),
            last_seq: self.last.as_ref().map(|(s, _)| *s),
            last_hash: self.last.take().map(|(_, h)| h),
        };
        let line = match self.format {
            Format::Jsonl => {
                let mut s = serde_json::to_string(&end).map_err(std::io::Error::other)?;
                s.push('\n');
                s
            }
            Format::Csv => {
                let seq = end.last_seq.map(|s| s.to_string()).unwrap_or_default();
                csv_chain_row(
                    "end",
                    &seq,
                    &end.counts_text(),
                    end.first_prev.as_deref().unwrap_or_default(),
                    end.last_hash.as_deref().unwrap_or_default(),
                )
            }
        };
        self.out.write_all(line.as_bytes())?;
        self.out.flush()?;
        Ok((self.out, self.records))
    }
}
