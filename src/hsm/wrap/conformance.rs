//! The wrap conformance self-test by encoding class: which strategy may wrap which key family.
//!
//! Owns: the edge-encoding test keys (EC scalars with zero, one and two leading zero bytes on
//! every curve, imported both at full length and without the zeros, as a token's own key
//! generation may hold them; RSA-2048 keys from `fixtures/` whose integers need a 0x00 sign byte
//! or are shorter than the prime or modulus, two of them also imported zero-padded to fixed
//! width; AES-128, -192 and -256 secret keys, whose blob must hold exactly the raw key value:
//! a strategy or token that cannot wrap a secret key fails that class by name), importing each
//! as a session object (C_CreateObject, CKA_TOKEN = false, destroyed on
//! drop), wrapping it with every usable strategy under the host test KEK,
//! opening the blob on the host and checking it with the strict parser; and the per-key-family
//! verdict (`KeyTypeCheck`) that is part of the wrap report.
//! Must never: offer a strategy for a key family unless every class of that family conformed,
//! or let test key material reach an error or a log (errors name classes and rules only).

use super::objects::Temporary;
use super::verdict::{EncodingCheck, KeyFamily, KeyTypeCheck, WrapStrategy};
use crate::hsm::HsmError;
use crate::hsm::host::{self, AES256_LEN};
use crate::hsm::strict::{self, Expected};
use crate::model::Curve;
use cryptoki::object::{Attribute, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use rsa::traits::PublicKeyParts as _;
use zeroize::{Zeroize as _, Zeroizing};

/// One edge-encoding test key.
struct TestKey {
    family: KeyFamily,
    class: &'static str,
    material: Material,
}

enum Material {
    /// A fixed-length scalar; `minimal`: CKA_VALUE without its leading zero bytes.
    Ec {
        scalar: Zeroizing<Vec<u8>>,
        minimal: bool,
    },
    /// PKCS#8 DER; `padded`: the private integers imported at fixed width (d as long as the
    /// modulus, the rest as long as the larger prime), as a token may hold them.
    Rsa { der: &'static [u8], padded: bool },
    /// An AES key's value (16, 24 or 32 bytes).
    Aes { value: Zeroizing<Vec<u8>> },
}

/// A known AES key value of `len` bytes for the self-test (not a secret: it never leaves the
/// self-test's session objects).
fn aes_test_value(len: usize) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(
        (0..len)
            .map(|i| u8::try_from((i * 29 + 7) % 251).unwrap_or(1))
            .collect(),
    )
}

/// The RSA-2048 edge keys (see `fixtures/generate_rsa_edge.py`): class and PKCS#8 DER.
const RSA_FIXTURES: [(&str, &[u8]); 4] = [
    (
        "RSA p, q, dP, dQ and qInv each needing a 0x00 sign byte",
        include_bytes!("../fixtures/rsa-sign-bytes.der"),
    ),
    (
        "RSA dP shorter than the prime",
        include_bytes!("../fixtures/rsa-short-dp.der"),
    ),
    (
        "RSA qInv shorter than the prime",
        include_bytes!("../fixtures/rsa-short-qinv.der"),
    ),
    (
        "RSA d shorter than the modulus",
        include_bytes!("../fixtures/rsa-short-d.der"),
    ),
];

/// A fixed-length scalar for `curve` with `zeros` leading zero bytes, then non-zero bytes;
/// always in [1, n-1] (its first non-zero byte is 0x01 on P-521, 0x5a elsewhere).
pub(crate) fn edge_scalar(curve: Curve, zeros: usize) -> Zeroizing<Vec<u8>> {
    let len = strict::scalar_len(curve);
    let mut s = Zeroizing::new(vec![0u8; len]);
    for (i, b) in s.iter_mut().enumerate().skip(zeros) {
        *b = u8::try_from((i * 73 + 41) % 251).map_or(1, |v| v.max(1));
    }
    if let Some(first) = s.get_mut(zeros) {
        *first = if curve == Curve::P521 && zeros == 0 {
            0x01
        } else {
            0x5a
        };
    }
    s
}

fn test_keys(families: &[KeyFamily]) -> Vec<TestKey> {
    let mut keys = Vec::new();
    for family in families {
        match family {
            KeyFamily::Rsa => {
                keys.extend(RSA_FIXTURES.iter().map(|(class, der)| TestKey {
                    family: KeyFamily::Rsa,
                    class,
                    material: Material::Rsa { der, padded: false },
                }));
                for (class, der) in [
                    (
                        "RSA dP shorter than the prime, imported padded to the prime's length",
                        RSA_FIXTURES[1].1,
                    ),
                    (
                        "RSA d shorter than the modulus, imported padded to the modulus length",
                        RSA_FIXTURES[3].1,
                    ),
                ] {
                    keys.push(TestKey {
                        family: KeyFamily::Rsa,
                        class,
                        material: Material::Rsa { der, padded: true },
                    });
                }
            }
            KeyFamily::Aes => {
                for (len, class) in [
                    (16, "AES-128 secret key, raw value"),
                    (24, "AES-192 secret key, raw value"),
                    (32, "AES-256 secret key, raw value"),
                ] {
                    keys.push(TestKey {
                        family: KeyFamily::Aes,
                        class,
                        material: Material::Aes {
                            value: aes_test_value(len),
                        },
                    });
                }
            }
            KeyFamily::Ec(curve) => {
                // A token may hold CKA_VALUE as imported (fixed length) or as its own key
                // generation leaves it (minimal, leading zeros gone): both are tested.
                for (zeros, minimal, class) in [
                    (0, false, "full-length private scalar"),
                    (
                        1,
                        false,
                        "private scalar with one leading zero byte, CKA_VALUE at full length",
                    ),
                    (
                        1,
                        true,
                        "private scalar with one leading zero byte, CKA_VALUE without it (as generated keys may be held)",
                    ),
                    (
                        2,
                        false,
                        "private scalar with two leading zero bytes, CKA_VALUE at full length",
                    ),
                    (
                        2,
                        true,
                        "private scalar with two leading zero bytes, CKA_VALUE without them (as generated keys may be held)",
                    ),
                ] {
                    keys.push(TestKey {
                        family: *family,
                        class,
                        material: Material::Ec {
                            scalar: edge_scalar(*curve, zeros),
                            minimal,
                        },
                    });
                }
            }
        }
    }
    keys
}

/// Imports `key` as an extractable, sensitive session private key; returns it and what the
/// strict parser must find in its blob.
fn import<'a>(session: &'a Session, key: &TestKey) -> Result<(Temporary<'a>, Expected), String> {
    if let Material::Aes { value } = &key.material {
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(CkKeyType::AES),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Encrypt(true),
            Attribute::Value(value.to_vec()),
        ];
        let created = Temporary::create(
            session,
            &template,
            "self-test AES key",
            "importing a self-test AES key",
        );
        super::objects::zeroize_values(&mut template);
        return Ok((
            created.map_err(|e| e.to_string())?,
            Expected::Aes { len: value.len() },
        ));
    }
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Sign(true),
    ];
    let expected = match (&key.material, key.family) {
        (Material::Ec { scalar, minimal }, KeyFamily::Ec(curve)) => {
            let value = if *minimal {
                host::strip_zeros(scalar)
            } else {
                &scalar[..]
            };
            template.extend([
                Attribute::KeyType(CkKeyType::EC),
                Attribute::EcParams(curve.params_der().to_vec()),
                Attribute::Value(value.to_vec()),
            ]);
            Expected::Ec {
                curve,
                point: Some(strict::public_point(curve, scalar)?),
            }
        }
        (Material::Rsa { der, padded }, _) => {
            let k = strict::rsa_parts(der)?;
            let half = k.p.len().max(k.q.len());
            let value = |v: &[u8], width: usize| {
                let mut out = vec![
                    0u8;
                    if *padded {
                        width.saturating_sub(v.len())
                    } else {
                        0
                    }
                ];
                out.extend_from_slice(v);
                out
            };
            template.extend([
                Attribute::KeyType(CkKeyType::RSA),
                Attribute::Decrypt(true),
                Attribute::Modulus(k.n.clone()),
                Attribute::PublicExponent(k.e.clone()),
                Attribute::PrivateExponent(value(&k.d, k.n.len())),
                Attribute::Prime1(value(&k.p, half)),
                Attribute::Prime2(value(&k.q, half)),
                Attribute::Exponent1(value(&k.dp, half)),
                Attribute::Exponent2(value(&k.dq, half)),
                Attribute::Coefficient(value(&k.qinv, half)),
            ]);
            Expected::Rsa { modulus: k.n }
        }
        (Material::Ec { .. }, KeyFamily::Rsa | KeyFamily::Aes) => {
            return Err("an EC scalar for another family".to_owned());
        }
        (Material::Aes { .. }, _) => return Err("an AES key imported as a key pair".to_owned()),
    };
    let created = Temporary::create(
        session,
        &template,
        "self-test edge key",
        "importing a self-test edge key",
    );
    for attr in &mut template {
        match attr {
            Attribute::Value(v)
            | Attribute::PrivateExponent(v)
            | Attribute::Prime1(v)
            | Attribute::Prime2(v)
            | Attribute::Exponent1(v)
            | Attribute::Exponent2(v)
            | Attribute::Coefficient(v) => v.zeroize(),
            _ => {}
        }
    }
    Ok((created.map_err(|e| e.to_string())?, expected))
}

/// Opens a transfer blob with the host test KEK: OAEP-SHA1, then strict RFC 5649.
fn open(test_kek: &rsa::PrivateKey, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let k = test_kek.size();
    if ciphertext.len() <= k {
        return Err(format!("the blob is {} bytes, too short", ciphertext.len()));
    }
    let (rsa_part, kwp_part) = ciphertext.split_at(k);
    let aes = host::oaep_sha1_decrypt(test_kek, rsa_part)?;
    let aes: [u8; AES256_LEN] = aes[..]
        .try_into()
        .map_err(|_| format!("the wrapped AES key is {} bytes, not 32", aes.len()))?;
    let aes = Zeroizing::new(aes);
    host::kwp_unwrap(&aes, kwp_part)
}

/// Wraps one strategy's blob of a session key: (strategy, key, what the blob must hold).
pub(crate) type WrapFn<'f> =
    dyn Fn(WrapStrategy, ObjectHandle, &Expected) -> Result<Vec<u8>, HsmError> + 'f;

/// Runs every class of every generable family through every usable strategy.
pub(crate) fn run(
    session: &Session,
    usable: &[WrapStrategy],
    caps: &crate::hsm::capability::Capabilities,
    test_kek: Option<&rsa::PrivateKey>,
    wrap: &WrapFn<'_>,
) -> Vec<KeyTypeCheck> {
    let generation = caps.summary();
    KeyFamily::ALL
        .into_iter()
        .map(|family| {
            let generated = generation
                .iter()
                .find(|(name, _)| *name == family.to_string())
                .map_or_else(
                    || Err("the start-up probe did not cover it".to_owned()),
                    |(_, r)| r.clone(),
                );
            let can_generate = generated.is_ok();
            let generation = generated.unwrap_or_else(|why| why);
            let encodings: Vec<EncodingCheck> = if can_generate {
                usable
                    .iter()
                    .map(|s| check_family(session, *s, family, test_kek, wrap))
                    .collect()
            } else {
                Vec::new()
            };
            let strategy = encodings.iter().find(|c| c.conforming).map(|c| c.strategy);
            KeyTypeCheck {
                key_type: family.to_string(),
                can_generate,
                generation,
                strategy,
                encodings,
            }
        })
        .collect()
}

fn check_family(
    session: &Session,
    strategy: WrapStrategy,
    family: KeyFamily,
    test_kek: Option<&rsa::PrivateKey>,
    wrap: &WrapFn<'_>,
) -> EncodingCheck {
    let keys = test_keys(&[family]);
    let fail = |class: &str, why: String| EncodingCheck {
        strategy,
        conforming: false,
        failed_class: Some(class.to_owned()),
        detail: format!("class \"{class}\": {why}"),
    };
    let Some(test_kek) = test_kek else {
        return fail("all", "no host test KEK".to_owned());
    };
    for key in &keys {
        let result = import(session, key).and_then(|(object, expected)| {
            let blob = wrap(strategy, object.handle, &expected).map_err(|e| match e {
                HsmError::WrapFailed { reason, .. } => reason,
                other => other.to_string(),
            })?;
            drop(object);
            let plain = open(test_kek, &blob)?;
            strict::check_plaintext(&plain, &expected)?;
            match &key.material {
                Material::Aes { value } if plain[..] != value[..] => {
                    Err("the blob does not hold the AES key's raw value".to_owned())
                }
                _ => Ok(()),
            }
        });
        if let Err(why) = result {
            return fail(key.class, why);
        }
    }
    EncodingCheck {
        strategy,
        conforming: true,
        failed_class: None,
        detail: format!(
            "{} classes conform: {}",
            keys.len(),
            keys.iter().map(|k| k.class).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn edge_scalars_have_their_leading_zeros_and_are_valid() {
        for curve in Curve::ALL {
            for zeros in 0..3 {
                let s = edge_scalar(curve, zeros);
                assert_eq!(s.len(), strict::scalar_len(curve));
                assert!(s[..zeros].iter().all(|b| *b == 0));
                assert_ne!(s[zeros], 0, "{curve:?} {zeros}");
                strict::public_point(curve, &s).unwrap();
            }
        }
    }

    #[test]
    fn rsa_fixtures_conform_and_exercise_their_class() {
        let len = |v: &[u8]| v.len();
        for (class, der) in RSA_FIXTURES {
            let k = strict::rsa_parts(der).unwrap();
            strict::check_pkcs8(
                der,
                &Expected::Rsa {
                    modulus: k.n.clone(),
                },
            )
            .unwrap();
            assert_eq!(len(&k.n), 256, "{class}");
            let half = len(&k.p);
            let holds = match class {
                c if c.contains("sign byte") => [&k.p, &k.q, &k.dp, &k.dq, &k.qinv]
                    .iter()
                    .all(|v| v.len() == half && v[0] >= 0x80),
                c if c.contains("dP") => len(&k.dp) < half,
                c if c.contains("qInv") => len(&k.qinv) < half,
                c if c.contains(" d ") => len(&k.d) < len(&k.n),
                _ => false,
            };
            assert!(holds, "{class}");
        }
    }
}
