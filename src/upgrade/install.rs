//! The installation sequence and its rollback. See the module doc of `upgrade` for the order.

use super::credentials::CredentialsDir;
use super::health::{Runner, ensure_not_running};
use super::layout::{Layout, remove_tree, sync_dir, write_file};
use super::{UpgradeError, VerifiedBundle, verify_bundle};
use crate::store::Store;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The state files kept for rollback live here, inside the state directory.
const BACKUP: &str = "pre-upgrade";

/// What `byokd upgrade` was asked to do.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The bundle file.
    pub bundle: PathBuf,
    /// Root of the firmware tree (`/` on the appliance).
    pub root: PathBuf,
    /// The daemon's configuration (used as given, not under `root`).
    pub config: PathBuf,
    /// Time the new version has to become ready.
    pub health_timeout: Duration,
}

/// A successful installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub version: String,
    pub slot: &'static str,
    pub previous: Option<String>,
    pub state_format: u16,
    /// The format the state had before, when the new version migrated it.
    pub migrated_from: Option<u16>,
}

/// Verifies and installs a bundle; rolls back when the new version fails.
pub fn install(opts: &InstallOptions) -> Result<Installed, UpgradeError> {
    // 1. Nothing is touched before the bundle is proven.
    let bundle = verify_bundle(&opts.bundle)?;
    let config =
        crate::config::check_file(&opts.config).map_err(|problems| UpgradeError::Config {
            path: opts.config.clone(),
            problems: problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })?;
    let state_dir = config.state_dir.clone();
    let state_format = Store::newest_format(&state_dir)?;
    if let Some(current) = state_format
        && bundle.manifest.state_format < current
    {
        return Err(UpgradeError::Downgrade {
            version: bundle.manifest.version.clone(),
            bundle_format: bundle.manifest.state_format,
            state_format: current,
            state_dir,
        });
    }
    ensure_not_running(&state_dir)?;
    let layout = Layout::new(&opts.root);
    let previous = layout.current()?;
    let target = match previous {
        Some("a") => "b",
        _ => "a",
    };
    let run_as = health_user(config.allow_root)?;
    let runner = Runner {
        config: opts.config.clone(),
        run_as,
        log: layout.base().join("upgrade.log"),
    };

    // 2. Stage the new version beside the running one and keep the state for rollback.
    tracing::info!(
        event = "upgrade.stage",
        version = %bundle.manifest.version,
        slot = target,
        "staging the verified bundle"
    );
    stage(&layout, target, &bundle)?;
    layout.link_stable_paths(target)?;
    backup_state(&state_dir)?;

    // 3. Migrate, switch, health check; any failure restores the previous version and state.
    let new_binary = layout.slot_dir(target).join("bin/byokd");
    let undo = |stage: &'static str, detail: String| {
        rollback(&layout, previous, &state_dir, &bundle, stage, detail)
    };
    if let Err(detail) = runner.migrate(&new_binary, opts.health_timeout) {
        return Err(undo("state migration", detail));
    }
    layout.switch(Some(target))?;
    let socket = layout.base().join(".upgrade-notify.sock");
    let current_binary = layout.base().join("current/bin/byokd");
    let checked = pin_credential(opts, &layout, &config.hsm.pin_file, run_as).and_then(|creds| {
        let dir = creds.as_ref().map(CredentialsDir::path);
        runner.health_check(&current_binary, &socket, dir, opts.health_timeout)
    });
    if let Err(detail) = checked {
        return Err(undo("health check", detail));
    }
    let installed = Installed {
        version: bundle.manifest.version.clone(),
        slot: target,
        previous: previous.and_then(|p| layout.version_in(p)),
        state_format: Store::newest_format(&state_dir)?.unwrap_or(bundle.manifest.state_format),
        migrated_from: state_format.filter(|f| *f < bundle.manifest.state_format),
    };
    tracing::info!(
        event = "upgrade.installed",
        version = %installed.version,
        slot = target,
        "upgrade installed and healthy"
    );
    Ok(installed)
}

fn stage(layout: &Layout, slot: &str, bundle: &VerifiedBundle) -> Result<(), UpgradeError> {
    let manifest_text = manifest_text(bundle);
    layout.stage(slot, manifest_text.as_bytes(), &bundle.files)
}

/// The manifest as installed into the slot (for `version_in` and for inspection).
fn manifest_text(bundle: &VerifiedBundle) -> String {
    let m = &bundle.manifest;
    let mut text = format!(
        "byokd-bundle 1\nversion {}\nstate-format {}\n",
        m.version, m.state_format
    );
    for f in &m.files {
        text.push_str(&format!(
            "file {:04o} {} {}\n",
            f.mode,
            hex::encode(f.sha256),
            f.path
        ));
    }
    text
}

fn rollback(
    layout: &Layout,
    previous: Option<&'static str>,
    state_dir: &Path,
    bundle: &VerifiedBundle,
    stage: &'static str,
    detail: String,
) -> UpgradeError {
    let version = bundle.manifest.version.clone();
    tracing::error!(
        event = "upgrade.rollback",
        version = %version,
        stage,
        "the new version failed; rolling back"
    );
    let undone = layout
        .switch(previous)
        .and_then(|()| restore_state(state_dir));
    match undone {
        Ok(()) => UpgradeError::RolledBack {
            version,
            stage,
            detail,
            rolled_back_to: previous
                .and_then(|p| layout.version_in(p))
                .unwrap_or_else(|| "nothing installed".into()),
        },
        Err(e) => UpgradeError::RollbackFailed(Box::new(super::error::RollbackFailure {
            version,
            stage,
            detail,
            rollback: e.to_string(),
            layout: layout.base().to_path_buf(),
            state_dir: state_dir.to_path_buf(),
        })),
    }
}

/// Copies the generation files into `STATE/pre-upgrade/`, replacing an older backup atomically.
fn backup_state(state_dir: &Path) -> Result<(), UpgradeError> {
    if !state_dir.exists() {
        return Ok(());
    }
    let fresh = state_dir.join(format!("{BACKUP}.new"));
    remove_tree(&fresh)?;
    fs::create_dir(&fresh).map_err(|e| UpgradeError::io(&fresh, e))?;
    for name in Store::STATE_FILES {
        copy_keeping_owner(&state_dir.join(name), &fresh.join(name))?;
    }
    sync_dir(&fresh)?;
    let backup = state_dir.join(BACKUP);
    remove_tree(&backup)?;
    fs::rename(&fresh, &backup).map_err(|e| UpgradeError::io(&backup, e))?;
    sync_dir(state_dir)
}

/// Puts the backed-up generation files back, removing any the backup did not have.
fn restore_state(state_dir: &Path) -> Result<(), UpgradeError> {
    let backup = state_dir.join(BACKUP);
    if !backup.exists() {
        return Ok(());
    }
    for name in Store::STATE_FILES {
        let live = state_dir.join(name);
        let temp = state_dir.join(format!("{name}.restore"));
        if copy_keeping_owner(&backup.join(name), &temp)? {
            fs::rename(&temp, &live).map_err(|e| UpgradeError::io(&live, e))?;
        } else {
            match fs::remove_file(&live) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(UpgradeError::io(&live, e)),
            }
        }
    }
    sync_dir(state_dir)
}

/// Copies `from` to `to` (fsynced, same mode and owner); false when `from` does not exist.
fn copy_keeping_owner(from: &Path, to: &Path) -> Result<bool, UpgradeError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = match fs::metadata(from) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(UpgradeError::io(from, e)),
    };
    let data = fs::read(from).map_err(|e| UpgradeError::io(from, e))?;
    remove_tree_file(to)?;
    write_file(to, &data, meta.permissions().mode() & 0o777)?;
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| UpgradeError::io(to, e))?;
    }
    Ok(true)
}

fn remove_tree_file(path: &Path) -> Result<(), UpgradeError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UpgradeError::io(path, e)),
    }
}

/// A PIN named as a credential gets a private credentials directory built from the new unit.
fn pin_credential(
    opts: &InstallOptions,
    layout: &Layout,
    pin_file: &str,
    owner: Option<(u32, u32)>,
) -> Result<Option<CredentialsDir>, String> {
    if pin_file.starts_with('/') {
        return Ok(None);
    }
    let unit = layout.base().join("current/systemd/byokd.service");
    CredentialsDir::provide(&opts.root, &unit, pin_file, owner).map(Some)
}

/// As root with root not allowed for the daemon, the new version runs as the `byokd` user.
fn health_user(allow_root: bool) -> Result<Option<(u32, u32)>, UpgradeError> {
    if !nix::unistd::geteuid().is_root() || allow_root {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("byokd")
        .map_err(|e| UpgradeError::User(e.to_string()))?
        .ok_or_else(|| UpgradeError::User("no user named byokd (see byokd.sysusers)".into()))?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}
