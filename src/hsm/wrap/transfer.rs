//! Wrapping a token key for a push: the KEK's checks, what the token says the key is, the
//! strategy of its key family, and the shape of the blob.

use super::strategies::{Target, wrap_with};
use super::verdict::KeyFamily;
use super::{KekPublicKey, Plan, WrapStrategy};
use crate::hsm::keygen::find_one;
use crate::hsm::secret_key;
use crate::hsm::spki::{curve_from_params, ec_point_of};
use crate::hsm::strict::Expected;
use crate::hsm::{HsmError, host};
use crate::model::HsmKeyId;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use rsa::traits::PublicKeyParts as _;

/// Wraps target key `id` under `kek` with the strategy its key family uses:
/// `RSA-OAEP-SHA1(kek, aes256) || AES-KWP(aes256, PKCS#8 of the key)`, or for an AES key
/// `RSA-OAEP-SHA1(kek, aes256) || AES-KWP(aes256, the key's raw value)`.
pub(crate) fn wrap_for_transfer(
    session: &Session,
    plan: &Plan,
    id: HsmKeyId,
    kek: &KekPublicKey,
) -> Result<Vec<u8>, HsmError> {
    if !plan.any() {
        return Err(HsmError::NoWrapStrategy {
            detail: plan.missing.clone(),
        });
    }
    let kek_key =
        host::kek_key(&kek.n, &kek.e).map_err(|reason| HsmError::InvalidKek { reason })?;
    let k = kek_key.size();
    if ![256, 384, 512].contains(&k) {
        return Err(HsmError::InvalidKek {
            reason: format!(
                "the modulus is {} bits; Azure KEKs are RSA 2048, 3072 or 4096",
                k * 8
            ),
        });
    }
    let (key, expected) = match secret_key::find(session, id)? {
        Some(aes) => {
            let bits = secret_key::bits(session, aes)?;
            (
                aes,
                Expected::Aes {
                    len: bits as usize / 8,
                },
            )
        }
        None => {
            let key = find_one(session, ObjectClass::PRIVATE_KEY, id)?
                .ok_or(HsmError::KeyNotFound { id })?;
            (key, expected_key(session, id, key)?)
        }
    };
    let family = KeyFamily::of_expected(&expected);
    let strategy = plan
        .strategy_for(family)
        .map_err(|reason| HsmError::NonConformingEncoding {
            key_type: family.to_string(),
            reason,
            host_allowed: plan.allow_host_wrap,
        })?;
    let failed = |reason: String| HsmError::WrapFailed {
        id,
        strategy,
        reason,
    };
    if strategy == WrapStrategy::Host {
        tracing::warn!(
            strategy = "host",
            key = %id.to_hex(),
            "wrapping a key in host memory (hsm.allow_host_wrap = true): the key leaves the token under an ephemeral AES key; use only with software tokens"
        );
    }
    let started = std::time::Instant::now();
    let target = Target {
        key,
        expected: &expected,
        kek: &kek_key,
        n: host::strip_zeros(&kek.n),
        e: host::strip_zeros(&kek.e),
    };
    let ciphertext = wrap_with(session, plan, strategy, &target).map_err(|e| match e {
        HsmError::WrapFailed { reason, .. } => failed(reason),
        other => other,
    })?;
    // Every blob has the same shape, whatever made it.
    if ciphertext.len() < k + 16 || !(ciphertext.len() - k).is_multiple_of(8) {
        return Err(failed(format!(
            "the ciphertext is {} bytes: not a {}-byte RSA part followed by an AES key wrap",
            ciphertext.len(),
            k
        )));
    }
    tracing::info!(
        strategy = strategy.as_str(),
        key = %id.to_hex(),
        key_type = %family,
        kek_bits = k * 8,
        bytes = ciphertext.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "wrapped key for transfer"
    );
    Ok(ciphertext)
}

/// What the token says private key `key` is: its type, RSA modulus or EC curve, and the EC
/// public point of the public object with the same CKA_ID, when there is one.
fn expected_key(session: &Session, id: HsmKeyId, key: ObjectHandle) -> Result<Expected, HsmError> {
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::KeyType,
                AttributeType::Modulus,
                AttributeType::EcParams,
            ],
        )
        .map_err(HsmError::pkcs11("reading a key's type"))?;
    let (mut kind, mut modulus, mut params) = (None, None, None);
    for attr in attrs {
        match attr {
            Attribute::KeyType(t) => kind = Some(t),
            Attribute::Modulus(v) => modulus = Some(v),
            Attribute::EcParams(v) => params = Some(v),
            _ => {}
        }
    }
    let unsupported = |reason: String| HsmError::MalformedPublicKey { id, reason };
    match (kind, modulus, params) {
        (Some(t), Some(modulus), _) if t == KeyType::RSA => Ok(Expected::Rsa { modulus }),
        (Some(t), _, Some(params)) if t == KeyType::EC => {
            let curve = curve_from_params(&params).map_err(unsupported)?;
            let point = match find_one(session, ObjectClass::PUBLIC_KEY, id)? {
                Some(public) => {
                    let attrs = session
                        .get_attributes(public, &[AttributeType::EcPoint])
                        .map_err(HsmError::pkcs11("reading a public key"))?;
                    let raw = attrs.into_iter().find_map(|a| match a {
                        Attribute::EcPoint(v) => Some(v),
                        _ => None,
                    });
                    match raw {
                        Some(raw) => {
                            Some(ec_point_of(&params, &raw).map_err(unsupported)?.0.to_vec())
                        }
                        None => None,
                    }
                }
                None => None,
            };
            Ok(Expected::Ec { curve, point })
        }
        (other, _, _) => Err(unsupported(format!(
            "the private key's type {other:?} is not RSA or a supported EC curve"
        ))),
    }
}
