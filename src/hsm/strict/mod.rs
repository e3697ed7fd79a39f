//! The strict parser for transfer plaintext, and the canonical encoder of the `host` strategy.
//!
//! Owns: what "a conforming PKCS#8" means for byokd. One DER PrivateKeyInfo (RFC 5208: version 0,
//! no trailing bytes, only `[0] attributes` after the key) holding either an RSAPrivateKey
//! (RFC 8017 A.1.2: two-prime, `rsaEncryption` with NULL parameters, every INTEGER minimal and
//! positive, n = p·q, d, dP, dQ and qInv consistent) or an ECPrivateKey (RFC 5915: version 1,
//! `privateKey` exactly ceil(log2(order)/8) bytes, scalar in [1, n-1], `id-ecPublicKey` with the
//! namedCurve OID, optional `[0]` naming the same curve, optional `[1]` equal to the derived
//! public point), checked against what the token says the key is (modulus, curve, public point).
//! Also: re-encoding a token's slightly non-conforming PKCS#8 (short EC scalar, non-minimal or
//! unsigned INTEGERs) canonically, for the `host` strategy, which has the plaintext in hand.
//! Must never: put key material in an error or `Debug` (errors name fields, lengths and rules
//! only), or keep decoded secret integers outside `Zeroizing`.
//!
//! Files: `der` (the DER reader and the exact-size writers), `rsa_key` (RSAPrivateKey and its
//! consistency rules), `ec_key` (ECPrivateKey and the public point), `encode` (the canonical
//! re-encoding), `tests`.

mod der;
mod ec_key;
mod encode;
mod rsa_key;
#[cfg(test)]
mod tests;

use ec_key::parse_ec;
pub(crate) use ec_key::public_point;
pub(crate) use rsa_key::RsaParts;
use rsa_key::parse_rsa;

use crate::model::Curve;
use der::{CONTEXT_0, NULL, OCTET_STRING, OID, OID_EC, OID_RSA, Reader, SEQUENCE, strip_zeros};
use zeroize::Zeroizing;

/// What the token says the private key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expected {
    /// An RSA key with this modulus (big-endian; leading zeros ignored).
    Rsa { modulus: Vec<u8> },
    /// An EC key on `curve`; when known, its uncompressed public point `04 || X || Y`.
    Ec {
        curve: Curve,
        point: Option<Vec<u8>>,
    },
    /// An AES key of `len` bytes: its transfer blob holds the raw key value, not PKCS#8.
    Aes { len: usize },
}

/// How strictly to read: `Strict` refuses every deviation; `Lenient` reads the deviations a
/// token is known to make (a short EC scalar, non-minimal or unsigned INTEGERs, absent RSA
/// NULL parameters) so that the key can be re-encoded. Structure is never guessed in either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Strict,
    Lenient,
}

/// The byte length RFC 5915 requires of `ECPrivateKey.privateKey`: ceil(log2(order)/8). For the
/// four curves byokd supports the order has as many bytes as the field (P-521: 521 bits, 66).
pub(crate) fn scalar_len(curve: Curve) -> usize {
    curve.field_bytes()
}

/// Checks a transfer blob's plaintext: the raw value of an AES key of exactly the expected
/// length, or exactly one conforming PKCS#8 PrivateKeyInfo of the expected key pair.
pub(crate) fn check_plaintext(plain: &[u8], expected: &Expected) -> Result<(), String> {
    match expected {
        Expected::Aes { len } if plain.len() == *len => Ok(()),
        Expected::Aes { len } => Err(format!(
            "the AES key's raw value is {} bytes, not {len}",
            plain.len()
        )),
        Expected::Rsa { .. } | Expected::Ec { .. } => check_pkcs8(plain, expected),
    }
}

/// Checks that `der` is exactly one conforming PKCS#8 PrivateKeyInfo of the expected key.
pub(crate) fn check_pkcs8(der: &[u8], expected: &Expected) -> Result<(), String> {
    let key = parse(der, Mode::Strict, expected)?;
    key.check(expected)
}

/// Re-encodes the token's PKCS#8 of the expected key canonically (see `Mode::Lenient`) and
/// proves the result conforms. The key itself is unchanged: the check compares it with the
/// token's modulus or public point.
pub(crate) fn canonical_pkcs8(
    der: &[u8],
    expected: &Expected,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let key = parse(der, Mode::Lenient, expected)?;
    key.check(expected)?;
    let out = key.encode()?;
    check_pkcs8(&out, expected)?;
    Ok(out)
}

/// A decoded key, secrets in `Zeroizing` buffers (magnitudes, no leading zeros, except the EC
/// scalar, which has the curve's fixed length).
enum Parsed {
    Rsa(RsaParts),
    Ec {
        curve: Curve,
        scalar: Zeroizing<Vec<u8>>,
        /// The `[1] publicKey` point, if present.
        embedded: Option<Vec<u8>>,
    },
}

/// The integers of a conforming RSA PKCS#8 (the self-test's fixtures).
pub(crate) fn rsa_parts(der: &[u8]) -> Result<RsaParts, String> {
    let any = Expected::Rsa {
        modulus: Vec::new(),
    };
    match parse(der, Mode::Strict, &any)? {
        Parsed::Rsa(parts) => {
            parts.check()?;
            Ok(parts)
        }
        Parsed::Ec { .. } => Err("not an RSA key".to_owned()),
    }
}

fn parse(der: &[u8], mode: Mode, expected: &Expected) -> Result<Parsed, String> {
    let mut outer = Reader::new(der);
    let info = outer.expect(SEQUENCE, "PrivateKeyInfo")?;
    outer.end("the PrivateKeyInfo")?;
    let mut r = Reader::new(info);
    if !r.integer("PrivateKeyInfo.version", mode)?.is_empty() {
        return Err("PrivateKeyInfo.version is not 0 (RFC 5208 v1)".to_owned());
    }
    let algorithm = r.expect(SEQUENCE, "privateKeyAlgorithm")?;
    let key = r.expect(OCTET_STRING, "PrivateKeyInfo.privateKey")?;
    if !r.done() {
        let (tag, _) = r.any("PrivateKeyInfo.attributes")?;
        if tag != CONTEXT_0 {
            return Err(format!(
                "PrivateKeyInfo has a field with tag 0x{tag:02x} after privateKey; RFC 5208 allows only [0] attributes"
            ));
        }
        r.end("PrivateKeyInfo.attributes")?;
    }
    let mut a = Reader::new(algorithm);
    let oid = a.expect(OID, "privateKeyAlgorithm.algorithm")?;
    match expected {
        Expected::Rsa { .. } => {
            if oid != OID_RSA {
                return Err("privateKeyAlgorithm is not rsaEncryption, for an RSA key".to_owned());
            }
            if a.done() {
                if mode == Mode::Strict {
                    return Err(
                        "rsaEncryption parameters are absent; RFC 8017 requires NULL".to_owned(),
                    );
                }
            } else if !a.expect(NULL, "rsaEncryption parameters")?.is_empty() {
                return Err("rsaEncryption parameters are not NULL".to_owned());
            }
            a.end("the rsaEncryption parameters")?;
            parse_rsa(key, mode).map(Parsed::Rsa)
        }
        Expected::Ec { curve, .. } => {
            if oid != OID_EC {
                return Err("privateKeyAlgorithm is not id-ecPublicKey, for an EC key".to_owned());
            }
            let named = a.expect(OID, "id-ecPublicKey parameters (namedCurve)")?;
            if named != &curve.params_der()[2..] {
                return Err(format!(
                    "the namedCurve parameter is not {} (OID {})",
                    curve.azure_name(),
                    curve.oid()
                ));
            }
            a.end("the namedCurve parameter")?;
            parse_ec(key, mode, *curve)
        }
        Expected::Aes { .. } => {
            Err("an AES key's transfer blob holds its raw value, not a PKCS#8 structure".to_owned())
        }
    }
}

impl Parsed {
    /// The key rules and the comparison with what the token says.
    fn check(&self, expected: &Expected) -> Result<(), String> {
        match (self, expected) {
            (Parsed::Rsa(parts), Expected::Rsa { modulus }) => {
                parts.check()?;
                if parts.n != strip_zeros(modulus) {
                    return Err("the RSA modulus differs from the token's key".to_owned());
                }
                Ok(())
            }
            (
                Parsed::Ec {
                    curve,
                    scalar,
                    embedded,
                },
                Expected::Ec { point, .. },
            ) => {
                let derived = public_point(*curve, scalar)?;
                if embedded.as_ref().is_some_and(|e| *e != derived) {
                    return Err(
                        "ECPrivateKey.publicKey is not the public point of its private scalar"
                            .to_owned(),
                    );
                }
                if point.as_ref().is_some_and(|p| *p != derived) {
                    return Err(
                        "the EC private key is not the token's key (its public point differs)"
                            .to_owned(),
                    );
                }
                Ok(())
            }
            _ => Err("the key's family differs from the token's".to_owned()),
        }
    }
}
