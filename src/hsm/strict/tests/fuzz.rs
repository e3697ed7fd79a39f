//! Property tests: the strict parser never panics and agrees with the emulator's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use proptest::prelude::*;

fn all_expected() -> Vec<Expected> {
    let mut out = vec![Expected::Rsa {
        modulus: Vec::new(),
    }];
    for curve in Curve::ALL {
        out.push(Expected::Ec { curve, point: None });
    }
    out
}

fn good_inputs() -> Vec<Vec<u8>> {
    let mut p256 = vec![0u8; 32];
    p256[31] = 7;
    let full = leading_zero_scalar();
    vec![
        SIGN_BYTES.to_vec(),
        p521_pkcs8(&full, true),
        p521_pkcs8(&full[1..], false),
        {
            use p256::pkcs8::EncodePrivateKey as _;
            p256::SecretKey::from_slice(&p256)
                .unwrap()
                .to_pkcs8_der()
                .unwrap()
                .as_bytes()
                .to_vec()
        },
    ]
}

/// Whatever the bytes, both readers answer without panicking, and whatever the
/// lenient reader re-encodes, the strict one accepts.
fn never_panics(der: &[u8]) {
    for expected in all_expected() {
        let _ = check_pkcs8(der, &expected);
        if let Ok(out) = canonical_pkcs8(der, &expected) {
            check_pkcs8(&out, &expected).unwrap();
        }
    }
}

/// The emulator's strict parser (the tests' model of the vault) and byokd's agree on
/// `der` for every declared key type: each accepts exactly what the other accepts, and
/// for the same key. Only the emulator's RSA size rule (2048, 3072 or 4096 bits) is
/// its own.
fn same_verdict(der: &[u8]) {
    use byokd_emulator::keys::{Declared, parse_pkcs8_strict};
    let declared = [
        (Declared::Rsa, None),
        (Declared::Ec(byokd_emulator::Curve::P256), Some(Curve::P256)),
        (Declared::Ec(byokd_emulator::Curve::P384), Some(Curve::P384)),
        (Declared::Ec(byokd_emulator::Curve::P521), Some(Curve::P521)),
        (
            Declared::Ec(byokd_emulator::Curve::P256K),
            Some(Curve::P256K),
        ),
    ];
    for (emulator, curve) in declared {
        let theirs = parse_pkcs8_strict(der, emulator);
        let loose = match curve {
            None => Expected::Rsa {
                modulus: Vec::new(),
            },
            Some(curve) => Expected::Ec { curve, point: None },
        };
        let ours = parse(der, Mode::Strict, &loose).and_then(|k| match &k {
            Parsed::Rsa(parts) => parts.check().map(|()| Expected::Rsa {
                modulus: parts.n.clone(),
            }),
            Parsed::Ec { curve, scalar, .. } => k.check(&loose).and_then(|()| {
                Ok(Expected::Ec {
                    curve: *curve,
                    point: Some(public_point(*curve, scalar)?),
                })
            }),
        });
        match (&theirs, &ours) {
            (Ok(byokd_emulator::PublicKey::Rsa { n, .. }), Ok(Expected::Rsa { modulus })) => {
                assert_eq!(n, modulus);
            }
            (Ok(byokd_emulator::PublicKey::Ec { x, y, .. }), Ok(Expected::Ec { point, .. })) => {
                assert_eq!(Some([&[4u8][..], x, y].concat()), *point);
            }
            (Err(e), Ok(Expected::Rsa { modulus })) if e.contains("RSA key size") => {
                assert!(![256, 384, 512].contains(&modulus.len()), "{e}");
            }
            (Err(_), Err(_)) => {}
            _ => panic!(
                "{emulator:?}: the emulator says {:?}, byokd says {:?}",
                theirs.as_ref().map(|_| "accepted"),
                ours.as_ref().map(|_| "accepted"),
            ),
        }
    }
}

#[test]
fn the_emulator_and_byokd_agree_on_the_edge_encodings() {
    for der in good_inputs() {
        same_verdict(&der);
    }
    let k = rsa_parts(SIGN_BYTES).unwrap();
    let last = |c: Vec<u8>| {
        let mut c = c;
        let end = c.len() - 1;
        c[end] ^= 2;
        c
    };
    for index in 0..9 {
        same_verdict(&rsa_with(
            |i, c| if i == index { [vec![0], c].concat() } else { c },
            true,
        ));
        same_verdict(&rsa_with(
            |i, c| {
                if i == index && c.len() > 1 && c[0] == 0 {
                    c[1..].to_vec()
                } else {
                    c
                }
            },
            true,
        ));
        same_verdict(&rsa_with(
            |i, c| if i == index && index > 0 { last(c) } else { c },
            true,
        ));
    }
    same_verdict(&rsa_with(|_, c| c, false));
    drop(k);
    // PrivateKeyInfo variants around the key: attributes, version 1 with a public key,
    // trailing bytes, a wrong namedCurve.
    let with_tail = |der: &[u8], tail: &[u8], version: u8| {
        let mut r = Reader::new(der);
        let info = r.expect(SEQUENCE, "info").unwrap();
        let mut body = info.to_vec();
        body[2] = version;
        body.extend_from_slice(tail);
        tlv(SEQUENCE, &body).to_vec()
    };
    let p521 = p521_pkcs8(&leading_zero_scalar(), true);
    for der in [SIGN_BYTES, &p521[..]] {
        same_verdict(&with_tail(der, &[CONTEXT_0, 0], 0));
        same_verdict(&with_tail(
            der,
            &tlv(CONTEXT_0, &tlv(SEQUENCE, &[OID, 3, 0x55, 4, 3])),
            0,
        ));
        same_verdict(&with_tail(der, &[0x81, 2, 0, 4], 1));
        same_verdict(&with_tail(der, &[0x81, 2, 0, 4], 0));
        same_verdict(&with_tail(der, &[], 1));
        same_verdict(&[der, &[0][..]].concat());
    }
    let other_curve = p521
        .windows(Curve::P521.params_der().len())
        .position(|w| w == Curve::P521.params_der())
        .map(|at| {
            let mut v = p521.clone();
            v[at..at + 7].copy_from_slice(&Curve::P384.params_der()[..7]);
            v
        })
        .unwrap();
    same_verdict(&other_curve);
}

/// Good input number `which` with `edits` applied: (position, value, kind) where kind
/// 0 sets a byte, 1 flips a bit, 2 truncates, 3 inserts.
fn mutated(which: usize, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut der = good_inputs().swap_remove(which);
    for &(at, value, kind) in edits {
        if der.is_empty() {
            break;
        }
        let at = at % der.len();
        match kind {
            0 => der[at] = value,
            1 => der[at] ^= 1 << (value % 8),
            2 => der.truncate(at),
            _ => der.insert(at, value),
        }
    }
    der
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        never_panics(&bytes);
    }

    /// Never a panic, and the emulator and byokd agree.
    #[test]
    fn mutated_keys(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..6),
    ) {
        let der = mutated(which, &edits);
        never_panics(&der);
        same_verdict(&der);
    }
}
