//! BYOK import: the full wrap built here with rsa + aes-kw, strict unwrap on the emulator side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, deprecated)]

mod common;
use common::*;

use byokd_emulator::{PublicKey, VaultOptions};
use p256::pkcs8::EncodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::json;

async fn import(c: &Client, t: &str, vault: &str, name: &str, key: serde_json::Value) -> Resp {
    c.kv(
        "PUT",
        vault,
        &format!("/keys/{name}?api-version=7.5"),
        Some(t),
        Some(json!({"key": key, "attributes":{"enabled":true}, "tags":{"byokd-job":"j1"}})),
    )
    .await
}

#[tokio::test]
async fn rsa_and_p256_import_roundtrip_and_new_versions() {
    let (emu, c) = start().await;
    let t = c.token().await;
    let kek = c.create_kek(&t, VAULT, "kek").await;
    let (kid, n, e) = kek_parts(&kek);

    let target = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
    let der = target.to_pkcs8_der().unwrap();
    let r = import(&c, &t, VAULT, "target", json!({"kty":"RSA-HSM","key_ops":["sign","verify"],"key_hsm": key_hsm(&kid, &n, &e, der.as_bytes())})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        unb64(r.body["key"]["n"].as_str().unwrap()),
        target.n_bytes().to_vec()
    );
    assert_eq!(r.body["key"]["e"], "AAEAAQ");
    assert_eq!(r.body["tags"]["byokd-job"], "j1");

    let ec = p256::SecretKey::random(&mut rand::rng());
    let ec_der = ec.to_pkcs8_der().unwrap();
    let r = import(&c, &t, VAULT, "target", json!({"kty":"EC-HSM","crv":"P-256","key_ops":["sign","verify"],"key_hsm": key_hsm(&kid, &n, &e, ec_der.as_bytes())})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let point = {
        use p256::elliptic_curve::sec1::ToSec1Point as _;
        ec.public_key()
            .as_affine()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec()
    };
    assert_eq!(
        unb64(r.body["key"]["x"].as_str().unwrap()),
        point[1..33].to_vec()
    );
    assert_eq!(
        unb64(r.body["key"]["y"].as_str().unwrap()),
        point[33..].to_vec()
    );
    assert_eq!(r.body["key"]["crv"], "P-256");

    let versions = emu.key_versions(VAULT, "target");
    assert_eq!(
        versions.len(),
        2,
        "a second import to the same name is a new version"
    );
    assert!(matches!(versions[0].public_key, PublicKey::Rsa { .. }));
    assert!(matches!(versions[1].public_key, PublicKey::Ec { .. }));
    let latest = c
        .kv(
            "GET",
            VAULT,
            "/keys/target/?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(latest.body["key"]["kid"], versions[1].kid.as_str());
    assert_eq!(emu.counters(VAULT).imports, 2);
    // key_hsm never reaches the log.
    let log = serde_json::to_string(&emu.requests()).unwrap();
    assert!(log.contains("<redacted>") && !log.contains(&key_hsm(&kid, &n, &e, b"x")[..20]));
    assert!(emu.schema_violations().is_empty());
}

#[tokio::test]
async fn softhsm_style_trailing_zero_padding_is_rejected() {
    let (emu, c) = start().await;
    let t = c.token().await;
    let (kid, n, e) = kek_parts(&c.create_kek(&t, VAULT, "kek").await);
    let ec_der = p256::SecretKey::random(&mut rand::rng())
        .to_pkcs8_der()
        .unwrap();
    for pad in 1..=7usize {
        let mut padded = ec_der.as_bytes().to_vec();
        padded.extend(std::iter::repeat_n(0u8, pad));
        let r = import(&c, &t, VAULT, "padded", json!({"kty":"EC-HSM","crv":"P-256","key_ops":["sign"],"key_hsm": key_hsm(&kid, &n, &e, &padded)})).await;
        assert_eq!(
            (r.status, r.code()),
            (400, Some("BadParameter")),
            "pad {pad}: {:?}",
            r.body
        );
    }
    let rsa_der = rsa::PrivateKey::new(&mut rand::rng(), 2048)
        .unwrap()
        .to_pkcs8_der()
        .unwrap();
    let mut padded = rsa_der.as_bytes().to_vec();
    padded.extend([0u8; 3]);
    let r = import(
        &c,
        &t,
        VAULT,
        "padded",
        json!({"kty":"RSA-HSM","key_hsm": key_hsm(&kid, &n, &e, &padded)}),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, Some("BadParameter")));
    assert!(emu.key_versions(VAULT, "padded").is_empty());
}

/// The encoding a token makes when it drops a P-521 scalar's leading zero byte (65 bytes where
/// RFC 5915 requires 66) is refused like Azure refuses an unopenable blob; the full-length
/// encoding of the same key is imported.
#[tokio::test]
async fn a_short_p521_scalar_is_refused_on_import() {
    use der::Encode as _;
    use p521::elliptic_curve::sec1::ToSec1Point as _;
    let (emu, c) = start().await;
    let t = c.token().await;
    let (kid, n, e) = kek_parts(&c.create_kek(&t, VAULT, "kek").await);
    let mut scalar = vec![0u8; 66];
    for (i, b) in scalar.iter_mut().enumerate().skip(1) {
        *b = (i as u8).wrapping_mul(53) | 1;
    }
    let point = p521::SecretKey::from_slice(&scalar)
        .unwrap()
        .public_key()
        .as_affine()
        .to_sec1_point(false);
    let pkcs8 = |d: &[u8]| {
        let ec = sec1::EcPrivateKey {
            private_key: d,
            parameters: None,
            public_key: Some(point.as_bytes()),
        }
        .to_der()
        .unwrap();
        let curve = der::asn1::ObjectIdentifier::new_unwrap("1.3.132.0.35");
        pkcs8::PrivateKeyInfoRef::new(
            spki::AlgorithmIdentifier {
                oid: der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1"),
                parameters: Some(der::asn1::AnyRef::from(&curve)),
            },
            der::asn1::OctetStringRef::new(&ec).unwrap(),
        )
        .to_der()
        .unwrap()
    };
    let body = |d: &[u8]| json!({"kty":"EC-HSM","crv":"P-521","key_ops":["sign"],"key_hsm": key_hsm(&kid, &n, &e, &pkcs8(d))});
    let r = import(&c, &t, VAULT, "p521", body(&scalar[1..])).await;
    assert_eq!(
        (r.status, r.code()),
        (400, Some("BadParameter")),
        "{:?}",
        r.body
    );
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("could not be unwrapped") && message.contains("65 bytes"),
        "{message}"
    );
    assert!(emu.key_versions(VAULT, "p521").is_empty());
    let r = import(&c, &t, VAULT, "p521", body(&scalar)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn wrong_kek_is_rejected() {
    let (emu, c) = start().await;
    emu.add_vault("other-vault", VaultOptions::default())
        .unwrap();
    let t = c.token().await;
    let (kid, n, e) = kek_parts(&c.create_kek(&t, VAULT, "kek").await);
    let (other_kid, on, oe) = kek_parts(&c.create_kek(&t, "other-vault", "kek").await);
    let der = p256::SecretKey::random(&mut rand::rng())
        .to_pkcs8_der()
        .unwrap();
    let ec = |hsm: String| json!({"kty":"EC-HSM","crv":"P-256","key_ops":["sign","verify"],"key_hsm": hsm});

    // KEK of another vault.
    let r = import(
        &c,
        &t,
        VAULT,
        "k",
        ec(key_hsm(&other_kid, &on, &oe, der.as_bytes())),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, Some("BadParameter")));
    // Unknown version.
    let bad_kid = format!("{}{}", &kid[..kid.len() - 32], "0".repeat(32));
    let r = import(
        &c,
        &t,
        VAULT,
        "k",
        ec(key_hsm(&bad_kid, &n, &e, der.as_bytes())),
    )
    .await;
    assert_eq!(r.status, 400);
    // Unversioned kid.
    let unversioned = kid.rsplit_once('/').unwrap().0.to_owned();
    let r = import(
        &c,
        &t,
        VAULT,
        "k",
        ec(key_hsm(&unversioned, &n, &e, der.as_bytes())),
    )
    .await;
    assert_eq!(r.status, 400);
    // Wrapped for another KEK's public key.
    let r = import(
        &c,
        &t,
        VAULT,
        "k",
        ec(key_hsm(&kid, &on, &oe, der.as_bytes())),
    )
    .await;
    assert_eq!(r.status, 400);
    // Declared kty / crv mismatch.
    let r = import(
        &c,
        &t,
        VAULT,
        "k",
        json!({"kty":"RSA-HSM","key_hsm": key_hsm(&kid, &n, &e, der.as_bytes())}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = import(&c, &t, VAULT, "k", json!({"kty":"EC-HSM","crv":"P-384","key_ops":["sign"],"key_hsm": key_hsm(&kid, &n, &e, der.as_bytes())})).await;
    assert_eq!(r.status, 400);
    // EC with ops other than sign/verify.
    let r = import(&c, &t, VAULT, "k", json!({"kty":"EC-HSM","crv":"P-256","key_ops":["decrypt"],"key_hsm": key_hsm(&kid, &n, &e, der.as_bytes())})).await;
    assert_eq!(r.status, 400);
    // Disabled KEK.
    let version = kid.rsplit('/').next().unwrap();
    emu.set_version_enabled(VAULT, "kek", version, false)
        .unwrap();
    let r = import(
        &c,
        &t,
        VAULT,
        "k",
        ec(key_hsm(&kid, &n, &e, der.as_bytes())),
    )
    .await;
    assert_eq!(r.status, 400);
    emu.set_version_enabled(VAULT, "kek", version, true)
        .unwrap();
    let r = import(
        &c,
        &t,
        VAULT,
        "k",
        ec(key_hsm(&kid, &n, &e, der.as_bytes())),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// Key Vault does not take AES keys: an oct-HSM BYOK import gets Azure's own answer, 400
/// BadParameter "Invalid kty value", innererror KeyTypeNotSupported, and nothing is stored.
#[tokio::test]
async fn a_key_vault_refuses_oct_hsm_imports_as_azure_does() {
    let (emu, c) = start().await;
    let t = c.token().await;
    let kek = c.create_kek(&t, VAULT, "kek").await;
    let (kid, n, e) = kek_parts(&kek);
    let raw = [0x11u8; 32];
    for kty in ["oct-HSM", "oct"] {
        let r = import(&c, &t, VAULT, "aes", json!({"kty": kty, "key_ops":["encrypt","decrypt"], "key_hsm": key_hsm(&kid, &n, &e, &raw)})).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert_eq!(r.body["error"]["code"], "BadParameter");
        assert_eq!(
            r.body["error"]["message"],
            format!("Invalid kty value: {kty}")
        );
        assert_eq!(r.body["error"]["innererror"]["code"], "KeyTypeNotSupported");
    }
    assert!(emu.key_versions(VAULT, "aes").is_empty());
}
