//! BYOK imports of AES keys (`kty` `oct-HSM`): accepted by a Managed HSM, refused by a Key Vault
//! with Azure's own answer (400 BadParameter "Invalid kty value", innererror
//! KeyTypeNotSupported).
//!
//! A Managed HSM unwraps strictly (RSA-OAEP SHA-1, then RFC 5649 with its integrity check; the
//! plaintext must be the raw key, 16, 24 or 32 bytes), computes the key check value and, when
//! the import's `byokd-check-digits` tag states one, refuses a key whose KCV differs: the blob
//! then holds another key than the one byokd generated. Only the size and the KCV are kept.

use std::sync::Arc;

use http::StatusCode;
use serde_json::Value;

use crate::byok;
use crate::keys::PublicKey;
use crate::state::Shared;
use crate::util::{Resp, bad_parameter, json_response, kv_error};
use crate::vault::{
    CommonAttrs, commit_import, find_kek, imported_version, key_not_found, name_blocked,
};

/// The tag byokd puts its check digits in.
const CHECK_DIGITS_TAG: &str = "byokd-check-digits";

/// The key usages an AES key may carry.
const OCT_OPS: [&str; 4] = ["encrypt", "decrypt", "wrapKey", "unwrapKey"];

/// Imports an `oct`/`oct-HSM` key into `vault_name`.
pub(crate) async fn import(
    shared: &Arc<Shared>,
    (vault_name, name): (&str, &str),
    key: &Value,
    kty: &str,
    attrs: CommonAttrs,
    ops: Option<Vec<String>>,
) -> Resp {
    let kek = {
        let state = shared.lock();
        let Some(vault) = state.vaults.get(vault_name) else {
            return key_not_found(name);
        };
        if !vault.is_managed_hsm() {
            return kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                &format!("Invalid kty value: {kty}"),
                Some("KeyTypeNotSupported"),
            );
        }
        if kty != "oct-HSM" {
            return bad_parameter(&format!(
                "Invalid kty value: {kty}; a Managed HSM imports AES keys as 'oct-HSM'."
            ));
        }
        if let Some(r) = name_blocked(vault, name) {
            return r;
        }
        let Some(key_hsm) = key.get("key_hsm").and_then(Value::as_str) else {
            return bad_parameter(
                "An oct-HSM import requires key_hsm (this emulator imports AES keys by BYOK only).",
            );
        };
        for member in [
            "n", "e", "d", "dp", "dq", "qi", "p", "q", "x", "y", "k", "crv",
        ] {
            if key.get(member).is_some() {
                return bad_parameter(&format!(
                    "The JWK member '{member}' must not be sent with an oct-HSM key_hsm."
                ));
            }
        }
        match find_kek(vault, key_hsm) {
            Ok(k) => k,
            Err(r) => return r,
        }
    };
    let ops = ops.unwrap_or_else(|| OCT_OPS.iter().map(|s| (*s).to_owned()).collect());
    if let Some(bad) = ops.iter().find(|o| !OCT_OPS.contains(&o.as_str())) {
        return bad_parameter(&format!(
            "Key operation '{bad}' is not supported for oct-HSM keys; allowed: encrypt, decrypt, wrapKey, unwrapKey."
        ));
    }
    let (kek_key, ciphertext) = kek;
    let unwrapped =
        tokio::task::spawn_blocking(move || byok::unwrap_oct_blob(&kek_key, &ciphertext)).await;
    let (bits, kcv) = match crate::vault::unwrapped(unwrapped) {
        Ok(done) => done,
        Err(r) => return r,
    };
    if let Some(stated) = attrs.tags.get(CHECK_DIGITS_TAG)
        && !stated.eq_ignore_ascii_case(&kcv)
    {
        return bad_parameter(&format!(
            "The unwrapped AES key's check value is {kcv}, but the import states {stated} ({CHECK_DIGITS_TAG}): the blob holds another key."
        ));
    }
    let version = imported_version(kty, ops, PublicKey::Oct { bits, kcv }, attrs);
    match commit_import(&mut shared.lock(), (vault_name, name), version) {
        Ok(bundle) => json_response(StatusCode::OK, &bundle),
        Err(r) => r,
    }
}
