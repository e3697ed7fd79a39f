//! Format 5 → 6: a job was one record (its header and its three lists in one value), so every
//! journal step re-encoded all of its keys; format 6 keeps a header record and one row per
//! entry (see `job_rows`). The migration reads format 5's `jobs` table, writes each job as
//! format 6 does and drops that table, in the transaction that records format 6.

use super::records::{self as db, Batch};
use super::{StoreError, Tracked, job_rows};
use crate::model::{Job, JobId};
use redb::{ReadableTable, TableDefinition};
use std::path::Path;

/// Format 5's table of whole jobs (postcard-encoded id and job).
const FORMAT5_JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");
/// Its number in a format-5 backup.
pub const FORMAT5_JOBS_ID: u8 = 4;

/// Adds one format-5 job record to `batch`, as format 6 writes the job.
pub(super) fn split_job(
    batch: &mut Batch,
    path: &Path,
    key: &[u8],
    value: &[u8],
) -> Result<(), StoreError> {
    let what = "format-5 job";
    let id: JobId = db::decode(path, what, key)?;
    let job: Job = db::decode(path, what, value)?;
    if job.id != id {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "the format-5 job record under id {id} holds job {}: the store was damaged",
                job.id
            ),
        });
    }
    let mut jobs = Tracked::default();
    jobs.insert(id, job);
    job_rows::take(batch, &mut jobs, true)
}

/// The format-6 writes of every job in `txn`'s format-5 table, which is dropped; an empty batch
/// when there is none.
pub(super) fn split_jobs(txn: &redb::WriteTransaction, path: &Path) -> Result<Batch, StoreError> {
    let mut batch = Batch::default();
    let fail = |e: redb::Error| db::commit_failed(path, e);
    {
        let table = match txn.open_table(FORMAT5_JOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(batch),
            Err(e) => return Err(fail(e.into())),
        };
        for entry in table.iter().map_err(|e| fail(e.into()))? {
            let (k, v) = entry.map_err(|e| fail(e.into()))?;
            split_job(&mut batch, path, k.value(), v.value())?;
        }
    }
    txn.delete_table(FORMAT5_JOBS).map_err(|e| fail(e.into()))?;
    Ok(batch)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::job_rows::tests::{import_sent, sync_job};
    use crate::store::{FORMAT_VERSION, Store};
    use redb::ReadableDatabase;

    /// Lays down a store as format 5 wrote it: the meta table and whole jobs.
    pub(in crate::store) fn format5_store(path: &Path, jobs: &[Job]) {
        let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
        let db = redb::Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut m = txn.open_table(meta).unwrap();
            m.insert("format", 5u16.to_le_bytes().as_slice()).unwrap();
            m.insert("generation", 3u64.to_le_bytes().as_slice())
                .unwrap();
            let next = postcard::to_allocvec(&JobId::new(9)).unwrap();
            m.insert("next_job_id", next.as_slice()).unwrap();
            let mut t = txn.open_table(FORMAT5_JOBS).unwrap();
            for job in jobs {
                let k = postcard::to_allocvec(&job.id).unwrap();
                let v = postcard::to_allocvec(job).unwrap();
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    #[test]
    fn a_format_5_store_is_migrated_to_job_rows_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut job = sync_job(4, 20);
        import_sent(&mut job, 2);
        let jobs = [sync_job(1, 0), job];
        format5_store(&path, &jobs);
        {
            let (mut store, mut state, report) = Store::open(dir.path()).unwrap();
            assert_eq!(report.migrated_from, Some(5));
            assert_eq!(report.generation, 4, "the migration is one commit");
            assert_eq!(state.next_job_id, JobId::new(9));
            assert_eq!(state.jobs.values().cloned().collect::<Vec<_>>(), jobs);
            // The migrated rows take the next step like any other.
            import_sent(state.jobs.get_mut(&JobId::new(4)).unwrap(), 5);
            store.commit(&mut state).unwrap();
        }
        let (store, state, report) = Store::open(dir.path()).unwrap();
        assert_eq!(report.migrated_from, None);
        assert_eq!(state.jobs[&JobId::new(4)].journal.len(), 2);
        drop(store);
        assert_eq!(
            Store::newest_format(dir.path()).unwrap(),
            Some(FORMAT_VERSION)
        );
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        assert!(
            matches!(
                txn.open_table(FORMAT5_JOBS),
                Err(redb::TableError::TableDoesNotExist(_))
            ),
            "format 5's whole-job table is dropped"
        );
    }

    #[test]
    fn a_format_5_job_under_the_wrong_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut job = sync_job(4, 2);
        format5_store(&path, std::slice::from_ref(&job));
        // Overwrite the record so that id 4 holds job 5.
        job.id = JobId::new(5);
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(FORMAT5_JOBS).unwrap();
            let k = postcard::to_allocvec(&JobId::new(4)).unwrap();
            let v = postcard::to_allocvec(&job).unwrap();
            t.insert(k.as_slice(), v.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        let err = Store::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("holds job 5"), "{err}");
        assert_eq!(
            Store::newest_format(dir.path()).unwrap(),
            Some(5),
            "a refused migration changes nothing"
        );
    }
}
