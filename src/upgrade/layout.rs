//! The installed layout under a root: `opt/byokd/{a,b}` hold one version each, `opt/byokd/current`
//! is a relative symlink to the active slot, switched by renaming a new symlink over it. The
//! stable paths (`usr/bin/byokd`, `usr/bin/byokctl`, the unit, sysusers and tmpfiles entries)
//! are relative symlinks through `current`, so one rename switches all of them at once.

use super::{ManifestFile, UpgradeError};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const SLOTS: [&str; 2] = ["a", "b"];

/// Stable path under the root → file inside the active slot.
const LINKS: [(&str, &str); 5] = [
    ("usr/bin/byokd", "bin/byokd"),
    ("usr/bin/byokctl", "bin/byokctl"),
    ("etc/systemd/system/byokd.service", "systemd/byokd.service"),
    ("usr/lib/sysusers.d/byokd.conf", "systemd/byokd.sysusers"),
    ("usr/lib/tmpfiles.d/byokd.conf", "systemd/byokd.tmpfiles"),
];
/// The default configuration is installed here only when none exists.
const CONFIG: (&str, &str) = ("etc/byokd/byokd.toml", "etc/byokd.toml");

/// The A/B layout under one root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    base: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            base: root.join("opt/byokd"),
        }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn slot_dir(&self, slot: &str) -> PathBuf {
        self.base.join(slot)
    }

    /// The active slot, if any version is installed.
    pub fn current(&self) -> Result<Option<&'static str>, UpgradeError> {
        let link = self.base.join("current");
        match fs::read_link(&link) {
            Ok(target) => SLOTS
                .iter()
                .find(|s| target == Path::new(s))
                .copied()
                .map(Some)
                .ok_or_else(|| {
                    UpgradeError::Invalid(format!(
                        "{} points at {}, not at a slot",
                        link.display(),
                        target.display()
                    ))
                }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(UpgradeError::io(link, e)),
        }
    }

    /// The version installed in `slot`, from its manifest copy.
    pub fn version_in(&self, slot: &str) -> Option<String> {
        let text = fs::read_to_string(self.slot_dir(slot).join("MANIFEST")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("version "))
            .map(str::to_owned)
    }

    /// Writes the files into `slot`, replacing what was there: first into a staging directory,
    /// every file fsynced, then renamed into place.
    pub fn stage(
        &self,
        slot: &str,
        manifest_text: &[u8],
        files: &[(ManifestFile, Vec<u8>)],
    ) -> Result<(), UpgradeError> {
        fs::create_dir_all(&self.base).map_err(|e| UpgradeError::io(&self.base, e))?;
        let staging = self.base.join(format!(".staging-{slot}"));
        remove_tree(&staging)?;
        for (f, data) in files {
            write_file(&staging.join(&f.path), data, f.mode)?;
        }
        write_file(&staging.join("MANIFEST"), manifest_text, 0o644)?;
        let dir = self.slot_dir(slot);
        remove_tree(&dir)?;
        fs::rename(&staging, &dir).map_err(|e| UpgradeError::io(&dir, e))?;
        sync_dir(&self.base)
    }

    /// Points `current` at `slot` (or removes it for `None`) with one atomic rename.
    pub fn switch(&self, slot: Option<&str>) -> Result<(), UpgradeError> {
        let link = self.base.join("current");
        match slot {
            Some(slot) => replace_symlink(Path::new(slot), &link)?,
            None => match fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(UpgradeError::io(&link, e)),
            },
        }
        sync_dir(&self.base)
    }

    /// Makes the stable paths point through `current`, and installs the default configuration
    /// from `slot` when there is none. Idempotent.
    pub fn link_stable_paths(&self, slot: &str) -> Result<(), UpgradeError> {
        for (stable, inner) in LINKS {
            let path = self.root.join(stable);
            let depth = Path::new(stable).components().count() - 1;
            let target = PathBuf::from("../".repeat(depth))
                .join("opt/byokd/current")
                .join(inner);
            if fs::read_link(&path).ok().as_deref() == Some(target.as_path()) {
                continue;
            }
            let parent = parent_of(&path)?;
            fs::create_dir_all(parent).map_err(|e| UpgradeError::io(parent, e))?;
            replace_symlink(&target, &path)?;
        }
        let config = self.root.join(CONFIG.0);
        let default = self.slot_dir(slot).join(CONFIG.1);
        if !config.exists() && default.exists() {
            let data = fs::read(&default).map_err(|e| UpgradeError::io(&default, e))?;
            write_file(&config, &data, 0o640)?;
        }
        Ok(())
    }
}

fn parent_of(path: &Path) -> Result<&Path, UpgradeError> {
    path.parent().ok_or_else(|| {
        UpgradeError::io(
            path,
            std::io::Error::new(ErrorKind::InvalidInput, "no parent directory"),
        )
    })
}

/// Creates `path` (and its parents) with `data` and `mode`, fsynced.
pub(crate) fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), UpgradeError> {
    let parent = parent_of(path)?;
    fs::create_dir_all(parent).map_err(|e| UpgradeError::io(parent, e))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| UpgradeError::io(path, e))?;
    file.write_all(data)
        .map_err(|e| UpgradeError::io(path, e))?;
    // The umask may have narrowed the mode at creation; set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| UpgradeError::io(path, e))?;
    file.sync_all().map_err(|e| UpgradeError::io(path, e))
}

fn replace_symlink(target: &Path, link: &Path) -> Result<(), UpgradeError> {
    let parent = parent_of(link)?;
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = parent.join(format!(".{name}.new"));
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(UpgradeError::io(&temp, e)),
    }
    std::os::unix::fs::symlink(target, &temp).map_err(|e| UpgradeError::io(&temp, e))?;
    fs::rename(&temp, link).map_err(|e| UpgradeError::io(link, e))
}

pub(crate) fn remove_tree(path: &Path) -> Result<(), UpgradeError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UpgradeError::io(path, e)),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), UpgradeError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| UpgradeError::io(dir, e))
}
