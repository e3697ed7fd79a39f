//! Key generation on a real SoftHSM token: every key type byokd supports, its public key, its
//! protection attributes, restart stability, listing and destruction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::hsm::{Hsm, check_digits, parse_label};
use byokd::model::{Curve, GroupName, KeyName, KeyType, RsaExponent};
use common::softhsm::{SoftHsmToken, isolated};
use der::Decode;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

fn names(group: &str, key: &str) -> (GroupName, KeyName) {
    (
        GroupName::try_from(group).unwrap(),
        KeyName::try_from(key).unwrap(),
    )
}

/// Generates `key_type`, checks it, restarts, checks it is the same key, destroys it.
async fn generate_check_restart_destroy(token: SoftHsmToken, key_type: KeyType) {
    let (group, key) = names("payments", "k1");
    let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
    let generated = hsm.generate(key_type, &group, &key).await.unwrap();

    // The SPKI parses as the right kind of key, and the check digits are SHA-256's first 4 hex.
    let spki = spki::SubjectPublicKeyInfoRef::from_der(&generated.public.spki_der).unwrap();
    match key_type {
        KeyType::Rsa { bits, exponent } => {
            let public = rsa::PublicKey::try_from(spki).unwrap();
            assert_eq!(public.n().bit_width(), bits);
            let e: Vec<u8> = public
                .e()
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect();
            assert_eq!(e, exponent.be_bytes());
        }
        KeyType::Ec(curve) => {
            assert_eq!(spki.algorithm.oid.to_string(), "1.2.840.10045.2.1");
            let params = spki.algorithm.parameters.unwrap();
            assert_eq!(
                params
                    .decode_as::<der::asn1::ObjectIdentifier>()
                    .unwrap()
                    .to_string(),
                curve.oid()
            );
            let point = spki.subject_public_key.as_bytes().unwrap();
            assert_eq!(point.len(), 1 + 2 * curve.field_bytes());
            assert_eq!(point[0], 0x04);
        }
        KeyType::Aes { .. } => unreachable!("AES keys are tested in hsm_aes.rs"),
    }
    let digest = Sha256::digest(&generated.public.spki_der);
    assert_eq!(
        generated.public.check_digits,
        hex::encode_upper(&digest[..2])
    );
    assert_eq!(
        generated.public.check_digits,
        check_digits(&generated.public.spki_der)
    );
    assert_eq!(generated.public.check_digits.len(), 4);

    // The private key is protected the way BYOK needs it.
    let attrs = hsm.key_attributes(generated.id).await.unwrap();
    assert!(
        attrs.token && attrs.private && attrs.sensitive && attrs.always_sensitive,
        "{attrs:?}"
    );
    assert!(
        attrs.extractable,
        "BYOK wraps the key out, so it must be extractable: {attrs:?}"
    );
    assert!(!attrs.never_extractable, "{attrs:?}");
    assert!(
        attrs.secret_value_refused,
        "the token revealed the private value: {attrs:?}"
    );

    // A restart finds the same key with the same public half.
    hsm.shutdown().await.unwrap();
    let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
    let again = hsm.public_key(generated.id).await.unwrap();
    assert_eq!(again, generated.public);
    let listed = hsm.list_keys().await.unwrap();
    let entry = listed
        .iter()
        .find(|e| e.id == generated.id)
        .expect("the key is listed");
    assert_eq!(entry.label, "byokd/payments/k1");
    assert_eq!(entry.key_type, Some(key_type));
    assert_eq!(parse_label(&entry.label), Some((group, key)));

    // Destroy removes both halves.
    hsm.destroy(generated.id).await.unwrap();
    assert!(
        hsm.list_keys()
            .await
            .unwrap()
            .iter()
            .all(|e| e.id != generated.id)
    );
    assert!(matches!(
        hsm.public_key(generated.id).await,
        Err(byokd::hsm::HsmError::KeyNotFound { .. })
    ));
    assert!(matches!(
        hsm.destroy(generated.id).await,
        Err(byokd::hsm::HsmError::KeyNotFound { .. })
    ));
}

fn rsa(bits: u32) -> KeyType {
    KeyType::rsa(bits, RsaExponent::F4).unwrap()
}

#[test]
fn rsa_2048_is_generated_protected_and_stable_across_restart() {
    isolated(
        "rsa_2048_is_generated_protected_and_stable_across_restart",
        |t| generate_check_restart_destroy(t, rsa(2048)),
    );
}

#[test]
fn rsa_3072_is_generated_protected_and_stable_across_restart() {
    isolated(
        "rsa_3072_is_generated_protected_and_stable_across_restart",
        |t| generate_check_restart_destroy(t, rsa(3072)),
    );
}

#[test]
fn rsa_4096_is_generated_protected_and_stable_across_restart() {
    isolated(
        "rsa_4096_is_generated_protected_and_stable_across_restart",
        |t| generate_check_restart_destroy(t, rsa(4096)),
    );
}

#[test]
fn rsa_with_exponent_3_is_generated() {
    isolated("rsa_with_exponent_3_is_generated", |t| {
        generate_check_restart_destroy(t, KeyType::rsa(2048, RsaExponent::Three).unwrap())
    });
}

#[test]
fn ec_p256_is_generated_protected_and_stable_across_restart() {
    isolated(
        "ec_p256_is_generated_protected_and_stable_across_restart",
        |t| generate_check_restart_destroy(t, KeyType::Ec(Curve::P256)),
    );
}

#[test]
fn ec_p384_is_generated_protected_and_stable_across_restart() {
    isolated(
        "ec_p384_is_generated_protected_and_stable_across_restart",
        |t| generate_check_restart_destroy(t, KeyType::Ec(Curve::P384)),
    );
}

#[test]
fn ec_p521_is_generated_protected_and_stable_across_restart() {
    isolated(
        "ec_p521_is_generated_protected_and_stable_across_restart",
        |t| generate_check_restart_destroy(t, KeyType::Ec(Curve::P521)),
    );
}

/// SoftHSM 2.6.1 on Debian (OpenSSL 3) accepts secp256k1 (Azure's P-256K).
#[test]
fn ec_p256k_is_generated_protected_and_stable_across_restart() {
    isolated(
        "ec_p256k_is_generated_protected_and_stable_across_restart",
        |t| generate_check_restart_destroy(t, KeyType::Ec(Curve::P256K)),
    );
}

#[test]
fn keys_of_several_groups_are_listed_with_their_labels_and_ids_are_unique() {
    isolated(
        "keys_of_several_groups_are_listed_with_their_labels_and_ids_are_unique",
        |t| async move {
            let (hsm, report) = Hsm::start(&t.config(), t.pin()).unwrap();
            assert_eq!(report.token_label, t.label);
            let (g1, k1) = names("alpha", "v1");
            let (g2, k2) = names("beta", "v1");
            let a = hsm
                .generate(KeyType::Ec(Curve::P256), &g1, &k1)
                .await
                .unwrap();
            let b = hsm
                .generate(KeyType::Ec(Curve::P256), &g2, &k2)
                .await
                .unwrap();
            assert_ne!(a.id, b.id);
            assert_ne!(a.public.spki_der, b.public.spki_der);
            let labels: Vec<String> = hsm
                .list_keys()
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.label)
                .collect();
            assert_eq!(
                labels,
                ["byokd/alpha/v1", "byokd/beta/v1"],
                "the sealing key is not listed"
            );
        },
    );
}
