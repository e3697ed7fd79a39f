//! Reading and writing generations: A/B slots, atomic publish, fallback and locking.

use super::envelope::{self, FORMAT_VERSION};
use super::state::MAX_NEXT_JOB_ID;
use super::{State, StoreError, legacy};
use crate::system::regular_file;
use nix::libc;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const SLOTS: [&str; 2] = ["state.a", "state.b"];
const TEMP: &str = "state.tmp";
const LOCK: &str = "state.lock";

/// What loading found, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The generation loaded (0 for a fresh directory).
    pub generation: u64,
    /// True when the directory held no state at all.
    pub fresh: bool,
    /// Set when a damaged slot was skipped: which file and why.
    pub fell_back: Option<String>,
    /// Set when the state was migrated from an older format.
    pub migrated_from: Option<u16>,
}

/// The open state directory. Holds an exclusive lock so two daemons never share it.
pub struct Store {
    dir: PathBuf,
    generation: u64,
    newest_slot: Option<usize>,
    _lock: nix::fcntl::Flock<File>,
}

/// A new generation written to the temporary file and fsynced, but not yet published.
/// Dropping it without [`StagedWrite::publish`] leaves the previous state in force.
pub struct StagedWrite<'a> {
    store: &'a mut Store,
    generation: u64,
    slot: usize,
}

enum Slot {
    Missing,
    Valid {
        generation: u64,
        format: u16,
        state: Box<State>,
    },
    Damaged(String),
}

impl Store {
    /// Opens (creating if needed) the state directory and loads the newest valid generation.
    pub fn open(dir: &Path) -> Result<(Store, State, LoadReport), StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        check_dir(dir)?;
        let lock = lock_dir(dir)?;
        let slots: Vec<Slot> = SLOTS
            .iter()
            .map(|name| read_slot(&dir.join(name)))
            .collect::<Result<_, _>>()?;
        remove_if_exists(&dir.join(TEMP))?;

        let mut best: Option<(usize, u64)> = None;
        for (i, slot) in slots.iter().enumerate() {
            if let Slot::Valid {
                generation, format, ..
            } = slot
            {
                if *format > FORMAT_VERSION {
                    return Err(StoreError::TooNew {
                        path: dir.join(SLOTS[i]),
                        found: *format,
                        supported: FORMAT_VERSION,
                    });
                }
                if best.is_none_or(|(_, g)| *generation > g) {
                    best = Some((i, *generation));
                }
            }
        }
        let damaged: Vec<String> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Damaged(reason) => {
                    Some(format!("{}: {reason}", dir.join(SLOTS[i]).display()))
                }
                _ => None,
            })
            .collect();

        let Some((index, generation)) = best else {
            if damaged.is_empty() {
                let store = Store {
                    dir: dir.to_path_buf(),
                    generation: 0,
                    newest_slot: None,
                    _lock: lock,
                };
                let report = LoadReport {
                    generation: 0,
                    fresh: true,
                    fell_back: None,
                    migrated_from: None,
                };
                return Ok((store, State::default(), report));
            }
            return Err(StoreError::NoValidGeneration {
                dir: dir.to_path_buf(),
                details: damaged.join("; "),
            });
        };
        let mut slots = slots;
        let Slot::Valid { format, state, .. } = std::mem::replace(&mut slots[index], Slot::Missing)
        else {
            return Err(StoreError::NoValidGeneration {
                dir: dir.to_path_buf(),
                details: "slot vanished".into(),
            });
        };
        let fell_back = (!damaged.is_empty()).then(|| damaged.join("; "));
        if let Some(reason) = &fell_back {
            tracing::warn!(
                generation,
                damaged = %reason,
                "state: a damaged generation was skipped; loaded the previous generation"
            );
        }
        let migrated_from = (format < FORMAT_VERSION).then_some(format);
        let store = Store {
            dir: dir.to_path_buf(),
            generation,
            newest_slot: Some(index),
            _lock: lock,
        };
        let report = LoadReport {
            generation,
            fresh: false,
            fell_back,
            migrated_from,
        };
        Ok((store, *state, report))
    }

    /// The generation of the newest durable state.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes `state` the new durable generation. When this returns `Ok`, the state survives a
    /// crash or power loss; the previous generation is kept in the other slot.
    pub fn commit(&mut self, state: &State) -> Result<(), StoreError> {
        self.stage(state)?.publish()
    }

    /// First half of a commit: encodes and writes the temporary file, and fsyncs it.
    pub fn stage(&mut self, state: &State) -> Result<StagedWrite<'_>, StoreError> {
        let generation = self
            .generation
            .checked_add(1)
            .filter(|g| *g <= envelope::MAX_GENERATION)
            .ok_or_else(|| StoreError::GenerationsExhausted {
                dir: self.dir.clone(),
            })?;
        let bytes = envelope::encode_with(FORMAT_VERSION, generation, |buf| {
            postcard::to_extend(state, buf)
        })
        .map_err(StoreError::Encode)?;
        let temp = self.dir.join(TEMP);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| StoreError::io(&temp, e))?;
        file.write_all(&bytes)
            .map_err(|e| StoreError::io(&temp, e))?;
        file.sync_all().map_err(|e| StoreError::io(&temp, e))?;
        let slot = match self.newest_slot {
            Some(0) => 1,
            _ => 0,
        };
        Ok(StagedWrite {
            store: self,
            generation,
            slot,
        })
    }

    /// The format version of the newest valid generation in `dir`, without locking, migrating or
    /// creating anything; `None` when the directory holds no valid generation. Used by the
    /// upgrade installer to refuse a downgrade across state formats before it changes anything.
    pub fn newest_format(dir: &Path) -> Result<Option<u16>, StoreError> {
        let mut best: Option<(u64, u16)> = None;
        for name in SLOTS {
            let path = dir.join(name);
            let Ok(bytes) = slot_bytes(&path)? else {
                continue;
            };
            if let Ok(env) = envelope::decode(&bytes)
                && best.is_none_or(|(g, _)| env.generation > g)
            {
                best = Some((env.generation, env.format));
            }
        }
        Ok(best.map(|(_, format)| format))
    }

    /// The names of the files that hold generations, for backup and restore by the installer.
    pub const SLOT_FILES: [&'static str; 2] = SLOTS;

    /// Writes raw envelope bytes into the temporary file and publishes them; used by tests and
    /// migration tooling to lay down fixtures of older formats.
    #[doc(hidden)]
    pub fn write_raw_slot(dir: &Path, slot: usize, bytes: &[u8]) -> Result<(), StoreError> {
        let path = dir.join(SLOTS[slot.min(1)]);
        fs::write(&path, bytes).map_err(|e| StoreError::io(&path, e))
    }
}

impl StagedWrite<'_> {
    /// Second half of a commit: renames the temporary file over the older slot and fsyncs the
    /// directory.
    pub fn publish(self) -> Result<(), StoreError> {
        let dir = &self.store.dir;
        let temp = dir.join(TEMP);
        let target = dir.join(SLOTS[self.slot]);
        fs::rename(&temp, &target).map_err(|e| StoreError::io(&target, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(dir, e))?;
        self.store.generation = self.generation;
        self.store.newest_slot = Some(self.slot);
        Ok(())
    }
}

fn read_slot(path: &Path) -> Result<Slot, StoreError> {
    let bytes = match slot_bytes(path)? {
        Ok(b) => b,
        Err(SlotRead::Missing) => return Ok(Slot::Missing),
        Err(SlotRead::Unusable(reason)) => return Ok(Slot::Damaged(reason)),
    };
    let env = match envelope::decode(&bytes) {
        Ok(env) => env,
        Err(reason) => return Ok(Slot::Damaged(reason)),
    };
    if env.format > FORMAT_VERSION {
        return Ok(Slot::Valid {
            generation: env.generation,
            format: env.format,
            state: Box::default(),
        });
    }
    match legacy::migrate(env.format, env.payload) {
        Ok(state) if state.next_job_id.get() > MAX_NEXT_JOB_ID => Ok(Slot::Damaged(format!(
            "checksum valid but the next job id {} is above the highest byokd hands out ({MAX_NEXT_JOB_ID}): the state was damaged or forged",
            state.next_job_id
        ))),
        Ok(state) => Ok(Slot::Valid {
            generation: env.generation,
            format: env.format,
            state: Box::new(state),
        }),
        Err(reason) => Ok(Slot::Damaged(format!(
            "checksum valid but payload undecodable: {reason}"
        ))),
    }
}

/// Why a slot's bytes were not read: it is absent, or it is something no generation can be
/// (a FIFO, device or directory, or longer than any envelope), which is damage to fall back
/// from rather than a reason to hang or to allocate whatever the file claims.
enum SlotRead {
    Missing,
    Unusable(String),
}

fn slot_bytes(path: &Path) -> Result<Result<Vec<u8>, SlotRead>, StoreError> {
    match regular_file::read(path, envelope::MAX_ENVELOPE_LEN) {
        Ok(b) => Ok(Ok(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Err(SlotRead::Missing)),
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::InvalidData) => {
            Ok(Err(SlotRead::Unusable(format!("the slot {e}"))))
        }
        Err(e) => Err(StoreError::io(path, e)),
    }
}

fn remove_if_exists(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// The state directory must be byokd's own: another user who can write in it can replace a
/// slot with a forged generation. Checked on an open descriptor of the directory itself.
fn check_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let meta = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .and_then(|d| d.metadata())
        .map_err(|e| StoreError::io(dir, e))?;
    let euid = nix::unistd::geteuid().as_raw();
    let refuse = |why: String| {
        Err(StoreError::io(
            dir,
            std::io::Error::other(format!("the state directory {why}")),
        ))
    };
    // Root (the upgrade installer) opens byokd's own directory, owned by byokd's user.
    if euid != 0 && meta.uid() != euid && meta.uid() != 0 {
        return refuse(format!(
            "is owned by uid {}, not by byokd's user (uid {euid}) or root; chown it to byokd's user",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "has mode {mode:04o}: other users can write in it and replace the state; chmod 700 it"
        ));
    }
    Ok(())
}

fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<File>, StoreError> {
    let path = dir.join(LOCK);
    // Non-blocking and without following a link: a FIFO or a link planted at the lock's
    // path must not hang start-up or lock a file elsewhere.
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    let meta = file.metadata().map_err(|e| StoreError::io(&path, e))?;
    if !meta.file_type().is_file() {
        return Err(StoreError::io(
            &path,
            std::io::Error::other(format!(
                "the lock file is {}; remove it so byokd can create a regular file there",
                regular_file::kind_of(&meta)
            )),
        ));
    }
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| StoreError::Io {
        path: path.clone(),
        source: std::io::Error::other(format!(
            "cannot lock the state directory ({errno}); is another byokd running with the same state_dir?"
        )),
    })
}
