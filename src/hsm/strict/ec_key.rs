//! ECPrivateKey (RFC 5915): the reader (fixed-length scalar, optional `[0]` curve and `[1]`
//! public key) and the public point derived from a scalar.

use super::der::{BIT_STRING, CONTEXT_0, CONTEXT_1, OCTET_STRING, Reader, SEQUENCE};
use super::{Mode, Parsed, scalar_len};
use crate::model::Curve;
use zeroize::Zeroizing;

pub(super) fn parse_ec(key: &[u8], mode: Mode, curve: Curve) -> Result<Parsed, String> {
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
