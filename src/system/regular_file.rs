//! Reading a file the daemon was told to trust, without letting whatever sits at the path
//! hang or exhaust start-up: the path is opened once with `O_NONBLOCK | O_CLOEXEC` (so a FIFO
//! or device never blocks the open), its type and size are checked with `fstat` on that
//! descriptor, and at most `limit` bytes are read from it.

use nix::libc;
use std::fs::{File, Metadata};
use std::io::{Error, ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// The most byokd reads of a configuration file, certificate bundle or key (a full system CA
/// bundle is a few hundred KiB).
pub const TEXT_LIMIT: u64 = 4 << 20;

/// What a non-regular file is, in words for an operator.
pub fn kind_of(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_file() {
        "a regular file"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

/// Opens `path` for reading without blocking, and returns it only if it is a regular file.
/// A FIFO, device, socket or directory is an error of kind `InvalidInput` naming what it is.
pub fn open(path: &Path) -> std::io::Result<(File, Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("is {}, not a regular file", kind_of(&meta)),
        ));
    }
    Ok((file, meta))
}

/// Reads a whole regular file of at most `limit` bytes (see [`open`]). A longer file is an
/// error of kind `InvalidData`, found before anything is allocated for it.
pub fn read(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    read_into(path, limit, &mut bytes)?;
    Ok(bytes)
}

/// [`read`] into a buffer that is zeroed when dropped, for files that hold keys.
pub fn read_secret(path: &Path, limit: u64) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(Vec::new());
    read_into(path, limit, &mut bytes)?;
    Ok(bytes)
}

/// Reserves the file's length (plus one byte to see the end) once, up front, so no
/// reallocation leaves a copy behind, then reads at most `limit + 1` bytes.
fn read_into(path: &Path, limit: u64, bytes: &mut Vec<u8>) -> std::io::Result<()> {
    let (file, meta) = open(path)?;
    if meta.len() > limit {
        return Err(too_long(meta.len(), limit));
    }
    bytes.reserve_exact(usize::try_from(meta.len().saturating_add(1)).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_long(bytes.len() as u64, limit));
    }
    Ok(())
}

fn too_long(len: u64, limit: u64) -> Error {
    Error::new(
        ErrorKind::InvalidData,
        format!("is {len} bytes, more than the {limit} byokd reads from it"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking_and_a_long_file_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = read(&fifo, 10).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("a FIFO"), "{err}");
        let err = read(dir.path(), 10).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        let long = dir.path().join("long");
        std::fs::write(&long, b"12345678901").unwrap();
        assert_eq!(read(&long, 10).unwrap_err().kind(), ErrorKind::InvalidData);
        assert_eq!(read(&long, 11).unwrap(), b"12345678901");
        assert_eq!(&read_secret(&long, 11).unwrap()[..], b"12345678901");
        assert!(read_secret(&long, 10).is_err());
    }
}
