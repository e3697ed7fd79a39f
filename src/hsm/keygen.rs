//! Target keys on the token: generation, public halves, listing, attributes and destruction.
//!
//! Owns: the key-pair templates (what makes a byokd key sensitive, on-token and wrappable), the
//! `byokd/{group}/{key}` label namespace, lookup by CKA_ID and reading public halves as SPKI.
//! Must never: read or return private key material, generate a key that is not CKA_SENSITIVE,
//! or touch objects outside the `byokd/` label namespace other than by an explicit id.

use super::fresh_id::{Failed, make_with_fresh_id};
use super::handles::{Half, Handles, Lookup, Removal};
use super::spki::{check_digits, curve_from_params, ec_spki, rsa_spki};
use super::{GeneratedKey, HsmError, HsmKeyEntry, PrivateKeyAttributes, PublicKeyInfo};
use crate::model::{GroupName, HsmKeyId, KeyName, KeyType, RsaExponent};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;

/// Every key byokd generates is labelled `byokd/{group}/{key}`.
pub const LABEL_PREFIX: &str = "byokd/";

/// The CKA_LABEL of a key.
pub fn key_label(group: &GroupName, key: &KeyName) -> String {
    format!("{LABEL_PREFIX}{group}/{key}")
}

/// Group and key name back from a CKA_LABEL, if it is one of byokd's.
pub fn parse_label(label: &str) -> Option<(GroupName, KeyName)> {
    let (group, key) = label.strip_prefix(LABEL_PREFIX)?.split_once('/')?;
    Some((
        GroupName::try_from(group).ok()?,
        KeyName::try_from(key).ok()?,
    ))
}

/// Generates a key pair of `key_type` on the token and returns its id and public half; the
/// handles of both halves are kept in `handles`.
pub(crate) fn generate(
    session: &Session,
    handles: &Handles,
    key_type: KeyType,
    label: &str,
) -> Result<GeneratedKey, HsmError> {
    let (mechanism, mechanism_name, public_extra, private_extra) = match key_type {
        KeyType::Rsa { bits, exponent } => (
            Mechanism::RsaPkcsKeyPairGen,
            "CKM_RSA_PKCS_KEY_PAIR_GEN",
            vec![
                Attribute::ModulusBits(u64::from(bits).into()),
                Attribute::PublicExponent(exponent.be_bytes()),
                Attribute::Encrypt(true),
            ],
            vec![Attribute::Decrypt(true)],
        ),
        KeyType::Ec(curve) => (
            Mechanism::EccKeyPairGen,
            "CKM_EC_KEY_PAIR_GEN",
            vec![Attribute::EcParams(curve.params_der().to_vec())],
            Vec::new(),
        ),
        KeyType::Aes { .. } => {
            return Err(not_supported(
                key_type,
                "CKM_AES_KEY_GEN",
                "an AES key is a secret key, not a key pair; it is made by `Hsm::generate_target`"
                    .to_owned(),
            ));
        }
    };
    let started = std::time::Instant::now();
    let made = make_with_fresh_id(session, "key pair", |id| {
        let common = [
            Attribute::Token(true),
            Attribute::Id(id.0.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let mut public = common.to_vec();
        public.extend([Attribute::Private(false), Attribute::Verify(true)]);
        public.extend(public_extra.iter().cloned());
        let mut private = common.to_vec();
        private.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            // BYOK needs CKA_EXTRACTABLE: the key leaves the token only wrapped (C_WrapKey)
            // under the vault's KEK. CKA_SENSITIVE stops it from ever being read in the clear.
            Attribute::Extractable(true),
            Attribute::Sign(true),
        ]);
        private.extend(private_extra.iter().cloned());
        session.generate_key_pair(&mechanism, &public, &private)
    });
    let (id, (pub_handle, priv_handle)) = match made {
        Ok(made) => made,
        Err(Failed::Id(e)) => return Err(e),
        Err(Failed::Token(e)) => return Err(refusal(key_type, mechanism_name, e)),
    };
    let public = match read_public(session, pub_handle, id) {
        Ok(public) => public,
        Err(e) => {
            // Leave no half-usable key behind.
            let _ = session.destroy_object(priv_handle);
            let _ = session.destroy_object(pub_handle);
            return Err(e);
        }
    };
    handles.remember(Half::Private, id, priv_handle);
    handles.remember(Half::Public, id, pub_handle);
    tracing::info!(
        kid = %id.to_hex(),
        key_type = %key_type,
        check_digits = %public.check_digits,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "generated key pair on the token"
    );
    Ok(GeneratedKey { id, public })
}

/// Maps a refused key type to a message naming the mechanism and curve.
fn refusal(key_type: KeyType, mechanism: &'static str, e: cryptoki::error::Error) -> HsmError {
    use cryptoki::error::{Error, RvError};
    match e {
        Error::Pkcs11(
            rv @ (RvError::CurveNotSupported
            | RvError::DomainParamsInvalid
            | RvError::MechanismInvalid
            | RvError::MechanismParamInvalid
            | RvError::AttributeValueInvalid
            | RvError::TemplateInconsistent
            | RvError::KeySizeRange),
            _,
        ) => not_supported(key_type, mechanism, rv.to_string()),
        other => HsmError::Pkcs11 {
            op: "generating a key pair",
            source: other,
        },
    }
}

/// `HsmError::KeyTypeNotSupported` for `key_type`, naming its curve or exponent.
pub(crate) fn not_supported(key_type: KeyType, mechanism: &'static str, cause: String) -> HsmError {
    let what = match key_type {
        KeyType::Ec(curve) => format!(
            "{key_type} (curve {}, OID {})",
            curve.azure_name(),
            curve.oid()
        ),
        KeyType::Rsa { exponent, .. } => {
            format!("{key_type} (public exponent {})", exponent.value())
        }
        KeyType::Aes { .. } => format!("{key_type} (CKK_AES)"),
    };
    HsmError::KeyTypeNotSupported {
        key_type: what,
        mechanism,
        cause,
    }
}

/// The public half of key `id` as SPKI DER with check digits.
pub(crate) fn public_key(
    session: &Session,
    lookup: &Lookup<'_>,
    id: HsmKeyId,
) -> Result<PublicKeyInfo, HsmError> {
    let handle = lookup.require(session, Half::Public, id)?;
    read_public(session, handle, id)
}

/// The public key object `handle` (of key `id`) as SPKI DER with check digits.
pub(crate) fn read_public(
    session: &Session,
    handle: ObjectHandle,
    id: HsmKeyId,
) -> Result<PublicKeyInfo, HsmError> {
    let malformed = |reason: String| HsmError::MalformedPublicKey { id, reason };
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )
        .map_err(HsmError::pkcs11("reading a public key"))?;
    let mut key_type = None;
    let (mut modulus, mut exponent, mut params, mut point) = (None, None, None, None);
    for attr in attrs {
        match attr {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Modulus(v) => modulus = Some(v),
            Attribute::PublicExponent(v) => exponent = Some(v),
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            _ => {}
        }
    }
    let spki_der = match key_type {
        Some(t) if t == CkKeyType::RSA => {
            let (Some(n), Some(e)) = (modulus, exponent) else {
                return Err(malformed(
                    "CKA_MODULUS or CKA_PUBLIC_EXPONENT is missing".to_owned(),
                ));
            };
            rsa_spki(&n, &e).map_err(malformed)?.0
        }
        Some(t) if t == CkKeyType::EC => {
            let (Some(params), Some(point)) = (params, point) else {
                return Err(malformed(
                    "CKA_EC_PARAMS or CKA_EC_POINT is missing".to_owned(),
                ));
            };
            ec_spki(&params, &point).map_err(malformed)?.0
        }
        other => return Err(malformed(format!("unsupported CKA_KEY_TYPE {other:?}"))),
    };
    let check_digits = check_digits(&spki_der);
    Ok(PublicKeyInfo {
        spki_der,
        check_digits,
    })
}

/// Every private key in the `byokd/` namespace with a 16-byte CKA_ID.
pub(crate) fn list(session: &Session) -> Result<Vec<HsmKeyEntry>, HsmError> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Token(true),
        ])
        .map_err(HsmError::pkcs11("listing keys"))?;
    let mut entries = Vec::new();
    for handle in handles {
        let attrs = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Id,
                    AttributeType::Label,
                    AttributeType::KeyType,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                    AttributeType::EcParams,
                ],
            )
            .map_err(HsmError::pkcs11("reading a key's attributes"))?;
        let (mut id, mut label, mut ck_type, mut modulus, mut exponent, mut params) =
            (None, None, None, None, None, None);
        for attr in attrs {
            match attr {
                Attribute::Id(v) => id = <[u8; 16]>::try_from(v.as_slice()).ok().map(HsmKeyId),
                Attribute::Label(v) => label = String::from_utf8(v).ok(),
                Attribute::KeyType(t) => ck_type = Some(t),
                Attribute::Modulus(v) => modulus = Some(v),
                Attribute::PublicExponent(v) => exponent = Some(v),
                Attribute::EcParams(v) => params = Some(v),
                _ => {}
            }
        }
        let (Some(id), Some(label)) = (id, label) else {
            continue;
        };
        if !label.starts_with(LABEL_PREFIX) {
            continue;
        }
        let key_type = match ck_type {
            Some(t) if t == CkKeyType::RSA => rsa_type(modulus.as_deref(), exponent.as_deref()),
            Some(t) if t == CkKeyType::EC => params
                .and_then(|p| curve_from_params(&p).ok())
                .map(KeyType::Ec),
            _ => None,
        };
        entries.push(HsmKeyEntry {
            id,
            label,
            key_type,
        });
    }
    entries.sort_by(|a, b| a.label.cmp(&b.label).then(a.id.cmp(&b.id)));
    Ok(entries)
}

fn rsa_type(modulus: Option<&[u8]>, exponent: Option<&[u8]>) -> Option<KeyType> {
    let modulus = modulus?;
    let first = modulus.iter().position(|b| *b != 0)?;
    let bits = u32::try_from((modulus.len() - first) * 8).ok()? - modulus[first].leading_zeros();
    let exponent: Vec<u8> = exponent?.iter().copied().skip_while(|b| *b == 0).collect();
    let value = exponent.iter().try_fold(0u32, |acc, b| {
        acc.checked_mul(256).map(|a| a + u32::from(*b))
    })?;
    KeyType::rsa(bits, RsaExponent::from_value(value).ok()?).ok()
}

/// Destroys the private and public objects of key `id`.
pub(crate) fn destroy(
    session: &Session,
    removal: &Removal<'_>,
    id: HsmKeyId,
) -> Result<(), HsmError> {
    let private = removal.take(session, Half::Private, id)?;
    let public = removal.take(session, Half::Public, id)?;
    if private.is_none() && public.is_none() {
        return Err(HsmError::KeyNotFound { id });
    }
    for handle in [private, public].into_iter().flatten() {
        session
            .destroy_object(handle)
            .map_err(HsmError::pkcs11("destroying a key"))?;
    }
    tracing::info!(kid = %id.to_hex(), "destroyed key on the token");
    Ok(())
}

/// The protection attributes of the private key `id`, and whether the token refuses to reveal
/// its secret value.
pub(crate) fn attributes(
    session: &Session,
    lookup: &Lookup<'_>,
    id: HsmKeyId,
) -> Result<PrivateKeyAttributes, HsmError> {
    let handle = lookup.require(session, Half::Private, id)?;
    protection_of(session, handle)
}

/// The protection attributes of private or secret key `handle`, and whether the token refuses
/// to reveal its secret value (CKA_PRIVATE_EXPONENT for RSA, CKA_VALUE otherwise).
pub(crate) fn protection_of(
    session: &Session,
    handle: ObjectHandle,
) -> Result<PrivateKeyAttributes, HsmError> {
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::KeyType,
            ],
        )
        .map_err(HsmError::pkcs11("reading a key's attributes"))?;
    let mut out = PrivateKeyAttributes::default();
    let mut ck_type = None;
    for attr in attrs {
        match attr {
            Attribute::Token(v) => out.token = v,
            Attribute::Private(v) => out.private = v,
            Attribute::Sensitive(v) => out.sensitive = v,
            Attribute::Extractable(v) => out.extractable = v,
            Attribute::AlwaysSensitive(v) => out.always_sensitive = v,
            Attribute::NeverExtractable(v) => out.never_extractable = v,
            Attribute::KeyType(t) => ck_type = Some(t),
            _ => {}
        }
    }
    let secret = if ck_type == Some(CkKeyType::RSA) {
        AttributeType::PrivateExponent
    } else {
        AttributeType::Value
    };
    // Only the size is asked for: the value is never requested into a buffer.
    let info = session
        .get_attribute_info(handle, &[secret])
        .map_err(HsmError::pkcs11("probing a key's secret attribute"))?;
    out.secret_value_refused = matches!(
        info.first(),
        Some(AttributeInfo::Sensitive | AttributeInfo::Unavailable)
    );
    Ok(out)
}
