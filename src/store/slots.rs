//! The A/B state files of formats 1-4 (`state.a`, `state.b`): read once, at the first start
//! of a build with the redb store, to migrate them, then renamed aside (`*.migrated`). Also the
//! state directory's ownership check and lock.

use super::FORMAT_VERSION;
use super::envelope::{self, LAST_AB_FORMAT};
use super::state::MAX_NEXT_JOB_ID;
use super::{State, StoreError, legacy};
use crate::system::regular_file;
use nix::libc;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const SLOTS: [&str; 2] = ["state.a", "state.b"];
const TEMP: &str = "state.tmp";
const LOCK: &str = "state.lock";
/// The suffix a slot file gets once its state is committed to the redb store.
const RETIRED: &str = ".migrated";

enum Slot {
    Missing,
    Valid {
        generation: u64,
        format: u16,
        state: Box<State>,
    },
    Damaged(String),
}

/// The newest valid A/B generation.
pub struct Newest {
    pub format: u16,
    pub generation: u64,
    pub state: State,
    /// Set when a damaged slot was skipped: which file and why.
    pub fell_back: Option<String>,
}

/// Reads the newest valid generation of the A/B files; `None` when there are none.
pub fn read_newest(dir: &Path) -> Result<Option<Newest>, StoreError> {
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
            if *format > LAST_AB_FORMAT {
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
            Slot::Damaged(reason) => Some(format!("{}: {reason}", dir.join(SLOTS[i]).display())),
            _ => None,
        })
        .collect();
    let Some((index, generation)) = best else {
        if damaged.is_empty() {
            return Ok(None);
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
    Ok(Some(Newest {
        format,
        generation,
        state: *state,
        fell_back,
    }))
}

/// Whether any A/B slot file is in `dir` (then it is the state to migrate).
pub fn present(dir: &Path) -> bool {
    SLOTS
        .iter()
        .any(|name| dir.join(name).symlink_metadata().is_ok())
}

/// Renames the slot files aside once their state is committed to the store, and fsyncs the
/// directory. They stay as `state.a.migrated` / `state.b.migrated` for an operator to inspect.
pub fn retire(dir: &Path) -> Result<(), StoreError> {
    for name in SLOTS {
        let from = dir.join(name);
        let to = dir.join(format!("{name}{RETIRED}"));
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&from, e)),
        }
    }
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// The format version of the newest valid A/B generation in `dir`, without locking or
/// migrating; `None` when there is none.
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

/// Writes raw envelope bytes as slot `slot`; used by tests to lay down fixtures of the A/B
/// formats.
pub fn write_raw_slot(dir: &Path, slot: usize, bytes: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(SLOTS[slot.min(1)]);
    fs::write(&path, bytes).map_err(|e| StoreError::io(&path, e))
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
    if env.format > LAST_AB_FORMAT {
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
pub fn check_dir(dir: &Path) -> Result<(), StoreError> {
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

pub fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<File>, StoreError> {
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
