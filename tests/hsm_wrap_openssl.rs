//! Proves the transfer ciphertext is checked independently of byokd's own code: OpenSSL's
//! command line unwraps it. The KEK is made by `openssl genpkey`; the RSA part is decrypted with
//! `openssl pkeyutl` (OAEP, SHA-1, MGF1-SHA-1), the rest with `openssl enc -d
//! -id-aes256-wrap-pad -iv A65959A6` (RFC 5649). `openssl pkey` must accept the PKCS#8 and derive
//! the HSM's public key from it, and a strict parser must accept it with no trailing bytes.
//! Runs on SoftHSM (`host` strategy) and kryoptic (`two-step` for RSA, `host` for EC). AES
//! keys' blobs must open to the raw key, whose KCV OpenSSL computes (`enc -aes-N-ecb`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::hsm::{Hsm, KekPublicKey, KeyIdentity, WrapStrategy};
use byokd::model::{Curve, GroupName, KeyName, KeyType, RsaExponent};
use common::wrapcheck::{kwp_len, strict_pkcs8_public_spki};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A KEK made by OpenSSL: `kek.pem` in `dir`, and its public half for byokd.
fn openssl_kek(dir: &Path, bits: usize) -> KekPublicKey {
    let bits_opt = format!("rsa_keygen_bits:{bits}");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &bits_opt,
            "-out",
            "kek.pem",
        ],
    );
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            "kek.pem",
            "-pubout",
            "-outform",
            "DER",
            "-out",
            "kek.pub.der",
        ],
    );
    let public =
        rsa::PublicKey::from_public_key_der(&std::fs::read(dir.join("kek.pub.der")).unwrap())
            .unwrap();
    let strip = |v: Vec<u8>| v.into_iter().skip_while(|b| *b == 0).collect::<Vec<u8>>();
    KekPublicKey {
        n: strip(public.n().to_be_bytes().to_vec()),
        e: strip(public.e().to_be_bytes().to_vec()),
    }
}

/// Opens a transfer ciphertext with OpenSSL in `dir` (`kek.pem`, a `k`-byte RSA part):
/// `pkeyutl` OAEP-SHA1 to the AES-256 key, then `enc -d -id-aes256-wrap-pad` (RFC 5649, with
/// its integrity check). Returns the plaintext, left in `key.der`.
fn openssl_unwrap(dir: &Path, ciphertext: &[u8], k: usize) -> Vec<u8> {
    let (rsa_part, kwp_part) = ciphertext.split_at(k);
    std::fs::write(dir.join("rsa.bin"), rsa_part).unwrap();
    std::fs::write(dir.join("kwp.bin"), kwp_part).unwrap();

    openssl(
        dir,
        &[
            "pkeyutl",
            "-decrypt",
            "-inkey",
            "kek.pem",
            "-in",
            "rsa.bin",
            "-out",
            "aes.bin",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha1",
            "-pkeyopt",
            "rsa_mgf1_md:sha1",
        ],
    );
    let aes = std::fs::read(dir.join("aes.bin")).unwrap();
    assert_eq!(aes.len(), 32, "OAEP yields an AES-256 key");
    let aes_hex = hex::encode(&aes);
    openssl(
        dir,
        &[
            "enc",
            "-d",
            "-id-aes256-wrap-pad",
            "-K",
            &aes_hex,
            "-iv",
            "A65959A6",
            "-in",
            "kwp.bin",
            "-out",
            "key.der",
        ],
    );
    std::fs::read(dir.join("key.der")).unwrap()
}

/// Generates each key type, wraps it, and has OpenSSL unwrap and check it.
async fn openssl_checks(hsm: &Hsm, key_types: &[KeyType]) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let kek = openssl_kek(dir, 2048);
    let group = GroupName::try_from("payments").unwrap();
    for (i, key_type) in key_types.iter().enumerate() {
        let key = KeyName::try_from(format!("k{i}").as_str()).unwrap();
        let generated = hsm.generate(*key_type, &group, &key).await.unwrap();
        let ciphertext = hsm.wrap_for_transfer(generated.id, &kek).await.unwrap();
        let der = openssl_unwrap(dir, &ciphertext, 256);
        assert_eq!(ciphertext.len() - 256, kwp_len(der.len()), "{key_type}");

        // OpenSSL accepts the PKCS#8 and derives the HSM's public key from it.
        openssl(dir, &["pkey", "-inform", "DER", "-in", "key.der", "-noout"]);
        openssl(
            dir,
            &[
                "pkey",
                "-inform",
                "DER",
                "-in",
                "key.der",
                "-pubout",
                "-outform",
                "DER",
                "-out",
                "key.pub.der",
            ],
        );
        let hsm_public = hsm.public_key(generated.id).await.unwrap();
        assert_eq!(
            std::fs::read(dir.join("key.pub.der")).unwrap(),
            hsm_public.spki_der,
            "{key_type}: OpenSSL's public key is the HSM's"
        );
        // And a strict parser accepts exactly these bytes.
        assert_eq!(
            strict_pkcs8_public_spki(&der, *key_type),
            hsm_public.spki_der,
            "{key_type}"
        );
        for f in ["rsa.bin", "kwp.bin", "aes.bin", "key.der", "key.pub.der"] {
            std::fs::remove_file(dir.join(f)).unwrap();
        }
    }
}

/// Generates AES keys of every size, wraps each, and has OpenSSL unwrap it (the raw key, no
/// PKCS#8) and compute its key check value (`enc -aes-N-ecb` of a zero block), which must be
/// the HSM's.
async fn openssl_checks_aes(hsm: &Hsm) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let kek = openssl_kek(dir, 2048);
    std::fs::write(dir.join("zero.bin"), [0u8; 16]).unwrap();
    let group = GroupName::try_from("symmetric").unwrap();
    for bits in KeyType::AES_SIZES {
        let key = KeyName::try_from(format!("aes{bits}").as_str()).unwrap();
        let generated = hsm
            .generate_target(KeyType::Aes { bits }, &group, &key)
            .await
            .unwrap();
        let KeyIdentity::Secret(info) = &generated.identity else {
            panic!("AES-{bits}: {:?}", generated.identity);
        };
        let ciphertext = hsm.wrap_for_transfer(generated.id, &kek).await.unwrap();
        let raw = openssl_unwrap(dir, &ciphertext, 256);
        assert_eq!(
            raw.len() * 8,
            bits as usize,
            "AES-{bits}: the raw key value"
        );
        assert_eq!(ciphertext.len() - 256, kwp_len(raw.len()));
        let cipher = format!("-aes-{bits}-ecb");
        let block = openssl(
            dir,
            &[
                "enc",
                &cipher,
                "-nopad",
                "-K",
                &hex::encode(&raw),
                "-in",
                "zero.bin",
            ],
        );
        assert_eq!(
            hex::encode_upper(&block[..3]),
            info.kcv,
            "AES-{bits}: OpenSSL's KCV is the HSM's"
        );
        for f in ["rsa.bin", "kwp.bin", "aes.bin", "key.der"] {
            std::fs::remove_file(dir.join(f)).unwrap();
        }
    }
}

fn rsa(bits: u32) -> KeyType {
    KeyType::rsa(bits, RsaExponent::F4).unwrap()
}

#[test]
fn openssl_unwraps_softhsm_host_wrapped_keys() {
    common::softhsm::isolated(
        "openssl_unwraps_softhsm_host_wrapped_keys",
        |token| async move {
            let mut cfg = token.config();
            cfg.allow_host_wrap = true;
            let (hsm, _) = Hsm::start(&cfg, token.pin()).unwrap();
            assert_eq!(hsm.wrap_strategy(), Some(WrapStrategy::Host));
            let mut key_types = vec![rsa(2048), rsa(2048), rsa(2048), rsa(3072)];
            key_types.extend(Curve::ALL.iter().map(|c| KeyType::Ec(*c)));
            openssl_checks(&hsm, &key_types).await;
            openssl_checks_aes(&hsm).await;
            hsm.shutdown().await.unwrap();
        },
    );
}

#[test]
fn openssl_unwraps_kryoptic_two_step_wrapped_keys() {
    common::kryoptic::isolated(
        "openssl_unwraps_kryoptic_two_step_wrapped_keys",
        |token| async move {
            // RSA goes through two-step; EC through host, since kryoptic's own PKCS#8 of EC
            // keys is not conforming (see hsm_wrap_kryoptic.rs).
            let mut cfg = token.config();
            cfg.allow_host_wrap = true;
            let (hsm, _) = Hsm::start(&cfg, token.pin()).unwrap();
            assert_eq!(hsm.wrap_strategy(), Some(WrapStrategy::TwoStep));
            let ec = KeyType::Ec(Curve::P256);
            assert_eq!(
                hsm.wrap_report().strategy_for(ec).unwrap(),
                WrapStrategy::Host
            );
            openssl_checks(&hsm, &[rsa(2048), rsa(2048), rsa(3072), ec]).await;
            assert_eq!(
                hsm.wrap_report()
                    .strategy_for(KeyType::Aes { bits: 256 })
                    .unwrap(),
                WrapStrategy::TwoStep
            );
            openssl_checks_aes(&hsm).await;
            hsm.shutdown().await.unwrap();
        },
    );
}
