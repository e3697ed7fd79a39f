//! The HSM PIN credential for the health check, provided the way systemd's `LoadCredential=`
//! would provide it.
//!
//! The health check runs the new daemon outside systemd, so a configuration whose `hsm.pin_file`
//! is a credential name would find no `$CREDENTIALS_DIRECTORY`. The installer reads the
//! `LoadCredential=NAME:PATH` that the new unit (plus its drop-ins under
//! `ROOT/etc/systemd/system/byokd.service.d/`) gives for that name, copies the PIN from `PATH`
//! (under the installer's root) into a fresh 0700 directory under `ROOT/run` (a tmpfs on the
//! appliance) as a 0400 file owned by the daemon's user, and on drop overwrites and removes it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const DROP_INS: &str = "etc/systemd/system/byokd.service.d";

/// A private credentials directory holding the PIN; overwritten and removed on drop.
pub struct CredentialsDir {
    dir: PathBuf,
    file: PathBuf,
    len: usize,
}

impl CredentialsDir {
    /// Builds the directory for credential `name` from `unit` (and its drop-ins under `root`).
    pub fn provide(
        root: &Path,
        unit: &Path,
        name: &str,
        owner: Option<(u32, u32)>,
    ) -> Result<CredentialsDir, String> {
        let source = credential_source(root, unit, name)?;
        let pin = Zeroizing::new(fs::read(&source).map_err(|e| {
            format!(
                "the PIN credential {name:?} (LoadCredential= source {}): {e}",
                source.display()
            )
        })?);
        let run = root.join("run");
        fs::create_dir_all(&run).map_err(|e| format!("{}: {e}", run.display()))?;
        let nonce: u32 = rand::random();
        let dir = run.join(format!(
            "byokd-upgrade-credentials.{}.{nonce:08x}",
            std::process::id()
        ));
        // create (not create_all): fails if anything already sits at that name.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join(name);
        let guard = CredentialsDir {
            dir,
            file,
            len: pin.len(),
        };
        guard.write(&pin, owner)?;
        Ok(guard)
    }

    /// The value for `$CREDENTIALS_DIRECTORY`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn write(&self, pin: &[u8], owner: Option<(u32, u32)>) -> Result<(), String> {
        let fail = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&self.file)
            .map_err(|e| fail(&self.file, e))?;
        f.write_all(pin).map_err(|e| fail(&self.file, e))?;
        if let Some((uid, gid)) = owner {
            for p in [&self.file, &self.dir] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| fail(p, e))?;
            }
        }
        Ok(())
    }
}

impl Drop for CredentialsDir {
    fn drop(&mut self) {
        // Overwrite before unlinking, so the PIN does not linger in freed pages.
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&self.file, fs::Permissions::from_mode(0o600));
        if let Ok(mut f) = fs::OpenOptions::new().write(true).open(&self.file) {
            let _ = f.write_all(&vec![0u8; self.len]);
            let _ = f.sync_all();
        }
        let _ = fs::remove_file(&self.file);
        let _ = fs::remove_dir(&self.dir);
    }
}

/// The source path of credential `name`: the last `LoadCredential=` for it in the unit and its
/// drop-ins (in name order), resolved under `root`.
fn credential_source(root: &Path, unit: &Path, name: &str) -> Result<PathBuf, String> {
    let mut files = vec![unit.to_path_buf()];
    if let Ok(entries) = fs::read_dir(root.join(DROP_INS)) {
        let mut drop_ins: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        drop_ins.sort();
        files.extend(drop_ins);
    }
    let mut source: Option<String> = None;
    for file in &files {
        let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        for line in text.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("LoadCredential=") {
                if value.is_empty() {
                    source = None;
                } else if let Some((n, path)) = value.split_once(':')
                    && n == name
                {
                    source = Some(path.trim().to_owned());
                }
            } else if let Some(value) = line.strip_prefix("LoadCredentialEncrypted=")
                && value.split(':').next() == Some(name)
            {
                return Err(format!(
                    "the PIN credential {name:?} is LoadCredentialEncrypted= in {}; the health check cannot decrypt it, use an absolute hsm.pin_file or LoadCredential=",
                    file.display()
                ));
            }
        }
    }
    let source = source.ok_or_else(|| {
        format!(
            "hsm.pin_file names the credential {name:?}, but the unit {} has no LoadCredential={name}:PATH",
            unit.display()
        )
    })?;
    let relative = source.strip_prefix('/').ok_or_else(|| {
        format!("LoadCredential={name}:{source}: the health check needs an absolute source path")
    })?;
    Ok(root.join(relative))
}
