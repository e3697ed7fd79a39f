//! The known-answer tests of the self-test: the token's padded AES key wraps compared with
//! RFC 5649, CKM_RSA_PKCS_OAEP and CKM_RSA_AES_KEY_WRAP checked by opening their output on the
//! host with the committed test KEK.

use super::mechanism::{oaep_params, wrap_native};
use super::objects::{Temporary, import_aes, import_rsa_public};
use super::plan::PadMechanism;
use crate::hsm::HsmError;
use crate::hsm::host::{self, AES256_LEN, KwpBehaviour};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::Session;
use rsa::traits::PublicKeyParts as _;
use zeroize::Zeroizing;

/// The AES-256 key of the known-answer tests.
pub(super) const KAT_AES_KEY: [u8; AES256_LEN] = [
    0x5e, 0x2a, 0x91, 0x0c, 0x77, 0xd4, 0x3b, 0xe8, 0x19, 0xa6, 0x44, 0xf1, 0x08, 0x6d, 0xc3, 0x52,
    0xb9, 0x1e, 0x85, 0x60, 0xfa, 0x27, 0xdc, 0x93, 0x4e, 0x0b, 0x78, 0xc5, 0x31, 0xae, 0x6f, 0xd2,
];
/// The self-tests' KEK, PKCS#8 DER.
pub(super) const TEST_KEK: &[u8] = include_bytes!("../fixtures/test-kek.der");
/// The known secret's length: 67 bytes, a P-256 PKCS#8's length and not a multiple of 8.
pub(super) const KAT_SECRET_LEN: usize = 67;

pub(super) fn kat_secret() -> Vec<u8> {
    (0..KAT_SECRET_LEN)
        .map(|i| u8::try_from((i * 37 + 11) % 251).unwrap_or(0))
        .collect()
}

/// A 67-byte generic secret with a known value, extractable and not sensitive.
pub(super) fn import_secret<'a>(
    session: &'a Session,
    secret: &[u8],
) -> Result<Temporary<'a>, HsmError> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Value(secret.to_vec()),
    ];
    Temporary::create(
        session,
        &template,
        "self-test secret",
        "importing the self-test secret",
    )
}

/// Wraps the known secret under the known AES key with `pad` and classifies the output.
pub(super) fn kat_pad(
    session: &Session,
    pad: PadMechanism,
    secret: &[u8],
) -> Result<KwpBehaviour, String> {
    let aes =
        import_aes(session, &KAT_AES_KEY, true, "self-test AES key").map_err(|e| e.to_string())?;
    let target = import_secret(session, secret).map_err(|e| e.to_string())?;
    let wrapped = session
        .wrap_key(&pad.mechanism(), aes.handle, target.handle)
        .map_err(|e| format!("C_WrapKey: {e}"))?;
    host::classify_kwp(&KAT_AES_KEY, secret, &wrapped)
}

/// Wraps the known AES key under the host test key with CKM_RSA_PKCS_OAEP (SHA-1) and decrypts
/// it on the host.
pub(super) fn kat_oaep(session: &Session, test_key: &rsa::PrivateKey) -> Result<(), String> {
    let (n, e) = (test_key.n().to_be_bytes(), test_key.e().to_be_bytes());
    let kek = import_rsa_public(
        session,
        host::strip_zeros(&n),
        host::strip_zeros(&e),
        "self-test RSA key",
    )
    .map_err(|e| e.to_string())?;
    let aes =
        import_aes(session, &KAT_AES_KEY, true, "self-test AES key").map_err(|e| e.to_string())?;
    let wrapped = session
        .wrap_key(
            &Mechanism::RsaPkcsOaep(oaep_params()),
            kek.handle,
            aes.handle,
        )
        .map_err(|e| format!("C_WrapKey: {e}"))?;
    let plain = host::oaep_sha1_decrypt(test_key, &wrapped)?;
    if plain[..] == KAT_AES_KEY[..] {
        Ok(())
    } else {
        Err("the OAEP-wrapped key does not decrypt to the known key".to_owned())
    }
}

/// Wraps the known secret under the host test key with CKM_RSA_AES_KEY_WRAP and unwraps it on
/// the host (OAEP-SHA1, then strict RFC 5649).
pub(super) fn kat_native(
    session: &Session,
    test_key: &rsa::PrivateKey,
    secret: &[u8],
) -> Result<(), String> {
    let (n, e) = (test_key.n().to_be_bytes(), test_key.e().to_be_bytes());
    let kek = import_rsa_public(
        session,
        host::strip_zeros(&n),
        host::strip_zeros(&e),
        "self-test RSA key",
    )
    .map_err(|e| e.to_string())?;
    let target = import_secret(session, secret).map_err(|e| e.to_string())?;
    let wrapped =
        wrap_native(session, kek.handle, target.handle).map_err(|e| format!("C_WrapKey: {e}"))?;
    let k = test_key.size();
    if wrapped.len() != k + host::kwp_len(secret.len()) {
        return Err(format!(
            "the output is {} bytes, {} expected",
            wrapped.len(),
            k + host::kwp_len(secret.len())
        ));
    }
    let (rsa_part, kwp_part) = wrapped.split_at(k);
    let aes = host::oaep_sha1_decrypt(test_key, rsa_part)?;
    let aes: [u8; AES256_LEN] = aes[..]
        .try_into()
        .map_err(|_| format!("the wrapped AES key is {} bytes, not 32", aes.len()))?;
    let aes = Zeroizing::new(aes);
    if host::kwp_wrap(&aes, secret)? == kwp_part {
        Ok(())
    } else {
        Err("the AES key wrap part differs from RFC 5649".to_owned())
    }
}
