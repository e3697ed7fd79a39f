//! Credential signing keys: RSA key pairs that sign Entra ID client assertions and the
//! credential's certificate or CSR, inside the token.
//!
//! Owns: the signing-key template (RSA-3072, CKA_SENSITIVE, not CKA_EXTRACTABLE, sign only), the
//! `byokd-cred/{credential}` label namespace, and `C_Sign` with CKM_SHA256_RSA_PKCS_PSS (PS256:
//! MGF1-SHA256, 32-byte salt) or CKM_SHA256_RSA_PKCS (RS256).
//! Must never: create a signing key that can be extracted (wrapped or read), or sign with a key
//! outside its namespace.

use super::fresh_id::{Failed, make_with_fresh_id};
use super::handles::{Half, Handles, Lookup};
use super::keygen::read_public;
use super::{GeneratedKey, HsmError};
use crate::model::HsmKeyId;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::Attribute;
use cryptoki::session::Session;

/// Every credential signing key is labelled `byokd-cred/{credential}`.
pub const SIGNING_LABEL_PREFIX: &str = "byokd-cred/";

/// Modulus size of credential signing keys. 3072 bits: NIST's 128-bit level, accepted by Entra
/// ID for certificate credentials, and fast enough to sign one assertion per token.
pub const SIGNING_KEY_BITS: u64 = 3072;

/// How a signature is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (JWT `PS256`).
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (JWT `RS256`, X.509 sha256WithRSAEncryption).
    Rs256,
}

impl SignatureScheme {
    fn mechanism(self) -> (Mechanism<'static>, &'static str) {
        match self {
            SignatureScheme::Ps256 => (
                Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32.into(),
                }),
                "CKM_SHA256_RSA_PKCS_PSS",
            ),
            SignatureScheme::Rs256 => (Mechanism::Sha256RsaPkcs, "CKM_SHA256_RSA_PKCS"),
        }
    }
}

/// The CKA_LABEL of a credential's signing key.
pub fn signing_label(credential: &str) -> String {
    format!("{SIGNING_LABEL_PREFIX}{credential}")
}

/// Generates an RSA-3072 signing key pair that can never leave the token; the handles of both
/// halves are kept in `handles`.
pub(crate) fn generate(
    session: &Session,
    handles: &Handles,
    label: &str,
) -> Result<GeneratedKey, HsmError> {
    let made = make_with_fresh_id(session, "credential signing key", |id| {
        let common = [
            Attribute::Token(true),
            Attribute::Id(id.0.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let mut public = common.to_vec();
        public.extend([
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::ModulusBits(SIGNING_KEY_BITS.into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        ]);
        let mut private = common.to_vec();
        private.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]);
        session.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
    });
    let (id, (pub_handle, priv_handle)) = match made {
        Ok(made) => made,
        Err(Failed::Id(e)) => return Err(e),
        Err(Failed::Token(e)) => {
            return Err(HsmError::Pkcs11 {
                op: "generating a credential signing key",
                source: e,
            });
        }
    };
    match read_public(session, pub_handle, id) {
        Ok(public) => {
            handles.remember(Half::Private, id, priv_handle);
            handles.remember(Half::Public, id, pub_handle);
            tracing::info!(kid = %id.to_hex(), label, bits = SIGNING_KEY_BITS,
                check_digits = %public.check_digits, "generated credential signing key on the token");
            Ok(GeneratedKey { id, public })
        }
        Err(e) => {
            let _ = session.destroy_object(priv_handle);
            let _ = session.destroy_object(pub_handle);
            Err(e)
        }
    }
}

/// Signs `data` with the private key `id`, which must be a credential signing key.
pub(crate) fn sign(
    session: &Session,
    lookup: &Lookup<'_>,
    id: HsmKeyId,
    scheme: SignatureScheme,
    data: &[u8],
) -> Result<Vec<u8>, HsmError> {
    let handle = lookup.require(session, Half::Private, id)?;
    let label = session
        .get_attributes(handle, &[cryptoki::object::AttributeType::Label])
        .map_err(HsmError::pkcs11("reading a signing key's label"))?;
    let in_namespace = label.iter().any(
        |a| matches!(a, Attribute::Label(l) if l.starts_with(SIGNING_LABEL_PREFIX.as_bytes())),
    );
    if !in_namespace {
        return Err(HsmError::NotASigningKey { id });
    }
    let (mechanism, name) = scheme.mechanism();
    session
        .sign(&mechanism, handle, data)
        .map_err(|source| HsmError::SignFailed {
            mechanism: name,
            source,
        })
}
