//! A cloud credential: an Azure app registration (tenant, client id) and how byokd proves it is
//! that app: a client secret sealed by the HSM, or a certificate whose private key lives in it.
//!
//! The secret is only ever held here sealed by the HSM; the plaintext never enters this type.
//! Variants are only ever appended, so that states written before a variant existed still decode.

use super::{CredentialName, Guid, HsmKeyId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How the credential authenticates to Entra ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialAuth {
    /// A client secret, sealed with AES-GCM by a key inside the HSM (the credential name is the
    /// associated data). Only the HSM can unseal it.
    Secret { sealed: Vec<u8> },
    /// A certificate credential: an RSA signing key generated in the HSM (never extractable)
    /// and the X.509 certificate of its public key that the operator uploads to the app
    /// registration. Client assertions are signed in the HSM.
    Certificate {
        key_id: HsmKeyId,
        certificate_der: Vec<u8>,
    },
    /// A credential no sign-in has proved yet: added with `--no-verify`, a certificate credential
    /// before its certificate is uploaded, or one added through the API without `verify`. The
    /// first sign-in Entra accepts unwraps it. Never nested.
    Unverified(Box<CredentialAuth>),
}

impl CredentialAuth {
    /// `secret` or `certificate`, as views and the API name the kind.
    pub fn kind(&self) -> &'static str {
        match self.material() {
            CredentialAuth::Certificate { .. } => "certificate",
            _ => "secret",
        }
    }

    /// How the credential signs in, whether proved or not.
    pub fn material(&self) -> &CredentialAuth {
        match self {
            CredentialAuth::Unverified(inner) => inner.material(),
            other => other,
        }
    }

    /// Whether a sign-in with it has succeeded.
    pub fn verified(&self) -> bool {
        !matches!(self, CredentialAuth::Unverified(_))
    }

    /// Marks it as not yet proved by a sign-in.
    pub fn unverified(self) -> CredentialAuth {
        match self {
            CredentialAuth::Unverified(inner) => CredentialAuth::Unverified(inner),
            other => CredentialAuth::Unverified(Box::new(other)),
        }
    }

    /// Marks it as proved by a sign-in.
    pub fn into_verified(self) -> CredentialAuth {
        match self {
            CredentialAuth::Unverified(inner) => inner.into_verified(),
            other => other,
        }
    }
}

/// The certificate thumbprint the Azure portal shows: SHA-1 over the DER, upper-case hex.
pub fn certificate_thumbprint(certificate_der: &[u8]) -> String {
    hex::encode_upper(sha1::Sha1::digest(certificate_der))
}

/// An Azure app registration byokd signs in with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub name: CredentialName,
    pub tenant_id: Guid,
    pub client_id: Guid,
    pub auth: CredentialAuth,
    /// A short, non-reversible fingerprint of the secret (see [`secret_fingerprint`]), or the
    /// certificate's thumbprint (see [`certificate_thumbprint`]).
    pub fingerprint: String,
    /// Unix seconds, UTC.
    pub created: i64,
    /// An expiry date the operator set (unix seconds, UTC), for warnings ahead of it.
    pub expires: Option<i64>,
}

/// The earliest `expires` accepted: 2000-01-01T00:00:00Z (unix seconds).
pub const EXPIRES_MIN: i64 = 946_684_800;
/// The latest `expires` accepted: 9999-12-31T23:59:59Z, the last second a four-digit year
/// can show (unix seconds).
pub const EXPIRES_MAX: i64 = 253_402_300_799;

/// Checks an operator-set expiry: unix seconds from [`EXPIRES_MIN`] to [`EXPIRES_MAX`], so every
/// date byokd shows and compares is a real calendar date (an `i64` past it overflows the date
/// conversions and the "expires in" arithmetic).
pub fn check_expires(secs: i64) -> Result<i64, super::ModelError> {
    if (EXPIRES_MIN..=EXPIRES_MAX).contains(&secs) {
        Ok(secs)
    } else {
        Err(super::ModelError::new(
            "expires",
            format!(
                "{} is not a date byokd accepts: use a date from 2000-01-01T00:00:00Z to 9999-12-31T23:59:59Z",
                crate::clock::rfc3339(secs)
            ),
        ))
    }
}

/// The fingerprint shown instead of a secret: the first 8 hex digits of SHA-256 over a
/// domain-separated `name || 0x00 || secret`. It lets an operator tell two secrets apart and
/// compare with a secret they hold, while 32 bits reveal nothing useful about a secret.
pub fn secret_fingerprint(name: &CredentialName, secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"byokd credential fingerprint v1\0");
    h.update(name.as_str().as_bytes());
    h.update([0u8]);
    h.update(secret);
    hex::encode(&h.finalize()[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The certificate variant was appended: a secret credential encodes exactly as before
    /// (variant 0), so states written before it existed still decode without a format bump.
    #[test]
    fn secret_auth_keeps_its_encoding_and_certificate_round_trips() {
        let secret = CredentialAuth::Secret {
            sealed: vec![1, 2, 3],
        };
        assert_eq!(postcard::to_allocvec(&secret).unwrap(), [0, 3, 1, 2, 3]);
        let cert = CredentialAuth::Certificate {
            key_id: HsmKeyId([7; 16]),
            certificate_der: vec![0x30, 0x00],
        };
        let bytes = postcard::to_allocvec(&cert).unwrap();
        assert_eq!(bytes[0], 1);
        assert_eq!(
            postcard::from_bytes::<CredentialAuth>(&bytes).unwrap(),
            cert
        );
        assert_eq!(cert.kind(), "certificate");
        // Unverified was appended too: variant 2 around the proved shape, both ways.
        let staged = secret.clone().unverified();
        assert_eq!(postcard::to_allocvec(&staged).unwrap(), [2, 0, 3, 1, 2, 3]);
        assert!(!staged.verified() && secret.verified());
        assert_eq!(staged.kind(), "secret");
        assert_eq!(staged.clone().unverified(), staged);
        assert_eq!(staged.into_verified(), secret);
        assert_eq!(
            certificate_thumbprint(b"abc"),
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
    }
}
