//! Comparing the public key Azure reports for an imported version with the HSM's SPKI, and the
//! fingerprint tag that finds an import again after a lost response.

use crate::azure::JsonWebKey;
use crate::hsm::KeyIdentity;
use crate::model::HsmKeyId;
use sha2::{Digest, Sha256};

/// The tag that carries a key's fingerprint on its Azure version.
pub const FINGERPRINT_TAG: &str = "byokd-fingerprint";

/// Full SHA-256 (hex, lower case) of the SPKI DER: the tag value that identifies an import.
pub fn fingerprint(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// The fingerprint tag of HSM key `id`: of its SPKI for a key pair; for an AES key, which has no
/// public half and whose 3-byte KCV alone is too short to tell keys apart, SHA-256 over
/// `byokd oct-HSM/{HSM key id}/{bits}/{KCV}`.
pub fn identity_fingerprint(identity: &KeyIdentity, id: HsmKeyId) -> String {
    match identity {
        KeyIdentity::Public(p) => fingerprint(&p.spki_der),
        KeyIdentity::Secret(s) => {
            fingerprint(format!("byokd oct-HSM/{}/{}/{}", id.to_hex(), s.bits, s.kcv).as_bytes())
        }
    }
}

/// Whether the JWK Azure reports is the key `identity`: the same public key; for an AES key an
/// oct key (Azure never returns an oct key's material, so the key itself cannot be compared:
/// Managed HSM's own RFC 5649 integrity check proved the import).
pub fn jwk_matches(jwk: &JsonWebKey, identity: &KeyIdentity) -> bool {
    match identity {
        KeyIdentity::Public(p) => jwk_matches_spki(jwk, &p.spki_der),
        KeyIdentity::Secret(_) => {
            matches!(jwk.kty.as_deref(), Some("oct-HSM" | "oct"))
                && jwk.n.is_none()
                && jwk.x.is_none()
        }
    }
}

/// Whether the JWK's public key is the one in `spki_der`.
pub fn jwk_matches_spki(jwk: &JsonWebKey, spki_der: &[u8]) -> bool {
    let Ok(spki) = spki::SubjectPublicKeyInfoRef::try_from(spki_der) else {
        return false;
    };
    let point = spki.subject_public_key.raw_bytes();
    match (
        JsonWebKey::decode(jwk.n.as_deref()),
        JsonWebKey::decode(jwk.e.as_deref()),
    ) {
        (Some(n), Some(e)) => rsa_matches(spki_der, &n, &e),
        _ => match (
            JsonWebKey::decode(jwk.x.as_deref()),
            JsonWebKey::decode(jwk.y.as_deref()),
        ) {
            (Some(x), Some(y)) => {
                let mut want = vec![0x04];
                want.extend_from_slice(&x);
                want.extend_from_slice(&y);
                point == want.as_slice()
            }
            _ => false,
        },
    }
}

fn rsa_matches(spki_der: &[u8], n: &[u8], e: &[u8]) -> bool {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    #[allow(deprecated)]
    let Ok(key) = rsa::RsaPublicKey::from_public_key_der(spki_der) else {
        return false;
    };
    let strip = |b: &[u8]| -> Vec<u8> { b.iter().skip_while(|x| **x == 0).copied().collect() };
    strip(&key.n().to_be_bytes()) == strip(n) && strip(&key.e().to_be_bytes()) == strip(e)
}
