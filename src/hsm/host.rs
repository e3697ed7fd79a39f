//! Host-side cryptography for the wrap strategies: RFC 5649 (AES-KWP) and RSA-OAEP-SHA1 with the
//! `aes-kw` and `rsa` crates, and the exact-length DER trim.
//!
//! Owns: the transfer ciphertext layout (`RSA-OAEP-SHA1(kek, aes) || AES-KWP(aes, plaintext)`)
//! and unwrapping a token's padded key wrap (both RFC 5649 and SoftHSM 2.6.1's zero-padded
//! variant). The strict PKCS#8 check is `strict`'s.
//! Must never: put key material in an error, a log or `Debug`; keep plaintext in a buffer that is
//! not `Zeroizing`; return plaintext with trailing bytes.
//!
//! Plaintext buffers here are heap `Zeroizing` vectors that are dropped as soon as the
//! re-wrapped ciphertext exists. They are not locked page by page: the daemon `mlockall()`s its
//! whole address space at start-up, so they never reach swap.

use aes_kw::KwpAes256;
use aes_kw::cipher::KeyInit as _;
use rand::TryRng as _;
use zeroize::Zeroizing;

/// Length of an AES-256 key.
pub(crate) const AES256_LEN: usize = 32;
/// The largest plaintext byokd wraps: an RSA-4096 PKCS#8 is about 2.4 KB.
const MAX_PLAINTEXT: usize = 16 * 1024;

/// A fresh AES-256 key from the operating system's RNG.
pub(crate) fn random_aes256() -> Result<Zeroizing<[u8; AES256_LEN]>, String> {
    let mut key = Zeroizing::new([0u8; AES256_LEN]);
    rand::rngs::SysRng
        .try_fill_bytes(&mut key[..])
        .map_err(|e| format!("the operating system RNG failed: {e}"))?;
    Ok(key)
}

/// The KWP output length for a plaintext of `len` bytes: `8*ceil(len/8) + 8`.
pub(crate) fn kwp_len(len: usize) -> usize {
    len.div_ceil(8) * 8 + 8
}

/// RFC 5649 wrap of `plaintext` under `key`.
pub(crate) fn kwp_wrap(key: &[u8; AES256_LEN], plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let kwp = KwpAes256::new_from_slice(key).map_err(|_| "AES-256 key of wrong length")?;
    let mut out = vec![0u8; kwp_len(plaintext.len())];
    let n = kwp
        .wrap_key(plaintext, &mut out)
        .map_err(|e| format!("AES-KWP wrap failed: {e}"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Unwraps a token's padded AES key wrap. An RFC 5649 token gives the plaintext; SoftHSM 2.6.1's
/// CKM_AES_KEY_WRAP_PAD zero-pads first and puts the *padded* length in the IV, so the result
/// is the plaintext plus 1–7 zero bytes. Callers trim (`trim_der`) or compare accordingly.
pub(crate) fn kwp_unwrap(
    key: &[u8; AES256_LEN],
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, String> {
    let kwp = KwpAes256::new_from_slice(key).map_err(|_| "AES-256 key of wrong length")?;
    if wrapped.len() < 16 || !wrapped.len().is_multiple_of(8) || wrapped.len() > MAX_PLAINTEXT + 8 {
        return Err(format!(
            "the wrapped key is {} bytes, not a valid AES key wrap length",
            wrapped.len()
        ));
    }
    let mut buf = Zeroizing::new(vec![0u8; wrapped.len() - 8]);
    let n = kwp
        .unwrap_key(wrapped, &mut buf)
        .map_err(|_| "the token's key wrap does not unwrap as AES-KWP (integrity check failed)")?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// How a token's padded AES key wrap relates to RFC 5649, from a known-answer test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KwpBehaviour {
    /// Byte-identical to RFC 5649.
    Rfc5649,
    /// Unwraps to the plaintext plus zero padding (SoftHSM 2.6.1's CKM_AES_KEY_WRAP_PAD).
    ZeroPadded,
    /// Neither.
    Unusable,
}

/// Classifies `token_output`, the token's wrap of `secret` under `key`.
pub(crate) fn classify_kwp(
    key: &[u8; AES256_LEN],
    secret: &[u8],
    token_output: &[u8],
) -> Result<KwpBehaviour, String> {
    if kwp_wrap(key, secret)? == token_output {
        return Ok(KwpBehaviour::Rfc5649);
    }
    let Ok(plain) = kwp_unwrap(key, token_output) else {
        return Ok(KwpBehaviour::Unusable);
    };
    let padded = plain.len() > secret.len()
        && plain.len() - secret.len() < 8
        && plain.starts_with(secret)
        && plain[secret.len()..].iter().all(|b| *b == 0);
    Ok(if padded {
        KwpBehaviour::ZeroPadded
    } else {
        KwpBehaviour::Unusable
    })
}

/// Cuts `buf` to the exact length of the DER SEQUENCE it starts with. What follows must be at
/// most 7 zero bytes (SoftHSM's padding); anything else is an error.
pub(crate) fn trim_der(buf: &mut Zeroizing<Vec<u8>>) -> Result<(), String> {
    let total = der_sequence_len(buf)?;
    if total > buf.len() {
        return Err(format!(
            "the unwrapped key claims {total} bytes of DER but only {} are present",
            buf.len()
        ));
    }
    let rest = &buf[total..];
    if rest.len() >= 8 || rest.iter().any(|b| *b != 0) {
        return Err(format!(
            "the unwrapped key has {} bytes after its DER that are not key wrap padding",
            rest.len()
        ));
    }
    // Zeroizing<Vec> zeroizes the whole capacity on drop, so truncation loses nothing.
    buf.truncate(total);
    Ok(())
}

/// The total length (header + content) of the definite-length SEQUENCE at the start of `der`.
fn der_sequence_len(der: &[u8]) -> Result<usize, String> {
    let bad = |why: &str| format!("the unwrapped key is not a DER SEQUENCE: {why}");
    match der.first() {
        Some(0x30) => {}
        _ => return Err(bad("wrong tag")),
    }
    let first = *der.get(1).ok_or_else(|| bad("truncated length"))?;
    if first < 0x80 {
        return Ok(2 + usize::from(first));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 3 {
        return Err(bad("unsupported length form"));
    }
    let bytes = der
        .get(2..2 + count)
        .ok_or_else(|| bad("truncated length"))?;
    if bytes[0] == 0 {
        return Err(bad("non-minimal length"));
    }
    let len = bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    if len < 0x80 {
        return Err(bad("non-minimal length"));
    }
    Ok(2 + count + len)
}

/// `bytes` without leading zero bytes.
pub(crate) fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// The KEK as an `rsa` public key.
pub(crate) fn kek_key(n: &[u8], e: &[u8]) -> Result<rsa::PublicKey, String> {
    let (n, e) = (strip_zeros(n), strip_zeros(e));
    let bits = u32::try_from(n.len() * 8).map_err(|_| "modulus too large")?;
    let n = rsa::BoxedUint::from_be_slice(n, bits).map_err(|e| format!("modulus: {e}"))?;
    let e = rsa::BoxedUint::from_be_slice(e, 64).map_err(|e| format!("exponent: {e}"))?;
    rsa::PublicKey::new(n, e).map_err(|e| format!("not a valid RSA public key: {e}"))
}

/// RSA-OAEP with SHA-1, MGF1-SHA-1 and an empty label, as Azure's BYOK specifies.
pub(crate) fn oaep_sha1_encrypt(kek: &rsa::PublicKey, plaintext: &[u8]) -> Result<Vec<u8>, String> {
    kek.oaep_encrypt::<sha1::Sha1>(plaintext)
        .map_err(|e| format!("RSA-OAEP-SHA1 encryption failed: {e}"))
}

/// RSA-OAEP-SHA1 decryption (self-tests only: the private key is the host's test key).
pub(crate) fn oaep_sha1_decrypt(
    key: &rsa::PrivateKey,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, String> {
    key.oaep_decrypt::<sha1::Sha1>(ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| "RSA-OAEP-SHA1 decryption failed".to_owned())
}

/// `RSA-OAEP-SHA1(kek, k2) || AES-KWP(k2, der)` with a fresh random k2.
pub(crate) fn transfer_ciphertext(kek: &rsa::PublicKey, der: &[u8]) -> Result<Vec<u8>, String> {
    let k2 = random_aes256()?;
    let mut out = oaep_sha1_encrypt(kek, &k2[..])?;
    out.extend(kwp_wrap(&k2, der)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];

    #[test]
    fn rfc5649_vector_with_padding() {
        // RFC 5649 section 6, second example (7 octets under a 192-bit key) is for AES-192;
        // here: round trip and the length rule for every class mod 8.
        for len in 1..40 {
            let secret: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let wrapped = kwp_wrap(&KEY, &secret).unwrap();
            assert_eq!(wrapped.len(), kwp_len(len));
            assert_eq!(&kwp_unwrap(&KEY, &wrapped).unwrap()[..], &secret[..]);
            assert_eq!(
                classify_kwp(&KEY, &secret, &wrapped).unwrap(),
                KwpBehaviour::Rfc5649
            );
        }
    }

    #[test]
    fn softhsm_style_zero_padding_is_recognised() {
        let secret = [0xA5u8; 13];
        let mut padded = secret.to_vec();
        padded.resize(16, 0);
        // SoftHSM: zero-pad, then wrap with the padded length in the IV.
        let wrapped = kwp_wrap(&KEY, &padded).unwrap();
        assert_eq!(
            classify_kwp(&KEY, &secret, &wrapped).unwrap(),
            KwpBehaviour::ZeroPadded
        );
        assert_eq!(
            classify_kwp(&[8u8; 32], &secret, &wrapped).unwrap(),
            KwpBehaviour::Unusable
        );
    }

    #[test]
    fn trim_der_cuts_padding_and_refuses_garbage() {
        let mut short = Zeroizing::new(vec![0x30, 0x03, 1, 2, 3, 0, 0, 0]);
        trim_der(&mut short).unwrap();
        assert_eq!(&short[..], &[0x30, 0x03, 1, 2, 3]);

        let mut content = vec![0x30, 0x81, 0x80];
        content.extend([9u8; 0x80]);
        content.extend([0u8; 5]);
        let mut long = Zeroizing::new(content);
        trim_der(&mut long).unwrap();
        assert_eq!(long.len(), 3 + 0x80);

        for bad in [
            vec![0x30, 0x03, 1, 2, 3, 0, 1],
            vec![0x30, 0x03, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![0x31, 0x01, 0],
            vec![0x30, 0x05, 1],
            vec![0x30, 0x81, 0x05, 1, 2, 3, 4, 5],
            vec![0x30, 0x80, 0, 0],
        ] {
            assert!(
                trim_der(&mut Zeroizing::new(bad.clone())).is_err(),
                "{bad:?}"
            );
        }
    }
}
