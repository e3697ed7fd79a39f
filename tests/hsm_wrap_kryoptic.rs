//! The in-HSM `two-step` wrap strategy on kryoptic, whose CKM_AES_KEY_WRAP_KWP is RFC 5649. The
//! self-test must pick `two-step` without `allow_host_wrap`, and each ciphertext must decrypt
//! (with the test's KEK private key) to a strict PKCS#8 that matches the HSM's public key.
//!
//! kryoptic's PKCS#8 of an EC key whose private scalar has leading zero bytes drops them (a
//! P-521 key has one about every second time): the conformance self-test must find that with
//! its edge keys, refuse EC pushes on `two-step` up front naming the encoding, and, where
//! `hsm.allow_host_wrap` allows, serve EC keys with `host`, whose blobs byokd re-encodes.
//! secp256k1, which kryoptic cannot generate, must be refused as a key type, not as an HSM
//! failure.
//!
//! Needs the kryoptic module: `cargo build --release --manifest-path
//! tests/kryoptic-module/Cargo.toml` (or `BYOKD_KRYOPTIC_MODULE`); without it these tests fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::hsm::{Hsm, HsmError, WrapStrategy};
use byokd::model::{Curve, GroupName, KeyName, KeyType, RsaExponent};
use common::kryoptic::isolated;
use common::wrapcheck::{Logs, kek, kwp_len, scalar_has_leading_zero, wrap_and_check};

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
fn kryoptic_two_step_wraps_rsa() {
    isolated("kryoptic_two_step_wraps_rsa", |token| async move {
        let logs = Logs::capture();
        let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
        assert_eq!(hsm.wrap_strategy(), Some(WrapStrategy::TwoStep));
        let f4 = RsaExponent::F4;
        // Every size and exponent the README claims for two-step, and enough RSA-2048 keys
        // that CRT integers of several lengths occur among generated keys too.
        let mut key_types = vec![KeyType::rsa(2048, f4).unwrap(); 16];
        key_types.extend([
            KeyType::rsa(3072, f4).unwrap(),
            KeyType::rsa(4096, f4).unwrap(),
            KeyType::rsa(2048, RsaExponent::Three).unwrap(),
        ]);
        let kek = kek(2048);
        let group = GroupName::try_from("payments").unwrap();
        for (i, key_type) in key_types.iter().enumerate() {
            let (ciphertext, der) =
                wrap_and_check(&hsm, *key_type, &group, &format!("k{i}"), &kek).await;
            assert_eq!(ciphertext.len(), 256 + kwp_len(der.len()), "{key_type}");
            eprintln!("{key_type}: PKCS#8 {} bytes", der.len());
        }
        // No key left the token in the clear: no host-wrap WARN.
        let text = logs.text();
        assert!(!text.contains("strategy=\"host\""), "{text}");
        assert!(text.contains("wrapped key for transfer"), "{text}");
        hsm.shutdown().await.unwrap();
    });
}

#[test]
fn kryoptic_two_step_ec_is_refused_up_front_naming_the_short_scalar() {
    isolated(
        "kryoptic_two_step_ec_is_refused_up_front_naming_the_short_scalar",
        |token| async move {
            let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
            let report = hsm.wrap_report();
            assert_eq!(report.chosen, Some(WrapStrategy::TwoStep), "{report:?}");
            let p521 = KeyType::Ec(Curve::P521);
            let check = report.key_type(p521).unwrap();
            assert!(check.can_generate, "{check:?}");
            assert_eq!(check.strategy, None, "{check:?}");
            let two_step = &check.encodings[0];
            assert_eq!(two_step.strategy, WrapStrategy::TwoStep);
            assert!(!two_step.conforming);
            assert!(
                two_step
                    .failed_class
                    .as_deref()
                    .is_some_and(|c| c.contains("leading zero byte")),
                "{two_step:?}"
            );
            assert!(
                two_step.detail.contains("65 bytes") && two_step.detail.contains("exactly 66"),
                "{two_step:?}"
            );
            // The status line says it too.
            assert!(
                report
                    .summary()
                    .contains("EC-P521 on two-step: non-conforming blob"),
                "{}",
                report.summary()
            );
            // A group of it is refused at create, naming the class and what to change; RSA
            // (served) and secp256k1 (refused by the capability check instead) are not.
            let refusal = report.refuses_group(p521).unwrap_or_default();
            assert!(
                refusal.contains("65 bytes")
                    && refusal.contains("two-step: class")
                    && refusal.contains("hsm.allow_host_wrap = true"),
                "{refusal}"
            );
            assert_eq!(
                report.refuses_group(KeyType::rsa(2048, RsaExponent::F4).unwrap()),
                None
            );
            assert_eq!(report.refuses_group(KeyType::Ec(Curve::P256K)), None);
            // A push of P-521 is refused before anything is wrapped, naming the encoding.
            let refused = report.strategy_for(p521).unwrap_err();
            assert!(
                matches!(&refused, HsmError::NonConformingEncoding { key_type, .. } if key_type == "EC-P521"),
                "{refused:?}"
            );
            assert!(refused.to_string().contains("65 bytes"), "{refused}");
            let group = GroupName::try_from("payments").unwrap();
            let key = KeyName::try_from("k1").unwrap();
            let generated = hsm.generate(p521, &group, &key).await.unwrap();
            let (_, kek_public) = kek(2048);
            let err = hsm
                .wrap_for_transfer(generated.id, &kek_public)
                .await
                .unwrap_err();
            assert!(
                matches!(err, HsmError::NonConformingEncoding { .. }),
                "{err:?}"
            );
            // Every curve kryoptic generates is refused on two-step the same way; RSA is served.
            for curve in [Curve::P256, Curve::P384] {
                assert_eq!(report.key_type(KeyType::Ec(curve)).unwrap().strategy, None);
            }
            let rsa = report
                .key_type(KeyType::rsa(2048, RsaExponent::F4).unwrap())
                .unwrap();
            assert_eq!(rsa.strategy, Some(WrapStrategy::TwoStep), "{rsa:?}");
            assert!(
                rsa.encodings[0].detail.contains("6 classes conform"),
                "{rsa:?}"
            );

            // secp256k1: not generable, refused as a key type with the curve named.
            let k1 = KeyType::Ec(Curve::P256K);
            let check = report.key_type(k1).unwrap();
            assert!(!check.can_generate && check.strategy.is_none(), "{check:?}");
            let err = hsm.can_generate(k1).await.unwrap_err();
            assert!(
                matches!(err, HsmError::KeyTypeNotSupported { .. })
                    && err.to_string().contains("P-256K")
                    && err.to_string().contains("CKM_EC_KEY_PAIR_GEN"),
                "{err}"
            );
            let err = hsm
                .generate(k1, &group, &KeyName::try_from("k2").unwrap())
                .await
                .unwrap_err();
            assert!(
                matches!(err, HsmError::KeyTypeNotSupported { .. }),
                "{err:?}"
            );
            hsm.shutdown().await.unwrap();
        },
    );
}

/// 50 generated P-521 keys (a leading-zero scalar among them is all but certain: 1 - 2^-50),
/// plus P-256 and P-384 keys, with `allow_host_wrap`: EC keys go through `host`, every blob
/// conforms (fixed-length scalar, checked by the tests' own strict parser), and the keys with a
/// leading-zero scalar are among them. RSA stays on `two-step`.
#[test]
fn kryoptic_fifty_p521_keys_conform_through_host_re_encoding() {
    isolated(
        "kryoptic_fifty_p521_keys_conform_through_host_re_encoding",
        |token| async move {
            let mut cfg = token.config();
            cfg.allow_host_wrap = true;
            let (hsm, _) = Hsm::start(&cfg, token.pin()).unwrap();
            let report = hsm.wrap_report();
            for curve in [Curve::P256, Curve::P384, Curve::P521] {
                assert_eq!(
                    report.strategy_for(KeyType::Ec(curve)).unwrap(),
                    WrapStrategy::Host,
                    "{report:?}"
                );
                assert_eq!(report.refuses_group(KeyType::Ec(curve)), None);
            }
            assert_eq!(
                report
                    .strategy_for(KeyType::rsa(2048, RsaExponent::F4).unwrap())
                    .unwrap(),
                WrapStrategy::TwoStep
            );
            let kek = kek(2048);
            let group = GroupName::try_from("p521").unwrap();
            let mut leading_zero = 0;
            let mut key_types = vec![KeyType::Ec(Curve::P521); 50];
            key_types.extend([KeyType::Ec(Curve::P256), KeyType::Ec(Curve::P384)]);
            for (i, key_type) in key_types.iter().enumerate() {
                let (_, der) =
                    wrap_and_check(&hsm, *key_type, &group, &format!("k{i}"), &kek).await;
                if scalar_has_leading_zero(&der) {
                    leading_zero += 1;
                }
            }
            assert!(
                leading_zero > 0,
                "no leading-zero scalar among 50 P-521 keys"
            );
            eprintln!("{leading_zero} of 52 EC keys had a leading-zero scalar; all conform");
            hsm.shutdown().await.unwrap();
        },
    );
}
