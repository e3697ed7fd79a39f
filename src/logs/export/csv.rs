//! The CSV form of an export: its columns, RFC 4180 quoting, the spreadsheet formula guard,
//! records and chain rows written as CSV, and CSV rows read back.

use super::{End, Row};
use crate::logs::chain::Item;
use crate::logs::record::Record;

/// The CSV columns, in order. `credential` and `approval` came last, after `hash`: an export
/// written before them has the first 16 columns only and still reads back.
pub const CSV_COLUMNS: [&str; 18] = [
    "kind",
    "seq",
    "ts",
    "service",
    "level",
    "event",
    "identity",
    "job",
    "group",
    "key",
    "vault",
    "kid",
    "version",
    "message",
    "prev",
    "hash",
    "credential",
    "approval",
];

/// The columns of an export written before `credential` and `approval`.
pub(super) const LEGACY_CSV_COLUMNS: usize = 16;

/// The first characters that make a spreadsheet read a cell as a formula (OWASP), plus `'`,
/// the escape itself, so that escaping can be undone exactly.
pub(super) const FORMULA_START: [char; 7] = ['=', '+', '-', '@', '\t', '\r', '\''];

/// A cell as written: a leading `'` when it starts like a formula (or with `'`), then quoted
/// when it holds a comma, quote, CR or LF (RFC 4180), doubling quotes.
pub fn csv_field(s: &str) -> String {
    let guarded;
    let s = if s.starts_with(FORMULA_START) {
        guarded = format!("'{s}");
        guarded.as_str()
    } else {
        s
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A cell's value as read back: the inverse of [`csv_field`]'s formula guard (one leading `'`
/// dropped).
pub fn csv_value(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

/// A CSV row that is not a record (a chain link or the end row): its kind, sequence number, a
/// note in the message column, and the two hashes; the record columns stay empty.
pub(super) fn csv_chain_row(kind: &str, seq: &str, note: &str, prev: &str, hash: &str) -> String {
    csv_row(&[
        kind, seq, "", "", "", "", "", "", "", "", "", "", "", note, prev, hash, "", "",
    ])
}

pub(super) fn csv_row(fields: &[&str]) -> String {
    let mut row = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    row.push_str("\r\n");
    row
}

pub(super) fn record_csv(r: &Record) -> String {
    let seq = r.seq.to_string();
    let job = r.job.map(|j| j.to_string()).unwrap_or_default();
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let (identity, group, key, vault, kid, version, credential, approval) = (
        o(&r.identity),
        o(&r.group),
        o(&r.key),
        o(&r.vault),
        o(&r.kid),
        o(&r.version),
        o(&r.credential),
        o(&r.approval),
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
        &credential,
        &approval,
    ])
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

pub(super) fn row_from_csv(row: &[String], width: usize) -> Result<Row, String> {
    if row.len() != width {
        return Err(format!("{} fields where the export has {width}", row.len()));
    }
    let row: Vec<String> = row.iter().map(|c| csv_value(c).to_owned()).collect();
    let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
    if row[0] == "end" {
        let last_seq = match row[1].as_str() {
            "" => None,
            s => Some(
                s.parse::<u64>()
                    .map_err(|_| format!("bad sequence number {s:?}"))?,
            ),
        };
        let (records, rows) = End::parse_counts(&row[13])
            .ok_or_else(|| format!("the end row's counts {:?} do not read", row[13]))?;
        return Ok(Row::End(End {
            end: true,
            records,
            rows,
            first_prev: opt(&row[14]),
            last_seq,
            last_hash: opt(&row[15]),
        }));
    }
    let seq = row[1]
        .parse::<u64>()
        .map_err(|_| format!("bad sequence number {:?}", row[1]))?;
    match row[0].as_str() {
        "link" => Ok(Row::Item(Item::Link {
            seq,
            prev: row[14].clone(),
            hash: row[15].clone(),
        })),
        "record" => {
            let service = crate::logs::record::Service::parse(&row[3])
                .ok_or_else(|| format!("bad service {:?}", row[3]))?;
            let level = crate::logs::record::Level::parse(&row[4])
                .filter(|l| l.as_str() == row[4])
                .ok_or_else(|| format!("bad level {:?}", row[4]))?;
            let job = match row[7].as_str() {
                "" => None,
                j => Some(j.parse::<u64>().map_err(|_| format!("bad job {j:?}"))?),
            };
            Ok(Row::Item(Item::Full(Box::new(Record {
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
                credential: row.get(16).and_then(opt),
                approval: row.get(17).and_then(opt),
                message: row[13].clone(),
                prev: row[14].clone(),
                hash: row[15].clone(),
            }))))
        }
        k => Err(format!("unknown row kind {k:?}")),
    }
}
