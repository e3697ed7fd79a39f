//! The Ed25519 public key that bundles must be signed with, fixed when byokd is built.
//!
//! `image/build.sh` derives it from the signing key and sets `BYOKD_UPGRADE_PUBKEY` (64 hex
//! digits) for the release build; only the public key is compiled in. A debug build without the
//! variable trusts the test key whose private half is `tests/fixtures/upgrade/test-signing-key.pem`,
//! so the tests can package the debug binaries; a release build without it trusts nothing.

use super::UpgradeError;
use ed25519_dalek::VerifyingKey;

const BUILT_IN: Option<&str> = option_env!("BYOKD_UPGRADE_PUBKEY");

/// Public half of `tests/fixtures/upgrade/test-signing-key.pem`. Debug builds only.
#[cfg(debug_assertions)]
const TEST_KEY: Option<&str> =
    Some("af69063d92ba06bdcfd5ac8dd8697bc02bfd71215531a56d666fdaed40ae5762");
#[cfg(not(debug_assertions))]
const TEST_KEY: Option<&str> = None;

/// The key this build trusts.
pub fn trusted_key() -> Result<VerifyingKey, UpgradeError> {
    let hex_key = BUILT_IN
        .filter(|k| !k.trim().is_empty())
        .or(TEST_KEY)
        .ok_or(UpgradeError::NoTrustedKey)?;
    let bytes = hex::decode(hex_key.trim())
        .map_err(|e| UpgradeError::BadTrustedKey(format!("not hex: {e}")))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| UpgradeError::BadTrustedKey("not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| UpgradeError::BadTrustedKey(e.to_string()))
}

/// Hex of the trusted key, for `byokd upgrade --show-key`.
pub fn trusted_key_hex() -> Result<String, UpgradeError> {
    Ok(hex::encode(trusted_key()?.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_debug_build_trusts_the_test_key() {
        assert_eq!(
            super::trusted_key_hex().unwrap().len(),
            64,
            "debug builds always have a key"
        );
    }
}
