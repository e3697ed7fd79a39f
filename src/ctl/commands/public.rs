//! `byokctl key public`: a key's public half, from the API's SubjectPublicKeyInfo, as PEM, DER
//! or a JWK (RFC 7517/7518; secp256k1 as RFC 8812 names it).
//!
//! It owns converting the SPKI into those forms and writing them; it never sees private keys.

use super::{Ctx, seg};
use crate::contract::PublicKey;
use crate::ctl::CtlError;
use crate::ctl::cli::{Output, PublicFormat};
use crate::ctl::output::{say, say_bytes};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::path::Path;

/// The JWK of an SPKI: `kty`, and `n`/`e` (RSA) or `crv`/`x`/`y` (EC).
pub fn jwk(spki_der: &[u8]) -> Result<Value, CtlError> {
    let bad = |why: &str| CtlError::Other(format!("the key's public key is not usable: {why}"));
    let info =
        spki::SubjectPublicKeyInfoRef::try_from(spki_der).map_err(|e| bad(&e.to_string()))?;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    const RSA: &str = "1.2.840.113549.1.1.1";
    const EC: &str = "1.2.840.10045.2.1";
    match info.algorithm.oid.to_string().as_str() {
        RSA => {
            use rsa::pkcs8::DecodePublicKey;
            use rsa::traits::PublicKeyParts;
            #[allow(deprecated)]
            let key = rsa::RsaPublicKey::from_public_key_der(spki_der)
                .map_err(|e| bad(&e.to_string()))?;
            let strip = |b: Vec<u8>| -> Vec<u8> { b.into_iter().skip_while(|x| *x == 0).collect() };
            Ok(json!({
                "kty": "RSA",
                "n": b64(&strip(key.n().to_be_bytes().to_vec())),
                "e": b64(&strip(key.e().to_be_bytes().to_vec())),
            }))
        }
        EC => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|e| bad(&e.to_string()))?
                .to_string();
            let (crv, size) = match curve.as_str() {
                "1.2.840.10045.3.1.7" => ("P-256", 32),
                "1.3.132.0.34" => ("P-384", 48),
                "1.3.132.0.35" => ("P-521", 66),
                "1.3.132.0.10" => ("secp256k1", 32),
                other => return Err(bad(&format!("unknown curve {other}"))),
            };
            let point = info.subject_public_key.raw_bytes();
            if point.len() != 1 + 2 * size || point[0] != 0x04 {
                return Err(bad("not an uncompressed EC point"));
            }
            Ok(json!({
                "kty": "EC",
                "crv": crv,
                "x": b64(&point[1..=size]),
                "y": b64(&point[1 + size..]),
            }))
        }
        other => Err(bad(&format!("unknown algorithm {other}"))),
    }
}

pub(super) async fn public(
    ctx: &Ctx,
    group: &str,
    key: &str,
    format: PublicFormat,
    file: Option<&Path>,
) -> Result<(), CtlError> {
    let path = format!("/v1/groups/{}/keys/{}/public", seg(group)?, seg(key)?);
    let answer: PublicKey = ctx.get(&path).await?;
    if matches!(ctx.output, Output::Json | Output::Yaml | Output::None) && file.is_none() {
        ctx.machine(&answer)?;
        return Ok(());
    }
    let der = STANDARD
        .decode(&answer.spki_der_base64)
        .map_err(|e| CtlError::Other(format!("the daemon's SPKI is not base64: {e}")))?;
    let bytes: Vec<u8> = match format {
        PublicFormat::Pem => answer.pem.clone().into_bytes(),
        PublicFormat::Der => der,
        PublicFormat::Jwk => {
            let mut text = serde_json::to_string_pretty(&jwk(&der)?).unwrap_or_default();
            text.push('\n');
            text.into_bytes()
        }
    };
    match file {
        Some(f) => {
            let mut out = std::fs::File::create(f)
                .map_err(|e| CtlError::Other(format!("cannot write {}: {e}", f.display())))?;
            out.write_all(&bytes)
                .map_err(|e| CtlError::Other(format!("cannot write {}: {e}", f.display())))?;
            if !ctx.machine(&answer)? {
                say(&format!("wrote {}", f.display()))?;
            }
            Ok(())
        }
        None if format == PublicFormat::Der && std::io::stdout().is_terminal() => Err(
            CtlError::Usage("DER is binary: give --file PATH or redirect standard output".into()),
        ),
        None => say_bytes(&bytes),
    }
}
