//! Errors of the state store. Each says which file, what is wrong and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state I/O failed on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state store {path} is damaged or unreadable: {reason}. byokd refuses to start over it (it never starts empty over existing state); restore the state directory from a backup (byokd restore FILE), or move it aside to start fresh deliberately"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "state store {path} could not be read: {reason}. The store may be damaged: restart byokd (every start verifies the checksum of every page and refuses a damaged store) and, if it refuses, restore the state directory from a backup (byokd restore FILE)"
    )]
    Read { path: PathBuf, reason: String },
    #[error(
        "the state directory {dir} already holds a state; a restore never replaces one. Move state.redb (and any state.a, state.b) aside first, with byokd stopped"
    )]
    NotEmpty { dir: PathBuf },
    #[error("state commit to {path} failed: {reason}")]
    Commit { path: PathBuf, reason: String },
    #[error(
        "no valid state generation in {dir}: {details}. byokd refuses to start empty over existing state; restore the state directory from a backup, or move it aside to start fresh deliberately"
    )]
    NoValidGeneration { dir: PathBuf, details: String },
    #[error(
        "state in {path} has format version {found}, newer than this byokd understands ({supported}); install a byokd that supports it"
    )]
    TooNew {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    #[error("state could not be encoded: {0}")]
    Encode(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
