//! Round trips of both formats, CSV quoting and the formula guard.

use super::csv::{FORMULA_START, csv_row};
use super::*;
use crate::logs::query::Filter;
use crate::logs::record::Record;

/// Two chained records, the second with a credential and an approval.
fn chained() -> Vec<Record> {
    use super::super::record::{Entry, Level, Service};
    let first = Record::seal(
        1,
        "2026-01-01T00:00:00.000Z".into(),
        super::super::chain::GENESIS.into(),
        Entry::new(Service::Control, Level::Info, "group.created", "g").group("g"),
    );
    let second = Record::seal(
        2,
        "2026-01-01T00:00:01.000Z".into(),
        first.hash.clone(),
        Entry::new(Service::Control, Level::Warn, "credential.deleted", "c")
            .credential("app")
            .approval("0b7c")
            .identity("admin (approved by admin2)"),
    );
    vec![first, second]
}

fn export(records: &[Record], format: Format) -> String {
    let mut e = Exporter::new(Vec::new(), format, Filter::default()).unwrap();
    for r in records {
        e.push(r).unwrap();
    }
    String::from_utf8(e.finish().unwrap().0).unwrap()
}

#[test]
fn credential_and_approval_round_trip_and_older_csv_exports_still_verify() {
    let records = chained();
    for format in [Format::Csv, Format::Jsonl] {
        let text = export(&records, format);
        assert!(verify_text(&text).ok(), "{text}");
        let (items, problem) = read_items(&text);
        assert_eq!(problem, None);
        assert_eq!(items[1], Item::Full(Box::new(records[1].clone())));
    }
    // An export from before the two columns: the first 16 of every row. Records without a
    // credential or approval hash the same as before.
    let old = chained().into_iter().take(1).collect::<Vec<_>>();
    let legacy: String = export(&old, Format::Csv)
        .replace(",credential,approval", "")
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cut = l.trim_end_matches(",,");
            format!("{cut}\r\n")
        })
        .collect();
    assert!(legacy.starts_with("kind,seq,ts") && legacy.contains(",prev,hash\r\n"));
    assert!(verify_text(&legacy).ok(), "{legacy}");
}

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

#[test]
fn cells_that_start_like_a_formula_are_guarded_and_read_back_exactly() {
    let cells = [
        "=HYPERLINK(\"http://x\",\"y\")",
        "+1",
        "-2+3",
        "@SUM(A1)",
        "\tTAB",
        "\rCR",
        "'quoted",
        "''twice",
        "a=b",
        "plain",
    ];
    let text: String = cells.iter().map(|c| csv_row(&[c])).collect();
    let rows = csv_rows(&text).unwrap();
    for (row, c) in rows.iter().zip(cells) {
        let raw = &row[0];
        // What a spreadsheet sees never starts a formula.
        assert!(
            !raw.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{raw:?}"
        );
        if c.starts_with(FORMULA_START) {
            assert_eq!(raw, &format!("'{c}"));
        } else {
            assert_eq!(raw, c);
        }
        assert_eq!(csv_value(raw), c);
    }
}
