//! Unit tests of the strict parser and the canonical encoder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::der::*;
use super::*;

const SIGN_BYTES: &[u8] = include_bytes!("../fixtures/rsa-sign-bytes.der");

/// A P-521 scalar with one leading zero byte, as a token that drops it encodes it.
fn p521_pkcs8(scalar: &[u8], with_public: bool) -> Vec<u8> {
    let mut body = integer_tlv(&[1]).to_vec();
    body.extend_from_slice(&tlv(OCTET_STRING, scalar));
    body.extend_from_slice(&tlv(CONTEXT_0, Curve::P521.params_der()));
    if with_public {
        let mut full = vec![0u8; 66 - scalar.len()];
        full.extend_from_slice(scalar);
        let mut bits = vec![0u8];
        bits.extend(public_point(Curve::P521, &full).unwrap());
        body.extend_from_slice(&tlv(CONTEXT_1, &tlv(BIT_STRING, &bits)));
    }
    let mut alg = tlv(OID, OID_EC).to_vec();
    alg.extend_from_slice(Curve::P521.params_der());
    let mut info = integer_tlv(&[]).to_vec();
    info.extend_from_slice(&tlv(SEQUENCE, &alg));
    info.extend_from_slice(&tlv(OCTET_STRING, &tlv(SEQUENCE, &body)));
    tlv(SEQUENCE, &info).to_vec()
}

fn leading_zero_scalar() -> Vec<u8> {
    let mut s = vec![0u8; 66];
    for (i, b) in s.iter_mut().enumerate().skip(1) {
        *b = (i as u8).wrapping_mul(37) | 1;
    }
    s
}

#[test]
fn the_short_p521_encoding_is_refused_and_re_encoded_canonically() {
    let full = leading_zero_scalar();
    let point = public_point(Curve::P521, &full).unwrap();
    let expected = Expected::Ec {
        curve: Curve::P521,
        point: Some(point),
    };
    let good = p521_pkcs8(&full, true);
    check_pkcs8(&good, &expected).unwrap();
    for with_public in [true, false] {
        let short = p521_pkcs8(&full[1..], with_public);
        let err = check_pkcs8(&short, &expected).unwrap_err();
        assert!(
            err.contains("65 bytes") && err.contains("exactly 66") && err.contains("dropped 1"),
            "{err}"
        );
        let fixed = canonical_pkcs8(&short, &expected).unwrap();
        assert_eq!(&fixed[..], &good[..]);
    }
    // Another key's scalar is refused even when well encoded.
    let other = Expected::Ec {
        curve: Curve::P521,
        point: Some(public_point(Curve::P521, &crate_scalar()).unwrap()),
    };
    assert!(
        check_pkcs8(&good, &other)
            .unwrap_err()
            .contains("not the token's key")
    );
    assert!(canonical_pkcs8(&good, &other).is_err());
}

fn crate_scalar() -> Vec<u8> {
    let mut s = vec![0x01u8];
    s.extend([0x22u8; 65]);
    s
}

#[test]
fn the_rustcrypto_encoding_of_every_curve_conforms() {
    use p256::pkcs8::EncodePrivateKey as _;
    for zeros in 0..3 {
        let s = crate::hsm::wrap::edge_scalar(Curve::P256, zeros);
        let k = p256::SecretKey::from_slice(&s).unwrap();
        let der = k.to_pkcs8_der().unwrap();
        let expected = Expected::Ec {
            curve: Curve::P256,
            point: Some(public_point(Curve::P256, &s).unwrap()),
        };
        check_pkcs8(der.as_bytes(), &expected).unwrap();
        assert!(
            check_pkcs8(
                der.as_bytes(),
                &Expected::Ec {
                    curve: Curve::P256K,
                    point: None
                }
            )
            .unwrap_err()
            .contains("namedCurve")
        );
    }
}

/// The fixture with the INTEGER contents replaced by `edit(index, canonical content)`.
fn rsa_with(edit: impl Fn(usize, Vec<u8>) -> Vec<u8>, null: bool) -> Vec<u8> {
    let k = rsa_parts(SIGN_BYTES).unwrap();
    let ints: [&[u8]; 9] = [&[], &k.n, &k.e, &k.d, &k.p, &k.q, &k.dp, &k.dq, &k.qinv];
    let mut body = Vec::new();
    for (i, v) in ints.iter().enumerate() {
        body.extend_from_slice(&tlv(INTEGER, &edit(i, integer_content(v).to_vec())));
    }
    let mut alg = tlv(OID, OID_RSA).to_vec();
    if null {
        alg.extend_from_slice(&[NULL, 0]);
    }
    let mut info = integer_tlv(&[]).to_vec();
    info.extend_from_slice(&tlv(SEQUENCE, &alg));
    info.extend_from_slice(&tlv(OCTET_STRING, &tlv(SEQUENCE, &body)));
    tlv(SEQUENCE, &info).to_vec()
}

#[test]
fn rsa_rules_are_enforced_and_deviations_re_encoded() {
    let k = rsa_parts(SIGN_BYTES).unwrap();
    let expected = Expected::Rsa {
        modulus: k.n.clone(),
    };
    let same = rsa_with(|_, c| c, true);
    assert_eq!(same, SIGN_BYTES, "the test builder is canonical");
    check_pkcs8(SIGN_BYTES, &expected).unwrap();

    // qInv without its sign byte: negative in DER.
    let unsigned = rsa_with(|i, c| if i == 8 { c[1..].to_vec() } else { c }, true);
    assert!(
        check_pkcs8(&unsigned, &expected)
            .unwrap_err()
            .contains("negative")
    );
    assert_eq!(
        &canonical_pkcs8(&unsigned, &expected).unwrap()[..],
        SIGN_BYTES
    );

    // dP with a superfluous 0x00.
    let padded = rsa_with(|i, c| if i == 6 { [vec![0], c].concat() } else { c }, true);
    assert!(
        check_pkcs8(&padded, &expected)
            .unwrap_err()
            .contains("not minimal")
    );
    assert_eq!(
        &canonical_pkcs8(&padded, &expected).unwrap()[..],
        SIGN_BYTES
    );

    // Absent NULL parameters.
    let no_null = rsa_with(|_, c| c, false);
    assert!(
        check_pkcs8(&no_null, &expected)
            .unwrap_err()
            .contains("NULL")
    );
    assert_eq!(
        &canonical_pkcs8(&no_null, &expected).unwrap()[..],
        SIGN_BYTES
    );

    // Inconsistent CRT values are never re-encoded.
    for (index, rule) in [(6, "exponent1"), (7, "exponent2"), (8, "coefficient")] {
        let wrong = rsa_with(
            |i, mut c| {
                if i == index {
                    let last = c.len() - 1;
                    c[last] ^= 2;
                }
                c
            },
            true,
        );
        assert!(
            check_pkcs8(&wrong, &expected).unwrap_err().contains(rule),
            "{rule}"
        );
        assert!(canonical_pkcs8(&wrong, &expected).is_err(), "{rule}");
    }

    // Another modulus, trailing bytes, wrong family.
    let mut other = k.n.clone();
    other[10] ^= 1;
    assert!(check_pkcs8(SIGN_BYTES, &Expected::Rsa { modulus: other }).is_err());
    let mut trailing = SIGN_BYTES.to_vec();
    trailing.push(0);
    assert!(
        check_pkcs8(&trailing, &expected)
            .unwrap_err()
            .contains("after")
    );
    assert!(
        check_pkcs8(
            SIGN_BYTES,
            &Expected::Ec {
                curve: Curve::P256,
                point: None
            }
        )
        .is_err()
    );
}

#[test]
fn canonical_buffers_are_allocated_once() {
    let joined = concat(&[&[1u8, 2], &[], &[3u8; 300]]);
    assert_eq!((joined.len(), joined.capacity()), (302, 302));
    let k = rsa_parts(SIGN_BYTES).unwrap();
    let expected = Expected::Rsa {
        modulus: k.n.clone(),
    };
    let padded = rsa_with(|i, c| if i == 6 { [vec![0], c].concat() } else { c }, true);
    let out = canonical_pkcs8(&padded, &expected).unwrap();
    // `tlv` reserves its largest header: one allocation, never grown.
    assert!(
        out.capacity() <= out.len() + 8,
        "{} {}",
        out.capacity(),
        out.len()
    );
    assert_eq!(&out[..], SIGN_BYTES);
}

/// Hostile RSA integers (zero, empty or oversized modulus, p = q, p = 1) are refused with
/// an error, never a panic.
#[test]
fn degenerate_rsa_integers_are_refused() {
    let k = rsa_parts(SIGN_BYTES).unwrap();
    let expected = Expected::Rsa {
        modulus: Vec::new(),
    };
    let cases: [(usize, Vec<u8>); 6] = [
        (1, vec![0]),
        (1, vec![0x7f; 2000]),
        (4, vec![1]),
        (5, k.p.to_vec()),
        (3, vec![0]),
        (2, vec![0]),
    ];
    for (index, content) in cases {
        let der = rsa_with(|i, c| if i == index { content.clone() } else { c }, true);
        assert!(check_pkcs8(&der, &expected).is_err(), "{index}");
        assert!(canonical_pkcs8(&der, &expected).is_err(), "{index}");
    }
}

/// The host strategy's EC encoding carries the curve in `[0]` and the public key in `[1]`,
/// whatever the token's PKCS#8 held, and a third-party parser reads the same key from it.
#[test]
fn canonical_ec_has_curve_parameters_and_public_key() {
    use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
    let s = crate::hsm::wrap::edge_scalar(Curve::P256, 1);
    let point = public_point(Curve::P256, &s).unwrap();
    let expected = Expected::Ec {
        curve: Curve::P256,
        point: Some(point.clone()),
    };
    let token = p256::SecretKey::from_slice(&s)
        .unwrap()
        .to_pkcs8_der()
        .unwrap();
    let out = canonical_pkcs8(token.as_bytes(), &expected).unwrap();
    let params = tlv(CONTEXT_0, Curve::P256.params_der());
    let public = tlv(CONTEXT_1, &tlv(BIT_STRING, &[&[0u8][..], &point].concat()));
    let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
    assert!(has(&params) && has(&public));
    let back = p256::SecretKey::from_pkcs8_der(&out).unwrap();
    assert_eq!(&back.to_bytes()[..], &s[..]);
}
mod fuzz;
