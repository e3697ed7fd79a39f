//! Writing a downloaded file so that it is either whole and checked or not there at all: the
//! answer goes to a hidden partial file beside the target, the caller checks it, and only then
//! is it published under its name (never replacing a file without `--force`, even one created
//! meanwhile). A partial file that is not published is removed. Used by `log export` and
//! `backup create`.

use super::CtlError;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A download in progress towards `file`.
pub(super) struct Partial {
    file: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
    force: bool,
    published: bool,
}

impl Partial {
    /// Refuses an existing `file` unless `force`, then creates the partial file to write into.
    pub(super) fn start(file: &Path, force: bool) -> Result<(Self, File), CtlError> {
        if !force && file.exists() {
            return Err(exists(file));
        }
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| CtlError::Usage(format!("{} is not a file name", file.display())))?;
        let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io("cannot create", &tmp, e))?;
        let partial = Self {
            file: file.to_owned(),
            dir,
            tmp,
            force,
            published: false,
        };
        Ok((partial, out))
    }

    /// The partial file, for the caller's check before publishing.
    pub(super) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Says that a connection failure left `file` unwritten.
    pub(super) fn not_written(&self, e: CtlError) -> CtlError {
        match e {
            CtlError::Connect(m) => {
                CtlError::Connect(format!("{m}; {} was not written", self.file.display()))
            }
            e => e,
        }
    }

    /// Makes the written, checked partial file durable and gives it its name.
    pub(super) fn publish(mut self, out: File) -> Result<(), CtlError> {
        out.sync_all()
            .map_err(|e| io("cannot write", &self.tmp, e))?;
        drop(out);
        if self.force {
            std::fs::rename(&self.tmp, &self.file)
                .map_err(|e| io("cannot write", &self.file, e))?;
        } else {
            // A hard link never replaces an existing file, even one created meanwhile.
            std::fs::hard_link(&self.tmp, &self.file).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    exists(&self.file)
                } else {
                    io("cannot write", &self.file, e)
                }
            })?;
            let _ = std::fs::remove_file(&self.tmp);
        }
        self.published = true;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A file operation that failed, naming the file.
pub(super) fn io(what: &str, p: &Path, e: std::io::Error) -> CtlError {
    CtlError::Other(format!("{what} {}: {e}", p.display()))
}

fn exists(p: &Path) -> CtlError {
    CtlError::Exists(format!(
        "{} exists; choose another file or add --force to replace it",
        p.display()
    ))
}
