//! Reading and verifying a bundle: a ustar archive holding `MANIFEST`, `MANIFEST.sig` (64-byte
//! Ed25519 signature over the manifest bytes) and `payload/<path>` for every manifest file.
//!
//! Everything is checked in memory before the installer writes a byte: the signature first
//! (nothing unsigned is even parsed), then that the payload is exactly the manifest's file set,
//! each with its SHA-256. Only regular file entries are accepted.

use super::manifest::Manifest;
use super::{UpgradeError, trusted_key};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Largest bundle accepted: release binaries plus a little.
const MAX_BUNDLE: u64 = 1 << 30;
const MANIFEST: &str = "MANIFEST";
const SIGNATURE: &str = "MANIFEST.sig";
const PAYLOAD: &str = "payload/";

/// A bundle whose signature and hashes were verified; files in manifest order.
pub struct VerifiedBundle {
    pub manifest: Manifest,
    pub files: Vec<(super::ManifestFile, Vec<u8>)>,
}

/// Reads `path` and verifies it with the key built into this byokd.
pub fn verify_bundle(path: &Path) -> Result<VerifiedBundle, UpgradeError> {
    let key = trusted_key()?;
    let bytes = read_capped(path)?;
    verify_with(&bytes, &key)
}

fn read_capped(path: &Path) -> Result<Vec<u8>, UpgradeError> {
    let file = std::fs::File::open(path).map_err(|e| UpgradeError::ReadBundle {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| UpgradeError::ReadBundle {
            path: path.to_path_buf(),
            source: e,
        })?;
    if bytes.len() as u64 > MAX_BUNDLE {
        return Err(UpgradeError::Invalid(format!(
            "larger than {MAX_BUNDLE} bytes"
        )));
    }
    Ok(bytes)
}

/// Verifies bundle bytes against `key`.
pub(crate) fn verify_with(
    bytes: &[u8],
    key: &VerifyingKey,
) -> Result<VerifiedBundle, UpgradeError> {
    let mut entries = read_entries(bytes)?;
    let manifest_bytes = entries
        .remove(MANIFEST)
        .ok_or_else(|| UpgradeError::Invalid("no MANIFEST in the bundle".into()))?;
    let sig_bytes = entries
        .remove(SIGNATURE)
        .ok_or_else(|| UpgradeError::Invalid("no MANIFEST.sig in the bundle".into()))?;
    let sig: [u8; 64] = sig_bytes.as_slice().try_into().map_err(|_| {
        UpgradeError::BadSignature(format!("signature is {} bytes, not 64", sig_bytes.len()))
    })?;
    key.verify_strict(&manifest_bytes, &Signature::from_bytes(&sig))
        .map_err(|e| UpgradeError::BadSignature(e.to_string()))?;
    let text = std::str::from_utf8(&manifest_bytes)
        .map_err(|_| UpgradeError::Invalid("the manifest is not UTF-8".into()))?;
    let manifest = Manifest::parse(text).map_err(UpgradeError::Invalid)?;
    let mut files = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        let data = entries
            .remove(&format!("{PAYLOAD}{}", f.path))
            .ok_or_else(|| {
                UpgradeError::Invalid(format!(
                    "{} is in the manifest but not in the bundle",
                    f.path
                ))
            })?;
        if Sha256::digest(&data).as_slice() != f.sha256 {
            return Err(UpgradeError::Invalid(format!(
                "{} does not match its SHA-256 in the manifest",
                f.path
            )));
        }
        files.push((f.clone(), data));
    }
    if let Some(extra) = entries.keys().next() {
        return Err(UpgradeError::Invalid(format!(
            "{extra} is in the bundle but not in the manifest"
        )));
    }
    Ok(VerifiedBundle { manifest, files })
}

/// Every entry of the archive by name; refuses non-files, duplicates and damaged archives.
fn read_entries(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, UpgradeError> {
    let bad = |what: String| UpgradeError::Invalid(format!("not a valid bundle archive: {what}"));
    let mut archive = tar::Archive::new(bytes);
    let mut out = BTreeMap::new();
    let mut saw_end = false;
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| bad("an entry name is not UTF-8".into()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(format!("{name} is not a regular file")));
        }
        let expected = entry.size();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("{name}: {e}")))?;
        if data.len() as u64 != expected {
            return Err(bad(format!("{name} is truncated")));
        }
        if out.insert(name.clone(), data).is_some() {
            return Err(bad(format!("{name} appears twice")));
        }
        saw_end = true;
    }
    // A ustar archive ends with two zero blocks; a cut at an entry boundary would otherwise
    // read as a shorter, valid archive.
    let tail_ok = bytes.len().is_multiple_of(512)
        && bytes.len() >= 1024
        && bytes[bytes.len() - 1024..].iter().all(|b| *b == 0);
    if !saw_end || !tail_ok {
        return Err(bad("truncated (no end-of-archive marker)".into()));
    }
    Ok(out)
}
