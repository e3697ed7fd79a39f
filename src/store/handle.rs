//! The open state directory: the redb store, its writer thread and the directory lock, and the
//! first-start migration of the A/B files of formats 1-4.

use super::commit::{Committer, Pending};
use super::db::{self, Batch};
use super::{FORMAT_VERSION, State, StoreError, slots};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// What loading found, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The generation loaded (its commit counter).
    pub generation: u64,
    /// True when the directory held no state at all.
    pub fresh: bool,
    /// Set when a damaged A/B slot was skipped during a migration: which file and why.
    pub fell_back: Option<String>,
    /// Set when the state was migrated from an older format.
    pub migrated_from: Option<u16>,
}

/// The open state directory. Holds an exclusive lock so two daemons never share it.
pub struct Store {
    dir: PathBuf,
    path: PathBuf,
    committer: Committer,
    /// Shared with the writer thread; backups read a snapshot of it while commits go on.
    db: Arc<redb::Database>,
    /// The sequence number the next staged batch gets (see `Batch::seq`).
    next_seq: u64,
    _lock: nix::fcntl::Flock<fs::File>,
}

impl Store {
    /// Opens (creating if needed) the state directory and loads its state, migrating A/B files
    /// of an older format into the store first. A damaged store is refused, never started empty.
    pub fn open(dir: &Path) -> Result<(Store, State, LoadReport), StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        slots::check_dir(dir)?;
        let lock = slots::lock_dir(dir)?;
        let path = dir.join(db::FILE);
        let applied = Arc::new(AtomicU64::new(0));
        let (db, loaded, report) = if slots::present(dir) {
            migrate_slots(dir, &path, &applied)?
        } else if path.symlink_metadata().is_ok() {
            let db = Arc::new(db::open(&path)?);
            let found = db::format_in(&*db, &path)?;
            let migrated_from = found.filter(|f| *f < FORMAT_VERSION);
            if let Some(from) = migrated_from {
                // Each format's conversion and the new format number, durably, in one
                // transaction, before anything else runs (see `db::upgrade`).
                db::upgrade(&db, &path, from)?;
                tracing::info!(from, to = FORMAT_VERSION, "state: the store was migrated");
            }
            let loaded =
                db::load(&db, &path, applied.clone())?.ok_or_else(|| StoreError::Corrupt {
                    path: path.clone(),
                    reason: "the store holds no format record: it was damaged".into(),
                })?;
            let report = LoadReport {
                generation: loaded.generation,
                fresh: false,
                fell_back: None,
                migrated_from,
            };
            (db, loaded.state, report)
        } else {
            let mut state = State::default();
            let db = Arc::new(create_with(dir, &path, Batch::all_of(&mut state)?)?);
            state
                .keys
                .bind(super::keys::source(&db, &path, applied.clone()));
            let report = LoadReport {
                generation: 1,
                fresh: true,
                fell_back: None,
                migrated_from: None,
            };
            (db, state, report)
        };
        let committer = Committer::start(db.clone(), path.clone(), report.generation, applied)?;
        let store = Store {
            dir: dir.to_path_buf(),
            path,
            committer,
            db,
            next_seq: 1,
            _lock: lock,
        };
        Ok((store, loaded, report))
    }

    /// The generation of the newest durable commit.
    pub fn generation(&self) -> u64 {
        self.committer.generation()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues what `state` changed since the last commit; await the result for durability.
    /// Only the changed records are encoded.
    pub fn stage(&mut self, state: &mut State) -> Result<Pending, StoreError> {
        let batch = Batch::changes_of(state, self.take_seq())?;
        Ok(self.committer.submit(batch, self.path.clone()))
    }

    /// Makes what `state` changed durable, blocking the calling thread (commands and tests).
    pub fn commit(&mut self, state: &mut State) -> Result<(), StoreError> {
        let batch = Batch::changes_of(state, self.take_seq())?;
        self.committer
            .commit_blocking(batch, self.path.clone())
            .map(|_| ())
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// A consistent snapshot of every durable commit so far, for a backup; commits go on while
    /// it is read (see `backup`).
    pub fn snapshot(&self) -> Result<super::backup::Snapshot, StoreError> {
        super::backup::Snapshot::of(&self.db, &self.path)
    }

    /// The format version of the state in `dir`, without locking, migrating or creating
    /// anything; `None` when the directory holds no state. A/B files, when present, are what
    /// the next start migrates, so their format is the state's. Used by the upgrade installer
    /// to refuse a downgrade across state formats before it changes anything.
    pub fn newest_format(dir: &Path) -> Result<Option<u16>, StoreError> {
        if slots::present(dir) {
            return slots::newest_format(dir);
        }
        let path = dir.join(db::FILE);
        if path.symlink_metadata().is_err() {
            return Ok(None);
        }
        db::format_of(&path)
    }

    /// The files that hold the state, for the installer's copy before an upgrade: the store
    /// and, on a state not yet migrated, the A/B files.
    pub const STATE_FILES: [&'static str; 3] = ["state.a", "state.b", db::FILE];

    /// Writes raw envelope bytes as A/B slot `slot`; tests lay down older formats with it.
    #[doc(hidden)]
    pub fn write_raw_slot(dir: &Path, slot: usize, bytes: &[u8]) -> Result<(), StoreError> {
        slots::write_raw_slot(dir, slot, bytes)
    }
}

/// Migrates the newest valid A/B generation into a new store: the whole state is written to
/// `state.redb.new` in one durable commit, renamed over `state.redb` and only then are the A/B
/// files renamed aside. A crash at any point leaves the A/B files in place, and the next start
/// migrates again from them.
fn migrate_slots(
    dir: &Path,
    path: &Path,
    applied: &Arc<AtomicU64>,
) -> Result<(Arc<redb::Database>, State, LoadReport), StoreError> {
    let Some(newest) = slots::read_newest(dir)? else {
        return Err(StoreError::NoValidGeneration {
            dir: dir.to_path_buf(),
            details: "the A/B state files vanished while they were read".into(),
        });
    };
    if let Some(reason) = &newest.fell_back {
        tracing::warn!(
            generation = newest.generation,
            damaged = %reason,
            "state: a damaged generation was skipped; migrating the previous generation"
        );
    }
    let mut state = newest.state;
    let mut batch = Batch::all_of(&mut state)?;
    batch.set_meta(
        db::MIGRATED_FROM,
        postcard::to_allocvec(&(newest.format, newest.generation))
            .map_err(|e| StoreError::Encode(e.to_string()))?,
    );
    let db = Arc::new(create_with(dir, path, batch)?);
    let keys = state.keys.len();
    state
        .keys
        .bind(super::keys::source(&db, path, applied.clone()));
    slots::retire(dir)?;
    tracing::info!(
        from = newest.format,
        to = FORMAT_VERSION,
        generation = newest.generation,
        keys,
        "state: the A/B state files were migrated into the store and renamed *.migrated"
    );
    let report = LoadReport {
        generation: 1,
        fresh: false,
        fell_back: newest.fell_back,
        migrated_from: Some(newest.format),
    };
    Ok((db, state, report))
}

/// Creates the store with `first` as its first commit, atomically: written and committed in
/// `state.redb.new`, closed, renamed over `state.redb`, directory fsynced, reopened.
pub(super) fn create_with(
    dir: &Path,
    path: &Path,
    first: Batch,
) -> Result<redb::Database, StoreError> {
    let fresh = dir.join(format!("{}.new", db::FILE));
    match fs::remove_file(&fresh) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(&fresh, e)),
    }
    {
        let db = db::create(&fresh)?;
        db::apply(&db, &fresh, &[first])?;
    }
    fs::rename(&fresh, path).map_err(|e| StoreError::io(path, e))?;
    slots::sync_dir(dir)?;
    db::open(path)
}
