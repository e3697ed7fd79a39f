//! Reading the HSM PIN from its file, straight into a secret type.
//!
//! A bare name is looked up in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`). An absolute
//! path must not be readable or writable by group or others. The PIN never comes from argv or
//! an environment value.

use crate::secret::Pin;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use zeroize::Zeroizing;

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
        "the PIN file {path} has mode {mode:04o}; it must not be readable or writable by group or others (chmod 600)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the PIN file {path} is empty or not UTF-8")]
    Invalid { path: PathBuf },
}

/// Reads the PIN named by `hsm.pin_file`. Only a trailing line ending is removed.
pub fn read_pin(pin_file: &str) -> Result<Pin, PinError> {
    let path = if pin_file.starts_with('/') {
        PathBuf::from(pin_file)
    } else {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
            PinError::NoCredentialsDirectory {
                name: pin_file.to_owned(),
            }
        })?;
        PathBuf::from(dir).join(pin_file)
    };
    let meta = std::fs::metadata(&path).map_err(|source| PinError::Read {
        path: path.clone(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PinError::Permissions { path, mode });
    }
    let bytes = Zeroizing::new(std::fs::read(&path).map_err(|source| PinError::Read {
        path: path.clone(),
        source,
    })?);
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
