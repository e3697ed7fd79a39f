//! The redb file: one table per kind of record, each record a postcard-encoded value under its
//! postcard-encoded key, plus a `meta` table for the format version, the commit counter and the
//! two scalar settings. A commit writes the records that changed and nothing else.

use super::group_target;
use super::state::MAX_NEXT_JOB_ID;
use super::{FORMAT_VERSION, State, StoreError, Tracked};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The store's file inside the state directory.
pub const FILE: &str = "state.redb";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FORMAT: &str = "format";
const GENERATION: &str = "generation";
const DESIGNATED: &str = "designated";
const NEXT_JOB_ID: &str = "next_job_id";
/// `(format, generation)` of the A/B state this store was migrated from, when it was.
pub(super) const MIGRATED_FROM: &str = "migrated_from";

/// The record tables, one per map of [`State`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Credentials,
    Groups,
    Keys,
    Jobs,
    Grace,
    Drift,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::Credentials,
        Table::Groups,
        Table::Keys,
        Table::Jobs,
        Table::Grace,
        Table::Drift,
    ];

    /// The table's number in a backup file.
    pub fn id(self) -> u8 {
        match self {
            Table::Credentials => 1,
            Table::Groups => 2,
            Table::Keys => 3,
            Table::Jobs => 4,
            Table::Grace => 5,
            Table::Drift => 6,
        }
    }

    pub fn from_id(id: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.id() == id)
    }

    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(match self {
            Table::Credentials => "credentials",
            Table::Groups => "groups",
            Table::Keys => "keys",
            Table::Jobs => "jobs",
            Table::Grace => "grace",
            Table::Drift => "drift",
        })
    }
}

/// What one commit writes: changed records (`None` removes) and the meta entries. Encoded
/// under the state lock, applied by the writer thread (see `commit`).
#[derive(Default)]
pub struct Batch {
    records: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
    meta: Vec<(&'static str, Vec<u8>)>,
}

impl Batch {
    /// The records `state` changed since the last batch, and its scalar settings. Encodes only
    /// what changed; the change marks are taken.
    pub fn changes_of(state: &mut State) -> Result<Batch, StoreError> {
        let mut batch = Batch::default();
        batch.take(Table::Credentials, &mut state.credentials)?;
        batch.take(Table::Groups, &mut state.groups)?;
        batch.take(Table::Keys, &mut state.keys)?;
        batch.take(Table::Jobs, &mut state.jobs)?;
        batch.take(Table::Grace, &mut state.grace)?;
        batch.take(Table::Drift, &mut state.drift)?;
        batch.meta.push((DESIGNATED, encode(&state.designated)?));
        batch.meta.push((NEXT_JOB_ID, encode(&state.next_job_id)?));
        Ok(batch)
    }

    /// Every record of `state` (a migration or a restore writes the whole state once).
    pub fn all_of(state: &mut State) -> Result<Batch, StoreError> {
        state.credentials.mark_all_changed();
        state.groups.mark_all_changed();
        state.keys.mark_all_changed();
        state.jobs.mark_all_changed();
        state.grace.mark_all_changed();
        state.drift.mark_all_changed();
        Self::changes_of(state)
    }

    /// Records `format` as the store's format instead of this build's (a restored backup of an
    /// older format keeps its own, so the next load migrates its records).
    pub fn keep_format(&mut self, format: u16) {
        self.meta.push((FORMAT, format.to_le_bytes().to_vec()));
    }

    pub fn set_meta(&mut self, name: &'static str, value: Vec<u8>) {
        self.meta.push((name, value));
    }

    /// Adds an encoded record as a backup holds it.
    pub fn push_raw(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.records.push((table, key, Some(value)));
    }

    fn take<K, V>(&mut self, table: Table, map: &mut Tracked<K, V>) -> Result<(), StoreError>
    where
        K: Ord + Clone + Serialize,
        V: Serialize,
    {
        for (k, v) in map.take_changed() {
            let value = v.map(encode).transpose()?;
            self.records.push((table, encode(&k)?, value));
        }
        Ok(())
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Encode(e.to_string()))
}

/// Writes `batches` in one transaction and makes it durable; returns the new generation.
pub fn apply(db: &Database, path: &Path, batches: &[Batch]) -> Result<u64, StoreError> {
    let fail = |e: redb::Error| StoreError::Commit {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let txn = db.begin_write().map_err(|e| fail(e.into()))?;
    let generation = {
        for table in Table::ALL {
            let mut t = txn.open_table(table.def()).map_err(|e| fail(e.into()))?;
            for batch in batches {
                for (_, k, v) in batch.records.iter().filter(|(t, _, _)| *t == table) {
                    match v {
                        Some(v) => t.insert(k.as_slice(), v.as_slice()),
                        None => t.remove(k.as_slice()).map(|_| None),
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
        generation
    };
    txn.commit().map_err(|e| fail(e.into()))?;
    Ok(generation)
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// What the file holds: its format, generation and state.
pub struct Loaded {
    pub format: u16,
    pub generation: u64,
    pub state: State,
}

/// Opens the file, verifying the checksum of every page (a damaged or truncated file is
/// refused here, never trusted or started empty).
pub fn open(path: &Path) -> Result<Database, StoreError> {
    redb::Builder::new()
        .set_check_integrity_on_open(true)
        .set_repair_callback(|_| tracing::debug!("state: verifying every page of the store"))
        // The state lives in memory as well; redb's own cache only has to hold the pages a
        // commit touches.
        .set_cache_size(16 << 20)
        .open(path)
        .map_err(|e| corrupt(path, e.into()))
}

/// Creates a new, empty file at `path` (which must not exist).
pub fn create(path: &Path) -> Result<Database, StoreError> {
    redb::Builder::new()
        .set_cache_size(16 << 20)
        .create(path)
        .map_err(|e| corrupt(path, e.into()))
}

pub fn corrupt(path: &Path, e: redb::Error) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
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

fn format_in(db: &impl ReadableDatabase, path: &Path) -> Result<Option<u16>, StoreError> {
    let txn = db.begin_read().map_err(|e| corrupt(path, e.into()))?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(corrupt(path, e.into())),
    };
    let format = meta.get(FORMAT).map_err(|e| corrupt(path, e.into()))?;
    Ok(format.and_then(|f| <[u8; 2]>::try_from(f.value()).ok().map(u16::from_le_bytes)))
}

/// Reads the whole file into a [`State`] (at start-up).
pub fn load(db: &Database, path: &Path) -> Result<Option<Loaded>, StoreError> {
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
    state.groups = if format < group_target::FORMAT {
        group_target::upgrade(read.table(Table::Groups)?)
    } else {
        read.table(Table::Groups)?
    };
    state.keys = read.table(Table::Keys)?;
    state.jobs = read.table(Table::Jobs)?;
    state.grace = read.table(Table::Grace)?;
    state.drift = read.table(Table::Drift)?;
    Ok(Some(Loaded {
        format,
        generation,
        state,
    }))
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
        let what = format!("{table:?}").to_lowercase();
        let mut map = BTreeMap::new();
        for entry in t.iter().map_err(|e| corrupt(self.path, e.into()))? {
            let (k, v) = entry.map_err(|e| corrupt(self.path, e.into()))?;
            map.insert(
                decode(self.path, &what, k.value())?,
                decode(self.path, &what, v.value())?,
            );
        }
        Ok(Tracked::committed(map))
    }
}

fn decode<T: DeserializeOwned>(path: &Path, what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        path: PathBuf::from(path),
        reason: format!("a {what} record does not decode ({e}): the store was damaged"),
    })
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
