//! A job as the store keeps it: a header record (every field but its three lists, and their
//! lengths) and one row per key sync, step message and journal entry, so a journal step writes
//! the header and the rows it added or changed, whatever the number of keys the job pushes.
//!
//! A header is keyed by the job id (8 bytes, big-endian), a row by the job id and its index in
//! the list (4 bytes, big-endian), so all rows of a job are one key range and load in order.
//! Loading checks that every row belongs to a header and that each list is whole (the lengths
//! the header names, no gap): a damaged job is refused, never loaded short.

use super::records::{self as db, Batch, Op, Table};
use super::{RowChanges, Rows, StoreError, Tracked};
use crate::model::{GroupName, Job, JobId, JobKind, JobState, KekJournal};
use redb::ReadableTable;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The row tables, in the order of [`Header::rows`].
const ROW_TABLES: [Table; 3] = [Table::JobKeys, Table::JobSteps, Table::JobJournal];

/// A job without its lists: the header record.
#[derive(Serialize, Deserialize)]
struct Header {
    id: JobId,
    kind: JobKind,
    group: GroupName,
    started_by: String,
    created: i64,
    started: Option<i64>,
    ended: Option<i64>,
    state: JobState,
    progress: u16,
    kek: Option<KekJournal>,
    error: Option<String>,
    cancel_requested: Option<String>,
    /// How many rows `keys`, `steps` and `journal` hold.
    rows: [u32; 3],
}

impl Header {
    fn of(job: &Job) -> Result<Header, StoreError> {
        // Destructured whole, so a field added to `Job` cannot be left out of the store.
        let Job {
            id,
            kind,
            group,
            keys,
            started_by,
            created,
            started,
            ended,
            state,
            progress,
            steps,
            journal,
            kek,
            error,
            cancel_requested,
        } = job;
        let len = |n: usize| {
            u32::try_from(n).map_err(|_| {
                StoreError::Encode(format!("job {id} has more than {} entries", u32::MAX))
            })
        };
        Ok(Header {
            id: *id,
            kind: *kind,
            group: group.clone(),
            started_by: started_by.clone(),
            created: *created,
            started: *started,
            ended: *ended,
            state: *state,
            progress: *progress,
            kek: kek.clone(),
            error: error.clone(),
            cancel_requested: cancel_requested.clone(),
            rows: [len(keys.len())?, len(steps.len())?, len(journal.len())?],
        })
    }

    fn into_job(self) -> Job {
        Job {
            id: self.id,
            kind: self.kind,
            group: self.group,
            keys: Rows::default(),
            started_by: self.started_by,
            created: self.created,
            started: self.started,
            ended: self.ended,
            state: self.state,
            progress: self.progress,
            steps: Rows::default(),
            journal: Rows::default(),
            kek: self.kek,
            error: self.error,
            cancel_requested: self.cancel_requested,
        }
    }
}

fn header_key(id: JobId) -> Vec<u8> {
    id.get().to_be_bytes().to_vec()
}

fn row_key(id: JobId, index: usize) -> Result<Vec<u8>, StoreError> {
    let index = u32::try_from(index)
        .map_err(|_| StoreError::Encode(format!("job {id} has more than {} rows", u32::MAX)))?;
    let mut k = header_key(id);
    k.extend_from_slice(&index.to_be_bytes());
    Ok(k)
}

/// Every row key of job `id`, as an inclusive range.
fn rows_of(id: JobId) -> Op {
    let mut hi = header_key(id);
    hi.extend_from_slice(&u32::MAX.to_be_bytes());
    Op::RemoveRange(header_key(id), hi)
}

/// Adds the writes of every job changed since the last batch; with `whole`, each changed job
/// is written whole, over any rows the store holds for it.
pub(super) fn take(
    batch: &mut Batch,
    jobs: &mut Tracked<JobId, Job>,
    whole: bool,
) -> Result<(), StoreError> {
    jobs.take_changed_mut(|id, job| {
        let Some(job) = job else {
            batch.push(Table::Jobs, Op::Remove(header_key(*id)));
            for table in ROW_TABLES {
                batch.push(table, rows_of(*id));
            }
            return Ok(());
        };
        batch.push(
            Table::Jobs,
            Op::Put(header_key(*id), db::encode(&Header::of(job)?)?),
        );
        if whole {
            job.keys.mark_all_changed();
            job.steps.mark_all_changed();
            job.journal.mark_all_changed();
        }
        rows(batch, Table::JobKeys, *id, &mut job.keys)?;
        rows(batch, Table::JobSteps, *id, &mut job.steps)?;
        rows(batch, Table::JobJournal, *id, &mut job.journal)
    })
}

fn rows<T: Serialize>(
    batch: &mut Batch,
    table: Table,
    id: JobId,
    list: &mut Rows<T>,
) -> Result<(), StoreError> {
    let write: Vec<(usize, &T)> = match list.take_changes() {
        RowChanges::Whole(all) => {
            batch.push(table, rows_of(id));
            all.iter().enumerate().collect()
        }
        RowChanges::Changed(some) => some,
    };
    for (i, v) in write {
        batch.push(table, Op::Put(row_key(id, i)?, db::encode(v)?));
    }
    Ok(())
}

/// Reads every job: the headers, then each row table, checking that each row belongs to a
/// header and each list is whole.
pub(super) fn load(
    txn: &redb::ReadTransaction,
    path: &Path,
) -> Result<Tracked<JobId, Job>, StoreError> {
    let bad = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut jobs: BTreeMap<JobId, (Header, [usize; 3])> = BTreeMap::new();
    let mut lists: BTreeMap<JobId, Lists> = BTreeMap::new();
    each(txn, path, Table::Jobs, |k, v| {
        let header: Header = db::decode(path, Table::Jobs.name(), v)?;
        if k != header_key(header.id).as_slice() {
            return Err(bad(format!(
                "the job header under key {} names job {}: the store was damaged",
                hex(k),
                header.id
            )));
        }
        lists.insert(header.id, Lists::default());
        jobs.insert(header.id, (header, [0; 3]));
        Ok(())
    })?;
    for (n, table) in ROW_TABLES.into_iter().enumerate() {
        each(txn, path, table, |k, v| {
            let (id, index) = split_row_key(k).ok_or_else(|| {
                bad(format!(
                    "a {} row has a malformed key {}: the store was damaged",
                    table.name(),
                    hex(k)
                ))
            })?;
            let (Some((_, seen)), Some(list)) = (jobs.get_mut(&id), lists.get_mut(&id)) else {
                return Err(bad(format!(
                    "a {} row belongs to job {id}, whose header is missing: the store was damaged",
                    table.name()
                )));
            };
            if index != seen[n] {
                return Err(bad(format!(
                    "job {id} lacks {} row {}: the store was damaged",
                    table.name(),
                    seen[n]
                )));
            }
            seen[n] += 1;
            list.push(n, path, table, v)
        })?;
    }
    let mut out = BTreeMap::new();
    for (id, (header, seen)) in jobs {
        for (n, table) in ROW_TABLES.into_iter().enumerate() {
            if header.rows[n] as usize != seen[n] {
                return Err(bad(format!(
                    "job {id} names {} {} rows, the store holds {}: the store was damaged",
                    header.rows[n],
                    table.name(),
                    seen[n]
                )));
            }
        }
        let l = lists.remove(&id).unwrap_or_default();
        let mut job = header.into_job();
        job.keys = Rows::committed(l.keys);
        job.steps = Rows::committed(l.steps);
        job.journal = Rows::committed(l.journal);
        out.insert(id, job);
    }
    Ok(Tracked::committed(out))
}

/// A job's lists as they are read.
#[derive(Default)]
struct Lists {
    keys: Vec<crate::model::KeySync>,
    steps: Vec<crate::model::StepMessage>,
    journal: Vec<crate::model::JobStep>,
}

impl Lists {
    fn push(&mut self, n: usize, path: &Path, table: Table, v: &[u8]) -> Result<(), StoreError> {
        fn one<T: DeserializeOwned>(
            to: &mut Vec<T>,
            path: &Path,
            table: Table,
            v: &[u8],
        ) -> Result<(), StoreError> {
            to.push(db::decode(path, table.name(), v)?);
            Ok(())
        }
        match n {
            0 => one(&mut self.keys, path, table, v),
            1 => one(&mut self.steps, path, table, v),
            _ => one(&mut self.journal, path, table, v),
        }
    }
}

fn split_row_key(k: &[u8]) -> Option<(JobId, usize)> {
    let id: [u8; 8] = k.get(..8)?.try_into().ok()?;
    let index: [u8; 4] = k.get(8..)?.try_into().ok()?;
    Some((
        JobId::new(u64::from_be_bytes(id)),
        u32::from_be_bytes(index) as usize,
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Calls `f` with every record of `table` (none when the table does not exist).
fn each(
    txn: &redb::ReadTransaction,
    path: &Path,
    table: Table,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let t = match txn.open_table(table.def()) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(db::corrupt(path, e.into())),
    };
    for entry in t.iter().map_err(|e| db::corrupt(path, e.into()))? {
        let (k, v) = entry.map_err(|e| db::corrupt(path, e.into()))?;
        f(k.value(), v.value())?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{AzureVersion, KeyName, KeySync, KeySyncState, StepMessage, SyncStep};
    use crate::store::db;
    use crate::store::{State, Store};
    use redb::ReadableDatabase;

    /// A sync of `keys` keys with a first step, as a new job is created.
    pub(in crate::store) fn sync_job(id: u64, keys: usize) -> Job {
        Job {
            id: JobId::new(id),
            kind: JobKind::Sync,
            group: GroupName::try_from("g").unwrap(),
            keys: (0..keys)
                .map(|i| KeySync {
                    key: KeyName::try_from(format!("key-{i:07}")).unwrap(),
                    state: KeySyncState::NotStarted,
                })
                .collect(),
            started_by: "admin".into(),
            created: 1_700_000_000,
            started: None,
            ended: None,
            state: JobState::Pending,
            progress: 0,
            steps: vec![StepMessage {
                at: 1_700_000_000,
                message: "queued".into(),
            }]
            .into(),
            journal: Rows::default(),
            kek: None,
            error: None,
            cancel_requested: None,
        }
    }

    /// One journal step of a push: the key's import is sent, with its display step.
    pub(in crate::store) fn import_sent(job: &mut Job, key: usize) {
        job.keys.get_mut(key).unwrap().state = KeySyncState::ImportSent {
            fingerprint: format!("fp-{key}"),
        };
        let name = job.keys[key].key.clone();
        job.journal.push(SyncStep::ImportSent { key: name }.into());
        job.steps.push(StepMessage {
            at: 1_700_000_001,
            message: format!("Importing key {key}"),
        });
        job.progress = job.progress.saturating_add(1);
    }

    fn step_bytes(keys: usize) -> usize {
        let mut state = State::default();
        state.jobs.insert(JobId::new(1), sync_job(1, keys));
        let whole = db::Batch::changes_of(&mut state, 0).unwrap().bytes();
        assert!(whole > keys * 10, "a new job is written whole");
        import_sent(state.jobs.get_mut(&JobId::new(1)).unwrap(), 3);
        db::Batch::changes_of(&mut state, 0).unwrap().bytes()
    }

    #[test]
    fn a_journal_step_writes_the_same_bytes_whatever_the_number_of_keys() {
        let (small, large) = (step_bytes(10), step_bytes(100_000));
        // The header's key count is a varint: 10 and 100,000 differ by two bytes.
        assert_eq!(
            large - small,
            2,
            "{small} bytes at 10 keys, {large} at 100,000"
        );
        assert!(small < 300, "one step wrote {small} bytes");
    }

    #[test]
    fn jobs_survive_reopen_and_pruning_removes_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let expected = {
            let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
            state.jobs.insert(JobId::new(1), sync_job(1, 50));
            state.jobs.insert(JobId::new(2), sync_job(2, 3));
            store.commit(&mut state).unwrap();
            for k in [0, 7, 49] {
                import_sent(state.jobs.get_mut(&JobId::new(1)).unwrap(), k);
                store.commit(&mut state).unwrap();
            }
            let job = state.jobs.get_mut(&JobId::new(1)).unwrap();
            job.keys.update_where(
                |k| k.key.as_str() == "key-0000007",
                |k| {
                    k.state = KeySyncState::Imported {
                        version: AzureVersion::new("v7"),
                    }
                },
            );
            job.error = Some("x".into());
            store.commit(&mut state).unwrap();
            state
        };
        {
            let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
            assert_eq!(state.jobs, expected.jobs);
            assert_eq!(state.jobs[&JobId::new(1)].journal.len(), 3);
            state.jobs.remove(&JobId::new(1));
            store.commit(&mut state).unwrap();
        }
        let (store, state, _) = Store::open(dir.path()).unwrap();
        assert_eq!(state.jobs.len(), 1);
        assert_eq!(state.jobs[&JobId::new(2)], expected.jobs[&JobId::new(2)]);
        let path = store.path().to_path_buf();
        drop(store);
        assert_eq!(row_counts(&path), [3, 1, 0], "only job 2's rows are left");
    }

    /// Rows of every job in the store's row tables.
    fn row_counts(path: &Path) -> [usize; 3] {
        let db = db::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        ROW_TABLES.map(|table| {
            let mut n = 0;
            each(&txn, path, table, |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
            n
        })
    }
}
