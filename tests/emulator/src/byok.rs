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

/// Unwrap with the KEK private key: RSA-OAEP(SHA-1) then AES-KWP, then strict PKCS#8. Returns
/// the public key and the PKCS#8 itself; the caller keeps the PKCS#8 only when a test asked
/// for it (see `EmulatorHandle::retain_imported_private_keys`), and zeroes it otherwise.
pub(crate) fn unwrap_blob(
    kek: &rsa::PrivateKey,
    ciphertext: &[u8],
    declared: Declared,
) -> Result<(PublicKey, Vec<u8>), String> {
    let k = kek.size();
    if ciphertext.len() <= k {
        return Err(format!(
            "the ciphertext ({} bytes) is too short for a {}-bit KEK",
            ciphertext.len(),
            k * 8
        ));
    }
    let (rsa_part, kwp_part) = ciphertext.split_at(k);
    let aes_key = kek.oaep_decrypt::<sha1::Sha1>(rsa_part).map_err(|_| {
        "the wrapping key could not be decrypted with the KEK (RSA-OAEP SHA-1)".to_owned()
    })?;
    if aes_key.len() != 32 {
        return Err(format!(
            "the wrapping key is {} bytes; an AES-256 key (32 bytes) is required",
            aes_key.len()
        ));
    }
    if kwp_part.len() < 16 || kwp_part.len() % 8 != 0 {
        return Err("the AES-KWP part of the ciphertext has an invalid length".into());
    }
    let kwp = KwpAes256::new_from_slice(&aes_key)
        .map_err(|_| "the wrapping key is not a valid AES-256 key".to_owned())?;
    let mut buf = vec![0u8; kwp_part.len()];
    let plain = kwp.unwrap_key(kwp_part, &mut buf).map_err(|_| {
        "the target key could not be unwrapped (RFC 5649 AES-KWP integrity check failed)".to_owned()
    })?;
    let plain_len = plain.len();
    let result = parse_pkcs8_strict(plain, declared);
    let out = result.map(|public| (public, buf[..plain_len].to_vec()));
    buf.iter_mut().for_each(|b| *b = 0);
    out
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
}
