//! AES target keys (Azure `oct-HSM`) on the token: generation, the key check value, lookup and
//! listing.
//!
//! Owns: the AES key template (CKK_AES on the token, CKA_SENSITIVE, CKA_EXTRACTABLE only for
//! the BYOK wrap, CKA_ENCRYPT only for the check value, no other usage), the `byokd/{group}/{key}`
//! label like every target key, and the key check value (KCV): the first 3 bytes (6 hex digits,
//! upper case) of the key's AES-ECB encryption of one zero block, computed in the token.
//! Must never: read CKA_VALUE, generate an AES key that is not CKA_SENSITIVE, or put key
//! material in an error or a log (a KCV is not key material: it is the usual public check).

use super::fresh_id::{Failed, make_with_fresh_id};
use super::keygen::LABEL_PREFIX;
use super::{HsmError, HsmKeyEntry};
use crate::model::{HsmKeyId, KeyType};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;

/// CKM_AES_KEY_GEN.
pub(crate) const AES_KEYGEN: &str = "CKM_AES_KEY_GEN";
/// CKM_AES_ECB, the check value's mechanism.
pub(crate) const AES_ECB: &str = "CKM_AES_ECB";
/// Bytes of the key check value: 3, the usual KCV length (6 hex digits).
pub const KCV_LEN: usize = 3;

/// What identifies an AES key outside the token: its size and its key check value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyInfo {
    /// 128, 192 or 256.
    pub bits: u32,
    /// Key check value: the first 3 bytes of AES-ECB(key, 16 zero bytes), 6 hex digits, upper
    /// case, computed in the token.
    pub kcv: String,
}

/// An AES key generated on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedSecretKey {
    pub id: HsmKeyId,
    pub info: SecretKeyInfo,
}

/// The KCV of 16 bytes of AES-ECB output: the first `KCV_LEN` bytes, hex, upper case.
pub fn kcv_of_block(block: &[u8]) -> String {
    hex::encode_upper(&block[..KCV_LEN.min(block.len())])
}

/// Generates an AES key of `bits` on the token labelled `label`, and computes its KCV.
pub(crate) fn generate(
    session: &Session,
    bits: u32,
    label: &str,
) -> Result<GeneratedSecretKey, HsmError> {
    let key_type = KeyType::Aes { bits };
    let started = std::time::Instant::now();
    let made = make_with_fresh_id(session, "AES key", |id| {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(CkKeyType::AES),
            Attribute::Token(true),
            Attribute::Id(id.0.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            // BYOK needs CKA_EXTRACTABLE: the key leaves the token only wrapped (C_WrapKey) under an
            // ephemeral AES key that is itself wrapped under the target's KEK. CKA_SENSITIVE stops
            // it from ever being read in the clear. CKA_WRAP_WITH_TRUSTED is not set: it needs a
            // CKA_TRUSTED wrapping key, which only the security officer can mark, and the ephemeral
            // key of every push is made in byokd's user session.
            Attribute::Extractable(true),
            // CKA_ENCRYPT only for the key check value (one zero block); no other usage.
            Attribute::Encrypt(true),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::ValueLen(Ulong::from(std::ffi::c_ulong::from(bits / 8))),
        ];
        session.generate_key(&Mechanism::AesKeyGen, &template)
    });
    let (id, handle) = match made {
        Ok(made) => made,
        Err(Failed::Id(e)) => return Err(e),
        Err(Failed::Token(e)) => return Err(refusal(key_type, e)),
    };
    let kcv = match kcv(session, handle) {
        Ok(kcv) => kcv,
        Err(e) => {
            // Leave no key behind whose check value is unknown.
            let _ = session.destroy_object(handle);
            return Err(e);
        }
    };
    tracing::info!(
        kid = %id.to_hex(),
        key_type = %key_type,
        check_digits = %kcv,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "generated AES key on the token"
    );
    Ok(GeneratedSecretKey {
        id,
        info: SecretKeyInfo { bits, kcv },
    })
}

fn refusal(key_type: KeyType, e: cryptoki::error::Error) -> HsmError {
    use cryptoki::error::{Error, RvError};
    match e {
        Error::Pkcs11(
            rv @ (RvError::MechanismInvalid
            | RvError::MechanismParamInvalid
            | RvError::AttributeValueInvalid
            | RvError::TemplateInconsistent
            | RvError::KeySizeRange),
            _,
        ) => super::keygen::not_supported(key_type, AES_KEYGEN, rv.to_string()),
        other => HsmError::Pkcs11 {
            op: "generating an AES key",
            source: other,
        },
    }
}

/// The key check value of AES key `handle`, computed in the token: AES-ECB of one zero block.
pub(crate) fn kcv(session: &Session, handle: ObjectHandle) -> Result<String, HsmError> {
    let block = session
        .encrypt(&Mechanism::AesEcb, handle, &[0u8; 16])
        .map_err(HsmError::pkcs11(
            "computing an AES key's check value (CKM_AES_ECB of a zero block)",
        ))?;
    if block.len() != 16 {
        return Err(HsmError::MalformedSecretKey {
            reason: format!("the check value block is {} bytes, not 16", block.len()),
        });
    }
    Ok(kcv_of_block(&block))
}

/// The AES key `id`, if the token holds one.
pub(crate) fn find(session: &Session, id: HsmKeyId) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(CkKeyType::AES),
            Attribute::Id(id.0.to_vec()),
        ])
        .map_err(HsmError::pkcs11("finding a key by id"))?;
    Ok(found.first().copied())
}

/// The size in bits of AES key `handle` (CKA_VALUE_LEN), if it is one byokd generates.
pub(crate) fn bits(session: &Session, handle: ObjectHandle) -> Result<u32, HsmError> {
    let attrs = session
        .get_attributes(handle, &[AttributeType::ValueLen])
        .map_err(HsmError::pkcs11("reading an AES key's length"))?;
    let len = attrs.into_iter().find_map(|a| match a {
        Attribute::ValueLen(v) => Some(u64::from(v)),
        _ => None,
    });
    match len {
        Some(len @ (16 | 24 | 32)) => Ok(u32::try_from(len * 8).unwrap_or(0)),
        other => Err(HsmError::MalformedSecretKey {
            reason: format!("CKA_VALUE_LEN is {other:?}, not 16, 24 or 32 bytes"),
        }),
    }
}

/// What identifies target key `id` outside the token: the public half of a key pair, or the
/// size and KCV of an AES key.
pub(crate) fn identity(
    session: &Session,
    lookup: &super::handles::Lookup<'_>,
    id: HsmKeyId,
) -> Result<super::KeyIdentity, HsmError> {
    // A key pair's public half is usually a kept handle (no search); the token is searched for
    // an AES key only when no public key has the id.
    if let Some(public) = lookup.find(session, super::handles::Half::Public, id)? {
        return super::keygen::read_public(session, public, id).map(super::KeyIdentity::Public);
    }
    match find(session, id)? {
        Some(handle) => Ok(super::KeyIdentity::Secret(SecretKeyInfo {
            bits: bits(session, handle)?,
            kcv: kcv(session, handle)?,
        })),
        None => Err(HsmError::KeyNotFound { id }),
    }
}

/// Destroys AES key `id`; `false` when the token holds no AES key with that id.
pub(crate) fn destroy(session: &Session, id: HsmKeyId) -> Result<bool, HsmError> {
    let Some(handle) = find(session, id)? else {
        return Ok(false);
    };
    session
        .destroy_object(handle)
        .map_err(HsmError::pkcs11("destroying a key"))?;
    tracing::info!(kid = %id.to_hex(), "destroyed AES key on the token");
    Ok(true)
}

/// The protection attributes of AES key `id` (`None`: no such AES key), and whether the token
/// refuses to reveal CKA_VALUE (only its size is asked for).
pub(crate) fn attributes(
    session: &Session,
    id: HsmKeyId,
) -> Result<Option<super::PrivateKeyAttributes>, HsmError> {
    let Some(handle) = find(session, id)? else {
        return Ok(None);
    };
    super::keygen::protection_of(session, handle).map(Some)
}

/// Every AES key in the `byokd/` namespace with a 16-byte CKA_ID.
pub(crate) fn list(session: &Session) -> Result<Vec<HsmKeyEntry>, HsmError> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(CkKeyType::AES),
            Attribute::Token(true),
        ])
        .map_err(HsmError::pkcs11("listing keys"))?;
    let mut entries = Vec::new();
    for handle in handles {
        let attrs = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Id,
                    AttributeType::Label,
                    AttributeType::ValueLen,
                ],
            )
            .map_err(HsmError::pkcs11("reading a key's attributes"))?;
        let (mut id, mut label, mut len) = (None, None, None);
        for attr in attrs {
            match attr {
                Attribute::Id(v) => id = <[u8; 16]>::try_from(v.as_slice()).ok().map(HsmKeyId),
                Attribute::Label(v) => label = String::from_utf8(v).ok(),
                Attribute::ValueLen(v) => len = Some(u64::from(v)),
                _ => {}
            }
        }
        let (Some(id), Some(label)) = (id, label) else {
            continue;
        };
        if !label.starts_with(LABEL_PREFIX) {
            continue;
        }
        let key_type = len
            .and_then(|l| u32::try_from(l * 8).ok())
            .and_then(|bits| KeyType::aes(bits).ok());
        entries.push(HsmKeyEntry {
            id,
            label,
            key_type,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS-197 appendix C.1: AES-128 key 000102...0f. The KCV of that key is AES(key, 0^128);
    /// the value here is computed independently with the `aes` crate.
    #[test]
    fn the_kcv_is_the_first_three_bytes_upper_case() {
        use aes_kw::aes::cipher::{BlockCipherEncrypt as _, KeyInit as _};
        let key: [u8; 16] = core::array::from_fn(|i| u8::try_from(i).unwrap());
        let cipher = aes_kw::aes::Aes128::new(&key.into());
        let mut block = [0u8; 16].into();
        cipher.encrypt_block(&mut block);
        let kcv = kcv_of_block(&block);
        assert_eq!(kcv.len(), 6);
        assert_eq!(kcv, hex::encode_upper(&block[..3]));
        assert_eq!(kcv, kcv.to_ascii_uppercase());
    }
}
