//! What the token says about itself at start-up: identity, firmware, library and mechanisms.
//!
//! Owns: building the `TokenReport` from C_GetInfo, C_GetTokenInfo and C_GetMechanismList, and
//! the readable mechanism names used by later wrap-strategy self-tests.
//! Must never: log the PIN or decide a wrap strategy itself (that is `wrap::self_test`: a
//! mechanism in the list proves only that the token claims it).

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::MechanismType;
use cryptoki::slot::Slot;

/// CKM_RSA_AES_KEY_WRAP (0x1054): BYOK's one-call wrap.
pub const CKM_RSA_AES_KEY_WRAP: &str = "CKM_RSA_AES_KEY_WRAP";
/// CKM_AES_KEY_WRAP_KWP (0x210B): RFC 5649 on conforming tokens.
pub const CKM_AES_KEY_WRAP_KWP: &str = "CKM_AES_KEY_WRAP_KWP";
/// CKM_AES_KEY_WRAP_PAD (0x210A): *not* RFC 5649 on SoftHSM 2.6.1 (see docs/wrap-strategies.md).
pub const CKM_AES_KEY_WRAP_PAD: &str = "CKM_AES_KEY_WRAP_PAD";
/// CKM_RSA_PKCS_OAEP.
pub const CKM_RSA_PKCS_OAEP: &str = "CKM_RSA_PKCS_OAEP";

/// The token and library identity, logged at start-up and put in each BYOK blob's `generator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenReport {
    pub token_label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub firmware_version: String,
    pub hardware_version: String,
    pub library_manufacturer: String,
    pub library_description: String,
    pub library_version: String,
    /// Readable names such as `CKM_RSA_PKCS_OAEP`, sorted.
    ///
    /// cryptoki 0.12 drops mechanism numbers it has no name for from C_GetMechanismList. byokd's
    /// patched copy (`vendor/cryptoki`) knows CKM_AES_KEY_WRAP_KWP (0x210B) and
    /// CKM_RSA_AES_KEY_WRAP (0x1054), so the ones BYOK needs are listed when the token has them.
    /// A listed mechanism proves only that the token claims it: the wrap self-test tries it.
    pub mechanisms: Vec<String>,
}

impl TokenReport {
    /// Whether the token lists a mechanism, by its `CKM_` name.
    pub fn has_mechanism(&self, name: &str) -> bool {
        self.mechanisms.iter().any(|m| m == name)
    }

    /// "manufacturer model firmware x.y", the blob's `generator` suffix.
    pub fn describe(&self) -> String {
        format!(
            "{} {} firmware {}",
            self.manufacturer, self.model, self.firmware_version
        )
    }

    pub(crate) fn read(pkcs11: &Pkcs11, slot: Slot) -> Result<Self, cryptoki::error::Error> {
        let lib = pkcs11.get_library_info()?;
        let token = pkcs11.get_token_info(slot)?;
        let mut mechanisms: Vec<String> = pkcs11
            .get_mechanism_list(slot)?
            .into_iter()
            .map(mechanism_name)
            .collect();
        mechanisms.sort();
        mechanisms.dedup();
        Ok(Self {
            token_label: token.label().trim().to_owned(),
            manufacturer: token.manufacturer_id().trim().to_owned(),
            model: token.model().trim().to_owned(),
            serial: token.serial_number().trim().to_owned(),
            firmware_version: token.firmware_version().to_string(),
            hardware_version: token.hardware_version().to_string(),
            library_manufacturer: lib.manufacturer_id().trim().to_owned(),
            library_description: lib.library_description().trim().to_owned(),
            library_version: lib.library_version().to_string(),
            mechanisms,
        })
    }
}

/// `CKM_...` for the mechanisms cryptoki knows, `0x...` for the rest.
pub(crate) fn mechanism_name(m: MechanismType) -> String {
    let name = m.to_string();
    if name.starts_with("CKM_") {
        name
    } else {
        format!("0x{:08X}", *m)
    }
}
