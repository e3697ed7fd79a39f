//! The RSA mechanisms' parameters: RSA-OAEP-SHA1 and CK_RSA_AES_KEY_WRAP_PARAMS, with the one
//! C_WrapKey call of the `native` strategy.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use cryptoki::types::Ulong;

/// RSA-OAEP with SHA-1, MGF1-SHA-1 and an empty label.
pub(super) fn oaep_params() -> PkcsOaepParams<'static> {
    PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    )
}

/// CK_RSA_AES_KEY_WRAP_PARAMS, laid out as PKCS#11 defines it. cryptoki has no typed
/// mechanism for CKM_RSA_AES_KEY_WRAP, so it is passed through `Mechanism::VendorDefined`,
/// which hands C_WrapKey a pointer to this struct and its size. This stays in safe Rust: making
/// a raw pointer is safe, and `oaep` outlives every use (see `wrap_native`).
#[repr(C)]
pub(super) struct RsaAesKeyWrapParams<'a> {
    /// ulAESKeyBits.
    pub(super) aes_key_bits: Ulong,
    /// pOAEPParams: a CK_RSA_PKCS_OAEP_PARAMS (cryptoki's `PkcsOaepParams` is `repr(C)`).
    pub(super) oaep: *const PkcsOaepParams<'a>,
}

/// C_WrapKey(CKM_RSA_AES_KEY_WRAP {AES-256, OAEP-SHA1}, wrapping, key).
pub(super) fn wrap_native(
    session: &Session,
    wrapping: ObjectHandle,
    key: ObjectHandle,
) -> Result<Vec<u8>, cryptoki::error::Error> {
    let oaep = oaep_params();
    let params = RsaAesKeyWrapParams {
        aes_key_bits: Ulong::from(std::ffi::c_ulong::from(256u32)),
        oaep: std::ptr::from_ref(&oaep),
    };
    let mechanism = Mechanism::VendorDefined(VendorDefinedMechanism::new(
        MechanismType::RSA_AES_KEY_WRAP,
        Some(&params),
    ));
    // `oaep` and `params` are locals of this function, so they outlive the call that reads
    // them through `mechanism`.
    session.wrap_key(&mechanism, wrapping, key)
}
