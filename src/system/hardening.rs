//! Process hardening, applied once at start-up, before the PIN or any credential is read.
//!
//! In order: refuse root unless `allow_root = true`; refuse a configuration file that others can
//! read or write; umask 077; no core dumps (`RLIMIT_CORE` = 0) and not dumpable
//! (`PR_SET_DUMPABLE` 0, which also keeps same-user processes out of `/proc/<pid>/mem` and
//! `ptrace`); then `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)` so no page byokd ever
//! touched (and so no secret) is written to swap, without making untouched memory resident.
//!
//! If `mlockall` fails (`ENOMEM`: `RLIMIT_MEMLOCK` too small; `EPERM`: no right to lock), the
//! setting `hardening.mlock` decides: `"required"` (the default) stops start-up with a message
//! that names the fix; `"best-effort"` logs at WARN and goes on unlocked. Never reads a secret.

use crate::config::{Config, MlockPolicy};
use nix::sys::mman::{MlockAllFlags, mlockall};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::stat::{Mode, umask};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What [`harden`] did; logged at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardeningReport {
    pub mlock: MlockOutcome,
    pub running_as_root: bool,
}

/// Whether the memory of the process is locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MlockOutcome {
    /// All current and future pages are locked.
    Locked,
    /// `mlockall` failed and `hardening.mlock = "best-effort"` allowed going on; the errno.
    Unlocked(nix::errno::Errno),
}

#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    #[error(
        "byokd is running as root; run it as its own user (User=byokd in the systemd unit), or set allow_root = true in the configuration for a test set-up"
    )]
    Root,
    #[error("cannot inspect the configuration file {path}: {source}")]
    ConfigMetadata {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the configuration file {path} (mode {mode:04o}) can be {what} by other users; it decides which PKCS#11 module byokd loads: chown root:byokd and chmod 640 it, and keep its directories closed to others"
    )]
    ConfigPermissions {
        path: PathBuf,
        mode: u32,
        what: &'static str,
    },
    #[error("cannot set {what}: {source}")]
    Setting {
        what: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
    #[error(
        "cannot lock byokd's memory (mlockall: {errno}); secrets could reach swap. Raise the limit (LimitMEMLOCK= in the unit, or `ulimit -l`), or set hardening.mlock = \"best-effort\" to run unlocked"
    )]
    Mlock { errno: nix::errno::Errno },
}

/// Applies every process-wide protection. Call once, after the configuration is loaded and
/// before the PIN is read. `config_path` is the file the configuration came from.
pub fn harden(config: &Config, config_path: &Path) -> Result<HardeningReport, HardeningError> {
    let running_as_root = nix::unistd::geteuid().is_root();
    if running_as_root && !config.allow_root {
        return Err(HardeningError::Root);
    }
    check_config_file(config_path)?;
    umask(Mode::from_bits_truncate(0o077));
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|source| HardeningError::Setting {
        what: "RLIMIT_CORE=0",
        source,
    })?;
    nix::sys::prctl::set_dumpable(false).map_err(|source| HardeningError::Setting {
        what: "PR_SET_DUMPABLE=0",
        source,
    })?;
    let mlock = match lock_memory() {
        Ok(()) => MlockOutcome::Locked,
        Err(errno) => match config.hardening.mlock {
            MlockPolicy::Required => return Err(HardeningError::Mlock { errno }),
            MlockPolicy::BestEffort => {
                tracing::warn!(
                    error = %errno,
                    "mlockall failed; running with unlocked memory because hardening.mlock = \"best-effort\""
                );
                MlockOutcome::Unlocked(errno)
            }
        },
    };
    if running_as_root {
        tracing::warn!(
            "running as root because allow_root = true; use a dedicated user in production"
        );
    }
    Ok(HardeningReport {
        mlock,
        running_as_root,
    })
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`: every page is locked the moment it is
/// first touched, and a locked page is never written to swap. A page that was never touched
/// holds no data, so nothing byokd ever held can reach swap; but reserved and never-used memory
/// (thread stacks, allocator reservations, unused parts of the binary and the PKCS#11 module)
/// is no longer made resident, which `MCL_FUTURE` alone does. Kernels before 4.4 lack
/// `MCL_ONFAULT` (`EINVAL`): then the eager `MCL_CURRENT | MCL_FUTURE` is used.
fn lock_memory() -> Result<(), nix::errno::Errno> {
    let eager = MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE;
    let on_fault = MlockAllFlags::from_bits_retain(nix::libc::MCL_ONFAULT);
    match mlockall(eager | on_fault) {
        Err(nix::errno::Errno::EINVAL) => mlockall(eager),
        other => other,
    }
}

/// Refuses a configuration file that a user other than its owner (and group, for reading) can
/// reach: writable by group or others, or readable by others. Access through the path counts:
/// a world-readable file inside a directory others cannot enter is not readable by them. A
/// directory on the path that others can write (without the sticky bit) is refused too, since
/// they could swap the file.
pub fn check_config_file(path: &Path) -> Result<(), HardeningError> {
    let meta = |p: &Path| {
        std::fs::metadata(p).map_err(|source| HardeningError::ConfigMetadata {
            path: p.to_owned(),
            source,
        })
    };
    let absolute = std::path::absolute(path).map_err(|source| HardeningError::ConfigMetadata {
        path: path.to_owned(),
        source,
    })?;
    let file = meta(&absolute)?;
    let mode = file.permissions().mode() & 0o7777;
    let bad = |what| {
        Err(HardeningError::ConfigPermissions {
            path: absolute.clone(),
            mode,
            what,
        })
    };
    if mode & 0o020 != 0 {
        return bad("written by its group");
    }
    let mut others_can_reach = true;
    for dir in absolute.ancestors().skip(1) {
        let d = meta(dir)?;
        let dmode = d.mode();
        if dmode & 0o002 != 0 && dmode & 0o1000 == 0 {
            return Err(HardeningError::ConfigPermissions {
                path: dir.to_owned(),
                mode: dmode & 0o7777,
                what: "replaced (its directory is world-writable)",
            });
        }
        if dmode & 0o001 == 0 {
            others_can_reach = false;
        }
    }
    if others_can_reach && mode & 0o002 != 0 {
        return bad("written");
    }
    if others_can_reach && mode & 0o004 != 0 {
        return bad("read");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file_with_mode(dir_mode: u32, file_mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sub = dir.path().join("etc");
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join("byokd.toml");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(file_mode)).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(dir_mode)).unwrap();
        (dir, file)
    }

    #[test]
    fn a_config_file_only_owner_and_group_can_read_is_accepted() {
        let (_d, f) = file_with_mode(0o755, 0o640);
        assert!(check_config_file(&f).is_ok());
    }

    #[test]
    fn a_group_writable_config_file_is_refused() {
        let (_d, f) = file_with_mode(0o700, 0o660);
        assert!(matches!(
            check_config_file(&f),
            Err(HardeningError::ConfigPermissions { .. })
        ));
    }

    #[test]
    fn a_world_readable_config_file_in_an_open_directory_is_refused() {
        let (_d, f) = file_with_mode(0o755, 0o644);
        let err = check_config_file(&f).unwrap_err().to_string();
        assert!(
            err.contains("read by other users") && err.contains("chmod 640"),
            "{err}"
        );
    }

    #[test]
    fn a_world_readable_config_file_behind_a_closed_directory_is_accepted() {
        let (_d, f) = file_with_mode(0o750, 0o644);
        assert!(check_config_file(&f).is_ok());
    }

    #[test]
    fn a_config_file_in_a_world_writable_directory_is_refused() {
        let (_d, f) = file_with_mode(0o777, 0o600);
        let err = check_config_file(&f).unwrap_err().to_string();
        assert!(err.contains("world-writable"), "{err}");
    }
}
