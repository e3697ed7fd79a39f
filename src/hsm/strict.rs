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

use crate::model::Curve;
use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
use zeroize::Zeroizing;

/// rsaEncryption (1.2.840.113549.1.1.1), OID content bytes.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey (1.2.840.10045.2.1), OID content bytes.
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_1: u8 = 0xa1;

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

/// A DER reader over one buffer: definite, minimal lengths only.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// The next TLV's tag and content.
    fn any(&mut self, what: &str) -> Result<(u8, &'a [u8]), String> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        let (&tag, rest) = rest
            .split_first()
            .ok_or_else(|| format!("{what} is missing"))?;
        let (&first, rest) = rest
            .split_first()
            .ok_or_else(|| format!("{what}: truncated length"))?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 {
                return Err(format!("{what}: indefinite length is not DER"));
            }
            if count > 3 {
                return Err(format!("{what}: a {count}-byte length is too long"));
            }
            let bytes = rest
                .get(..count)
                .ok_or_else(|| format!("{what}: truncated length"))?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if bytes[0] == 0 || len < 0x80 {
                return Err(format!("{what}: the length is not minimal (not DER)"));
            }
            (len, 2 + count)
        };
        let start = self.pos + header;
        let content = self
            .buf
            .get(start..start + len)
            .ok_or_else(|| format!("{what}: claims {len} bytes, fewer are present"))?;
        self.pos = start + len;
        Ok((tag, content))
    }

    /// The next TLV, which must carry `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        let (got, content) = self.any(what)?;
        if got != tag {
            return Err(format!("{what} has tag 0x{got:02x}, 0x{tag:02x} expected"));
        }
        Ok(content)
    }

    /// An INTEGER's magnitude (big-endian, no sign byte), by `mode`'s rules.
    fn integer(&mut self, what: &str, mode: Mode) -> Result<&'a [u8], String> {
        let content = self.expect(INTEGER, what)?;
        magnitude(content, what, mode)
    }

    /// Nothing may follow.
    fn end(&self, what: &str) -> Result<(), String> {
        if self.done() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected byte(s) after {what}",
                self.buf.len() - self.pos
            ))
        }
    }
}

/// The magnitude of a non-negative INTEGER. Strict: minimal two's complement, never negative.
/// Lenient: the content read as an unsigned number.
fn magnitude<'a>(content: &'a [u8], what: &str, mode: Mode) -> Result<&'a [u8], String> {
    match content {
        [] => Err(format!("INTEGER {what} is empty")),
        [first, ..] if *first >= 0x80 && mode == Mode::Strict => Err(format!(
            "INTEGER {what} is negative: its top bit is set and the 0x00 sign byte DER requires is missing"
        )),
        [0, second, ..] if *second < 0x80 && mode == Mode::Strict => Err(format!(
            "INTEGER {what} is not minimal: a superfluous leading 0x00 byte"
        )),
        _ => {
            let first = content
                .iter()
                .position(|b| *b != 0)
                .unwrap_or(content.len());
            Ok(&content[first..])
        }
    }
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

/// The integers of an RSAPrivateKey, as magnitudes (no sign byte, no leading zeros).
pub(crate) struct RsaParts {
    pub(crate) n: Vec<u8>,
    pub(crate) e: Vec<u8>,
    pub(crate) d: Zeroizing<Vec<u8>>,
    pub(crate) p: Zeroizing<Vec<u8>>,
    pub(crate) q: Zeroizing<Vec<u8>>,
    pub(crate) dp: Zeroizing<Vec<u8>>,
    pub(crate) dq: Zeroizing<Vec<u8>>,
    pub(crate) qinv: Zeroizing<Vec<u8>>,
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
    }
}

fn parse_rsa(key: &[u8], mode: Mode) -> Result<RsaParts, String> {
    let mut outer = Reader::new(key);
    let seq = outer.expect(SEQUENCE, "RSAPrivateKey")?;
    outer.end("the RSAPrivateKey")?;
    let mut r = Reader::new(seq);
    match r.integer("RSAPrivateKey.version", mode)? {
        [] => {}
        [1] => {
            return Err(
                "RSAPrivateKey is multi-prime (version 1); two-prime (0) is required".into(),
            );
        }
        _ => return Err("RSAPrivateKey.version is not 0".into()),
    }
    let mut int = |what: &str| r.integer(what, mode).map(<[u8]>::to_vec);
    let n = int("modulus")?;
    let e = int("publicExponent")?;
    let d = Zeroizing::new(int("privateExponent")?);
    let p = Zeroizing::new(int("prime1")?);
    let q = Zeroizing::new(int("prime2")?);
    let dp = Zeroizing::new(int("exponent1 (dP)")?);
    let dq = Zeroizing::new(int("exponent2 (dQ)")?);
    let qinv = Zeroizing::new(int("coefficient (qInv)")?);
    r.end("RSAPrivateKey.coefficient (otherPrimeInfos are not allowed)")?;
    Ok(RsaParts {
        n,
        e,
        d,
        p,
        q,
        dp,
        dq,
        qinv,
    })
}

fn parse_ec(key: &[u8], mode: Mode, curve: Curve) -> Result<Parsed, String> {
    let mut outer = Reader::new(key);
    let seq = outer.expect(SEQUENCE, "ECPrivateKey")?;
    outer.end("the ECPrivateKey")?;
    let mut r = Reader::new(seq);
    if r.integer("ECPrivateKey.version", mode)? != [1] {
        return Err("ECPrivateKey.version is not 1 (ecPrivkeyVer1)".to_owned());
    }
    let raw = r.expect(OCTET_STRING, "ECPrivateKey.privateKey")?;
    let want = scalar_len(curve);
    let scalar = match raw.len() {
        n if n == want => Zeroizing::new(raw.to_vec()),
        n if n < want && mode == Mode::Lenient => {
            let mut v = Zeroizing::new(vec![0u8; want]);
            v[want - n..].copy_from_slice(raw);
            v
        }
        n => {
            return Err(format!(
                "ECPrivateKey.privateKey is {n} bytes; RFC 5915 requires exactly {want} for {} (the byte length of the curve order){}",
                curve.azure_name(),
                if n < want {
                    format!(
                        ": the encoder dropped {} leading zero byte(s) of the private scalar",
                        want - n
                    )
                } else {
                    String::new()
                }
            ));
        }
    };
    if r.peek() == Some(CONTEXT_0) {
        let params = r.expect(CONTEXT_0, "ECPrivateKey.parameters")?;
        if params != curve.params_der() {
            return Err(format!(
                "ECPrivateKey.parameters do not name {} (OID {})",
                curve.azure_name(),
                curve.oid()
            ));
        }
    }
    let embedded = if r.peek() == Some(CONTEXT_1) {
        let wrapped = r.expect(CONTEXT_1, "ECPrivateKey.publicKey")?;
        let mut b = Reader::new(wrapped);
        let bits = b.expect(BIT_STRING, "ECPrivateKey.publicKey")?;
        b.end("ECPrivateKey.publicKey")?;
        match bits.split_first() {
            Some((0, point)) => Some(point.to_vec()),
            _ => {
                return Err(
                    "ECPrivateKey.publicKey is not a BIT STRING with 0 unused bits".to_owned(),
                );
            }
        }
    } else {
        None
    };
    r.end("ECPrivateKey.publicKey")?;
    Ok(Parsed::Ec {
        curve,
        scalar,
        embedded,
    })
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

    /// Canonical DER: RFC 5208 v1; RSA with NULL parameters and minimal INTEGERs; EC with a
    /// fixed-length scalar, the `[0]` namedCurve (RFC 5915 section 3: "MUST always include")
    /// and the `[1]` public key ("SHOULD"): a strict unwrapper that wants either finds it.
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        // Every buffer is built at its exact size (`concat`, `tlv`): a growing Vec would leave
        // the secret bytes of each outgrown allocation in freed memory, never zeroized.
        let (algorithm, inner) = match self {
            Parsed::Rsa(k) => {
                let ints = [
                    &[][..],
                    &k.n[..],
                    &k.e[..],
                    &k.d[..],
                    &k.p[..],
                    &k.q[..],
                    &k.dp[..],
                    &k.dq[..],
                    &k.qinv[..],
                ]
                .map(integer_tlv);
                let body = concat(&ints.each_ref().map(|v| &v[..]));
                let alg = concat(&[&tlv(OID, OID_RSA), &[NULL, 0]]);
                (tlv(SEQUENCE, &alg), tlv(SEQUENCE, &body))
            }
            Parsed::Ec { curve, scalar, .. } => {
                let point = public_point(*curve, scalar)?;
                let bits = concat(&[&[0u8], &point]);
                let body = concat(&[
                    &integer_tlv(&[1]),
                    &tlv(OCTET_STRING, scalar),
                    &tlv(CONTEXT_0, curve.params_der()),
                    &tlv(CONTEXT_1, &tlv(BIT_STRING, &bits)),
                ]);
                let alg = concat(&[&tlv(OID, OID_EC), curve.params_der()]);
                (tlv(SEQUENCE, &alg), tlv(SEQUENCE, &body))
            }
        };
        let info = concat(&[&integer_tlv(&[]), &algorithm, &tlv(OCTET_STRING, &inner)]);
        Ok(tlv(SEQUENCE, &info))
    }
}

/// `parts` joined into one buffer allocated once at its exact length.
fn concat(parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(parts.iter().map(|p| p.len()).sum()));
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

impl RsaParts {
    /// n = p·q, e·d ≡ 1 mod p-1 and q-1 (via the `rsa` crate), dP, dQ and qInv as RFC 8017
    /// defines them.
    fn check(&self) -> Result<(), String> {
        let bits = u32::try_from(self.n.len() * 8).map_err(|_| "the modulus is too long")?;
        let uint = |v: &[u8], bits: u32, what: &str| {
            rsa::BoxedUint::from_be_slice(v, bits)
                .map_err(|_| format!("RSAPrivateKey.{what} is larger than the modulus"))
        };
        let e_bits = u32::try_from(self.e.len().max(1) * 8).map_err(|_| "e is too long")?;
        let key = rsa::PrivateKey::from_components(
            uint(&self.n, bits, "modulus")?,
            uint(&self.e, e_bits, "publicExponent")?,
            uint(&self.d, bits, "privateExponent")?,
            vec![
                uint(&self.p, bits, "prime1")?,
                uint(&self.q, bits, "prime2")?,
            ],
        )
        .map_err(|e| {
            format!("the RSA key is inconsistent (n, e, d, p and q do not form a key): {e}")
        })?;
        // The values derived here are secret: held in `Zeroizing` while compared.
        let same = |v: Option<rsa::BoxedUint>, parsed: &[u8]| {
            v.map(Zeroizing::new)
                .is_some_and(|v| strip_zeros(&Zeroizing::new(v.to_be_bytes())) == parsed)
        };
        if !same(key.dp().cloned(), &self.dp) {
            return Err("RSAPrivateKey.exponent1 is not d mod (p-1)".to_owned());
        }
        if !same(key.dq().cloned(), &self.dq) {
            return Err("RSAPrivateKey.exponent2 is not d mod (q-1)".to_owned());
        }
        if !same(key.crt_coefficient(), &self.qinv) {
            return Err("RSAPrivateKey.coefficient is not q^-1 mod p".to_owned());
        }
        if strip_zeros(&key.n().to_be_bytes()) != self.n {
            return Err("the RSA modulus is not p·q".to_owned());
        }
        Ok(())
    }
}

/// The uncompressed public point of `scalar` (fixed length) on `curve`; refuses 0 and >= n.
pub(crate) fn public_point(curve: Curve, scalar: &[u8]) -> Result<Vec<u8>, String> {
    macro_rules! point {
        ($c:ident) => {{
            use $c::elliptic_curve::sec1::ToSec1Point as _;
            let field = <&$c::FieldBytes>::try_from(scalar)
                .map_err(|_| "the EC private scalar has the wrong length".to_owned())?;
            let key = $c::SecretKey::from_bytes(field).map_err(|_| {
                format!(
                    "the EC private scalar is not in [1, n-1] for {}",
                    curve.azure_name()
                )
            })?;
            key.public_key()
                .as_affine()
                .to_sec1_point(false)
                .as_bytes()
                .to_vec()
        }};
    }
    Ok(match curve {
        Curve::P256 => point!(p256),
        Curve::P384 => point!(p384),
        Curve::P521 => point!(p521),
        Curve::P256K => point!(k256),
    })
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    super::host::strip_zeros(bytes)
}

/// A DER TLV, allocated once (no reallocation leaves a copy of the content behind).
fn tlv(tag: u8, content: &[u8]) -> Zeroizing<Vec<u8>> {
    let len = content.len();
    let mut out = Zeroizing::new(Vec::with_capacity(len + 10));
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A minimal DER INTEGER of the non-negative magnitude `v` (no leading zeros; empty is 0).
fn integer_tlv(v: &[u8]) -> Zeroizing<Vec<u8>> {
    tlv(INTEGER, &integer_content(v))
}

/// The minimal two's complement content of the non-negative magnitude `v`.
fn integer_content(v: &[u8]) -> Zeroizing<Vec<u8>> {
    let v = strip_zeros(v);
    let mut content = Zeroizing::new(Vec::with_capacity(v.len() + 1));
    if v.first().is_none_or(|b| *b >= 0x80) {
        content.push(0);
    }
    content.extend_from_slice(v);
    content
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const SIGN_BYTES: &[u8] = include_bytes!("fixtures/rsa-sign-bytes.der");

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
            let s = crate::hsm::conformance::edge_scalar(Curve::P256, zeros);
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
        let s = crate::hsm::conformance::edge_scalar(Curve::P256, 1);
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

    mod fuzz {
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
                    (
                        Ok(byokd_emulator::PublicKey::Rsa { n, .. }),
                        Ok(Expected::Rsa { modulus }),
                    ) => {
                        assert_eq!(n, modulus);
                    }
                    (
                        Ok(byokd_emulator::PublicKey::Ec { x, y, .. }),
                        Ok(Expected::Ec { point, .. }),
                    ) => {
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
    }
}
