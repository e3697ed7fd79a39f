//! Which key types the token can generate, probed once at start-up and cached.
//!
//! Owns: the probe (C_GetMechanismInfo of CKM_RSA_PKCS_KEY_PAIR_GEN for the RSA sizes, of
//! CKM_AES_KEY_GEN for the AES sizes and CKM_AES_ECB for their check value, and for
//! each curve a trial generation of a session key pair, destroyed right after; the RSA public
//! exponent 3 is tried on first use, see `trial_rsa_exponent`) and the answer to "can this token
//! generate key type X", phrased with the missing mechanism or curve.
//! Must never: leave a trial key behind, or promise a key type the probe did not see work.

use super::report::mechanism_name;
use super::secret_key::{AES_ECB, AES_KEYGEN};
use crate::model::{Curve, KeyType, RsaExponent};
use cryptoki::context::Pkcs11;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::Attribute;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

/// CKM_RSA_PKCS_KEY_PAIR_GEN.
pub(crate) const RSA_KEYGEN: &str = "CKM_RSA_PKCS_KEY_PAIR_GEN";
/// CKM_EC_KEY_PAIR_GEN.
pub(crate) const EC_KEYGEN: &str = "CKM_EC_KEY_PAIR_GEN";

/// The probe's result. `Err` holds why the token cannot generate the key type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// RSA: the key sizes (bits) the token says CKM_RSA_PKCS_KEY_PAIR_GEN generates.
    rsa: Result<(u64, u64), String>,
    /// Each curve byokd supports, and whether a trial generation worked.
    curves: Vec<(Curve, Result<(), String>)>,
    /// AES: the key sizes (bytes) CKM_AES_KEY_GEN generates, when CKM_AES_ECB (the check
    /// value) is there too.
    aes: Result<(u64, u64), String>,
}

impl Capabilities {
    /// Probes the token. Never fails: a failing probe is a reason.
    pub(crate) fn probe(pkcs11: &Pkcs11, slot: Slot, session: &Session) -> Self {
        let rsa = match pkcs11.get_mechanism_info(slot, MechanismType::RSA_PKCS_KEY_PAIR_GEN) {
            Ok(info) if info.generate_key_pair() => {
                Ok((info.min_key_size() as u64, info.max_key_size() as u64))
            }
            Ok(_) => Err(format!(
                "the token lists {RSA_KEYGEN} without the CKF_GENERATE_KEY_PAIR flag"
            )),
            Err(e) => Err(format!(
                "the token does not offer {RSA_KEYGEN} ({}): {e}",
                mechanism_name(MechanismType::RSA_PKCS_KEY_PAIR_GEN)
            )),
        };
        let ec = match pkcs11.get_mechanism_info(slot, MechanismType::ECC_KEY_PAIR_GEN) {
            Ok(info) if info.generate_key_pair() => Ok(()),
            Ok(_) => Err(format!(
                "the token lists {EC_KEYGEN} without the CKF_GENERATE_KEY_PAIR flag"
            )),
            Err(e) => Err(format!("the token does not offer {EC_KEYGEN}: {e}")),
        };
        let curves = Curve::ALL
            .into_iter()
            .map(|curve| {
                let result = ec.clone().and_then(|()| trial_ec(session, curve));
                (curve, result)
            })
            .collect();
        let aes = aes_probe(pkcs11, slot);
        let caps = Self { rsa, curves, aes };
        for kt in caps.summary() {
            match kt.1 {
                Ok(detail) => {
                    tracing::info!(key_type = kt.0, detail = %detail, "the token can generate this key type")
                }
                Err(why) => {
                    tracing::warn!(key_type = kt.0, reason = %why, "the token cannot generate this key type: key groups of it are refused")
                }
            }
        }
        caps
    }

    /// Whether the token can generate `key_type`; `Err` is (mechanism, why).
    pub fn check(&self, key_type: KeyType) -> Result<(), (&'static str, String)> {
        match key_type {
            KeyType::Rsa { bits, .. } => match &self.rsa {
                // A maximum of 0 means the token does not say.
                Ok((min, max)) if *max == 0 || (*min..=*max).contains(&u64::from(bits)) => Ok(()),
                Ok((min, max)) => Err((
                    RSA_KEYGEN,
                    format!("the token generates RSA keys of {min} to {max} bits only"),
                )),
                Err(why) => Err((RSA_KEYGEN, why.clone())),
            },
            KeyType::Ec(curve) => match self.curves.iter().find(|(c, _)| *c == curve) {
                Some((_, Ok(()))) => Ok(()),
                Some((_, Err(why))) => Err((EC_KEYGEN, why.clone())),
                None => Err((EC_KEYGEN, "the curve was not probed".to_owned())),
            },
            KeyType::Aes { bits } => match &self.aes {
                // A maximum of 0 means the token does not say.
                Ok((min, max)) if *max == 0 || (*min..=*max).contains(&u64::from(bits / 8)) => {
                    Ok(())
                }
                Ok((min, max)) => Err((
                    AES_KEYGEN,
                    format!(
                        "the token generates AES keys of {} to {} bits only",
                        min * 8,
                        max * 8
                    ),
                )),
                Err(why) => Err((AES_KEYGEN, why.clone())),
            },
        }
    }

    /// One line per key family: `RSA`, `EC-P256`, ... and what the probe found.
    pub(crate) fn summary(&self) -> Vec<(String, Result<String, String>)> {
        let mut out = vec![(
            "RSA".to_owned(),
            self.rsa
                .as_ref()
                .map(|(min, max)| format!("{RSA_KEYGEN} generates {min} to {max} bits"))
                .map_err(Clone::clone),
        )];
        out.push((
            "AES".to_owned(),
            self.aes
                .as_ref()
                .map(|(min, max)| {
                    format!(
                        "{AES_KEYGEN} generates {} to {} bits, {AES_ECB} computes the check value",
                        min * 8,
                        max * 8
                    )
                })
                .map_err(Clone::clone),
        ));
        for (curve, result) in &self.curves {
            out.push((
                KeyType::Ec(*curve).to_string(),
                result
                    .as_ref()
                    .map(|()| format!("{EC_KEYGEN} generated a trial {} key", curve.azure_name()))
                    .map_err(Clone::clone),
            ));
        }
        out
    }
}

/// CKM_AES_KEY_GEN's key sizes (bytes), if the token generates AES keys and offers CKM_AES_ECB
/// (the check value) too.
fn aes_probe(pkcs11: &Pkcs11, slot: Slot) -> Result<(u64, u64), String> {
    let sizes = match pkcs11.get_mechanism_info(slot, MechanismType::AES_KEY_GEN) {
        Ok(info) if info.generate() => (info.min_key_size() as u64, info.max_key_size() as u64),
        Ok(_) => {
            return Err(format!(
                "the token lists {AES_KEYGEN} without the CKF_GENERATE flag"
            ));
        }
        Err(e) => return Err(format!("the token does not offer {AES_KEYGEN}: {e}")),
    };
    match pkcs11.get_mechanism_info(slot, MechanismType::AES_ECB) {
        Ok(info) if info.encrypt() => Ok(sizes),
        Ok(_) => Err(format!(
            "the token lists {AES_ECB} without the CKF_ENCRYPT flag, so an AES key's check value cannot be computed"
        )),
        Err(e) => Err(format!(
            "the token does not offer {AES_ECB}, so an AES key's check value cannot be computed: {e}"
        )),
    }
}

/// Generates a session key pair on `curve` and destroys it.
fn trial_ec(session: &Session, curve: Curve) -> Result<(), String> {
    trial(
        session,
        &Mechanism::EccKeyPairGen,
        Attribute::EcParams(curve.params_der().to_vec()),
        None,
    )
    .map_err(|e| {
        format!(
            "a trial generation on curve {} (OID {}) failed: {e}",
            curve.azure_name(),
            curve.oid()
        )
    })
}

/// Generates an RSA-2048 session key pair with `exponent` and destroys it. Used once per
/// exponent other than 65537 (the probe at start-up covers the sizes, not the exponents).
pub(crate) fn trial_rsa_exponent(session: &Session, exponent: RsaExponent) -> Result<(), String> {
    trial(
        session,
        &Mechanism::RsaPkcsKeyPairGen,
        Attribute::ModulusBits(2048u64.into()),
        Some(Attribute::PublicExponent(exponent.be_bytes())),
    )
    .map_err(|e| {
        format!(
            "a trial generation of RSA-2048 with public exponent {} failed: {e}",
            exponent.value()
        )
    })
}

/// A session key pair (`CKA_TOKEN = false`) made with `mechanism` and the given public
/// attributes, destroyed at once.
fn trial(
    session: &Session,
    mechanism: &Mechanism<'_>,
    shape: Attribute,
    extra: Option<Attribute>,
) -> Result<(), cryptoki::error::Error> {
    let mut public = vec![
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Verify(true),
        shape,
    ];
    public.extend(extra);
    let private = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
    ];
    let (pub_handle, priv_handle) = session.generate_key_pair(mechanism, &public, &private)?;
    for handle in [priv_handle, pub_handle] {
        if let Err(e) = session.destroy_object(handle) {
            tracing::warn!(error = %e, "destroying a trial key failed");
        }
    }
    Ok(())
}
