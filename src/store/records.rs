//! The records a commit writes: the tables of the store, one write (`Op`) and a batch of them
//! (`Batch`), and the postcard encoding of keys and values. Below `db` (which opens, writes and
//! loads the file) and the modules that lay out one kind of record (`job_rows`, `keys`,
//! `group_target`, `migrate6`), so each of them can build a batch without reaching the file.

use super::{StoreError, Tracked};
use redb::TableDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// The meta entry holding the store's format.
pub(super) const FORMAT: &str = "format";

/// The record tables: one per map of [`State`], and a job's in four (its header, and one row
/// per key sync, step message and journal entry, see `job_rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Credentials,
    Groups,
    Keys,
    /// A job's header: every field but its three lists, with their lengths.
    Jobs,
    JobKeys,
    JobSteps,
    JobJournal,
    Grace,
    Drift,
}

impl Table {
    pub const ALL: [Table; 9] = [
        Table::Credentials,
        Table::Groups,
        Table::Keys,
        Table::Jobs,
        Table::JobKeys,
        Table::JobSteps,
        Table::JobJournal,
        Table::Grace,
        Table::Drift,
    ];

    /// The table's number in a backup file. 4 was format 5's whole-job table (see `migrate6`).
    pub fn id(self) -> u8 {
        match self {
            Table::Credentials => 1,
            Table::Groups => 2,
            Table::Keys => 3,
            Table::Grace => 5,
            Table::Drift => 6,
            Table::Jobs => 7,
            Table::JobKeys => 8,
            Table::JobSteps => 9,
            Table::JobJournal => 10,
        }
    }

    pub fn from_id(id: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The first state format that has the table.
    pub fn since_format(self) -> u16 {
        match self {
            Table::Jobs | Table::JobKeys | Table::JobSteps | Table::JobJournal => 6,
            _ => 5,
        }
    }

    /// The table's name in the store, as its error messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Table::Credentials => "credentials",
            Table::Groups => "groups",
            Table::Keys => "keys",
            Table::Jobs => "job_headers",
            Table::JobKeys => "job_keys",
            Table::JobSteps => "job_steps",
            Table::JobJournal => "job_journal",
            Table::Grace => "grace",
            Table::Drift => "drift",
        }
    }

    pub(super) fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

/// One write of a batch, in order.
pub(super) enum Op {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    /// Removes every record with a key from the first to the second, both included.
    RemoveRange(Vec<u8>, Vec<u8>),
}

/// What one commit writes: changed records (`None` removes) and the meta entries. Encoded
/// under the state lock, applied by the writer thread (see `commit`).
#[derive(Default)]
pub struct Batch {
    /// The batch's place in the order of staging (0: not staged from a live state); the writer
    /// publishes the newest it committed, so the key overlay knows what it may let go of.
    pub(super) seq: u64,
    pub(super) records: Vec<(Table, Op)>,
    pub(super) meta: Vec<(&'static str, Vec<u8>)>,
}

impl Batch {
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
        self.records.push((table, Op::Put(key, value)));
    }

    pub(super) fn push(&mut self, table: Table, op: Op) {
        self.records.push((table, op));
    }

    /// Bytes of keys and values this batch writes (for the benchmark).
    pub fn bytes(&self) -> usize {
        self.records
            .iter()
            .map(|(_, op)| match op {
                Op::Put(k, v) => k.len() + v.len(),
                Op::Remove(k) => k.len(),
                Op::RemoveRange(a, b) => a.len() + b.len(),
            })
            .sum()
    }

    pub(super) fn take<K, V>(
        &mut self,
        table: Table,
        map: &mut Tracked<K, V>,
    ) -> Result<(), StoreError>
    where
        K: Ord + Clone + Serialize,
        V: Serialize,
    {
        for (k, v) in map.take_changed() {
            let op = match v {
                Some(v) => Op::Put(encode(&k)?, encode(v)?),
                None => Op::Remove(encode(&k)?),
            };
            self.records.push((table, op));
        }
        Ok(())
    }
}

pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Encode(e.to_string()))
}

pub(super) fn commit_failed(path: &Path, e: redb::Error) -> StoreError {
    StoreError::Commit {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

pub fn corrupt(path: &Path, e: redb::Error) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

pub(super) fn decode<T: DeserializeOwned>(
    path: &Path,
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        path: PathBuf::from(path),
        reason: format!("a {what} record does not decode ({e}): the store was damaged"),
    })
}
