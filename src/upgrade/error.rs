//! Errors of the upgrade installer. Each says what was refused or failed, and whether anything
//! was changed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("cannot read the bundle {path}: {source}")]
    ReadBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bundle refused, nothing was changed: {0}")]
    Invalid(String),
    #[error(
        "bundle refused, nothing was changed: the manifest signature does not verify with the upgrade key built into this byokd ({0})"
    )]
    BadSignature(String),
    #[error(
        "this byokd was built without an upgrade public key (BYOKD_UPGRADE_PUBKEY at build time), so it cannot verify bundles; build it with image/build.sh"
    )]
    NoTrustedKey,
    #[error("the upgrade public key built into this byokd is malformed: {0}")]
    BadTrustedKey(String),
    #[error(
        "downgrade refused, nothing was changed: bundle {version} writes state format {bundle_format}, but the state in {state_dir} is format {state_format}; an older format would lose what the newer one records. Install a bundle with state format {state_format} or newer"
    )]
    Downgrade {
        version: String,
        bundle_format: u16,
        state_format: u16,
        state_dir: PathBuf,
    },
    #[error(
        "byokd is running (it holds {lock}); nothing was changed. Stop it first (systemctl stop byokd), then upgrade"
    )]
    DaemonRunning { lock: PathBuf },
    #[error("configuration {path}: {problems}")]
    Config { path: PathBuf, problems: String },
    #[error("upgrade I/O failed on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot run the health-check user: {0}")]
    User(String),
    #[error(
        "the new version {version} failed ({stage}): {detail}; rolled back to {rolled_back_to} with the state as it was before the upgrade"
    )]
    RolledBack {
        version: String,
        stage: &'static str,
        detail: String,
        rolled_back_to: String,
    },
    #[error(transparent)]
    RollbackFailed(Box<RollbackFailure>),
}

/// A failed new version whose rollback failed too; says how to finish by hand.
#[derive(Debug, thiserror::Error)]
#[error(
    "the new version {version} failed ({stage}): {detail}; and the rollback failed too: {rollback}. Restore by hand: point {layout}/current at the previous slot and copy {state_dir}/pre-upgrade/* back into {state_dir}",
    layout = .layout.display(),
    state_dir = .state_dir.display()
)]
pub struct RollbackFailure {
    pub version: String,
    pub stage: &'static str,
    pub detail: String,
    pub rollback: String,
    pub layout: PathBuf,
    pub state_dir: PathBuf,
}

impl UpgradeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
