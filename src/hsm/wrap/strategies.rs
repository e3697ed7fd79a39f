//! One wrap by each strategy: `native` (one C_WrapKey), `two-step` (ephemeral on-token AES,
//! the token's RFC 5649 wrap, then OAEP) and `host` (unwrap, check and re-wrap in host memory).

use super::WrapStrategy;
use super::mechanism::{oaep_params, wrap_native};
use super::objects::{Temporary, import_aes, import_rsa_public};
use super::plan::{PadMechanism, Plan};
use crate::hsm::strict::{self, Expected};
use crate::hsm::{HsmError, host};
use crate::model::HsmKeyId;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use rsa::traits::PublicKeyParts as _;

/// What one wrap needs: the key, what its blob must hold, and the KEK (as an `rsa` key for the
/// host strategy, as big-endian n and e for the token).
pub(super) struct Target<'a> {
    pub(super) key: ObjectHandle,
    pub(super) expected: &'a Expected,
    pub(super) kek: &'a rsa::PublicKey,
    pub(super) n: &'a [u8],
    pub(super) e: &'a [u8],
}

/// One wrap with `strategy` (the self-test's and the push's).
pub(super) fn wrap_with(
    session: &Session,
    plan: &Plan,
    strategy: WrapStrategy,
    target: &Target<'_>,
) -> Result<Vec<u8>, HsmError> {
    let missing = |what: &str| HsmError::WrapFailed {
        id: HsmKeyId([0; 16]),
        strategy,
        reason: format!("no {what} was selected"),
    };
    match strategy {
        WrapStrategy::Native => {
            let kek_obj = import_rsa_public(session, target.n, target.e, "KEK")?;
            wrap_native(session, kek_obj.handle, target.key)
                .map_err(HsmError::pkcs11("wrapping a key with CKM_RSA_AES_KEY_WRAP"))
        }
        WrapStrategy::TwoStep => {
            let pad = plan.two_step.ok_or_else(|| missing("RFC 5649 key wrap"))?;
            two_step(session, pad, target.key, target.n, target.e)
        }
        WrapStrategy::Host => {
            let pad = plan.host.ok_or_else(|| missing("padded key wrap"))?;
            host_wrap(session, pad, target)
        }
    }
}

/// Ephemeral on-token AES-256, the token's RFC 5649 wrap of the key, then OAEP of the AES key.
fn two_step(
    session: &Session,
    pad: PadMechanism,
    key: ObjectHandle,
    n: &[u8],
    e: &[u8],
) -> Result<Vec<u8>, HsmError> {
    let aes_handle = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                // RSA-OAEP wraps it out, under the KEK only.
                Attribute::Extractable(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(false),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::ValueLen(Ulong::from(std::ffi::c_ulong::from(32u32))),
            ],
        )
        .map_err(HsmError::pkcs11("generating the ephemeral AES-256 key"))?;
    let aes = Temporary {
        session,
        handle: aes_handle,
        what: "ephemeral AES key",
    };
    let kwp_part = session
        .wrap_key(&pad.mechanism(), aes.handle, key)
        .map_err(HsmError::pkcs11(
            "wrapping a key with the token's RFC 5649 key wrap",
        ))?;
    let kek = import_rsa_public(session, n, e, "KEK")?;
    let mut out = session
        .wrap_key(
            &Mechanism::RsaPkcsOaep(oaep_params()),
            kek.handle,
            aes.handle,
        )
        .map_err(HsmError::pkcs11(
            "wrapping the ephemeral AES key with CKM_RSA_PKCS_OAEP",
        ))?;
    drop(kek);
    drop(aes);
    out.extend(kwp_part);
    Ok(out)
}

/// The `host` strategy. The key leaves the token under a fresh AES-256 key k1, is unwrapped into
/// a `Zeroizing` buffer, then, for an AES key, checked to be exactly the key's length; for a key
/// pair trimmed to its exact DER length, re-encoded canonically and strictly
/// checked as PKCS#8 of the token's key (`strict::canonical_pkcs8`: a token that drops an EC
/// scalar's leading zero bytes still gives a conforming blob), and re-wrapped under a fresh k2
/// with `aes-kw`; k2 goes under the KEK with `rsa`. Every plaintext buffer is `Zeroizing` and
/// dropped before this returns; the daemon `mlockall()`s its memory at start-up, so none of it
/// reaches swap.
fn host_wrap(
    session: &Session,
    pad: PadMechanism,
    target: &Target<'_>,
) -> Result<Vec<u8>, HsmError> {
    let failed = |reason: String| HsmError::WrapFailed {
        id: HsmKeyId([0; 16]),
        strategy: WrapStrategy::Host,
        reason,
    };
    let k1 = host::random_aes256().map_err(failed)?;
    let wrapped = {
        let k1_obj = import_aes(session, &k1, false, "host-wrap AES key")?;
        session
            .wrap_key(&pad.mechanism(), k1_obj.handle, target.key)
            .map_err(HsmError::pkcs11("wrapping a key for host re-wrapping"))?
    };
    let mut der = host::kwp_unwrap(&k1, &wrapped).map_err(failed)?;
    drop(k1);
    let canonical = if let Expected::Aes { .. } = target.expected {
        // A raw AES value (16, 24 or 32 bytes) is a multiple of 8: no padding to trim.
        strict::check_plaintext(&der, target.expected).map_err(failed)?;
        der
    } else {
        host::trim_der(&mut der).map_err(failed)?;
        let canonical = strict::canonical_pkcs8(&der, target.expected).map_err(failed)?;
        drop(der);
        canonical
    };
    let ciphertext = host::transfer_ciphertext(target.kek, &canonical).map_err(failed)?;
    let want = target.kek.size() + host::kwp_len(canonical.len());
    drop(canonical);
    if ciphertext.len() != want {
        return Err(failed(format!(
            "the ciphertext is {} bytes, {want} expected",
            ciphertext.len()
        )));
    }
    Ok(ciphertext)
}
