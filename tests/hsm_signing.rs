//! Credential signing keys on a real SoftHSM token: RSA-3072 generated never-extractable, PS256
//! (CKM_SHA256_RSA_PKCS_PSS) and RS256 signatures made in the token that an independent verifier
//! accepts, and refusal to sign with a key outside the credential namespace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::hsm::{Hsm, HsmError, SIGNING_KEY_BITS, SignatureScheme};
use byokd::model::{GroupName, KeyName, KeyType};
use common::softhsm::isolated;
use der::Decode;
use rsa::traits::PublicKeyParts;

#[test]
fn signing_keys_are_never_extractable_and_sign_ps256_and_rs256_in_the_token() {
    isolated(
        "signing_keys_are_never_extractable_and_sign_ps256_and_rs256_in_the_token",
        |token| async move {
            let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
            let key = hsm.generate_signing_key("cert-app").await.unwrap();
            let spki = spki::SubjectPublicKeyInfoRef::from_der(&key.public.spki_der).unwrap();
            let public = rsa::PublicKey::try_from(spki).unwrap();
            assert_eq!(u64::from(public.n().bit_width()), SIGNING_KEY_BITS);

            let attrs = hsm.key_attributes(key.id).await.unwrap();
            assert!(attrs.token && attrs.private && attrs.sensitive, "{attrs:?}");
            assert!(!attrs.extractable, "a signing key must not be extractable");
            assert!(
                attrs.always_sensitive && attrs.never_extractable,
                "{attrs:?}"
            );
            assert!(
                attrs.secret_value_refused,
                "the token revealed the private exponent"
            );

            let msg = b"eyJhbGciOiJQUzI1NiJ9.eyJhdWQiOiJ4In0";
            let ps = hsm.sign(key.id, SignatureScheme::Ps256, msg).await.unwrap();
            assert_eq!(ps.len(), 384);
            public.pss_verify::<sha2::Sha256>(msg, &ps).unwrap();
            assert!(public.pkcs1v15_verify::<sha2::Sha256>(msg, &ps).is_err());
            // PSS is randomised: two signatures differ, both verify.
            let ps2 = hsm.sign(key.id, SignatureScheme::Ps256, msg).await.unwrap();
            assert_ne!(ps, ps2);
            public.pss_verify::<sha2::Sha256>(msg, &ps2).unwrap();
            assert!(public.pss_verify::<sha2::Sha256>(b"other", &ps2).is_err());

            let rs = hsm.sign(key.id, SignatureScheme::Rs256, msg).await.unwrap();
            public.pkcs1v15_verify::<sha2::Sha256>(msg, &rs).unwrap();

            // A BYOK target key is not a credential signing key: no signing with it.
            let target = hsm
                .generate(
                    KeyType::rsa(2048, byokd::model::RsaExponent::F4).unwrap(),
                    &GroupName::try_from("g").unwrap(),
                    &KeyName::try_from("k").unwrap(),
                )
                .await
                .unwrap();
            let refused = hsm.sign(target.id, SignatureScheme::Ps256, msg).await;
            assert!(
                matches!(refused, Err(HsmError::NotASigningKey { .. })),
                "{refused:?}"
            );
            // Signing keys stay out of the BYOK key listing.
            let listed = hsm.list_keys().await.unwrap();
            assert!(listed.iter().all(|k| k.id != key.id), "{listed:?}");
            hsm.destroy(key.id).await.unwrap();
            assert!(matches!(
                hsm.sign(key.id, SignatureScheme::Rs256, msg).await,
                Err(HsmError::KeyNotFound { .. })
            ));
        },
    );
}
