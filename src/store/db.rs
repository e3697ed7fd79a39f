//! The redb file: one table per kind of record, each record a postcard-encoded value under its
//! postcard-encoded key (a job: a header table and three row tables, see `job_rows`), plus a
//! `meta` table for the format version, the commit counter and the two scalar settings. A
//! commit writes the records that changed and nothing else; `upgrade` converts an older format.
//! The start decodes every table but the keys, which are read on demand (see `keys`).

use super::group_target;
use super::keys::{self, Keys};
pub use super::records::{Batch, Table};
use super::records::{FORMAT, Op};
pub(super) use super::records::{commit_failed, corrupt, decode, encode};
use super::state::MAX_NEXT_JOB_ID;
use super::{FORMAT_VERSION, State, StoreError, Tracked};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The store's file inside the state directory.
pub const FILE: &str = "state.redb";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const GENERATION: &str = "generation";
const DESIGNATED: &str = "designated";
const NEXT_JOB_ID: &str = "next_job_id";
/// `(format, generation)` of the A/B state this store was migrated from, when it was.
pub(super) const MIGRATED_FROM: &str = "migrated_from";

impl Batch {
    /// The records `state` changed since the last batch, and its scalar settings, as batch
    /// `seq`. Encodes only what changed; the change marks are taken.
    pub fn changes_of(state: &mut State, seq: u64) -> Result<Batch, StoreError> {
        Self::collect(state, seq, false)
    }

    /// Every record of `state` (a migration or a restore writes the whole state once).
    pub fn all_of(state: &mut State) -> Result<Batch, StoreError> {
        state.credentials.mark_all_changed();
        state.groups.mark_all_changed();
        state.keys.mark_all_changed();
        state.jobs.mark_all_changed();
        state.grace.mark_all_changed();
        state.drift.mark_all_changed();
        Self::collect(state, 0, true)
    }

    fn collect(state: &mut State, seq: u64, whole: bool) -> Result<Batch, StoreError> {
        let mut batch = Batch {
            seq,
            ..Batch::default()
        };
        batch.take(Table::Credentials, &mut state.credentials)?;
        batch.take(Table::Groups, &mut state.groups)?;
        super::job_rows::take(&mut batch, &mut state.jobs, whole)?;
        batch.take(Table::Grace, &mut state.grace)?;
        batch.take(Table::Drift, &mut state.drift)?;
        batch.meta.push((DESIGNATED, encode(&state.designated)?));
        batch.meta.push((NEXT_JOB_ID, encode(&state.next_job_id)?));
        // The keys last: once they are staged, the key overlay lets go of them when a commit
        // of this sequence number or a later one is visible, so nothing may fail after this.
        let records = &mut batch.records;
        state.keys.stage(seq, |id, key| {
            let op = match key {
                Some(key) => Op::Put(encode(id)?, encode(key)?),
                None => Op::Remove(encode(id)?),
            };
            records.push((Table::Keys, op));
            Ok(())
        })?;
        Ok(batch)
    }
}

/// Writes `batches` in one transaction and makes it durable; returns the new generation.
pub fn apply(db: &Database, path: &Path, batches: &[Batch]) -> Result<u64, StoreError> {
    let txn = db
        .begin_write()
        .map_err(|e| commit_failed(path, e.into()))?;
    let generation = write(&txn, path, batches)?;
    txn.commit().map_err(|e| commit_failed(path, e.into()))?;
    Ok(generation)
}

/// Brings a store of format `from` (older than this build's) to this build's format in one
/// durable transaction: each step's conversion, then the new format number.
pub fn upgrade(db: &Database, path: &Path, from: u16) -> Result<u64, StoreError> {
    let txn = db
        .begin_write()
        .map_err(|e| commit_failed(path, e.into()))?;
    let mut batches = Vec::new();
    if from < 6 {
        batches.push(super::migrate6::split_jobs(&txn, path)?);
        batches.push(group_target::convert_groups(&txn, path)?);
    }
    let generation = write(&txn, path, &batches)?;
    txn.commit().map_err(|e| commit_failed(path, e.into()))?;
    Ok(generation)
}

/// Writes `batches` into `txn`, with this build's format and the next generation; returns it.
pub(super) fn write(
    txn: &redb::WriteTransaction,
    path: &Path,
    batches: &[Batch],
) -> Result<u64, StoreError> {
    let fail = |e: redb::Error| commit_failed(path, e);
    for table in Table::ALL {
        let mut t = txn.open_table(table.def()).map_err(|e| fail(e.into()))?;
        for batch in batches {
            for (_, op) in batch.records.iter().filter(|(t, _)| *t == table) {
                match op {
                    Op::Put(k, v) => t.insert(k.as_slice(), v.as_slice()).map(|_| ()),
                    Op::Remove(k) => t.remove(k.as_slice()).map(|_| ()),
                    Op::RemoveRange(lo, hi) => {
                        t.retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)
                    }
                }
                .map_err(|e| fail(e.into()))?;
            }
        }
    }
    let mut meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
    let generation = match meta.get(GENERATION).map_err(|e| fail(e.into()))? {
        Some(g) => u64_of(g.value()).unwrap_or(0),
        None => 0,
    } + 1;
    meta.insert(GENERATION, generation.to_le_bytes().as_slice())
        .map_err(|e| fail(e.into()))?;
    meta.insert(FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())
        .map_err(|e| fail(e.into()))?;
    for batch in batches {
        for (name, value) in &batch.meta {
            meta.insert(*name, value.as_slice())
                .map_err(|e| fail(e.into()))?;
        }
    }
    Ok(generation)
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// What the file holds: its generation and state.
pub struct Loaded {
    pub generation: u64,
    pub state: State,
}

/// redb's page cache. Every record but the keys lives decoded in memory (see `State`); the keys
/// are read from here. At 1,000,000 keys the keys table's branch pages take about 2 MiB (some
/// 40,000 leaves of 4 KiB under about 460 branch pages, by estimate), so
/// 16 MiB holds every branch page and the leaves a commit or a busy group touches: a key read
/// costs at most one 4 KiB read from the kernel's page cache, and the process never holds more
/// of the file than this, however many keys there are.
const CACHE: usize = 16 << 20;

/// Opens the file, verifying the checksum of every page (a damaged or truncated file is
/// refused here, never trusted or started empty).
pub fn open(path: &Path) -> Result<Database, StoreError> {
    redb::Builder::new()
        .set_check_integrity_on_open(true)
        .set_repair_callback(|_| tracing::debug!("state: verifying every page of the store"))
        .set_cache_size(CACHE)
        .open(path)
        .map_err(|e| corrupt(path, e.into()))
}

/// Creates a new, empty file at `path` (which must not exist).
pub fn create(path: &Path) -> Result<Database, StoreError> {
    redb::Builder::new()
        .set_cache_size(CACHE)
        .create(path)
        .map_err(|e| corrupt(path, e.into()))
}

/// The format recorded in the file, reading nothing else (for the upgrade's downgrade check).
pub fn format_of(path: &Path) -> Result<Option<u16>, StoreError> {
    match redb::Builder::new().open_read_only(path) {
        Ok(db) => format_in(&db, path),
        // A store not closed cleanly (byokd was killed) is verified by a read-write open first.
        Err(redb::DatabaseError::RepairAborted) => format_in(&open(path)?, path),
        Err(e) => Err(corrupt(path, e.into())),
    }
}

pub(super) fn format_in(
    db: &impl ReadableDatabase,
    path: &Path,
) -> Result<Option<u16>, StoreError> {
    let txn = db.begin_read().map_err(|e| corrupt(path, e.into()))?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(corrupt(path, e.into())),
    };
    let format = meta.get(FORMAT).map_err(|e| corrupt(path, e.into()))?;
    Ok(format.and_then(|f| <[u8; 2]>::try_from(f.value()).ok().map(u16::from_le_bytes)))
}

/// Reads the file into a [`State`] (at start-up): every record but the keys, which stay in the
/// store and are read on demand (see `keys`); `applied` is the writer's count of committed
/// batches that the keys follow.
pub fn load(
    db: &Arc<Database>,
    path: &Path,
    applied: Arc<AtomicU64>,
) -> Result<Option<Loaded>, StoreError> {
    let bad = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let txn = db.begin_read().map_err(|e| corrupt(path, e.into()))?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(corrupt(path, e.into())),
    };
    let get = |name: &str| -> Result<Option<Vec<u8>>, StoreError> {
        Ok(meta
            .get(name)
            .map_err(|e| corrupt(path, e.into()))?
            .map(|v| v.value().to_vec()))
    };
    let Some(format) = get(FORMAT)? else {
        return Ok(None);
    };
    let format = <[u8; 2]>::try_from(format.as_slice())
        .map(u16::from_le_bytes)
        .map_err(|_| bad("the format record is damaged".into()))?;
    if format > FORMAT_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: format,
            supported: FORMAT_VERSION,
        });
    }
    if format < FORMAT_VERSION {
        // Its records have older shapes (`upgrade` converts them first): reading them as this
        // format's would leave some out.
        return Err(bad(format!(
            "the store has format {format}, older than this build's {FORMAT_VERSION}, and was not migrated"
        )));
    }
    let generation = get(GENERATION)?
        .and_then(|g| u64_of(&g))
        .ok_or_else(|| bad("the generation record is missing or damaged".into()))?;
    let decode_meta = |name: &str| -> Result<Option<Vec<u8>>, StoreError> { get(name) };
    let mut state = State::default();
    if let Some(d) = decode_meta(DESIGNATED)? {
        state.designated = decode(path, "designated", &d)?;
    }
    if let Some(n) = decode_meta(NEXT_JOB_ID)? {
        state.next_job_id = decode(path, "next_job_id", &n)?;
    }
    if state.next_job_id.get() > MAX_NEXT_JOB_ID {
        return Err(bad(format!(
            "the next job id {} is above the highest byokd hands out ({MAX_NEXT_JOB_ID}): the state was damaged or forged",
            state.next_job_id
        )));
    }
    let read = ReadTables { txn: &txn, path };
    state.credentials = read.table(Table::Credentials)?;
    state.groups = read.table(Table::Groups)?;
    let len = match txn.open_table(Table::Keys.def()) {
        Ok(t) => t.len().map_err(|e| corrupt(path, e.into()))?,
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(corrupt(path, e.into())),
    };
    state.keys = Keys::bound(
        keys::source(db, path, applied),
        usize::try_from(len).map_err(|_| bad("the key count does not fit in memory".into()))?,
    );
    state.jobs = super::job_rows::load(&txn, path)?;
    state.grace = read.table(Table::Grace)?;
    state.drift = read.table(Table::Drift)?;
    Ok(Some(Loaded { generation, state }))
}

struct ReadTables<'a> {
    txn: &'a redb::ReadTransaction,
    path: &'a Path,
}

impl ReadTables<'_> {
    fn table<K, V>(&self, table: Table) -> Result<Tracked<K, V>, StoreError>
    where
        K: Ord + Clone + DeserializeOwned,
        V: DeserializeOwned,
    {
        let t = match self.txn.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Tracked::default()),
            Err(e) => return Err(corrupt(self.path, e.into())),
        };
        let what = table.name();
        let mut map = BTreeMap::new();
        for entry in t.iter().map_err(|e| corrupt(self.path, e.into()))? {
            let (k, v) = entry.map_err(|e| corrupt(self.path, e.into()))?;
            map.insert(
                decode(self.path, what, k.value())?,
                decode(self.path, what, v.value())?,
            );
        }
        Ok(Tracked::committed(map))
    }
}

/// The meta entries a backup carries over into a restored store (the format and the
/// generation are the restoring build's own).
pub fn restorable_meta(name: &str) -> Option<&'static str> {
    [DESIGNATED, NEXT_JOB_ID, MIGRATED_FROM]
        .into_iter()
        .find(|m| *m == name)
}

/// One entry of a snapshot, as [`read_raw`] hands it out.
pub enum Raw<'a> {
    Meta(&'a str, &'a [u8]),
    Record(Table, &'a [u8], &'a [u8]),
}

/// Reads every meta entry and record of a snapshot, in table order.
pub fn read_raw(
    txn: &redb::ReadTransaction,
    path: &Path,
    mut each: impl FnMut(Raw<'_>) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::io(path, e);
    match txn.open_table(META) {
        Ok(t) => {
            for entry in t.iter().map_err(|e| corrupt(path, e.into()))? {
                let (k, v) = entry.map_err(|e| corrupt(path, e.into()))?;
                each(Raw::Meta(k.value(), v.value())).map_err(io)?;
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(corrupt(path, e.into())),
    }
    for table in Table::ALL {
        let t = match txn.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(corrupt(path, e.into())),
        };
        for entry in t.iter().map_err(|e| corrupt(path, e.into()))? {
            let (k, v) = entry.map_err(|e| corrupt(path, e.into()))?;
            each(Raw::Record(table, k.value(), v.value())).map_err(io)?;
        }
    }
    Ok(())
}
