//! Reading the HSM PIN from its file, straight into a secret type.
//!
//! A bare name is looked up in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`). The file is
//! opened once, with `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`, and every check is made with `fstat`
//! on that descriptor: it must be a regular file (a FIFO, device or symbolic link is refused, so
//! start-up never blocks on it), owned by byokd's user (or root), not readable or writable by
//! group or others, and at most [`MAX_PIN_FILE_BYTES`] long. The PIN never comes from argv or an
//! environment value.

use crate::secret::Pin;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// The longest PIN file accepted (PKCS#11 PINs are short; this only bounds the read).
pub const MAX_PIN_FILE_BYTES: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "hsm.pin_file {name:?} is a credential name but $CREDENTIALS_DIRECTORY is not set; run byokd under systemd with LoadCredential=, or give an absolute path"
    )]
    NoCredentialsDirectory { name: String },
    #[error("cannot read the PIN file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the PIN file {path} is {what}, not a regular file; point hsm.pin_file at a regular file (mode 0600)"
    )]
    NotRegular { path: PathBuf, what: &'static str },
    #[error(
        "the PIN file {path} is owned by uid {owner}; it must be owned by byokd's user (uid {expected}) or root: chown it"
    )]
    Owner {
        path: PathBuf,
        owner: u32,
        expected: u32,
    },
    #[error(
        "the PIN file {path} has mode {mode:04o}; it must not be readable or writable by group or others (chmod 600)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the PIN file {path} is empty, longer than {MAX_PIN_FILE_BYTES} bytes, or not UTF-8")]
    Invalid { path: PathBuf },
}

/// Whose PIN file it may be: byokd's own user, or (for `check-config` run as root, which cannot
/// know the service's user) anyone.
#[derive(Debug, Clone, Copy)]
pub enum PinOwner {
    /// The effective user of this process, or root.
    ThisUser,
    /// Not checked.
    Anyone,
}

/// Reads the PIN named by `hsm.pin_file`. Only a trailing line ending is removed.
pub fn read_pin(pin_file: &str) -> Result<Pin, PinError> {
    let (path, mut file, meta) = open_pin_file(pin_file, PinOwner::ThisUser)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        meta.len().min(MAX_PIN_FILE_BYTES) as usize
    ));
    (&mut file)
        .take(MAX_PIN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| PinError::Read {
            path: path.clone(),
            source,
        })?;
    if bytes.len() as u64 > MAX_PIN_FILE_BYTES {
        return Err(PinError::Invalid { path });
    }
    let trimmed = crate::secret::trim_trailing_newline(bytes.to_vec());
    match String::from_utf8(trimmed) {
        Ok(s) if !s.is_empty() => Ok(Pin::new(s)),
        Ok(_) => Err(PinError::Invalid { path }),
        Err(e) => {
            let mut b = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut b);
            Err(PinError::Invalid { path })
        }
    }
}

/// Checks the PIN file as [`read_pin`] does, without reading the PIN (for `check-config`).
pub fn check_pin_file(pin_file: &str, owner: PinOwner) -> Result<(), PinError> {
    let (path, _file, meta) = open_pin_file(pin_file, owner)?;
    if meta.len() == 0 || meta.len() > MAX_PIN_FILE_BYTES {
        return Err(PinError::Invalid { path });
    }
    Ok(())
}

/// The path `hsm.pin_file` names.
fn locate(pin_file: &str) -> Result<PathBuf, PinError> {
    if pin_file.starts_with('/') {
        return Ok(PathBuf::from(pin_file));
    }
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
        PinError::NoCredentialsDirectory {
            name: pin_file.to_owned(),
        }
    })?;
    Ok(PathBuf::from(dir).join(pin_file))
}

/// Opens the PIN file once and checks type, owner and mode on the open descriptor.
fn open_pin_file(pin_file: &str, owner: PinOwner) -> Result<(PathBuf, File, Metadata), PinError> {
    use nix::libc;
    let path = locate(pin_file)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => PinError::NotRegular {
                path: path.clone(),
                what: "a symbolic link",
            },
            _ => PinError::Read {
                path: path.clone(),
                source,
            },
        })?;
    let meta = file.metadata().map_err(|source| PinError::Read {
        path: path.clone(),
        source,
    })?;
    if !meta.file_type().is_file() {
        let what = crate::system::regular_file::kind_of(&meta);
        return Err(PinError::NotRegular { path, what });
    }
    if let PinOwner::ThisUser = owner {
        let expected = nix::unistd::geteuid().as_raw();
        if meta.uid() != expected && meta.uid() != 0 {
            return Err(PinError::Owner {
                path,
                owner: meta.uid(),
                expected,
            });
        }
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PinError::Permissions { path, mode });
    }
    Ok((path, file, meta))
}
