//! The key exchange key of an offline transfer (docs/byok-protocol.md#offline-transfer): the
//! public key an officer downloaded with `az keyvault key download --encoding PEM`, and the KEK's
//! key id, both checked before anything is wrapped under them.
//!
//! Owns only the parsing and the checks. [`OfflineKek`] is made only by [`OfflineKek::parse`], so
//! a wrap for a `.byok` file never runs under a key that is not an RSA 2048/3072/4096 public key
//! or names a kid outside the group's own target.

use crate::hsm::KekPublicKey;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use rustls_pki_types::pem::{self, SectionKind};

/// The largest PEM file taken: a 4096-bit SPKI is under 1 KiB as PEM.
pub const MAX_PEM_BYTES: usize = 16 * 1024;

/// The RSA sizes Azure makes KEKs of.
const KEK_BITS: [usize; 3] = [2048, 3072, 4096];

/// Why a KEK file or kid was refused. Each message says what to give instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfflineKekError {
    #[error(
        "the KEK file is not a PEM public key: {reason}; download the KEK's public key with `az keyvault key download --encoding PEM` and give that file"
    )]
    NotPem { reason: String },
    #[error(
        "the KEK file holds a private key: never copy a private key to the appliance; give the KEK's public key (`az keyvault key download --encoding PEM`)"
    )]
    PrivateKey,
    #[error(
        "the KEK is a {algorithm} key; Azure's key exchange keys are RSA (2048, 3072 or 4096 bits): create the KEK with `az keyvault key create --kty RSA-HSM --ops import`"
    )]
    NotRsa { algorithm: String },
    #[error(
        "the KEK is RSA {bits} bits; Azure's key exchange keys are RSA 2048, 3072 or 4096 bits"
    )]
    Size { bits: usize },
    #[error("the KEK's public key is not usable: {reason}")]
    Malformed { reason: String },
    #[error(
        "the KEK id {kid:?} is not a versioned key URL of {expected} (https://{expected}/keys/NAME/VERSION): {reason}; copy the `kid` that `az keyvault key show` prints for the KEK"
    )]
    Kid {
        kid: String,
        expected: String,
        reason: String,
    },
}

impl OfflineKekError {
    /// The request field at fault: `kek_pem` or `kek_kid`.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Kid { .. } => "kek_kid",
            _ => "kek_pem",
        }
    }
}

/// A checked KEK: an RSA 2048/3072/4096 public key and its versioned kid on the expected host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineKek {
    kid: String,
    public: KekPublicKey,
    bits: usize,
}

impl OfflineKek {
    /// Checks `pem` (the KEK's public key) and `kid`, which must be a versioned key URL on
    /// `expected_host` (the group's vault or Managed HSM pool, in the configured cloud).
    pub fn parse(pem: &[u8], kid: &str, expected_host: &str) -> Result<Self, OfflineKekError> {
        let (public, bits) = public_key(pem)?;
        let kid = checked_kid(kid, expected_host)?;
        Ok(Self { kid, public, bits })
    }

    /// The versioned kid, as the file's header carries it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public(&self) -> &KekPublicKey {
        &self.public
    }

    pub fn bits(&self) -> usize {
        self.bits
    }
}

/// The RSA public key of the first `PUBLIC KEY` block of `pem`, and its size in bits.
fn public_key(pem_text: &[u8]) -> Result<(KekPublicKey, usize), OfflineKekError> {
    if pem_text.len() > MAX_PEM_BYTES {
        return Err(OfflineKekError::NotPem {
            reason: format!("it is {} bytes, more than a public key", pem_text.len()),
        });
    }
    let mut reader = pem_text;
    let der = loop {
        match pem::from_buf(&mut reader) {
            Ok(Some((SectionKind::PublicKey, der))) => break der,
            Ok(Some((SectionKind::PrivateKey | SectionKind::RsaPrivateKey, _)))
            | Ok(Some((SectionKind::EcPrivateKey, _))) => return Err(OfflineKekError::PrivateKey),
            Ok(Some(_)) => continue,
            Ok(None) => {
                return Err(OfflineKekError::NotPem {
                    reason: "it has no -----BEGIN PUBLIC KEY----- block".into(),
                });
            }
            Err(e) => {
                return Err(OfflineKekError::NotPem {
                    reason: e.to_string(),
                });
            }
        }
    };
    let info = spki::SubjectPublicKeyInfoRef::try_from(der.as_slice()).map_err(|e| {
        OfflineKekError::Malformed {
            reason: e.to_string(),
        }
    })?;
    const RSA: &str = "1.2.840.113549.1.1.1";
    let oid = info.algorithm.oid.to_string();
    if oid != RSA {
        let algorithm = match oid.as_str() {
            "1.2.840.10045.2.1" => "EC".to_owned(),
            "1.3.101.112" => "Ed25519".to_owned(),
            other => format!("non-RSA (algorithm {other})"),
        };
        return Err(OfflineKekError::NotRsa { algorithm });
    }
    let key =
        rsa::PublicKey::from_public_key_der(&der).map_err(|e| OfflineKekError::Malformed {
            reason: e.to_string(),
        })?;
    let bits = key.n().bit_width() as usize;
    if !KEK_BITS.contains(&bits) {
        return Err(OfflineKekError::Size { bits });
    }
    let strip = |v: Vec<u8>| -> Vec<u8> { v.into_iter().skip_while(|b| *b == 0).collect() };
    Ok((
        KekPublicKey {
            n: strip(key.n().to_be_bytes().to_vec()),
            e: strip(key.e().to_be_bytes().to_vec()),
        },
        bits,
    ))
}

/// `kid` if it is `https://{expected_host}/keys/{name}/{version}`: https, the host (case
/// insensitive, port 443 at most), a key name of 1-127 letters, digits and dashes, and a
/// 32-character hex version.
fn checked_kid(kid: &str, expected_host: &str) -> Result<String, OfflineKekError> {
    let refuse = |reason: &str| OfflineKekError::Kid {
        kid: kid.chars().take(300).collect(),
        expected: expected_host.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = kid.parse().map_err(|_| refuse("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(refuse("it is not an https URL"));
    }
    let authority = uri.authority().ok_or_else(|| refuse("it names no host"))?;
    if authority.as_str().contains('@') {
        return Err(refuse("it carries user information"));
    }
    if !matches!(authority.port_u16(), None | Some(443)) {
        return Err(refuse("it names a port other than 443"));
    }
    if !authority.host().eq_ignore_ascii_case(expected_host) {
        return Err(refuse(&format!(
            "its host {} is not the group's target",
            authority.host()
        )));
    }
    if uri.query().is_some() {
        return Err(refuse("it carries a query"));
    }
    let parts: Vec<&str> = uri.path().split('/').collect();
    let (name, version) = match parts.as_slice() {
        ["", "keys", _] | ["", "keys", _, ""] => {
            return Err(refuse(
                "it has no version (the file needs the versioned kid)",
            ));
        }
        ["", "keys", name, version] => (*name, *version),
        _ => return Err(refuse("its path is not /keys/NAME/VERSION")),
    };
    let name_ok = (1..=127).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !name_ok {
        return Err(refuse(
            "the key name is not 1-127 letters, digits and dashes",
        ));
    }
    if version.len() != 32 || !version.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refuse("the version is not 32 hex characters"));
    }
    Ok(format!(
        "https://{}/keys/{name}/{version}",
        expected_host.to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::EncodePublicKey as _;

    const HOST: &str = "contoso.vault.azure.net";
    const KID: &str = "https://contoso.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef";

    fn pem_of(bits: usize) -> String {
        let key = rsa::PrivateKey::new(&mut rand::rng(), bits).unwrap();
        key.to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
    }

    #[test]
    fn an_azure_sized_rsa_kek_with_its_versioned_kid_is_taken() {
        let kek = OfflineKek::parse(pem_of(2048).as_bytes(), KID, HOST).unwrap();
        assert_eq!(kek.bits(), 2048);
        assert_eq!(kek.kid(), KID);
        assert_eq!(kek.public().e, vec![1, 0, 1]);
        assert_eq!(kek.public().n.len(), 256);
    }

    #[test]
    fn other_sizes_keys_and_files_are_refused_naming_the_field() {
        let small = OfflineKek::parse(pem_of(1024).as_bytes(), KID, HOST).unwrap_err();
        assert_eq!(small, OfflineKekError::Size { bits: 1024 });
        assert_eq!(small.field(), "kek_pem");
        let ec = p256::SecretKey::from_slice(&[7u8; 32])
            .unwrap()
            .public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        assert!(matches!(
            OfflineKek::parse(ec.as_bytes(), KID, HOST),
            Err(OfflineKekError::NotRsa { algorithm }) if algorithm == "EC"
        ));
        assert!(matches!(
            OfflineKek::parse(b"hello", KID, HOST),
            Err(OfflineKekError::NotPem { .. })
        ));
        let private = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            OfflineKek::parse(private.as_bytes(), KID, HOST),
            Err(OfflineKekError::PrivateKey)
        );
    }

    #[test]
    fn a_kid_outside_the_target_or_without_a_version_is_refused() {
        let pem = pem_of(2048);
        for kid in [
            "https://other.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef",
            "https://contoso.vault.azure.cn/keys/kek/0123456789abcdef0123456789abcdef",
            "http://contoso.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef",
            "https://contoso.vault.azure.net:8443/keys/kek/0123456789abcdef0123456789abcdef",
            "https://contoso.vault.azure.net/keys/kek",
            "https://contoso.vault.azure.net/keys/kek/",
            "https://contoso.vault.azure.net/secrets/kek/0123456789abcdef0123456789abcdef",
            "https://contoso.vault.azure.net/keys/k_k/0123456789abcdef0123456789abcdef",
            "https://contoso.vault.azure.net/keys/kek/xyz",
            "contoso.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef",
        ] {
            let e = OfflineKek::parse(pem.as_bytes(), kid, HOST).unwrap_err();
            assert_eq!(e.field(), "kek_kid", "{kid}: {e}");
        }
        // Host case and an explicit :443 are the same target.
        let kek = OfflineKek::parse(
            pem.as_bytes(),
            "https://CONTOSO.vault.azure.net:443/keys/kek/0123456789ABCDEF0123456789abcdef",
            HOST,
        )
        .unwrap();
        assert_eq!(
            kek.kid(),
            "https://contoso.vault.azure.net/keys/kek/0123456789ABCDEF0123456789abcdef"
        );
    }
}
