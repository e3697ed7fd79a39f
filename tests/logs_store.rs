//! The service log store on a real filesystem: the chain verifies after restarts and
//! rotation, drops are recorded, tampering with a stored segment or an export is found at the
//! right record, filters and exports (CSV edge cases included), and a failing disk turns the
//! log degraded and is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use byokd::clock::SystemClock;
use byokd::logs::chain::Verdict;
use byokd::logs::export::{Exporter, Format, verify_text};
use byokd::logs::query::{self, Filter};
use byokd::logs::{Entry, Level, Logs, Record, Service, Settings, store};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn settings(dir: &Path, segment: u64, total: u64) -> Settings {
    Settings {
        dir: dir.to_owned(),
        limits: store::Limits {
            max_segment_bytes: segment,
            max_total_bytes: total,
        },
        fsync_interval: Duration::from_millis(20),
        syslog: Vec::new(),
        journald: false,
    }
}

fn entry(n: u64) -> Entry {
    let service = Service::ALL[(n % 5) as usize];
    let level = [Level::Info, Level::Warn, Level::Error][(n % 3) as usize];
    Entry::new(service, level, "test.event", format!("record number {n}"))
        .job(n % 4)
        .group(format!("g{}", n % 2))
}

fn all(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    store::scan(dir, |r| {
        out.push(r);
        true
    })
    .unwrap();
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn assert_ok(v: &Verdict) {
    assert!(v.ok(), "chain broken: {v:?}");
}

#[test]
fn an_untouched_store_verifies_across_restarts_and_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    for round in 0..3u64 {
        let logs = Logs::open(&settings(&dir, 4096, 64 * 1024), SystemClock::shared()).unwrap();
        for n in 0..40 {
            logs.append(entry(round * 100 + n)).unwrap();
        }
        logs.sync().unwrap();
        drop(logs);
        assert_ok(&store::verify(&dir).unwrap());
    }
    let records = all(&dir);
    assert_eq!(records.len(), 120);
    assert!(segments(&dir).len() > 1, "no rotation happened");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
    }
}

#[test]
fn dropping_old_segments_is_recorded_and_the_rest_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let logs = Logs::open(&settings(&dir, 4096, 4 * 4096), SystemClock::shared()).unwrap();
    for n in 0..400 {
        logs.append(entry(n)).unwrap();
    }
    let total: u64 = segments(&dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 4 * 4096, "store grew to {total} bytes");
    let records = all(&dir);
    assert!(records.first().unwrap().seq > 1, "nothing was dropped");
    let drops: Vec<&Record> = records
        .iter()
        .filter(|r| r.event == "log.dropped")
        .collect();
    assert!(!drops.is_empty(), "the drop was not recorded");
    assert_eq!(drops[0].level, Level::Warn);
    let v = store::verify(&dir).unwrap();
    assert_ok(&v);
    assert_eq!(v.first_seq, Some(records[0].seq));
    // Restart: still verifies, numbering goes on.
    drop(logs);
    let logs = Logs::open(&settings(&dir, 4096, 4 * 4096), SystemClock::shared()).unwrap();
    let r = logs.append(entry(1)).unwrap();
    assert!(r.seq > records.last().unwrap().seq);
    assert_eq!(all(&dir).last().unwrap(), &r);
    assert_ok(&store::verify(&dir).unwrap());
}

/// Rewrites the `index`-th record line (0-based, over all segments) with `f`.
fn tamper(dir: &Path, f: impl Fn(&mut Vec<String>, usize)) {
    let seg = segments(dir)[0].clone();
    let text = std::fs::read_to_string(&seg).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    f(&mut lines, 0);
    std::fs::write(&seg, lines.join("\n") + "\n").unwrap();
}

fn fresh(n: u64) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let logs = Logs::open(&settings(&dir, 1 << 20, 4 << 20), SystemClock::shared()).unwrap();
    for i in 0..n {
        logs.append(entry(i)).unwrap();
    }
    logs.sync().unwrap();
    (tmp, dir)
}

#[test]
fn editing_deleting_or_reordering_a_stored_record_is_found_at_that_record() {
    // Line 0 is the segment header; record seq n is line n.
    let (_t, dir) = fresh(10);
    tamper(&dir, |l, _| {
        l[4] = l[4].replace("record number 3", "record number 9")
    });
    let b = store::verify(&dir).unwrap().broken.unwrap();
    assert_eq!(b.seq, 4, "{b:?}");
    assert!(b.reason.contains("altered"), "{b:?}");

    let (_t, dir) = fresh(10);
    tamper(&dir, |l, _| {
        l.remove(6);
    });
    let b = store::verify(&dir).unwrap().broken.unwrap();
    assert_eq!(b.seq, 7, "{b:?}");
    assert!(b.reason.contains("missing"), "{b:?}");

    let (_t, dir) = fresh(10);
    tamper(&dir, |l, _| l.swap(2, 3));
    let b = store::verify(&dir).unwrap().broken.unwrap();
    assert_eq!(b.seq, 3, "{b:?}");

    // A forged record with a recomputed hash breaks the link to the record after it.
    let (_t, dir) = fresh(10);
    tamper(&dir, |l, _| {
        let mut r: Record = serde_json::from_str(&l[5]).unwrap();
        r.message = "nothing happened".into();
        r.hash = byokd::logs::chain::hash_of(&r);
        l[5] = serde_json::to_string(&r).unwrap();
    });
    let b = store::verify(&dir).unwrap().broken.unwrap();
    assert_eq!(b.seq, 6, "{b:?}");
}

#[test]
fn a_torn_last_line_is_cut_off_and_recorded_on_open() {
    let (_t, dir) = fresh(5);
    let seg = segments(&dir)[0].clone();
    let mut text = std::fs::read(&seg).unwrap();
    text.extend_from_slice(b"{\"seq\":6,\"ts\":\"2026");
    std::fs::write(&seg, text).unwrap();
    let logs = Logs::open(&settings(&dir, 1 << 20, 4 << 20), SystemClock::shared()).unwrap();
    let records = all(&dir);
    assert_eq!(records.len(), 6);
    assert_eq!(records[5].event, "log.repaired");
    drop(logs);
    assert_ok(&store::verify(&dir).unwrap());
}

fn export(dir: &Path, format: Format, filter: Filter) -> (String, u64) {
    let mut ex = Exporter::new(Vec::new(), format, filter).unwrap();
    for r in all(dir) {
        ex.push(&r).unwrap();
    }
    let (bytes, n) = ex.finish().unwrap();
    (String::from_utf8(bytes).unwrap(), n)
}

#[test]
fn filters_select_by_service_level_time_job_group_and_text() {
    let (_t, dir) = fresh(30);
    let records = all(&dir);
    let pick = |q: &str| -> Vec<u64> {
        let (q, _) = query::parse(q, &[]).unwrap();
        records
            .iter()
            .filter(|r| q.filter.matches(r))
            .map(|r| r.seq)
            .collect()
    };
    let expect = |f: &dyn Fn(u64) -> bool| -> Vec<u64> {
        (0..30).filter(|n| f(*n)).map(|n| n + 1).collect()
    };
    assert_eq!(pick("service=azure"), expect(&|n| n % 5 == 0));
    assert_eq!(pick("level=warn"), expect(&|n| n % 3 != 0));
    assert_eq!(
        pick("level=error&service=hsm"),
        expect(&|n| n % 3 == 2 && n % 5 == 1)
    );
    assert_eq!(
        pick("job=2&group=g0"),
        expect(&|n| n % 4 == 2 && n % 2 == 0)
    );
    assert_eq!(pick("text=NUMBER%2017"), vec![18]);
    assert_eq!(
        pick("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").len(),
        30
    );
    assert!(pick("until=2000-01-01T00:00:00Z").is_empty());
}

#[test]
fn exports_verify_offline_in_both_formats_and_tampering_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let logs = Logs::open(&settings(&dir, 1 << 20, 4 << 20), SystemClock::shared()).unwrap();
    let tricky = [
        "plain",
        "comma, inside",
        "a \"quoted\" word",
        "two\nlines",
        "crlf\r\nline",
        "trailing comma,",
    ];
    for (i, m) in tricky.iter().enumerate() {
        logs.append(Entry::new(Service::Azure, Level::Info, "t.csv", *m).key(format!("k,{i}")))
            .unwrap();
        logs.append(Entry::new(Service::Hsm, Level::Info, "t.other", "hidden"))
            .unwrap();
    }
    for format in [Format::Jsonl, Format::Csv] {
        let mut f = Filter::default();
        f.services.insert(Service::Azure);
        let (text, n) = export(&dir, format, f);
        assert_eq!(n, tricky.len() as u64);
        let v = verify_text(&text);
        assert_ok(&v);
        assert_eq!(v.full, tricky.len() as u64);
        assert!(
            !text.contains("hidden"),
            "a filtered-out record's content leaked"
        );
        // Every message reads back exactly.
        let (items, err) = byokd::logs::export::read_items(&text);
        assert!(err.is_none());
        let messages: Vec<String> = items
            .iter()
            .filter_map(|i| match i {
                byokd::logs::chain::Item::Full(r) => Some(r.message.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(messages, tricky);

        let (full, _) = export(&dir, format, Filter::default());
        assert_ok(&verify_text(&full));
        let rows = split_rows(&full, format);
        // Edit record 9's message.
        let edited = full.replacen("crlf", "CRLF", 1);
        assert_eq!(verify_text(&edited).broken.unwrap().seq, 9);
        // Delete record 4 (row 4 after the CSV header; row 3 in JSON Lines, so record 5 there).
        let gone = if format == Format::Csv { 4 } else { 5 };
        let deleted = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, r)| r.as_str())
            .collect::<String>();
        let b = verify_text(&deleted).broken.unwrap();
        assert_eq!(b.seq, gone + 1, "{format:?} {b:?}");
        // Swap records 2 and 3.
        let mut swapped = rows.clone();
        let (a, b2) = if format == Format::Csv {
            (2, 3)
        } else {
            (1, 2)
        };
        swapped.swap(a, b2);
        let b = verify_text(&swapped.concat()).broken.unwrap();
        assert_eq!(b.seq, 3, "{format:?} {b:?}");
    }
}

/// The rows of an export, each with its line ending (CSV: header first; rows may span lines).
fn split_rows(text: &str, format: Format) -> Vec<String> {
    match format {
        Format::Jsonl => text.split_inclusive('\n').map(str::to_owned).collect(),
        Format::Csv => {
            let mut rows = Vec::new();
            let mut cur = String::new();
            let mut quoted = false;
            for c in text.chars() {
                cur.push(c);
                if c == '"' {
                    quoted = !quoted;
                }
                if c == '\n' && !quoted {
                    rows.push(std::mem::take(&mut cur));
                }
            }
            rows
        }
    }
}

#[test]
fn a_failing_disk_turns_the_log_degraded_reports_the_loss_and_recovers() {
    // A real full filesystem: a 64 KiB tmpfs.
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "this test mounts a tmpfs and needs root");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let dir = mnt.join("logs");
    let logs = Logs::open(&settings(&dir, 1 << 20, 4 << 20), SystemClock::shared()).unwrap();
    logs.append(entry(0)).unwrap();
    // Fill the filesystem.
    let filler = mnt.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 256 * 1024]);
    let mut failed = 0;
    for n in 0..200 {
        if logs.append(entry(n)).is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "the full disk was never noticed");
    let status = logs.status();
    assert!(status.degraded, "{status:?}");
    assert!(
        status.write.error.as_deref().unwrap().contains("No space"),
        "{status:?}"
    );
    assert_eq!(status.write.lost, failed);
    // Space comes back: the next record is preceded by a record of the loss.
    std::fs::remove_file(&filler).unwrap();
    let r = logs.append(entry(999)).unwrap();
    assert!(!logs.status().degraded);
    let records = all(&dir);
    let note = &records[records.len() - 2];
    assert_eq!(note.event, "log.write.recovered");
    assert!(
        note.message.contains(&format!("{failed} record(s)")),
        "{note:?}"
    );
    assert_eq!(records.last().unwrap(), &r);
    assert_ok(&store::verify(&dir).unwrap());
}

#[test]
fn a_cut_off_export_is_reported_as_cut_off_not_as_a_shorter_valid_chain() {
    let (_t, dir) = fresh(12);
    for format in [Format::Jsonl, Format::Csv] {
        let mut only_azure = Filter::default();
        only_azure.services.insert(Service::Azure);
        for filter in [Filter::default(), only_azure] {
            let (text, n) = export(&dir, format, filter);
            assert_ok(&verify_text(&text));
            let rows = split_rows(&text, format);
            let header = usize::from(format == Format::Csv);
            let body = &rows[header..];
            assert!(body.len() >= 3, "{format:?}: {body:?}");
            // The last row is the end row; every shorter prefix that ends on a row boundary
            // (the end row lost, then more) is reported as cut off.
            for keep in 0..body.len() {
                let cut = rows[..header + keep].concat();
                let v = verify_text(&cut);
                let b = v.broken.clone().unwrap_or_else(|| {
                    panic!("{format:?}: {keep} of {} rows verified: {v:?}", body.len())
                });
                assert!(b.reason.contains("cut off"), "{format:?} {keep}: {b:?}");
                assert_eq!(b.position, keep as u64 + 1, "{format:?} {keep}: {b:?}");
            }
            // Cut inside the last record row: unreadable or cut off, never intact.
            let last_record = &body[body.len() - 2];
            let inside = format!(
                "{}{}",
                rows[..rows.len() - 2].concat(),
                &last_record[..last_record.len() / 2]
            );
            assert!(!verify_text(&inside).ok(), "{format:?}");
            // Leading rows removed: the end row names the first row's `prev`.
            let mut no_first = rows.clone();
            no_first.remove(header);
            let b = verify_text(&no_first.concat()).broken.unwrap();
            assert!(b.reason.contains("end row"), "{format:?}: {b:?}");
            // A row after the end row.
            let extra = format!("{text}{}", body[0]);
            assert!(!verify_text(&extra).ok(), "{format:?}");
            // The end row's counts are checked too.
            let forged = match format {
                Format::Jsonl => text.replace(
                    &format!("\"records\":{n},"),
                    &format!("\"records\":{},", n + 1),
                ),
                Format::Csv => text.replace(
                    &format!("{n} record(s) in"),
                    &format!("{} record(s) in", n + 1),
                ),
            };
            assert_ne!(forged, text);
            let b = verify_text(&forged).broken.unwrap();
            assert!(b.reason.contains("end row"), "{format:?}: {b:?}");
        }
        // An export with no matching record is just its end row, and verifies; an empty file
        // does not.
        let none = Filter {
            text: Some("no record says this".into()),
            ..Filter::default()
        };
        let (empty, n) = export(&dir, format, none);
        assert_eq!(n, 0);
        assert_ok(&verify_text(&empty));
        let header_only = split_rows(&empty, format)
            .into_iter()
            .take(usize::from(format == Format::Csv))
            .collect::<String>();
        assert!(!verify_text(&header_only).ok(), "{format:?}");
    }
}

#[test]
fn csv_cells_that_start_like_formulas_are_guarded_and_the_export_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let logs = Logs::open(&settings(&dir, 1 << 20, 4 << 20), SystemClock::shared()).unwrap();
    let hostile = [
        "=HYPERLINK(\"http://evil.example/\",\"click\")",
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\tleading tab",
        "\rleading carriage return",
        "'already quoted",
        "plain, with a comma",
    ];
    for m in hostile {
        logs.append(
            Entry::new(Service::Control, Level::Warn, "t.formula", m)
                .identity(m)
                .group(m),
        )
        .unwrap();
    }
    let (text, n) = export(&dir, Format::Csv, Filter::default());
    assert_eq!(n, hostile.len() as u64);
    let rows = byokd::logs::export::csv_rows(&text).unwrap();
    for row in &rows {
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a cell a spreadsheet would run: {cell:?}"
            );
        }
    }
    // Guarded, not dropped or altered: the records read back exactly and the chain verifies.
    let v = verify_text(&text);
    assert_ok(&v);
    assert_eq!(v.full, hostile.len() as u64);
    let (items, err) = byokd::logs::export::read_items(&text);
    assert!(err.is_none(), "{err:?}");
    let back: Vec<Record> = items
        .into_iter()
        .filter_map(|i| match i {
            byokd::logs::chain::Item::Full(r) => Some(*r),
            _ => None,
        })
        .collect();
    assert_eq!(back, all(&dir));
    // An edit after the guard is still found (the guard is not a place to hide changes).
    let edited = text.replacen("'=HYPERLINK", "'=HYPERLINQ", 1);
    assert_eq!(verify_text(&edited).broken.unwrap().seq, 1);
}

#[test]
fn a_segment_that_cannot_be_read_is_an_error_for_a_reader_not_a_short_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let logs = Logs::open(&settings(&dir, 400, 1 << 20), SystemClock::shared()).unwrap();
    for n in 0..12 {
        logs.append(entry(n)).unwrap();
    }
    logs.sync().unwrap();
    drop(logs);
    let segs = segments(&dir);
    assert!(segs.len() >= 3, "{segs:?}");
    // Bytes that are not UTF-8 in the middle of a later segment: a read error there.
    let victim = &segs[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() - 10;
    bytes[at] = 0xff;
    std::fs::write(victim, bytes).unwrap();
    let mut seen = 0;
    let r = store::scan(&dir, |_| {
        seen += 1;
        true
    });
    assert!(r.is_err(), "scan ended quietly after {seen} record(s)");
    // An exporter fed by such a scan never reaches its end row.
    let mut ex = Exporter::new(Vec::new(), Format::Jsonl, Filter::default()).unwrap();
    let scanned = store::scan(&dir, |r| ex.push(&r).is_ok());
    assert!(scanned.is_err());
}

/// A record of a peer without a certificate, as the control socket writes it.
fn outsider(n: u64) -> Entry {
    Entry::new(
        Service::Control,
        Level::Warn,
        "control.auth.failed",
        format!("Authentication failed on the control socket from 10.0.0.{n}: no certificate"),
    )
}

#[test]
fn records_of_peers_without_a_certificate_take_only_their_share_and_never_push_others_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let (segment, total) = (4096, 64 * 1024);
    let logs = Logs::open(&settings(&dir, segment, total), SystemClock::shared()).unwrap();
    for n in 0..20 {
        logs.append(entry(n)).unwrap();
    }
    // A flood: far more than the whole bound.
    let (mut stored, mut refused) = (0, 0);
    for n in 0..5000 {
        match logs.append(outsider(n % 250)) {
            Ok(_) => stored += 1,
            Err(e) => {
                assert!(e.to_string().contains("share"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(
        stored > 0 && refused > 0,
        "{stored} stored, {refused} refused"
    );
    let records = all(&dir);
    assert_eq!(records[0].seq, 1, "an attributed record was dropped");
    assert!(records.iter().all(|r| r.event != "log.dropped"));
    let status = logs.status();
    assert_eq!(status.unattributed.reserve, total / 16);
    assert!(status.unattributed.bytes <= total / 16);
    assert!(status.unattributed.refusing);
    assert_eq!(status.unattributed.refused, refused);
    assert!(!status.degraded, "a refusal is not a write failure");
    let notes = records
        .iter()
        .filter(|r| r.event == "log.unattributed.refused")
        .count();
    assert_eq!(notes, 1, "the refusal is recorded once");
    // The same after a restart: the share is counted from the stored segments.
    drop(logs);
    let logs = Logs::open(&settings(&dir, segment, total), SystemClock::shared()).unwrap();
    assert_eq!(logs.status().unattributed.bytes, status.unattributed.bytes);
    assert!(logs.append(outsider(1)).is_err());
    // Attributed records still roll the log over as before; the share frees with them.
    for n in 0..2000 {
        logs.append(entry(n)).unwrap();
    }
    let records = all(&dir);
    assert!(records[0].seq > 1);
    assert!(records.iter().any(|r| r.event == "log.dropped"));
    let bytes: u64 = segments(&dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(bytes <= total, "{bytes}");
    logs.append(outsider(2)).unwrap();
    assert!(!logs.status().unattributed.refusing);
    assert_ok(&store::verify(&dir).unwrap());
}

#[test]
fn a_fifo_or_a_huge_file_named_like_a_segment_is_refused_at_open_without_blocking() {
    let limits = store::Limits {
        max_segment_bytes: 4096,
        max_total_bytes: 1 << 20,
    };
    let dir = tempfile::tempdir().unwrap();
    // A FIFO nobody writes to: opening it to count its records would block for ever.
    let fifo = dir.path().join(format!("segment-{:020}.log", 1));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err =
        store::Store::open(dir.path(), limits.clone()).expect_err("a FIFO segment is refused");
    assert!(
        err.to_string().contains("a FIFO, not a log segment"),
        "{err}"
    );
    std::fs::remove_file(&fifo).unwrap();
    // A sparse file far longer than any segment byokd writes: refused from its size, never read.
    std::fs::File::create(&fifo)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let err = store::Store::open(dir.path(), limits).expect_err("a huge segment is refused");
    assert!(err.to_string().contains("1099511627776 bytes"), "{err}");
}

#[test]
fn records_numbered_at_the_top_of_u64_are_refused_or_reported_never_overflowed() {
    let (_tmp, dir) = fresh(3);
    // The last two records renumbered u64::MAX - 1 and u64::MAX, with hashes recomputed so the
    // chain check reaches the numbering (anyone who can write the file can do this).
    tamper(&dir, |lines, _| {
        let n = lines.len();
        let mut prev: Option<String> = None;
        for (i, seq) in [(n - 2, u64::MAX - 1), (n - 1, u64::MAX)] {
            let mut r: Record = serde_json::from_str(&lines[i]).unwrap();
            r.seq = seq;
            if let Some(p) = prev.take() {
                r.prev = p;
            }
            r.hash = byokd::logs::chain::hash_of(&r);
            prev = Some(r.hash.clone());
            lines[i] = serde_json::to_string(&r).unwrap();
        }
    });
    let verdict = store::verify(&dir).unwrap();
    assert!(verdict.broken.is_some(), "the renumbering is reported");
    let err = store::Store::open(
        &dir,
        store::Limits {
            max_segment_bytes: 1 << 20,
            max_total_bytes: 4 << 20,
        },
    )
    .expect_err("no record can follow u64::MAX");
    assert!(
        err.to_string().contains("past the highest byokd writes"),
        "{err}"
    );
}
