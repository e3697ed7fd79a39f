//! The in-HSM `two-step` wrap strategy on a conforming token: kryoptic, whose
//! CKM_AES_KEY_WRAP_KWP is RFC 5649. The self-test must pick `two-step` without
//! `allow_host_wrap`, and each ciphertext must decrypt (with the test's KEK private key) to a
//! strict PKCS#8 that matches the HSM's public key.
//!
//! Needs the kryoptic module: `cargo build --release --manifest-path
//! tests/kryoptic-module/Cargo.toml` (or `BYOKD_KRYOPTIC_MODULE`); without it these tests fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::hsm::{Hsm, WrapStrategy};
use byokd::model::{Curve, KeyName, KeyType, LocalKeyName, RsaExponent};
use common::kryoptic::isolated;
use common::wrapcheck::{Logs, kek, kwp_len, strict_pkcs8_public_spki, unwrap_transfer};

#[test]
fn kryoptic_self_test_picks_two_step() {
    isolated("kryoptic_self_test_picks_two_step", |token| async move {
        let logs = Logs::capture();
        let (hsm, report) = Hsm::start(&token.config(), token.pin()).unwrap();
        assert!(
            report.has_mechanism("CKM_AES_KEY_WRAP_KWP"),
            "{:?}",
            report.mechanisms
        );
        let wrap = hsm.wrap_report();
        assert_eq!(hsm.wrap_strategy(), Some(WrapStrategy::TwoStep), "{wrap:?}");
        assert!(!wrap.allow_host_wrap);
        let two_step = wrap.check(WrapStrategy::TwoStep).unwrap();
        assert!(
            two_step.usable
                && two_step
                    .detail
                    .contains("CKM_AES_KEY_WRAP_KWP output equals RFC 5649"),
            "{two_step:?}"
        );
        let native = wrap.check(WrapStrategy::Native).unwrap();
        assert!(!native.usable, "{native:?}");
        let host = wrap.check(WrapStrategy::Host).unwrap();
        assert!(!host.usable, "{host:?}");
        assert!(
            logs.text().contains("strategy=\"two-step\""),
            "{}",
            logs.text()
        );
        hsm.shutdown().await.unwrap();

        // Allowing host wrapping changes nothing: the in-HSM strategy is preferred.
        let mut cfg = token.config();
        cfg.allow_host_wrap = true;
        let (hsm, _) = Hsm::start(&cfg, token.pin()).unwrap();
        assert_eq!(hsm.wrap_strategy(), Some(WrapStrategy::TwoStep));
        assert!(hsm.wrap_report().check(WrapStrategy::Host).unwrap().usable);
        hsm.shutdown().await.unwrap();
    });
}

#[test]
fn kryoptic_two_step_wraps_rsa_and_p256() {
    isolated("kryoptic_two_step_wraps_rsa_and_p256", |token| async move {
        let logs = Logs::capture();
        let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
        assert_eq!(hsm.wrap_strategy(), Some(WrapStrategy::TwoStep));
        let f4 = RsaExponent::F4;
        let key_types = [
            KeyType::rsa(2048, f4).unwrap(),
            KeyType::rsa(2048, f4).unwrap(),
            KeyType::rsa(2048, f4).unwrap(),
            KeyType::rsa(3072, f4).unwrap(),
            KeyType::Ec(Curve::P256),
            KeyType::Ec(Curve::P384),
            KeyType::Ec(Curve::P521),
        ];
        let (kek_private, kek_public) = kek(2048);
        let group = KeyName::try_from("payments").unwrap();
        for (i, key_type) in key_types.iter().enumerate() {
            let key = LocalKeyName::try_from(format!("k{i}").as_str()).unwrap();
            let generated = hsm.generate(*key_type, &group, &key).await.unwrap();
            let ciphertext = hsm
                .wrap_for_transfer(generated.id, &kek_public)
                .await
                .unwrap();
            let der = unwrap_transfer(&kek_private, &ciphertext);
            assert_eq!(ciphertext.len(), 256 + kwp_len(der.len()), "{key_type}");
            let spki = strict_pkcs8_public_spki(&der, *key_type);
            let hsm_public = hsm.public_key(generated.id).await.unwrap();
            assert_eq!(spki, hsm_public.spki_der, "{key_type}");
            eprintln!("{key_type}: PKCS#8 {} bytes", der.len());
        }
        // No key left the token in the clear: no host-wrap WARN.
        let text = logs.text();
        assert!(!text.contains("strategy=\"host\""), "{text}");
        assert!(text.contains("wrapped key for transfer"), "{text}");
        hsm.shutdown().await.unwrap();
    });
}
