//! AES target keys (Azure `oct-HSM`) on real tokens: generation (CKK_AES, sensitive, on the
//! token, extractable only for the wrap), the key check value computed in the token, listing,
//! destruction, the self-test's AES family, and the transfer blob, which must hold the raw key
//! value (not PKCS#8) and is opened here with code independent of `byokd::hsm`.
//!
//! SoftHSM serves AES with `host` (with `hsm.allow_host_wrap`), kryoptic with `two-step`.
//! Needs the kryoptic module (`BYOKD_KRYOPTIC_MODULE`) for the kryoptic tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::hsm::{Hsm, KeyIdentity, WrapStrategy};
use byokd::model::{GroupName, KeyName, KeyType};
use common::wrapcheck::{kek, wrap_and_check_aes};

fn group() -> GroupName {
    GroupName::try_from("symmetric").unwrap()
}

/// Generates, wraps and independently opens AES-128, -192 and -256 keys; checks the protection
/// attributes, the listing and destruction.
async fn aes_round_trip(hsm: &Hsm, strategy: WrapStrategy) {
    let aes = hsm
        .wrap_report()
        .key_type(KeyType::Aes { bits: 256 })
        .expect("the self-test covers AES")
        .clone();
    assert!(aes.can_generate, "{aes:?}");
    assert_eq!(aes.strategy, Some(strategy), "{aes:?}");
    let conforming = aes
        .encodings
        .iter()
        .find(|e| e.strategy == strategy)
        .unwrap();
    for class in ["AES-128", "AES-192", "AES-256"] {
        assert!(conforming.detail.contains(class), "{conforming:?}");
    }
    let kek = kek(2048);
    let mut ids = Vec::new();
    for (i, bits) in KeyType::AES_SIZES.into_iter().enumerate() {
        let name = format!("k{i}");
        let (_, raw) = wrap_and_check_aes(hsm, bits, &group(), &name, &kek).await;
        let listed = hsm.list_keys().await.unwrap();
        let entry = listed
            .iter()
            .find(|e| e.label == format!("byokd/symmetric/{name}"))
            .expect("the AES key is listed");
        assert_eq!(entry.key_type, Some(KeyType::Aes { bits }));
        let attrs = hsm.key_attributes(entry.id).await.unwrap();
        assert!(attrs.token && attrs.private && attrs.sensitive, "{attrs:?}");
        assert!(attrs.always_sensitive, "{attrs:?}");
        assert!(attrs.extractable && !attrs.never_extractable, "{attrs:?}");
        assert!(
            attrs.secret_value_refused,
            "the token must refuse CKA_VALUE"
        );
        assert_ne!(raw, vec![0u8; raw.len()]);
        ids.push(entry.id);
    }
    // Two keys of the same size differ (and so do their KCVs, all but surely).
    let (_, a) = wrap_and_check_aes(hsm, 256, &group(), "again1", &kek).await;
    let (_, b) = wrap_and_check_aes(hsm, 256, &group(), "again2", &kek).await;
    assert_ne!(a, b);
    for id in ids {
        hsm.destroy(id).await.unwrap();
        assert!(hsm.key_identity(id).await.is_err());
    }
}

#[test]
fn softhsm_generates_aes_keys_and_host_wraps_their_raw_value() {
    common::softhsm::isolated(
        "softhsm_generates_aes_keys_and_host_wraps_their_raw_value",
        |token| async move {
            let mut cfg = token.config();
            cfg.allow_host_wrap = true;
            let (hsm, _) = Hsm::start(&cfg, token.pin()).unwrap();
            aes_round_trip(&hsm, WrapStrategy::Host).await;
            hsm.shutdown().await.unwrap();
        },
    );
}

#[test]
fn kryoptic_generates_aes_keys_and_two_step_wraps_their_raw_value() {
    common::kryoptic::isolated(
        "kryoptic_generates_aes_keys_and_two_step_wraps_their_raw_value",
        |token| async move {
            let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
            aes_round_trip(&hsm, WrapStrategy::TwoStep).await;
            hsm.shutdown().await.unwrap();
        },
    );
}

#[test]
fn an_aes_key_has_no_public_half_and_generate_refuses_it() {
    common::kryoptic::isolated(
        "an_aes_key_has_no_public_half_and_generate_refuses_it",
        |token| async move {
            let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
            let key = KeyName::try_from("k").unwrap();
            let err = hsm
                .generate(KeyType::Aes { bits: 128 }, &group(), &key)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("generate_target"), "{err}");
            let generated = hsm
                .generate_target(KeyType::Aes { bits: 128 }, &group(), &key)
                .await
                .unwrap();
            assert!(matches!(generated.identity, KeyIdentity::Secret(_)));
            assert!(hsm.public_key(generated.id).await.is_err());
            hsm.shutdown().await.unwrap();
        },
    );
}

#[test]
fn without_host_wrap_softhsm_reports_that_no_strategy_wraps_aes() {
    common::softhsm::isolated(
        "without_host_wrap_softhsm_reports_that_no_strategy_wraps_aes",
        |token| async move {
            let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
            let aes = hsm
                .wrap_report()
                .key_type(KeyType::Aes { bits: 192 })
                .unwrap();
            assert!(aes.can_generate, "{aes:?}");
            assert_eq!(aes.strategy, None);
            let err = hsm
                .wrap_report()
                .strategy_for(KeyType::Aes { bits: 192 })
                .unwrap_err();
            assert!(
                err.to_string().contains("allow_host_wrap"),
                "the error says what to change: {err}"
            );
            hsm.shutdown().await.unwrap();
        },
    );
}
