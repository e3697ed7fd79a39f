//! The X.509 certificate and PKCS#10 CSR of a certificate credential, built with `rcgen` around
//! a signing key that stays in the HSM: rcgen encodes the DER, the token makes the signature
//! (sha256WithRSAEncryption, CKM_SHA256_RSA_PKCS).
//!
//! Must never: see the private key (only its public half and signatures cross this module).

use super::ServiceError;
use crate::hsm::{Hsm, HsmError, SignatureScheme};
use crate::model::{CredentialName, HsmKeyId};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    PKCS_RSA_SHA256, PublicKeyData, SerialNumber, SignatureAlgorithm, SigningKey,
};
use std::sync::Mutex;
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

/// Default validity of a self-signed credential certificate.
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;
/// Longest validity byokd issues (Entra accepts certificates up to this and beyond; shorter is
/// better practice).
pub const MAX_VALIDITY_DAYS: u32 = 3650;

/// A signing key in the HSM, as rcgen sees it. rcgen signs synchronously, so this must only be
/// used on a blocking thread (`spawn_blocking`), where it waits for the HSM worker.
struct HsmSigningKey {
    hsm: Hsm,
    id: HsmKeyId,
    /// The `subjectPublicKey` content: the PKCS#1 RSAPublicKey DER.
    rsa_public_key: Vec<u8>,
    runtime: tokio::runtime::Handle,
    failure: Mutex<Option<HsmError>>,
}

impl PublicKeyData for HsmSigningKey {
    fn der_bytes(&self) -> &[u8] {
        &self.rsa_public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_RSA_SHA256
    }
}

impl SigningKey for HsmSigningKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signed = self
            .runtime
            .block_on(self.hsm.sign(self.id, SignatureScheme::Rs256, msg));
        signed.map_err(|e| {
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

/// What to put in the certificate or CSR.
fn params(
    credential: &CredentialName,
    validity_days: u32,
    now: OffsetDateTime,
) -> Result<CertificateParams, ServiceError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(encode_error)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("byokd credential {credential}"));
    dn.push(DnType::OrganizationName, "byokd");
    p.distinguished_name = dn;
    // A little back-dating absorbs clock skew between the appliance and Entra ID.
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(i64::from(validity_days));
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(p)
}

fn encode_error(e: rcgen::Error) -> ServiceError {
    ServiceError::Certificate(format!("cannot encode the certificate: {e}"))
}

/// The RSAPublicKey inside an SPKI.
fn rsa_public_key(spki_der: &[u8]) -> Result<Vec<u8>, ServiceError> {
    let (rest, spki) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| {
            ServiceError::Certificate(format!("the HSM public key is not an SPKI: {e}"))
        })?;
    if !rest.is_empty() {
        return Err(ServiceError::Certificate(
            "the HSM public key has trailing bytes".into(),
        ));
    }
    Ok(spki.subject_public_key.data.to_vec())
}

/// What a build produces.
pub(crate) enum Artefact {
    /// A self-signed certificate, DER, and its `notAfter` (unix seconds).
    Certificate { der: Vec<u8>, not_after: i64 },
    /// A PKCS#10 certificate signing request, PEM.
    Csr { pem: String },
}

/// Builds a self-signed certificate or a CSR for the credential's HSM key. Runs rcgen on a
/// blocking thread; each signature is one HSM request.
pub(crate) async fn build(
    hsm: &Hsm,
    credential: &CredentialName,
    id: HsmKeyId,
    spki_der: &[u8],
    validity_days: u32,
    csr: bool,
    now: OffsetDateTime,
) -> Result<Artefact, ServiceError> {
    let key = HsmSigningKey {
        hsm: hsm.clone(),
        id,
        rsa_public_key: rsa_public_key(spki_der)?,
        runtime: tokio::runtime::Handle::current(),
        failure: Mutex::new(None),
    };
    let mut params = params(credential, validity_days, now)?;
    if csr {
        // The CA chooses the serial number.
        params.serial_number = None;
    }
    let not_after = params.not_after.unix_timestamp();
    let joined = tokio::task::spawn_blocking(move || {
        let built = if csr {
            params
                .serialize_request(&key)
                .and_then(|r| r.pem())
                .map(|pem| Artefact::Csr { pem })
        } else {
            params.self_signed(&key).map(|c| Artefact::Certificate {
                der: c.der().to_vec(),
                not_after,
            })
        };
        let failure = key.failure.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (built, failure) {
            (Ok(a), _) => Ok(a),
            (Err(_), Some(hsm)) => Err(ServiceError::Hsm(hsm)),
            (Err(e), None) => Err(encode_error(e)),
        }
    })
    .await;
    joined
        .map_err(|e| ServiceError::Certificate(format!("the certificate builder stopped: {e}")))?
}
