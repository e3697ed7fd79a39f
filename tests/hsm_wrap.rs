//! The BYOK wrap self-test and `wrap_for_transfer` on a real SoftHSM 2.6.1 token.
//!
//! SoftHSM has no CKM_RSA_AES_KEY_WRAP, and its CKM_AES_KEY_WRAP_PAD is not RFC 5649 (it
//! zero-pads and puts the padded length in the IV), so: no strategy without
//! `allow_host_wrap`, and `host` with it. Every produced ciphertext is decrypted here with the
//! test's own KEK private key and strictly parsed, for every key type and many PKCS#8 lengths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::hsm::{Hsm, HsmError, WrapStrategy};
use byokd::model::{Curve, GroupName, KeyName, KeyType, RsaExponent};
use common::softhsm::{SoftHsmToken, isolated};
use common::wrapcheck::{Logs, kek, kwp_len, strict_pkcs8_public_spki, unwrap_transfer};

fn names(key: &str) -> (GroupName, KeyName) {
    (
        GroupName::try_from("payments").unwrap(),
        KeyName::try_from(key).unwrap(),
    )
}

fn rsa(bits: u32) -> KeyType {
    KeyType::rsa(bits, RsaExponent::F4).unwrap()
}

fn host_config(token: &SoftHsmToken) -> byokd::hsm::HsmConfig {
    let mut cfg = token.config();
    cfg.allow_host_wrap = true;
    cfg
}

#[test]
fn softhsm_padded_wrap_is_detected_as_non_conforming() {
    isolated(
        "softhsm_padded_wrap_is_detected_as_non_conforming",
        |token| async move {
            let logs = Logs::capture();
            let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
            assert_eq!(hsm.wrap_strategy(), None);
            let report = hsm.wrap_report();
            assert_eq!(report.chosen, None);
            assert!(!report.allow_host_wrap);
            assert!(report.checks.iter().all(|c| !c.usable), "{report:?}");

            let native = report.check(WrapStrategy::Native).unwrap();
            assert!(
                native
                    .detail
                    .contains("does not offer CKM_RSA_AES_KEY_WRAP"),
                "{native:?}"
            );
            let two_step = report.check(WrapStrategy::TwoStep).unwrap();
            assert!(
                two_step
                    .detail
                    .contains("CKM_AES_KEY_WRAP_PAD output differs from RFC 5649"),
                "{two_step:?}"
            );
            let host = report.check(WrapStrategy::Host).unwrap();
            assert!(
                host.detail.contains("CKM_AES_KEY_WRAP_PAD")
                    && host.detail.contains("hsm.allow_host_wrap = false"),
                "{host:?}"
            );

            // The report serialises with the names `byokctl status` shows.
            let json = serde_json::to_value(report).unwrap();
            assert_eq!(json["chosen"], serde_json::Value::Null);
            assert_eq!(json["checks"][1]["strategy"], "two-step");

            // The start-up log says what was found.
            let text = logs.text();
            assert!(
                text.contains("wrap strategy self-test done")
                    && text.contains("strategy=\"none\"")
                    && text.contains("CKM_AES_KEY_WRAP_PAD output differs from RFC 5649"),
                "{text}"
            );
            hsm.shutdown().await.unwrap();
        },
    );
}

#[test]
fn without_host_wrap_a_push_fails_naming_the_missing_mechanism() {
    isolated(
        "without_host_wrap_a_push_fails_naming_the_missing_mechanism",
        |token| async move {
            let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
            let (group, key) = names("k1");
            let generated = hsm
                .generate(KeyType::Ec(Curve::P256), &group, &key)
                .await
                .unwrap();
            let (_kek, kek_public) = kek(2048);
            let err = hsm
                .wrap_for_transfer(generated.id, &kek_public)
                .await
                .unwrap_err();
            assert!(matches!(err, HsmError::NoWrapStrategy { .. }), "{err:?}");
            let text = err.to_string();
            for needle in [
                "CKM_RSA_AES_KEY_WRAP",
                "RFC 5649 CKM_AES_KEY_WRAP_KWP",
                "set hsm.allow_host_wrap = true only for software tokens",
                "CKM_AES_KEY_WRAP_PAD output differs from RFC 5649",
            ] {
                assert!(text.contains(needle), "{needle:?} missing from: {text}");
            }
            hsm.shutdown().await.unwrap();
        },
    );
}

/// Generates each key, wraps it under a fresh KEK of `kek_bits`, and checks the ciphertext the
/// way the vault does. Returns the PKCS#8 lengths seen.
async fn wrap_and_check(
    hsm: &Hsm,
    key_types: &[KeyType],
    kek_bits: usize,
    logs: &Logs,
) -> Vec<usize> {
    let (kek_private, kek_public) = kek(kek_bits);
    let mut lengths = Vec::new();
    for (i, key_type) in key_types.iter().enumerate() {
        let (group, key) = names(&format!("k{i}"));
        let generated = hsm.generate(*key_type, &group, &key).await.unwrap();
        let ciphertext = hsm
            .wrap_for_transfer(generated.id, &kek_public)
            .await
            .unwrap();
        let der = unwrap_transfer(&kek_private, &ciphertext);
        assert_eq!(
            ciphertext.len(),
            kek_bits / 8 + kwp_len(der.len()),
            "{key_type}: RSA part = KEK size, KWP part = 8*ceil(len/8)+8"
        );
        let spki = strict_pkcs8_public_spki(&der, *key_type);
        let hsm_public = hsm.public_key(generated.id).await.unwrap();
        assert_eq!(
            spki, hsm_public.spki_der,
            "{key_type}: the unwrapped key's public key is the HSM's"
        );
        let text = logs.text();
        let kid = generated.id.to_hex();
        assert!(
            text.lines()
                .any(|l| l.contains("WARN") && l.contains("strategy=\"host\"") && l.contains(&kid)),
            "{key_type}: no WARN line for the host wrap of {kid}:\n{text}"
        );
        lengths.push(der.len());
    }
    lengths
}

#[test]
fn host_wrap_round_trips_rsa_2048_keys_of_several_lengths() {
    isolated(
        "host_wrap_round_trips_rsa_2048_keys_of_several_lengths",
        |token| async move {
            let logs = Logs::capture();
            let (hsm, _) = Hsm::start(&host_config(&token), token.pin()).unwrap();
            assert_eq!(hsm.wrap_strategy(), Some(WrapStrategy::Host));
            let host = hsm.wrap_report().check(WrapStrategy::Host).unwrap();
            assert!(
                host.usable && host.detail.contains("CKM_AES_KEY_WRAP_PAD"),
                "{host:?}"
            );
            let two_step = hsm.wrap_report().check(WrapStrategy::TwoStep).unwrap();
            assert!(!two_step.usable, "{two_step:?}");
            assert!(logs.text().contains("strategy=\"host\""));

            let lengths = wrap_and_check(&hsm, &[rsa(2048); 8], 2048, &logs).await;
            // RSA-2048 PKCS#8 lengths vary from key to key (about 1215..1219 bytes); with 8 keys
            // at least one is not a multiple of 8, which is what SoftHSM's padding breaks.
            assert!(
                lengths.iter().any(|l| l % 8 != 0),
                "no PKCS#8 length that is not a multiple of 8: {lengths:?}"
            );
            hsm.shutdown().await.unwrap();
        },
    );
}

#[test]
fn host_wrap_round_trips_rsa_3072_and_4096() {
    isolated(
        "host_wrap_round_trips_rsa_3072_and_4096",
        |token| async move {
            let logs = Logs::capture();
            let (hsm, _) = Hsm::start(&host_config(&token), token.pin()).unwrap();
            wrap_and_check(&hsm, &[rsa(3072), rsa(4096)], 4096, &logs).await;
            hsm.shutdown().await.unwrap();
        },
    );
}

#[test]
fn host_wrap_round_trips_every_curve() {
    isolated("host_wrap_round_trips_every_curve", |token| async move {
        let logs = Logs::capture();
        let (hsm, _) = Hsm::start(&host_config(&token), token.pin()).unwrap();
        let curves: Vec<KeyType> = Curve::ALL.iter().map(|c| KeyType::Ec(*c)).collect();
        let lengths = wrap_and_check(&hsm, &curves, 3072, &logs).await;
        assert!(
            lengths.iter().any(|l| l % 8 != 0),
            "EC PKCS#8 lengths: {lengths:?}"
        );
        hsm.shutdown().await.unwrap();
    });
}

#[test]
fn host_wrap_refuses_a_kek_of_the_wrong_size() {
    isolated(
        "host_wrap_refuses_a_kek_of_the_wrong_size",
        |token| async move {
            let (hsm, _) = Hsm::start(&host_config(&token), token.pin()).unwrap();
            let (group, key) = names("k1");
            let generated = hsm
                .generate(KeyType::Ec(Curve::P256), &group, &key)
                .await
                .unwrap();
            let (_kek, kek_public) = kek(1024);
            let err = hsm
                .wrap_for_transfer(generated.id, &kek_public)
                .await
                .unwrap_err();
            assert!(matches!(err, HsmError::InvalidKek { .. }), "{err:?}");
            hsm.shutdown().await.unwrap();
        },
    );
}

/// The negative control for every strict check above: the test's parser really rejects what
/// SoftHSM's raw CKM_AES_KEY_WRAP_PAD would hand back (the DER plus zero padding).
#[test]
fn the_strict_parser_rejects_trailing_zero_padding() {
    use rsa::pkcs8::EncodePrivateKey as _;
    let (kek_private, _) = kek(2048);
    let der = kek_private.to_pkcs8_der().unwrap().as_bytes().to_vec();
    let spki = strict_pkcs8_public_spki(&der, rsa(2048));
    assert!(!spki.is_empty());
    for pad in 1..8 {
        let mut padded = der.clone();
        padded.resize(der.len() + pad, 0);
        let result = std::panic::catch_unwind(|| strict_pkcs8_public_spki(&padded, rsa(2048)));
        assert!(result.is_err(), "{pad} trailing zero bytes were accepted");
    }
}

/// SoftHSM generates every key type byokd offers, and `host`'s re-encoded blobs conform for
/// every encoding class of each: the wrap report says so per key type. Without host wrapping,
/// every key type names the missing strategy.
#[test]
fn softhsm_host_blobs_conform_for_every_key_type_and_class() {
    isolated(
        "softhsm_host_blobs_conform_for_every_key_type_and_class",
        |token| async move {
            let (hsm, _) = Hsm::start(&host_config(&token), token.pin()).unwrap();
            let report = hsm.wrap_report();
            assert_eq!(report.key_types.len(), 6, "{report:?}");
            for kt in &report.key_types {
                assert!(kt.can_generate, "{kt:?}");
                assert_eq!(kt.strategy, Some(WrapStrategy::Host), "{kt:?}");
                let host = &kt.encodings[0];
                assert!(host.conforming && host.failed_class.is_none(), "{kt:?}");
                assert!(host.detail.contains("classes conform"), "{kt:?}");
            }
            for key_type in [
                rsa(2048),
                KeyType::Ec(Curve::P521),
                KeyType::Ec(Curve::P256K),
            ] {
                assert_eq!(report.strategy_for(key_type).unwrap(), WrapStrategy::Host);
            }
            hsm.shutdown().await.unwrap();

            let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
            let err = hsm
                .wrap_report()
                .strategy_for(KeyType::Ec(Curve::P256))
                .unwrap_err();
            assert!(matches!(err, HsmError::NoWrapStrategy { .. }), "{err:?}");
            hsm.shutdown().await.unwrap();
        },
    );
}
