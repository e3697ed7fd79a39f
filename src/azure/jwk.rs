//! Comparing the public key Azure reports for an imported version with the HSM's SPKI, and the
//! fingerprint tag that finds an import again after a lost response.

use crate::azure::JsonWebKey;
use sha2::{Digest, Sha256};

/// The tag that carries a key's fingerprint on its Azure version.
pub const FINGERPRINT_TAG: &str = "byokd-fingerprint";

/// Full SHA-256 (hex, lower case) of the SPKI DER: the tag value that identifies an import.
pub fn fingerprint(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
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
