//! The BYOK transfer blob: the JSON Azure's import takes in `key_hsm` (docs/byok-protocol.md#transfer-blob).
//!
//! Owns only the encoding. The ciphertext inside comes from the HSM wrap; nothing here sees key
//! material in the clear.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

#[derive(Serialize)]
struct Header<'a> {
    kid: &'a str,
    alg: &'static str,
    enc: &'static str,
}

#[derive(Serialize)]
struct Blob<'a> {
    schema_version: &'static str,
    header: Header<'a>,
    ciphertext: String,
    generator: &'a str,
}

/// `generator`: byokd's version and the token's manufacturer, model and firmware.
pub fn generator(manufacturer: &str, model: &str, firmware: &str) -> String {
    format!(
        "byokd {}; {} {} firmware {}",
        env!("CARGO_PKG_VERSION"),
        manufacturer.trim(),
        model.trim(),
        firmware.trim()
    )
}

/// `generator` of the token `report` describes.
pub fn generator_of(report: &crate::hsm::TokenReport) -> String {
    generator(
        &report.manufacturer,
        &report.model,
        &report.firmware_version,
    )
}

/// The blob JSON: the `.byok` file Azure's CLI reads (`az keyvault key import --byok-file`)
/// and, base64url-encoded, the `key_hsm` of an import.
pub fn byok_file(
    kek_kid: &str,
    ciphertext: &[u8],
    generator: &str,
) -> Result<Vec<u8>, serde_json::Error> {
    let blob = Blob {
        schema_version: "1.0.0",
        header: Header {
            kid: kek_kid,
            alg: "dir",
            enc: "CKM_RSA_AES_KEY_WRAP",
        },
        ciphertext: URL_SAFE_NO_PAD.encode(ciphertext),
        generator,
    };
    serde_json::to_vec(&blob)
}

/// The `key_hsm` value: base64url (no padding) of the blob JSON. The Azure CLI sends the bytes
/// of a `.byok` file the same way.
pub fn key_hsm(
    kek_kid: &str,
    ciphertext: &[u8],
    generator: &str,
) -> Result<String, serde_json::Error> {
    Ok(URL_SAFE_NO_PAD.encode(byok_file(kek_kid, ciphertext, generator)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_has_the_documented_shape() {
        let encoded = key_hsm(
            "https://v.vault.azure.net/keys/kek/0123",
            &[1, 2, 3, 255],
            "byokd 0.1.0; SoftHSM x",
        )
        .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
        assert_eq!(json["schema_version"], "1.0.0");
        assert_eq!(
            json["header"]["kid"],
            "https://v.vault.azure.net/keys/kek/0123"
        );
        assert_eq!(json["header"]["alg"], "dir");
        assert_eq!(json["header"]["enc"], "CKM_RSA_AES_KEY_WRAP");
        assert_eq!(json["ciphertext"], "AQID_w");
        assert_eq!(json["generator"], "byokd 0.1.0; SoftHSM x");
    }
}
