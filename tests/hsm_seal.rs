//! Sealing secrets with the token's AES-256 sealing key (AES-GCM on the token).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::hsm::{Hsm, HsmError, SEAL_KEY_LABEL};
use byokd::secret::SecretBytes;
use common::softhsm::isolated;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn secret(bytes: &[u8]) -> SecretBytes {
    SecretBytes::new(bytes.to_vec())
}

fn is_unseal_failure(r: Result<SecretBytes, HsmError>) -> bool {
    match r {
        Err(e @ HsmError::UnsealFailed { .. }) => e.to_string().starts_with("unseal failed"),
        _ => false,
    }
}

#[test]
fn seal_and_unseal_round_trip_exactly() {
    isolated("seal_and_unseal_round_trip_exactly", |t| async move {
        let (hsm, _) = Hsm::start(&t.config(), t.pin()).unwrap();
        let binary: Vec<u8> = (0..=255u8).collect();
        for plaintext in [
            &b"client-secret-with-newline\n"[..],
            &binary,
            b"",
            b"\0",
            &[0xff; 5000],
        ] {
            let sealed = hsm
                .seal(b"credential:ops", &secret(plaintext))
                .await
                .unwrap();
            assert!(sealed.starts_with(b"BS1"));
            assert_eq!(sealed.len(), 3 + 12 + plaintext.len() + 16);
            let opened = hsm.unseal(b"credential:ops", &sealed).await.unwrap();
            assert_eq!(opened.expose_secret(), plaintext);
        }
    });
}

#[test]
fn sealed_bytes_do_not_contain_the_plaintext_and_each_seal_is_fresh() {
    isolated(
        "sealed_bytes_do_not_contain_the_plaintext_and_each_seal_is_fresh",
        |t| async move {
            let (hsm, _) = Hsm::start(&t.config(), t.pin()).unwrap();
            let plaintext = b"a-very-recognisable-client-secret-value";
            let one = hsm.seal(b"aad", &secret(plaintext)).await.unwrap();
            let two = hsm.seal(b"aad", &secret(plaintext)).await.unwrap();
            assert!(!one.windows(plaintext.len()).any(|w| w == plaintext));
            assert!(!one.windows(8).any(|w| w == &plaintext[..8]));
            assert_ne!(one, two, "a fresh IV each time");
            assert_ne!(one[3..15], two[3..15]);
        },
    );
}

#[test]
fn wrong_aad_flipped_or_truncated_data_fails_to_unseal() {
    isolated(
        "wrong_aad_flipped_or_truncated_data_fails_to_unseal",
        |t| async move {
            let (hsm, _) = Hsm::start(&t.config(), t.pin()).unwrap();
            let sealed = hsm
                .seal(b"credential:ops", &secret(b"hunter2-secret"))
                .await
                .unwrap();

            assert!(is_unseal_failure(
                hsm.unseal(b"credential:dev", &sealed).await
            ));
            assert!(is_unseal_failure(hsm.unseal(b"", &sealed).await));
            for i in 0..sealed.len() {
                let mut flipped = sealed.clone();
                flipped[i] ^= 0x01;
                assert!(
                    is_unseal_failure(hsm.unseal(b"credential:ops", &flipped).await),
                    "byte {i}"
                );
            }
            for len in [0, 2, 3, 15, 30, sealed.len() - 1] {
                assert!(
                    is_unseal_failure(hsm.unseal(b"credential:ops", &sealed[..len]).await),
                    "length {len}"
                );
            }
            let mut longer = sealed.clone();
            longer.push(0);
            assert!(is_unseal_failure(
                hsm.unseal(b"credential:ops", &longer).await
            ));
            // The session is still usable after failures.
            let opened = hsm.unseal(b"credential:ops", &sealed).await.unwrap();
            assert_eq!(opened.expose_secret(), b"hunter2-secret");
        },
    );
}

#[test]
fn unseal_errors_do_not_show_the_plaintext() {
    isolated("unseal_errors_do_not_show_the_plaintext", |t| async move {
        let (hsm, _) = Hsm::start(&t.config(), t.pin()).unwrap();
        let sealed = hsm.seal(b"a", &secret(b"hunter2-secret")).await.unwrap();
        let err = hsm.unseal(b"b", &sealed).await.unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    });
}

#[test]
fn the_sealing_key_survives_a_restart() {
    isolated("the_sealing_key_survives_a_restart", |t| async move {
        let (hsm, _) = Hsm::start(&t.config(), t.pin()).unwrap();
        let sealed = hsm
            .seal(b"state", &secret(b"persisted secret"))
            .await
            .unwrap();
        hsm.shutdown().await.unwrap();

        let (hsm, _) = Hsm::start(&t.config(), t.pin()).unwrap();
        let opened = hsm.unseal(b"state", &sealed).await.unwrap();
        assert_eq!(opened.expose_secret(), b"persisted secret");
        hsm.shutdown().await.unwrap();

        // Exactly one sealing key exists after two starts, and it is locked down.
        let pkcs11 = Pkcs11::new(&t.module).unwrap();
        pkcs11
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = pkcs11
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .find(|s| pkcs11.get_token_info(*s).unwrap().label().trim() == t.label)
            .unwrap();
        let session = pkcs11.open_ro_session(slot).unwrap();
        session
            .login(
                UserType::User,
                Some(&AuthPin::new(t.user_pin.as_str().into())),
            )
            .unwrap();
        let keys = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(SEAL_KEY_LABEL.as_bytes().to_vec()),
            ])
            .unwrap();
        assert_eq!(keys.len(), 1);
        let attrs = session
            .get_attributes(
                keys[0],
                &[
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::ValueLen,
                ],
            )
            .unwrap();
        for want in [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::NeverExtractable(true),
            Attribute::AlwaysSensitive(true),
            Attribute::ValueLen(32.into()),
        ] {
            assert!(attrs.contains(&want), "{want:?} missing in {attrs:?}");
        }
        let value = session
            .get_attribute_info(keys[0], &[AttributeType::Value])
            .unwrap();
        assert!(
            matches!(value.as_slice(), [AttributeInfo::Sensitive]),
            "CKA_VALUE must not be readable: {value:?}"
        );
        drop(session);
        pkcs11.finalize().unwrap();
    });
}
