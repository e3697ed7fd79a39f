//! Sealing secrets at rest with an AES-256 key that never leaves the token.
//!
//! Owns: the sealing key `byokd-seal` (found, checked, or created on first start), AES-GCM
//! seal/unseal on the token, and the sealed format `b"BS1" || iv(12) || ciphertext || tag(16)`.
//! Must never: create an extractable or non-sensitive sealing key, accept a sealing key whose
//! attributes are weaker, return unauthenticated plaintext, or leave plaintext in a buffer that
//! is not zeroized.

use super::HsmError;
use crate::secret::SecretBytes;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

/// CKA_LABEL of the sealing key.
pub const SEAL_KEY_LABEL: &str = "byokd-seal";
/// Format tag and version of sealed data.
pub const SEAL_MAGIC: &[u8; 3] = b"BS1";
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TAG_BITS: u64 = 128;

fn seal_key_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(SEAL_KEY_LABEL.as_bytes().to_vec()),
        Attribute::Token(true),
    ]
}

/// Finds the sealing key, checking its attributes, or creates it if the token has none.
pub(crate) fn ensure_seal_key(session: &Session) -> Result<ObjectHandle, HsmError> {
    let found = session
        .find_objects(&seal_key_template())
        .map_err(HsmError::pkcs11("finding the sealing key"))?;
    match found.as_slice() {
        [] => create_seal_key(session),
        [key] => {
            check_seal_key(session, *key)?;
            Ok(*key)
        }
        many => Err(HsmError::SealingKeyInvalid {
            label: SEAL_KEY_LABEL,
            reason: format!(
                "{} AES keys carry this label; exactly one may exist. Find the one that unseals the state file and remove the others with the token's tools",
                many.len()
            ),
        }),
    }
}

fn create_seal_key(session: &Session) -> Result<ObjectHandle, HsmError> {
    let mut template = seal_key_template();
    template.retain(|a| !matches!(a, Attribute::Class(_) | Attribute::KeyType(_)));
    template.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::ValueLen(32.into()),
    ]);
    let key = session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(HsmError::pkcs11("creating the sealing key"))?;
    tracing::info!(
        label = SEAL_KEY_LABEL,
        "created the sealing key on the token (first start)"
    );
    Ok(key)
}

fn check_seal_key(session: &Session, key: ObjectHandle) -> Result<(), HsmError> {
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
                AttributeType::ValueLen,
            ],
        )
        .map_err(HsmError::pkcs11("reading the sealing key's attributes"))?;
    let mut problems = Vec::new();
    for attr in &attrs {
        match attr {
            Attribute::Private(false) => problems.push("CKA_PRIVATE is false"),
            Attribute::Sensitive(false) => problems.push("CKA_SENSITIVE is false"),
            Attribute::Extractable(true) => problems.push("CKA_EXTRACTABLE is true"),
            Attribute::Encrypt(false) => problems.push("CKA_ENCRYPT is false"),
            Attribute::Decrypt(false) => problems.push("CKA_DECRYPT is false"),
            Attribute::ValueLen(len) if u64::from(*len) != 32 => problems.push("it is not AES-256"),
            _ => {}
        }
    }
    if attrs.len() < 6 {
        problems.push("the token did not report all of its attributes");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(HsmError::SealingKeyInvalid {
            label: SEAL_KEY_LABEL,
            reason: format!(
                "{}; byokd refuses a sealing key that could leave the token or is not AES-256",
                problems.join(", ")
            ),
        })
    }
}

/// Seals `plaintext` under the token's sealing key: `BS1 || iv || ciphertext || tag`.
pub(crate) fn seal(
    session: &Session,
    key: ObjectHandle,
    aad: &[u8],
    plaintext: &SecretBytes,
) -> Result<Vec<u8>, HsmError> {
    let mut iv = [0u8; IV_LEN];
    session
        .generate_random_slice(&mut iv)
        .map_err(HsmError::pkcs11("generating a sealing IV"))?;
    let mut iv_param = iv;
    let params = GcmParams::new(&mut iv_param, aad, TAG_BITS.into())
        .map_err(HsmError::pkcs11("preparing AES-GCM"))?;
    let ciphertext = session
        .encrypt(&Mechanism::AesGcm(params), key, plaintext.expose_secret())
        .map_err(HsmError::pkcs11("sealing with AES-GCM"))?;
    if ciphertext.len() != plaintext.len() + TAG_LEN {
        return Err(HsmError::Pkcs11 {
            op: "sealing with AES-GCM (unexpected output length)",
            source: cryptoki::error::Error::InvalidValue,
        });
    }
    let mut out = Vec::with_capacity(SEAL_MAGIC.len() + IV_LEN + ciphertext.len());
    out.extend_from_slice(SEAL_MAGIC);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Splits sealed bytes into IV and ciphertext-with-tag, checking the format.
pub(crate) fn parse_sealed(sealed: &[u8]) -> Result<([u8; IV_LEN], &[u8]), HsmError> {
    let rest =
        sealed
            .strip_prefix(SEAL_MAGIC.as_slice())
            .ok_or_else(|| HsmError::UnsealFailed {
                reason: "not sealed data: the BS1 header is missing".to_owned(),
            })?;
    if rest.len() < IV_LEN + TAG_LEN {
        return Err(HsmError::UnsealFailed {
            reason: format!("sealed data is truncated ({} bytes)", sealed.len()),
        });
    }
    let (iv, ciphertext) = rest.split_at(IV_LEN);
    let mut iv_arr = [0u8; IV_LEN];
    iv_arr.copy_from_slice(iv);
    Ok((iv_arr, ciphertext))
}

/// Authenticates and decrypts sealed bytes. Any failure is `UnsealFailed`, never partial output.
pub(crate) fn unseal(
    session: &Session,
    key: ObjectHandle,
    aad: &[u8],
    sealed: &[u8],
) -> Result<SecretBytes, HsmError> {
    let (mut iv, ciphertext) = parse_sealed(sealed)?;
    let params = GcmParams::new(&mut iv, aad, TAG_BITS.into())
        .map_err(HsmError::pkcs11("preparing AES-GCM"))?;
    let plaintext = session
        .decrypt(&Mechanism::AesGcm(params), key, ciphertext)
        .map(Zeroizing::new)
        .map_err(|e| HsmError::UnsealFailed {
            reason: format!("authentication failed ({e})"),
        })?;
    if plaintext.len() + TAG_LEN != ciphertext.len() {
        return Err(HsmError::UnsealFailed {
            reason: "the token returned a plaintext of the wrong length".to_owned(),
        });
    }
    // An exact-length copy: moving it into the secret box needs no reallocation, and the
    // token's buffer is zeroized when `plaintext` drops.
    Ok(SecretBytes::new(plaintext.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_format_is_checked_before_the_token_sees_it() {
        assert!(matches!(
            parse_sealed(b"XX1aaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            Err(HsmError::UnsealFailed { .. })
        ));
        let short = [SEAL_MAGIC.as_slice(), &[0u8; IV_LEN + TAG_LEN - 1]].concat();
        assert!(matches!(
            parse_sealed(&short),
            Err(HsmError::UnsealFailed { .. })
        ));
        let ok = [SEAL_MAGIC.as_slice(), &[7u8; IV_LEN], &[9u8; TAG_LEN]].concat();
        let (iv, ct) = parse_sealed(&ok).unwrap();
        assert_eq!(iv, [7u8; IV_LEN]);
        assert_eq!(ct, [9u8; TAG_LEN]);
    }
}
