//! The BYOK transfer blob: parsing `key_hsm`, and unwrapping it with the KEK's private key.
//!
//! Every check Azure is known (or assumed, conservatively) to make is made here. Plaintext key
//! bytes exist only inside `unwrap_blob` and are zeroized-by-drop in the rsa/aes-kw types; the
//! emulator keeps only the derived public key.

use aes_kw::KwpAes256;
use aes_kw::cipher::KeyInit as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::Value;

use crate::keys::{Declared, PublicKey, parse_pkcs8_strict};
use crate::util::b64url_decode;

/// The parsed (not yet decrypted) blob.
#[derive(Debug)]
pub(crate) struct Blob {
    /// Versioned kid of the KEK, as given.
    pub kid: String,
    /// RSA part || KWP part.
    pub ciphertext: Vec<u8>,
}

/// Parse `key_hsm` (base64url of the blob JSON).
pub(crate) fn parse_key_hsm(key_hsm: &str) -> Result<Blob, String> {
    let raw = b64url_decode(key_hsm)
        .ok_or("key_hsm is not valid base64url (unpadded, URL-safe alphabet)")?;
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|e| format!("key_hsm does not contain a valid JSON transfer blob: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("the transfer blob is not a JSON object")?;
    for k in obj.keys() {
        if !["schema_version", "header", "ciphertext", "generator"].contains(&k.as_str()) {
            return Err(format!("the transfer blob has an unknown property '{k}'"));
        }
    }
    match obj.get("schema_version").and_then(Value::as_str) {
        Some("1.0.0") => {}
        Some(other) => {
            return Err(format!(
                "unsupported transfer blob schema_version '{other}'"
            ));
        }
        None => return Err("the transfer blob has no schema_version".into()),
    }
    if let Some(g) = obj.get("generator")
        && !g.is_string()
    {
        return Err("the transfer blob generator must be a string".into());
    }
    let header = obj
        .get("header")
        .and_then(Value::as_object)
        .ok_or("the transfer blob has no header object")?;
    for k in header.keys() {
        if !["kid", "alg", "enc"].contains(&k.as_str()) {
            return Err(format!(
                "the transfer blob header has an unknown property '{k}'"
            ));
        }
    }
    if header.get("alg").and_then(Value::as_str) != Some("dir") {
        return Err("the transfer blob header alg must be 'dir'".into());
    }
    if header.get("enc").and_then(Value::as_str) != Some("CKM_RSA_AES_KEY_WRAP") {
        return Err("the transfer blob header enc must be 'CKM_RSA_AES_KEY_WRAP'".into());
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or("the transfer blob header has no kid")?
        .to_owned();
    let ct = obj
        .get("ciphertext")
        .and_then(Value::as_str)
        .ok_or("the transfer blob has no ciphertext")?;
    let ciphertext =
        b64url_decode(ct).ok_or("the transfer blob ciphertext is not valid base64url")?;
    Ok(Blob { kid, ciphertext })
}

/// A parsed KEK id.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KekId {
    pub host: String,
    pub name: String,
    pub version: String,
}

/// Parse `https://{host}/keys/{name}/{version}`; the version is required.
pub(crate) fn parse_kid(kid: &str) -> Result<KekId, String> {
    let rest = kid
        .strip_prefix("https://")
        .ok_or_else(|| format!("the KEK kid '{kid}' is not an https Key Vault key identifier"))?;
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| format!("the KEK kid '{kid}' has no path"))?;
    let host = host
        .strip_suffix(":443")
        .unwrap_or(host)
        .to_ascii_lowercase();
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["keys", name, version] if !name.is_empty() && !version.is_empty() => Ok(KekId {
            host,
            name: name.to_string(),
            version: version.to_ascii_lowercase(),
        }),
        ["keys", _] | ["keys", _, ""] => Err(format!(
            "the KEK kid '{kid}' must be a versioned key identifier"
        )),
        _ => Err(format!(
            "the KEK kid '{kid}' is not a Key Vault key identifier"
        )),
    }
}

/// RSA-OAEP(SHA-1) with the KEK to the AES-256 wrapping key, then RFC 5649 unwrap with its
/// integrity check. The caller zeroes the plaintext it gets.
fn open(kek: &rsa::PrivateKey, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
    let k = kek.size();
    if ciphertext.len() <= k {
        return Err(format!(
            "the ciphertext ({} bytes) is too short for a {}-bit KEK",
            ciphertext.len(),
            k * 8
        ));
    }
    let (rsa_part, kwp_part) = ciphertext.split_at(k);
    let mut aes_key = kek.oaep_decrypt::<sha1::Sha1>(rsa_part).map_err(|_| {
        "the wrapping key could not be decrypted with the KEK (RSA-OAEP SHA-1)".to_owned()
    })?;
    let result = (|| {
        if aes_key.len() != 32 {
            return Err(format!(
                "the wrapping key is {} bytes; an AES-256 key (32 bytes) is required",
                aes_key.len()
            ));
        }
        if kwp_part.len() < 16 || kwp_part.len() % 8 != 0 {
            return Err("the AES-KWP part of the ciphertext has an invalid length".to_owned());
        }
        let kwp = KwpAes256::new_from_slice(&aes_key)
            .map_err(|_| "the wrapping key is not a valid AES-256 key".to_owned())?;
        let mut buf = vec![0u8; kwp_part.len()];
        match kwp.unwrap_key(kwp_part, &mut buf).map(|p| p.len()) {
            Ok(len) => {
                buf.truncate(len);
                Ok(buf)
            }
            Err(_) => {
                buf.iter_mut().for_each(|b| *b = 0);
                Err(
                    "the target key could not be unwrapped (RFC 5649 AES-KWP integrity check failed)"
                        .to_owned(),
                )
            }
        }
    })();
    aes_key.iter_mut().for_each(|b| *b = 0);
    result
}

/// Unwrap with the KEK private key: RSA-OAEP(SHA-1) then AES-KWP, then strict PKCS#8. Returns
/// the public key and the PKCS#8 itself; the caller keeps the PKCS#8 only when a test asked
/// for it (see `EmulatorHandle::retain_imported_private_keys`), and zeroes it otherwise.
pub(crate) fn unwrap_blob(
    kek: &rsa::PrivateKey,
    ciphertext: &[u8],
    declared: Declared,
) -> Result<(PublicKey, Vec<u8>), String> {
    let mut plain = open(kek, ciphertext)?;
    let result = parse_pkcs8_strict(&plain, declared).map(|public| (public, plain.clone()));
    plain.iter_mut().for_each(|b| *b = 0);
    result
}

/// The key check value of a raw AES key: the first 3 bytes of AES-ECB(key, 16 zero bytes), hex,
/// upper case. `None` for a length that is not an AES key's.
pub fn aes_kcv(raw: &[u8]) -> Option<String> {
    use aes_kw::aes::cipher::{BlockCipherEncrypt as _, KeyInit as _};
    let mut block = [0u8; 16].into();
    match raw.len() {
        16 => aes_kw::aes::Aes128::new_from_slice(raw)
            .ok()?
            .encrypt_block(&mut block),
        24 => aes_kw::aes::Aes192::new_from_slice(raw)
            .ok()?
            .encrypt_block(&mut block),
        32 => aes_kw::aes::Aes256::new_from_slice(raw)
            .ok()?
            .encrypt_block(&mut block),
        _ => return None,
    }
    Some(hex::encode_upper(&block[..3]))
}

/// Unwraps an `oct-HSM` blob as Managed HSM does: RSA-OAEP(SHA-1) to an AES-256 wrapping key,
/// then RFC 5649 unwrap with its integrity check, then the raw key value itself, which must be
/// exactly 16, 24 or 32 bytes (a PKCS#8 structure or anything else is refused). Returns the size
/// in bits and the key check value; the key is zeroed before this returns.
pub(crate) fn unwrap_oct_blob(
    kek: &rsa::PrivateKey,
    ciphertext: &[u8],
) -> Result<(u32, String), String> {
    let mut raw = open(kek, ciphertext)?;
    let len = raw.len();
    let result = match aes_kcv(&raw) {
        Some(kcv) => Ok((u32::try_from(len * 8).unwrap_or(0), kcv)),
        None => Err(format!(
            "the key material of an oct-HSM key must be the raw AES key (16, 24 or 32 bytes), not {len} bytes"
        )),
    };
    raw.iter_mut().for_each(|b| *b = 0);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::b64url;
    use serde_json::json;

    const KID: &str = "https://v1.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef";

    fn blob(v: Value) -> String {
        b64url(v.to_string().as_bytes())
    }

    fn good() -> Value {
        json!({"schema_version":"1.0.0","header":{"kid":KID,"alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"},"ciphertext":"AAEC","generator":"test"})
    }

    #[test]
    fn a_well_formed_blob_parses() {
        let b = parse_key_hsm(&blob(good())).unwrap();
        assert_eq!(b.kid, KID);
        assert_eq!(b.ciphertext, vec![0, 1, 2]);
    }

    #[test]
    fn every_blob_field_is_checked() {
        let mut cases = Vec::new();
        for (path, val) in [
            ("/schema_version", json!("2.0.0")),
            ("/header/alg", json!("RSA-OAEP")),
            ("/header/enc", json!("A256GCM")),
            ("/header/kid", json!(5)),
            ("/ciphertext", json!("AA==")),
            ("/generator", json!(1)),
            ("/extra", json!("x")),
            ("/header/extra", json!("x")),
        ] {
            let mut v = good();
            let (parent, key) = path.rsplit_once('/').unwrap();
            let target = if parent.is_empty() {
                &mut v
            } else {
                v.pointer_mut(parent).unwrap()
            };
            target[key] = val;
            cases.push(v);
        }
        for field in ["schema_version", "header", "ciphertext"] {
            let mut v = good();
            v.as_object_mut().unwrap().remove(field);
            cases.push(v);
        }
        for v in cases {
            assert!(parse_key_hsm(&blob(v.clone())).is_err(), "{v}");
        }
        // Padded or standard-alphabet base64 of the blob is refused too.
        assert!(parse_key_hsm(&format!("{}==", blob(good()))).is_err());
        let std_alphabet = format!("{}+/", blob(good()));
        assert!(parse_key_hsm(&std_alphabet).is_err());
    }

    #[test]
    fn kek_ids_must_be_versioned_key_identifiers() {
        let k = parse_kid(KID).unwrap();
        assert_eq!(
            (k.host.as_str(), k.name.as_str()),
            ("v1.vault.azure.net", "kek")
        );
        let k =
            parse_kid("https://V1.vault.azure.net:443/keys/kek/0123456789ABCDEF0123456789ABCDEF")
                .unwrap();
        assert_eq!(k.host, "v1.vault.azure.net");
        assert_eq!(k.version, "0123456789abcdef0123456789abcdef");
        for bad in [
            "https://v1.vault.azure.net/keys/kek",
            "https://v1.vault.azure.net/keys/kek/",
            "http://v1.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef",
            "https://v1.vault.azure.net/secrets/kek/0123456789abcdef0123456789abcdef",
        ] {
            assert!(parse_kid(bad).is_err(), "{bad}");
        }
    }

    /// AES known answers (zero key, zero block): FIPS-197 test vectors as widely published.
    #[test]
    fn the_kcv_is_the_first_three_bytes_of_the_zero_block_encryption() {
        assert_eq!(aes_kcv(&[0u8; 16]).unwrap(), "66E94B");
        assert_eq!(aes_kcv(&[0u8; 24]).unwrap(), "AAE069");
        assert_eq!(aes_kcv(&[0u8; 32]).unwrap(), "DC95C0");
        assert_eq!(aes_kcv(&[0u8; 20]), None);
    }

    fn wrap(kek: &rsa::PrivateKey, plaintext: &[u8], tamper: bool) -> Vec<u8> {
        let eph = [7u8; 32];
        let mut out = kek
            .to_public_key()
            .oaep_encrypt::<sha1::Sha1>(&eph)
            .unwrap();
        let kwp = KwpAes256::new_from_slice(&eph).unwrap();
        let mut buf = vec![0u8; plaintext.len().div_ceil(8) * 8 + 8];
        let n = kwp.wrap_key(plaintext, &mut buf).unwrap().len();
        buf.truncate(n);
        if tamper {
            buf[3] ^= 1;
        }
        out.extend(buf);
        out
    }

    #[test]
    fn an_oct_blob_unwraps_only_to_a_raw_aes_key_with_integrity() {
        let kek = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
        for len in [16usize, 24, 32] {
            let raw: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5c).collect();
            let (bits, kcv) = unwrap_oct_blob(&kek, &wrap(&kek, &raw, false)).unwrap();
            assert_eq!(bits as usize, len * 8);
            assert_eq!(kcv, aes_kcv(&raw).unwrap());
        }
        let raw = [1u8; 32];
        let tampered = unwrap_oct_blob(&kek, &wrap(&kek, &raw, true)).unwrap_err();
        assert!(tampered.contains("integrity check failed"), "{tampered}");
        for len in [8usize, 20, 40, 67] {
            let err = unwrap_oct_blob(&kek, &wrap(&kek, &vec![1u8; len], false)).unwrap_err();
            assert!(err.contains("raw AES key"), "{len}: {err}");
        }
        let short = unwrap_oct_blob(&kek, &[0u8; 100]).unwrap_err();
        assert!(short.contains("too short"), "{short}");
    }
}
