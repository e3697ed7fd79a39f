//! The backup file: a consistent snapshot of the store (every meta entry and record of one redb
//! read transaction, taken while commits go on) and named byte streams (the service log's
//! segments), in frames, closed by an integrity frame.
//!
//! Layout: `BYOKDBK\0`, file version (u16 LE), state format (u16 LE), then frames of
//! `tag (u8), length (u32 LE), payload`. The last frame (`END`) holds the SHA-256 of every byte
//! before it and that digest sealed by the HSM's sealing key (AES-GCM through `Hsm::seal`, bound
//! to [`SEAL_AAD`]). The plain digest catches truncation and damage anywhere; the sealed one
//! catches deliberate tampering, since only the token that holds the sealing key can make it,
//! and it needs no key or setting of its own: the same token has to be there at restore anyway.
//! Records stay as the store holds them: sealed credentials stay sealed.

use super::db::{self, Batch, Table};
use super::{FORMAT_VERSION, StoreError};
use redb::{Database, ReadableDatabase};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const BACKUP_MAGIC: [u8; 8] = *b"BYOKDBK\0";
const FILE_VERSION: u16 = 1;
/// What the sealed digest is bound to.
pub const SEAL_AAD: &[u8] = b"byokd-backup-v1";
const TAG_META: u8 = 1;
const TAG_RECORD: u8 = 2;
const TAG_STREAM: u8 = 3;
const TAG_DATA: u8 = 4;
const TAG_END: u8 = 0xff;
/// No frame is longer: a length above this is damage, refused before anything is allocated.
pub const MAX_FRAME: usize = 64 << 20;
/// Bytes of a stream per data frame.
pub const DATA_FRAME: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the backup is truncated: {0}")]
    Truncated(String),
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("backup I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A read transaction over the store: what every commit acknowledged so far holds.
pub struct Snapshot {
    txn: redb::ReadTransaction,
    path: PathBuf,
}

impl Snapshot {
    pub(super) fn of(db: &Database, path: &Path) -> Result<Snapshot, StoreError> {
        let txn = db.begin_read().map_err(|e| db::corrupt(path, e.into()))?;
        Ok(Snapshot {
            txn,
            path: path.to_path_buf(),
        })
    }

    /// Writes every meta entry and record as frames; returns the number of records.
    pub fn write_to<W: Write>(&self, out: &mut BackupWriter<W>) -> Result<u64, BackupError> {
        let mut records = 0u64;
        db::read_raw(&self.txn, &self.path, |raw| match raw {
            db::Raw::Meta(name, value) => {
                out.frame(TAG_META, &[&[name.len() as u8], name.as_bytes(), value])
            }
            db::Raw::Record(table, k, v) => {
                records += 1;
                let klen = (k.len() as u32).to_le_bytes();
                out.frame(TAG_RECORD, &[&[table.id()], &klen, k, v])
            }
        })?;
        Ok(records)
    }
}

/// Writes frames and keeps the running digest.
pub struct BackupWriter<W: Write> {
    out: W,
    digest: Sha256,
}

impl<W: Write> BackupWriter<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        let mut header = BACKUP_MAGIC.to_vec();
        header.extend_from_slice(&FILE_VERSION.to_le_bytes());
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.write_all(&header)?;
        let mut digest = Sha256::new();
        digest.update(&header);
        Ok(Self { out, digest })
    }

    fn frame(&mut self, tag: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > MAX_FRAME {
            return Err(std::io::Error::other(format!(
                "a backup frame of {len} bytes is above the limit of {MAX_FRAME}"
            )));
        }
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..].copy_from_slice(&(len as u32).to_le_bytes());
        self.digest.update(head);
        self.out.write_all(&head)?;
        for p in parts {
            self.digest.update(p);
            self.out.write_all(p)?;
        }
        Ok(())
    }

    /// Starts the named stream `name` (a log segment's file name).
    pub fn stream(&mut self, name: &str) -> std::io::Result<()> {
        self.frame(TAG_STREAM, &[name.as_bytes()])
    }

    /// Appends `bytes` to the current stream.
    pub fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        for chunk in bytes.chunks(DATA_FRAME) {
            self.frame(TAG_DATA, &[chunk])?;
        }
        Ok(())
    }

    /// The digest of everything written so far; seal it and pass both to [`end`].
    pub fn digest(&self) -> [u8; 32] {
        self.digest.clone().finalize().into()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The `END` frame: the plain digest and the sealed one.
pub fn end_frame(digest: &[u8; 32], sealed: &[u8]) -> Vec<u8> {
    let mut out = vec![TAG_END];
    out.extend_from_slice(&((32 + sealed.len()) as u32).to_le_bytes());
    out.extend_from_slice(digest);
    out.extend_from_slice(sealed);
    out
}

/// A backup read back and checked against its plain digest; the sealed digest is for the
/// caller to unseal with the HSM and compare with [`Parsed::digest`].
pub struct Parsed {
    pub format: u16,
    pub batch: Batch,
    pub records: u64,
    /// Log segments by file name, in the order written.
    pub streams: Vec<(String, Vec<u8>)>,
    pub digest: [u8; 32],
    pub sealed: Vec<u8>,
}

/// Reads a whole backup; refuses truncation, damage, trailing bytes and a newer state format.
pub fn parse(mut input: impl Read) -> Result<Parsed, BackupError> {
    let mut digest = Sha256::new();
    let mut header = [0u8; 12];
    read_exact(&mut input, &mut header, "the header")?;
    if header[..8] != BACKUP_MAGIC {
        return Err(BackupError::Damaged(
            "not a byokd backup (bad magic)".into(),
        ));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != FILE_VERSION {
        return Err(BackupError::Damaged(format!(
            "backup file version {version}; this byokd reads version {FILE_VERSION}"
        )));
    }
    let format = u16::from_le_bytes([header[10], header[11]]);
    if format > FORMAT_VERSION {
        return Err(BackupError::Damaged(format!(
            "the backup holds state format {format}, newer than this byokd understands ({FORMAT_VERSION}); restore it with a byokd that supports it"
        )));
    }
    digest.update(header);
    let mut parsed = Parsed {
        format,
        batch: Batch::default(),
        records: 0,
        streams: Vec::new(),
        digest: [0; 32],
        sealed: Vec::new(),
    };
    loop {
        let mut head = [0u8; 5];
        read_exact(&mut input, &mut head, "a frame header")?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(BackupError::Damaged(format!(
                "a frame claims {len} bytes, above the limit of {MAX_FRAME}"
            )));
        }
        let mut payload = vec![0u8; len];
        read_exact(&mut input, &mut payload, "a frame")?;
        if head[0] == TAG_END {
            let computed: [u8; 32] = digest.finalize().into();
            if payload.len() < 32 || payload[..32] != computed {
                return Err(BackupError::Damaged(
                    "the SHA-256 digest does not match the content".into(),
                ));
            }
            let mut rest = [0u8; 1];
            if input.read(&mut rest)? != 0 {
                return Err(BackupError::Damaged(
                    "bytes follow the end of the backup".into(),
                ));
            }
            parsed.digest = computed;
            parsed.sealed = payload[32..].to_vec();
            return Ok(parsed);
        }
        digest.update(head);
        digest.update(&payload);
        take_frame(&mut parsed, head[0], payload)?;
    }
}

fn take_frame(parsed: &mut Parsed, tag: u8, payload: Vec<u8>) -> Result<(), BackupError> {
    let bad = |what: &str| BackupError::Damaged(format!("a malformed {what} frame"));
    match tag {
        TAG_META => {
            let n = *payload.first().ok_or_else(|| bad("meta"))? as usize;
            let name = payload.get(1..1 + n).ok_or_else(|| bad("meta"))?;
            let name = std::str::from_utf8(name).map_err(|_| bad("meta"))?;
            if let Some(name) = db::restorable_meta(name) {
                parsed.batch.set_meta(name, payload[1 + n..].to_vec());
            }
        }
        TAG_RECORD => {
            let table = payload
                .first()
                .and_then(|t| Table::from_id(*t))
                .ok_or_else(|| bad("record"))?;
            let klen = payload
                .get(1..5)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| bad("record"))?;
            let key = payload.get(5..5 + klen).ok_or_else(|| bad("record"))?;
            parsed
                .batch
                .push_raw(table, key.to_vec(), payload[5 + klen..].to_vec());
            parsed.records += 1;
        }
        TAG_STREAM => {
            let name = String::from_utf8(payload).map_err(|_| bad("stream"))?;
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(bad("stream name"));
            }
            parsed.streams.push((name, Vec::new()));
        }
        TAG_DATA => {
            let (_, data) = parsed.streams.last_mut().ok_or_else(|| bad("data"))?;
            data.extend_from_slice(&payload);
        }
        other => {
            return Err(BackupError::Damaged(format!("unknown frame tag {other}")));
        }
    }
    Ok(())
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            BackupError::Truncated(format!("the file ends inside {what}"))
        } else {
            BackupError::Io(e)
        }
    })
}

/// A restored state written beside the live name (`state.redb.new`) and loaded back, with the
/// state directory locked. [`StagedRestore::publish`] renames it into place; dropping it
/// unpublished removes it.
pub struct StagedRestore {
    dir: PathBuf,
    staged: PathBuf,
    /// The restored state, for the caller's checks before publishing.
    pub state: super::State,
    published: bool,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Locks `dir` (creating it), refuses it if it holds a state already, and writes `parsed` as
/// `state.redb.new`.
pub fn stage_restore(dir: &Path, parsed: Parsed) -> Result<StagedRestore, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    super::slots::check_dir(dir)?;
    let lock = super::slots::lock_dir(dir)?;
    if dir.join(db::FILE).symlink_metadata().is_ok() || super::slots::present(dir) {
        return Err(StoreError::NotEmpty {
            dir: dir.to_path_buf(),
        });
    }
    let staged = dir.join(format!("{}.new", db::FILE));
    match std::fs::remove_file(&staged) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(&staged, e)),
    }
    let state = {
        let database = db::create(&staged)?;
        // The records keep the backup's format; the first start migrates them like any store.
        let mut batch = parsed.batch;
        batch.keep_format(parsed.format);
        db::apply(&database, &staged, &[batch])?;
        db::load(&database, &staged)?
            .ok_or_else(|| StoreError::Corrupt {
                path: staged.clone(),
                reason: "the restored store holds no format record".into(),
            })?
            .state
    };
    Ok(StagedRestore {
        dir: dir.to_path_buf(),
        staged,
        state,
        published: false,
        _lock: lock,
    })
}

impl StagedRestore {
    /// Renames the restored store into place and fsyncs the directory.
    pub fn publish(mut self) -> Result<PathBuf, StoreError> {
        let path = self.dir.join(db::FILE);
        std::fs::rename(&self.staged, &path).map_err(|e| StoreError::io(&path, e))?;
        self.published = true;
        super::slots::sync_dir(&self.dir)?;
        Ok(path)
    }
}

impl Drop for StagedRestore {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.staged);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = BackupWriter::new(Vec::new()).unwrap();
        w.frame(TAG_META, &[&[4], b"next", b"\x07"]).unwrap();
        w.frame(TAG_RECORD, &[&[3], &2u32.to_le_bytes(), b"k1", b"value"])
            .unwrap();
        w.stream("segment-00000000000000000001.log").unwrap();
        w.data(b"{\"line\":1}\n").unwrap();
        let d = w.digest();
        let mut out = w.into_inner();
        out.extend_from_slice(&end_frame(&d, b"sealed-digest"));
        out
    }

    #[test]
    fn every_truncation_and_flipped_byte_is_refused() {
        let good = sample();
        let p = parse(good.as_slice()).unwrap();
        assert_eq!((p.records, p.sealed.as_slice()), (1, &b"sealed-digest"[..]));
        assert_eq!(p.streams[0].1, b"{\"line\":1}\n");
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Every byte before the sealed digest is covered by the plain digest (the sealed part
        // is checked by unsealing it).
        for i in 0..good.len() - b"sealed-digest".len() {
            let mut b = good.clone();
            b[i] ^= 1;
            assert!(parse(b.as_slice()).is_err(), "flip at {i}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(parse(longer.as_slice()).is_err());
    }
}
