//! Unit tests of the wrap parameters, the strategies' names and the self-test's fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::kat::{KAT_SECRET_LEN, TEST_KEK, kat_secret};
use super::mechanism::RsaAesKeyWrapParams;
use super::*;
use cryptoki::types::Ulong;

/// CK_RSA_AES_KEY_WRAP_PARAMS is { CK_ULONG ulAESKeyBits; CK_RSA_PKCS_OAEP_PARAMS_PTR
/// pOAEPParams; }: two machine words on LP64, no padding.
#[test]
fn rsa_aes_key_wrap_params_have_the_pkcs11_layout() {
    assert_eq!(
        std::mem::size_of::<RsaAesKeyWrapParams<'_>>(),
        std::mem::size_of::<std::ffi::c_ulong>() + std::mem::size_of::<usize>()
    );
    assert_eq!(
        std::mem::offset_of!(RsaAesKeyWrapParams<'_>, aes_key_bits),
        0
    );
    assert_eq!(
        std::mem::offset_of!(RsaAesKeyWrapParams<'_>, oaep),
        std::mem::size_of::<std::ffi::c_ulong>()
    );
    assert_eq!(
        std::mem::size_of::<Ulong>(),
        std::mem::size_of::<std::ffi::c_ulong>()
    );
}

#[test]
fn strategies_serialise_with_their_config_names() {
    for (s, name) in [
        (WrapStrategy::Native, "native"),
        (WrapStrategy::TwoStep, "two-step"),
        (WrapStrategy::Host, "host"),
    ] {
        assert_eq!(serde_json::to_value(s).unwrap(), name);
        assert_eq!(s.to_string(), name);
    }
}

#[test]
fn the_self_test_secret_is_not_a_multiple_of_8() {
    let secret = kat_secret();
    assert_eq!(secret.len(), KAT_SECRET_LEN);
    assert_ne!(secret.len() % 8, 0);
    assert!(secret.iter().any(|b| *b != 0));
}
#[test]
fn the_committed_test_kek_is_an_rsa_2048_key() {
    use rsa::traits::PublicKeyParts as _;
    let key = <rsa::PrivateKey as pkcs8::DecodePrivateKey>::from_pkcs8_der(TEST_KEK).unwrap();
    assert_eq!(key.size(), 256);
}
