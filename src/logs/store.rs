//! The log store: segment files under the logs directory, appended to, rotated by size, with
//! the oldest dropped first when the total passes its bound.
//!
//! A segment is `segment-<first seq, 20 digits>.log`: a header line (JSON, carrying the hash
//! of the record before the segment, so the chain stays verifiable from the oldest segment
//! kept) followed by one JSON record per line. Owns files and their layout; never decides
//! what is recorded. Durability: lines are written at once; fsync is batched by the caller
//! (see `Logs`), through [`Store::sync_handle`].
//!
//! Retention cannot be driven by an outsider: records of peers without a certificate
//! ([`unattributed`]) may take at most a sixteenth of `max_total_bytes` ([`Store::reserve`]);
//! beyond that they are refused ([`StoreError::ReserveFull`]). Old segments are dropped when the
//! *other* records need the room (their bytes plus a segment pass `max_total_bytes` minus the
//! reserve), so unattributed records never cause a drop, and the total stays within the bound.

use super::chain::{GENESIS, Item, Verdict, Verifier};
use super::record::{Entry, Level, Record, Service};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const PREFIX: &str = "segment-";
const SUFFIX: &str = ".log";
/// Longer than any segment byokd writes: the largest `logs.max_segment_bytes` (1 GiB) with
/// room for the record that crosses it.
const MAX_SEGMENT_FILE: u64 = 2 << 30;
/// The highest record number a store may continue from.
const MAX_SEQ: u64 = i64::MAX as u64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("log store {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("log store {path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "records of peers without a certificate already take their share of the log ({reserve} bytes); this one was not stored"
    )]
    ReserveFull { reserve: u64 },
}

/// Event codes of records about peers that presented no client certificate of a configured
/// identity (none, an untrusted one, or an unmapped one): nobody answers for them, so they get a
/// bounded share of the log.
pub const UNATTRIBUTED_EVENTS: &[&str] = &[
    super::Event::ControlAuthFailed.as_str(),
    super::Event::ControlAuthFailedSummary.as_str(),
];

/// Whether an entry is about a peer without a certificate (see [`UNATTRIBUTED_EVENTS`]).
pub fn unattributed(e: &Entry) -> bool {
    e.identity.is_none() && UNATTRIBUTED_EVENTS.contains(&e.event.as_str())
}

/// The same, for a stored record line (keys are unescaped JSON, so a message cannot fake one).
fn unattributed_line(line: &str) -> bool {
    !line.contains("\"identity\":")
        && UNATTRIBUTED_EVENTS
            .iter()
            .any(|code| line.contains(&format!("\"event\":\"{code}\"")))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Sizes of the store.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_segment_bytes: u64,
    pub max_total_bytes: u64,
}

/// A segment's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub byokd_log_segment: u32,
    pub first_seq: u64,
    /// Hash of the record before this segment's first record.
    pub prev: String,
}

#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    first_seq: u64,
    size: u64,
    /// Bytes of unattributed record lines in it.
    unattributed: u64,
}

/// The open store. Not thread-safe by itself; `Logs` holds it under a mutex.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    limits: Limits,
    segments: Vec<Segment>,
    file: Option<File>,
    next_seq: u64,
    last_hash: String,
    dirty: bool,
}

/// What opening found that deserves a record of its own.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Bytes of an incomplete last line (a crash mid-write) that were cut off.
    pub truncated_bytes: u64,
}

fn segment_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:020}{SUFFIX}")
}

/// The segments of a directory, oldest first.
fn list(dir: &Path) -> Result<Vec<Segment>, StoreError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name();
        let Some(first_seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        // `DirEntry::metadata` does not follow links: a FIFO, device, directory or link named
        // like a segment is refused here, before anything opens it (a FIFO would block).
        let meta = e.metadata().map_err(io(dir))?;
        if !meta.file_type().is_file() {
            return Err(StoreError::Corrupt {
                path: e.path().display().to_string(),
                reason: format!(
                    "is {}, not a log segment; move it out of the logs directory",
                    crate::system::regular_file::kind_of(&meta)
                ),
            });
        }
        let size = meta.len();
        out.push(Segment {
            path: e.path(),
            first_seq,
            size,
            unattributed: 0,
        });
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

fn parse_header(line: &str, path: &Path) -> Result<Header, StoreError> {
    serde_json::from_str::<Header>(line).map_err(|e| StoreError::Corrupt {
        path: path.display().to_string(),
        reason: format!("bad segment header: {e}"),
    })
}

impl Store {
    /// Opens (creating) the store in `dir`, repairing a torn last line.
    pub fn open(dir: &Path, limits: Limits) -> Result<(Store, OpenReport), StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut segments = list(dir)?;
        if let Some(seg) = segments.iter().find(|s| s.size > MAX_SEGMENT_FILE) {
            // byokd never writes a segment this long (`logs.max_segment_bytes` is at most
            // 1 GiB); reading it would let a planted file take the daemon's memory.
            return Err(StoreError::Corrupt {
                path: seg.path.display().to_string(),
                reason: format!(
                    "is {} bytes, longer than any segment byokd writes ({MAX_SEGMENT_FILE}); move it out of the logs directory",
                    seg.size
                ),
            });
        }
        for seg in &mut segments {
            seg.unattributed = unattributed_bytes_in(&seg.path)?;
        }
        let mut report = OpenReport::default();
        let mut store = Store {
            dir: dir.to_owned(),
            limits,
            segments,
            file: None,
            next_seq: 1,
            last_hash: GENESIS.to_owned(),
            dirty: false,
        };
        let empty_tail_prev = store.prev_of_empty_tail();
        if let Some(last) = store.segments.last_mut() {
            let path = last.path.clone();
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            let mut text = Vec::new();
            file.read_to_end(&mut text).map_err(io(&path))?;
            let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            if keep < text.len() {
                report.truncated_bytes = (text.len() - keep) as u64;
                file.set_len(keep as u64).map_err(io(&path))?;
                file.seek(SeekFrom::End(0)).map_err(io(&path))?;
                text.truncate(keep);
            }
            last.size = keep as u64;
            let text = String::from_utf8_lossy(&text);
            let mut lines = text.lines();
            let header = match lines.next() {
                Some(h) => parse_header(h, &path)?,
                None => {
                    // An empty segment (crash right after creating it): start it again.
                    let h = Header {
                        byokd_log_segment: 1,
                        first_seq: last.first_seq,
                        prev: empty_tail_prev,
                    };
                    let line = header_line(&h);
                    file.write_all(line.as_bytes()).map_err(io(&path))?;
                    last.size = line.len() as u64;
                    h
                }
            };
            store.next_seq = header.first_seq;
            store.last_hash = header.prev.clone();
            if let Some(l) = lines.rfind(|l| !l.trim().is_empty()) {
                let r: Record = serde_json::from_str(l).map_err(|e| StoreError::Corrupt {
                    path: path.display().to_string(),
                    reason: format!("bad last record: {e}"),
                })?;
                store.next_seq = r.seq.saturating_add(1);
                store.last_hash = r.hash;
            }
            if store.next_seq > MAX_SEQ {
                // Written by hand, not by byokd (a thousand records a second take 292 million
                // years to get here); counting on from it would overflow.
                return Err(StoreError::Corrupt {
                    path: path.display().to_string(),
                    reason: format!(
                        "its records are numbered up to {}, past the highest byokd writes ({MAX_SEQ}); move the segment out of the logs directory",
                        store.next_seq - 1
                    ),
                });
            }
            store.file = Some(file);
        }
        Ok((store, report))
    }

    /// An empty last segment has lost its header; the segment before it knows the hash.
    fn prev_of_empty_tail(&self) -> String {
        let n = self.segments.len();
        if n < 2 {
            return GENESIS.to_owned();
        }
        last_record_in(&self.segments[n - 2].path)
            .map(|r| r.hash)
            .unwrap_or_else(|| GENESIS.to_owned())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Total bytes of all segments.
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Bytes of unattributed records kept.
    pub fn unattributed_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.unattributed).sum()
    }

    /// The most bytes unattributed records may take: a sixteenth of the total bound.
    pub fn reserve(&self) -> u64 {
        self.limits.max_total_bytes / 16
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Appends one record; rotates and drops old segments first when needed (the drop is
    /// recorded as a record of its own, before this one).
    pub fn append(&mut self, entry: Entry, ts: String) -> Result<Record, StoreError> {
        let probe = Record::seal(
            self.next_seq,
            ts.clone(),
            self.last_hash.clone(),
            entry.clone(),
        );
        let line_len = record_line(&probe).len() as u64;
        let outsider = unattributed(&entry);
        if outsider && self.unattributed_bytes() + line_len > self.reserve() {
            return Err(StoreError::ReserveFull {
                reserve: self.reserve(),
            });
        }
        let need_new = match (&self.file, self.segments.last()) {
            (Some(_), Some(seg)) => {
                seg.size + line_len > self.limits.max_segment_bytes
                    && seg.size > header_len(seg.first_seq)
            }
            _ => true,
        };
        if !need_new {
            self.write_line(&record_line(&probe), outsider)?;
            self.advance(&probe);
            return Ok(probe);
        }
        if let Some((first, last, segs)) = self.rotate()? {
            let note = Entry::new(
                Service::System,
                Level::Warn,
                super::Event::LogDropped.as_str(),
                format!(
                    "The log store reached its size bound: {segs} oldest segment(s) with records {first} to {last} were dropped"
                ),
            );
            let r = Record::seal(self.next_seq, ts.clone(), self.last_hash.clone(), note);
            self.write_line(&record_line(&r), false)?;
            self.advance(&r);
        }
        let record = Record::seal(self.next_seq, ts, self.last_hash.clone(), entry);
        self.write_line(&record_line(&record), outsider)?;
        self.advance(&record);
        Ok(record)
    }

    fn advance(&mut self, r: &Record) {
        self.next_seq = r.seq.saturating_add(1);
        self.last_hash = r.hash.clone();
        self.dirty = true;
    }

    /// Writes a whole line or nothing: a failed write is cut back off the file.
    fn write_line(&mut self, line: &str, outsider: bool) -> Result<(), StoreError> {
        let (Some(file), Some(seg)) = (self.file.as_mut(), self.segments.last_mut()) else {
            return Err(StoreError::Corrupt {
                path: self.dir.display().to_string(),
                reason: "no open segment".into(),
            });
        };
        if let Err(e) = file.write_all(line.as_bytes()) {
            let _ = file.set_len(seg.size);
            return Err(io(&seg.path)(e));
        }
        seg.size += line.len() as u64;
        if outsider {
            seg.unattributed += line.len() as u64;
        }
        Ok(())
    }

    /// Starts a new segment at the next sequence number; drops the oldest segments while the
    /// attributed records (with room for the new segment) pass the bound less the reserve.
    /// Returns the dropped range.
    fn rotate(&mut self) -> Result<Option<(u64, u64, usize)>, StoreError> {
        if let Some(f) = self.file.take() {
            let _ = f.sync_all();
        }
        let header = Header {
            byokd_log_segment: 1,
            first_seq: self.next_seq,
            prev: self.last_hash.clone(),
        };
        let path = self.dir.join(segment_name(self.next_seq));
        let line = header_line(&header);
        let reuse = self
            .segments
            .last()
            .is_some_and(|s| s.first_seq == self.next_seq);
        // Append mode: after a failed write is cut back, the next write lands at the new end.
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|f| f.set_len(0).map(|()| f))
            .map_err(io(&path))?;
        if let Err(e) = file.write_all(line.as_bytes()) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(io(&path)(e));
        }
        if reuse {
            self.segments.pop();
        }
        self.segments.push(Segment {
            path,
            first_seq: self.next_seq,
            size: line.len() as u64,
            unattributed: 0,
        });
        self.file = Some(file);
        self.dirty = true;
        let mut dropped: Option<(u64, u64, usize)> = None;
        let room = self.limits.max_total_bytes.saturating_sub(self.reserve());
        while self.segments.len() > 1
            && self.total_bytes() - self.unattributed_bytes() + self.limits.max_segment_bytes > room
        {
            let old = self.segments.remove(0);
            let last = self.segments[0].first_seq.saturating_sub(1);
            std::fs::remove_file(&old.path).map_err(io(&old.path))?;
            dropped = Some(match dropped {
                None => (old.first_seq, last, 1),
                Some((f, _, n)) => (f, last, n + 1),
            });
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(dropped)
    }

    /// A handle to fsync outside the store's lock, when something was written since the last
    /// call.
    pub fn sync_handle(&mut self) -> Option<File> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.file.as_ref().and_then(|f| f.try_clone().ok())
    }
}

fn header_line(h: &Header) -> String {
    let mut s = serde_json::to_string(h).unwrap_or_default();
    s.push('\n');
    s
}

fn header_len(first_seq: u64) -> u64 {
    header_line(&Header {
        byokd_log_segment: 1,
        first_seq,
        prev: GENESIS.to_owned(),
    })
    .len() as u64
}

fn record_line(r: &Record) -> String {
    let mut s = serde_json::to_string(r).unwrap_or_default();
    s.push('\n');
    s
}

/// Bytes of unattributed record lines in a segment file.
fn unattributed_bytes_in(path: &Path) -> Result<u64, StoreError> {
    let file = File::open(path).map_err(io(path))?;
    let mut n = 0;
    for line in BufReader::new(file).lines().skip(1) {
        let Ok(line) = line else { break };
        if unattributed_line(&line) {
            n += line.len() as u64 + 1;
        }
    }
    Ok(n)
}

fn last_record_in(path: &Path) -> Option<Record> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str(l).ok())
        .last()
}

/// Reads every stored record in order, oldest first, calling `f` until it returns false.
/// Lines that are not records are skipped (verification reports them); a segment that cannot
/// be read (an I/O error, bytes that are not UTF-8) is an error, never a silent end.
pub fn scan(dir: &Path, mut f: impl FnMut(Record) -> bool) -> Result<(), StoreError> {
    for seg in list(dir)? {
        let file = match File::open(&seg.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&seg.path)(e)),
        };
        for line in BufReader::new(file).lines().skip(1) {
            let line = line.map_err(io(&seg.path))?;
            if let Ok(r) = serde_json::from_str::<Record>(&line)
                && !f(r)
            {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Checks the chain over every stored segment, from the oldest kept segment's header on.
pub fn verify(dir: &Path) -> Result<Verdict, StoreError> {
    let segments = list(dir)?;
    let anchor = match segments.first() {
        None => None,
        Some(s) => {
            let mut first = String::new();
            let file = File::open(&s.path).map_err(io(&s.path))?;
            BufReader::new(file)
                .read_line(&mut first)
                .map_err(io(&s.path))?;
            Some(parse_header(first.trim_end(), &s.path)?.prev)
        }
    };
    let mut v = Verifier::new(anchor);
    for seg in &segments {
        let file = File::open(&seg.path).map_err(io(&seg.path))?;
        let mut lines = BufReader::new(file).lines();
        let header = match lines.next() {
            Some(Ok(h)) => parse_header(&h, &seg.path),
            _ => Err(StoreError::Corrupt {
                path: seg.path.display().to_string(),
                reason: "no header".into(),
            }),
        };
        match header {
            Ok(h) => {
                if h.first_seq != seg.first_seq {
                    v.unreadable(format!(
                        "segment {} claims to start at record {}",
                        seg.path.display(),
                        h.first_seq
                    ));
                    break;
                }
                if v.expect_next(h.first_seq.saturating_sub(1), &h.prev)
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                v.unreadable(e.to_string());
                break;
            }
        }
        for line in lines {
            let Ok(line) = line else {
                v.unreadable(format!("{} cannot be read", seg.path.display()));
                break;
            };
            match serde_json::from_str::<Record>(&line) {
                Ok(r) => {
                    if v.feed(&Item::Full(Box::new(r))).is_err() {
                        return Ok(v.finish());
                    }
                }
                Err(e) => {
                    v.unreadable(format!(
                        "a line of {} is not a record: {e}",
                        seg.path.display()
                    ));
                    return Ok(v.finish());
                }
            }
        }
        if v.broken() {
            break;
        }
    }
    Ok(v.finish())
}
