//! `/v1/credentials`: adding a credential (a client secret, or a certificate made in the HSM),
//! setting its expiry, and what the API shows of one (never the secret).

use super::Timestamp;
use crate::secret::SecretBytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A client secret in a request body. Read straight into a zeroizing buffer; written (by
/// `byokctl`) only into the request body. Neither `Debug` nor `Display`.
pub struct Secret(SecretBytes);

impl Secret {
    /// Takes the text without copying it.
    pub fn new(text: String) -> Self {
        Self(SecretBytes::new(text.into_bytes()))
    }

    pub fn into_bytes(self) -> SecretBytes {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(self.0.expose_secret())
            .map_err(|_| serde::ser::Error::custom("the secret is not UTF-8 text"))?;
        s.serialize_str(text)
    }
}

/// `POST /v1/credentials`: a client-secret credential (`secret`, optional `expires`) or a
/// certificate credential (`"certificate": true`, optional `validity_days`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub certificate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_days: Option<u32>,
    /// When the client secret expires (a reminder only; Azure enforces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// Sign in once with the secret before storing it, and refuse it with Entra's reason
    /// (`byokctl credential add` asks for this unless `--no-verify`). Without it the credential
    /// is stored unverified. Not for a certificate credential, whose certificate must be
    /// uploaded to the app registration first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify: bool,
}

/// `PATCH /v1/credentials/{credential}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialUpdate {
    /// `None`: unchanged (absent); `Some(None)`: cleared (`null`); `Some(Some(t))`: set.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<Option<Timestamp>>,
}

/// A field that is present (possibly `null`), told apart from one that is absent.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Timestamp>>, D::Error> {
    Option::<Timestamp>::deserialize(d).map(Some)
}

/// A credential as the API shows it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    /// `secret` or `certificate`.
    pub kind: String,
    /// Whether Entra ID has accepted a sign-in with it (at `add` with `verify`, or at the first
    /// job since). `false`: staged, not yet proved.
    pub verified: bool,
    pub fingerprint: String,
    pub created: Timestamp,
    pub expires: Option<Timestamp>,
    /// The key groups that use it.
    pub groups: Vec<String>,
}

/// `GET /v1/credentials`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialList {
    pub credentials: Vec<Credential>,
}

/// `GET /v1/credentials/{credential}/certificate`: the certificate to upload to the app
/// registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateExport {
    pub name: String,
    /// PEM (`-----BEGIN CERTIFICATE-----`).
    pub certificate_pem: String,
    /// SHA-1 thumbprint, upper-case hex, as the Azure portal shows it.
    pub thumbprint: String,
    /// base64url SHA-256 of the DER: the `x5t#S256` of PS256 assertions.
    pub x5t_s256: String,
    pub not_after: Option<Timestamp>,
}

/// `GET /v1/credentials/{credential}/certificate?format=csr`: a PKCS#10 request signed in the
/// HSM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialCsr {
    pub name: String,
    pub csr_pem: String,
}
