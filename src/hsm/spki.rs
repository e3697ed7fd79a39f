//! SubjectPublicKeyInfo DER from a public key object's PKCS#11 attributes, and check digits.
//!
//! Owns: turning CKA_MODULUS/CKA_PUBLIC_EXPONENT or CKA_EC_PARAMS/CKA_EC_POINT into SPKI DER,
//! strictly: an unknown curve, a wrapped point with trailing bytes or a point of the wrong
//! length is an error, never a best guess.
//! Must never: call PKCS#11 or see private key material. It is pure, so it is unit-tested here.

use crate::model::Curve;
use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierRef, EncodePublicKey, SubjectPublicKeyInfoRef};

/// id-ecPublicKey (RFC 5480).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// First 4 hex digits, upper case, of SHA-256 over the SPKI DER.
pub fn check_digits(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    hex::encode_upper(&digest[..2])
}

/// SPKI DER of an RSA public key from its big-endian modulus and public exponent.
pub fn rsa_spki(modulus: &[u8], public_exponent: &[u8]) -> Result<(Vec<u8>, u32), String> {
    let n = uint(modulus, "modulus")?;
    let e = uint(public_exponent, "public exponent")?;
    let key = rsa::PublicKey::new(n, e).map_err(|e| format!("not a valid RSA public key: {e}"))?;
    let bits = key.n().as_ref().bit_width();
    let der = key
        .to_public_key_der()
        .map_err(|e| format!("encoding the RSA SPKI failed: {e}"))?;
    Ok((der.as_bytes().to_vec(), bits))
}

fn uint(be: &[u8], what: &str) -> Result<rsa::BoxedUint, String> {
    let trimmed = match be.iter().position(|b| *b != 0) {
        Some(first) => &be[first..],
        None => return Err(format!("the {what} is zero or empty")),
    };
    let bits = u32::try_from(trimmed.len() * 8).map_err(|_| format!("the {what} is too long"))?;
    rsa::BoxedUint::from_be_slice(trimmed, bits)
        .map_err(|e| format!("the {what} is not an integer: {e:?}"))
}

/// The curve named by a CKA_EC_PARAMS value (a DER namedCurve OID), if byokd supports it.
pub fn curve_from_params(params: &[u8]) -> Result<Curve, String> {
    Curve::ALL
        .into_iter()
        .find(|c| c.params_der() == params)
        .ok_or_else(|| {
            format!(
                "CKA_EC_PARAMS {} is not a supported named curve",
                hex::encode(params)
            )
        })
}

/// SPKI DER of an EC public key from CKA_EC_PARAMS and CKA_EC_POINT.
///
/// PKCS#11 (and SoftHSM) return CKA_EC_POINT as a DER OCTET STRING that wraps the uncompressed
/// point `04 || X || Y`. The wrapper is removed strictly (no trailing bytes), and the point is
/// checked for the leading 0x04 and the curve's exact length.
pub fn ec_spki(params: &[u8], ec_point: &[u8]) -> Result<(Vec<u8>, Curve), String> {
    let (point, curve) = ec_point_of(params, ec_point)?;
    let parameters =
        AnyRef::from_der(params).map_err(|e| format!("CKA_EC_PARAMS is not DER: {e}"))?;
    let info = SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(parameters),
        },
        subject_public_key: BitStringRef::new(0, point).map_err(|e| format!("EC point: {e}"))?,
    };
    let der = info
        .to_der()
        .map_err(|e| format!("encoding the EC SPKI failed: {e}"))?;
    Ok((der, curve))
}

/// The uncompressed point `04 || X || Y` inside CKA_EC_POINT, checked as `ec_spki` describes.
pub(crate) fn ec_point_of<'a>(
    params: &[u8],
    ec_point: &'a [u8],
) -> Result<(&'a [u8], Curve), String> {
    let curve = curve_from_params(params)?;
    let point = <&OctetStringRef>::from_der(ec_point)
        .map_err(|e| format!("CKA_EC_POINT is not a DER OCTET STRING: {e}"))?
        .as_bytes();
    let want = 1 + 2 * curve.field_bytes();
    if point.len() != want {
        return Err(format!(
            "EC point for {} is {} bytes, expected {want} (uncompressed)",
            curve.azure_name(),
            point.len()
        ));
    }
    if point.first() != Some(&0x04) {
        return Err("EC point is not in uncompressed form (no leading 0x04)".to_owned());
    }
    Ok((point, curve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_are_four_upper_hex_of_sha256() {
        // SHA-256("abc") = ba7816bf...
        assert_eq!(check_digits(b"abc"), "BA78");
    }

    #[test]
    fn ec_point_wrapper_is_unwrapped_strictly() {
        let mut point = vec![0x04];
        point.extend([0x11; 64]);
        let mut wrapped = vec![0x04, 65];
        wrapped.extend(&point);
        let (der, curve) = ec_spki(Curve::P256.params_der(), &wrapped).unwrap();
        assert_eq!(curve, Curve::P256);
        let parsed = spki::SubjectPublicKeyInfoRef::from_der(&der).unwrap();
        assert_eq!(parsed.algorithm.oid, ID_EC_PUBLIC_KEY);
        assert_eq!(parsed.subject_public_key.raw_bytes(), &point[..]);

        let mut trailing = wrapped.clone();
        trailing.push(0);
        assert!(ec_spki(Curve::P256.params_der(), &trailing).is_err());
        assert!(
            ec_spki(Curve::P256.params_der(), &point).is_err(),
            "a bare point is refused"
        );
        assert!(
            ec_spki(Curve::P384.params_der(), &wrapped).is_err(),
            "wrong length for the curve"
        );
        let mut compressed = wrapped.clone();
        compressed[2] = 0x02;
        assert!(ec_spki(Curve::P256.params_der(), &compressed).is_err());
        assert!(
            ec_spki(&[0x06, 0x03, 0x2b, 0x65, 0x70], &wrapped).is_err(),
            "Ed25519 OID is not a curve here"
        );
    }

    #[test]
    fn rsa_spki_round_trips_and_trims_leading_zeroes() {
        let mut n = vec![0x00, 0xc5];
        n.extend([0x5a; 254]);
        n.push(0x5b); // odd, as a modulus must be
        let (der, bits) = rsa_spki(&n, &[0x00, 0x01, 0x00, 0x01]).unwrap();
        assert_eq!(bits, 2048);
        let key = rsa::PublicKey::try_from(spki::SubjectPublicKeyInfoRef::from_der(&der).unwrap())
            .unwrap();
        assert_eq!(
            key.e()
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect::<Vec<_>>(),
            [1, 0, 1]
        );
        assert!(rsa_spki(&[], &[3]).is_err());
    }
}
