//! Key types (RSA sizes and exponents, EC curves, AES sizes) and key usages mapped to Azure
//! `key_ops`.

use super::ModelError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The public exponent of an RSA key. 65537 is the default; 3 only where a group asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum RsaExponent {
    #[default]
    F4,
    Three,
}

impl RsaExponent {
    pub fn value(self) -> u32 {
        match self {
            Self::F4 => 65537,
            Self::Three => 3,
        }
    }

    pub fn from_value(v: u32) -> Result<Self, ModelError> {
        match v {
            65537 => Ok(Self::F4),
            3 => Ok(Self::Three),
            other => Err(ModelError::new(
                "exponent",
                format!("{other} is not allowed; use 65537 (default) or 3"),
            )),
        }
    }

    /// Big-endian bytes as PKCS#11 CKA_PUBLIC_EXPONENT wants them.
    pub fn be_bytes(self) -> Vec<u8> {
        match self {
            Self::F4 => vec![0x01, 0x00, 0x01],
            Self::Three => vec![0x03],
        }
    }
}

/// An elliptic curve that Azure Key Vault accepts for EC-HSM keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Curve {
    P256,
    P384,
    P521,
    /// secp256k1, which Azure calls `P-256K`.
    P256K,
}

impl Curve {
    /// The Azure `crv` name.
    pub fn azure_name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
            Self::P256K => "P-256K",
        }
    }

    /// The curve's object identifier, dotted.
    pub fn oid(self) -> &'static str {
        match self {
            Self::P256 => "1.2.840.10045.3.1.7",
            Self::P384 => "1.3.132.0.34",
            Self::P521 => "1.3.132.0.35",
            Self::P256K => "1.3.132.0.10",
        }
    }

    /// DER of the namedCurve OID, as PKCS#11 CKA_EC_PARAMS wants it.
    pub fn params_der(self) -> &'static [u8] {
        match self {
            Self::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Self::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            Self::P521 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
            Self::P256K => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a],
        }
    }

    /// Field size in bytes (coordinate length).
    pub fn field_bytes(self) -> usize {
        match self {
            Self::P256 | Self::P256K => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    pub const ALL: [Curve; 4] = [Self::P256, Self::P384, Self::P521, Self::P256K];
}

/// The kind and size of a key in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    Rsa {
        bits: u32,
        exponent: RsaExponent,
    },
    Ec(Curve),
    /// An AES key (Azure `oct-HSM`), which only Managed HSM imports. Last, so that records
    /// written before it existed decode unchanged.
    Aes {
        bits: u32,
    },
}

impl KeyType {
    pub const RSA_SIZES: [u32; 3] = [2048, 3072, 4096];
    pub const AES_SIZES: [u32; 3] = [128, 192, 256];

    /// An AES key type, refusing sizes Azure Managed HSM does not import.
    pub fn aes(bits: u32) -> Result<Self, ModelError> {
        if Self::AES_SIZES.contains(&bits) {
            Ok(Self::Aes { bits })
        } else {
            Err(ModelError::new(
                "key_type",
                format!("AES size {bits} is not allowed; use 128, 192 or 256"),
            ))
        }
    }

    /// Whether this is a symmetric key (AES): no public half, only Managed HSM imports it.
    pub fn is_symmetric(self) -> bool {
        matches!(self, Self::Aes { .. })
    }

    /// Whether a group's target of `kind` accepts keys of this type: a Key Vault refuses AES
    /// (oct-HSM), a Managed HSM accepts every type.
    pub fn check_target(self, kind: super::TargetKind) -> Result<(), ModelError> {
        match (kind, self.key_vault_refusal()) {
            (super::TargetKind::KeyVault, Some(reason)) => Err(ModelError::new("key_type", reason)),
            _ => Ok(()),
        }
    }

    /// Why a Key Vault (not Managed HSM) target cannot hold keys of this type, if it cannot.
    pub fn key_vault_refusal(self) -> Option<String> {
        match self {
            Self::Aes { .. } => Some(format!(
                "{self} keys (oct-HSM) can only be pushed to an Azure Managed HSM: Azure Key Vault does not accept oct-HSM BYOK imports; choose a Managed HSM target or an RSA or EC key type"
            )),
            Self::Rsa { .. } | Self::Ec(_) => None,
        }
    }

    /// An RSA key type, refusing sizes Azure does not import.
    pub fn rsa(bits: u32, exponent: RsaExponent) -> Result<Self, ModelError> {
        if Self::RSA_SIZES.contains(&bits) {
            Ok(Self::Rsa { bits, exponent })
        } else {
            Err(ModelError::new(
                "key_type",
                format!("RSA size {bits} is not allowed; use 2048, 3072 or 4096"),
            ))
        }
    }

    /// Parses the console's algorithm names: `RSA-2048`, `RSA-3072`, `RSA-4096`, `EC-P256`,
    /// `EC-P384`, `EC-P521`, `EC-P256K` (Azure's curve names `P-256` etc. are accepted too),
    /// `AES-128`, `AES-192`, `AES-256`.
    pub fn parse(s: &str, exponent: RsaExponent) -> Result<Self, ModelError> {
        let upper = s.trim().to_ascii_uppercase();
        if let Some(bits) = upper
            .strip_prefix("AES-")
            .or_else(|| upper.strip_prefix("AES"))
        {
            if exponent != RsaExponent::F4 {
                return Err(ModelError::new(
                    "exponent",
                    "an exponent applies to RSA keys only",
                ));
            }
            let bits: u32 = bits.parse().map_err(|_| {
                ModelError::new(
                    "key_type",
                    format!("{s:?}: use AES-128, AES-192 or AES-256"),
                )
            })?;
            return Self::aes(bits);
        }
        if let Some(bits) = upper
            .strip_prefix("RSA-")
            .or_else(|| upper.strip_prefix("RSA"))
        {
            let bits: u32 = bits.parse().map_err(|_| {
                ModelError::new(
                    "key_type",
                    format!("{s:?}: use RSA-2048, RSA-3072 or RSA-4096"),
                )
            })?;
            return Self::rsa(bits, exponent);
        }
        if exponent != RsaExponent::F4 {
            return Err(ModelError::new(
                "exponent",
                "an exponent applies to RSA keys only",
            ));
        }
        let curve = upper.strip_prefix("EC-").unwrap_or(&upper).replace('-', "");
        let curve = match curve.as_str() {
            "P256" | "SECP256R1" => Curve::P256,
            "P384" | "SECP384R1" => Curve::P384,
            "P521" | "SECP521R1" => Curve::P521,
            "P256K" | "SECP256K1" => Curve::P256K,
            _ => {
                return Err(ModelError::new(
                    "key_type",
                    format!(
                        "{s:?} is not supported; use RSA-2048, RSA-3072, RSA-4096, EC-P256, EC-P384, EC-P521, EC-P256K, AES-128, AES-192 or AES-256"
                    ),
                ));
            }
        };
        Ok(Self::Ec(curve))
    }

    /// The Azure `kty` for an HSM-protected key of this type.
    pub fn azure_kty(self) -> &'static str {
        match self {
            Self::Rsa { .. } => "RSA-HSM",
            Self::Ec(_) => "EC-HSM",
            Self::Aes { .. } => "oct-HSM",
        }
    }

    /// The console's "Key type" column.
    pub fn family(self) -> &'static str {
        match self {
            Self::Rsa { .. } => "RSA",
            Self::Ec(_) => "EC",
            Self::Aes { .. } => "AES",
        }
    }

    /// Which key usages this type may carry in Azure.
    pub fn allows(self, op: KeyOp) -> bool {
        match self {
            Self::Rsa { .. } => true,
            Self::Ec(_) => matches!(op, KeyOp::Sign | KeyOp::Verify),
            Self::Aes { .. } => !matches!(op, KeyOp::Sign | KeyOp::Verify),
        }
    }

    /// The usages a group gets when none are given.
    pub fn default_ops(self) -> Vec<KeyOp> {
        match self {
            Self::Rsa { .. } => vec![
                KeyOp::Encrypt,
                KeyOp::Decrypt,
                KeyOp::Sign,
                KeyOp::Verify,
                KeyOp::WrapKey,
                KeyOp::UnwrapKey,
            ],
            Self::Ec(_) => vec![KeyOp::Sign, KeyOp::Verify],
            Self::Aes { .. } => vec![
                KeyOp::Encrypt,
                KeyOp::Decrypt,
                KeyOp::WrapKey,
                KeyOp::UnwrapKey,
            ],
        }
    }
}

/// The console's "Algorithm" column, e.g. `RSA-2048` or `EC-P256`.
impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { bits, .. } => write!(f, "RSA-{bits}"),
            Self::Ec(c) => write!(f, "EC-{}", c.azure_name().replace('-', "")),
            Self::Aes { bits } => write!(f, "AES-{bits}"),
        }
    }
}

/// A key usage, mapped one to one to an Azure `key_ops` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KeyOp {
    Encrypt,
    Decrypt,
    Sign,
    Verify,
    WrapKey,
    UnwrapKey,
}

impl KeyOp {
    pub fn azure_name(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
            Self::Sign => "sign",
            Self::Verify => "verify",
            Self::WrapKey => "wrapKey",
            Self::UnwrapKey => "unwrapKey",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ModelError> {
        match s {
            "encrypt" => Ok(Self::Encrypt),
            "decrypt" => Ok(Self::Decrypt),
            "sign" => Ok(Self::Sign),
            "verify" => Ok(Self::Verify),
            "wrapKey" => Ok(Self::WrapKey),
            "unwrapKey" => Ok(Self::UnwrapKey),
            other => Err(ModelError::new(
                "key_ops",
                format!(
                    "{other:?} is not a key usage; use encrypt, decrypt, sign, verify, wrapKey or unwrapKey"
                ),
            )),
        }
    }

    /// Checks a usage list for a key type: not empty, no duplicates, allowed for the type.
    pub fn validate_for(ops: &[KeyOp], key_type: KeyType) -> Result<(), ModelError> {
        if ops.is_empty() {
            return Err(ModelError::new(
                "key_ops",
                "at least one key usage is required",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for op in ops {
            if !seen.insert(*op) {
                return Err(ModelError::new(
                    "key_ops",
                    format!("{} is listed twice", op.azure_name()),
                ));
            }
            if !key_type.allows(*op) {
                let rule = match key_type {
                    KeyType::Aes { .. } => {
                        "AES keys allow only encrypt, decrypt, wrapKey and unwrapKey"
                    }
                    _ => "EC keys allow only sign and verify",
                };
                return Err(ModelError::new(
                    "key_ops",
                    format!("{} is not allowed for {key_type}: {rule}", op.azure_name()),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_supported_type_and_refuses_others() {
        for (s, want) in [
            ("RSA-2048", "RSA-2048"),
            ("rsa-3072", "RSA-3072"),
            ("RSA-4096", "RSA-4096"),
            ("EC-P256", "EC-P256"),
            ("P-384", "EC-P384"),
            ("EC-P521", "EC-P521"),
            ("EC-P256K", "EC-P256K"),
            ("AES-128", "AES-128"),
            ("aes-192", "AES-192"),
            ("AES256", "AES-256"),
        ] {
            assert_eq!(
                KeyType::parse(s, RsaExponent::F4).unwrap().to_string(),
                want
            );
        }
        for bad in [
            "RSA-1024", "RSA-8192", "RSA-abc", "EC-P224", "ED25519", "", "AES-64", "AES-512",
            "AES-x",
        ] {
            assert_eq!(
                KeyType::parse(bad, RsaExponent::F4).unwrap_err().field,
                "key_type",
                "{bad}"
            );
        }
        assert!(RsaExponent::from_value(17).is_err());
        assert!(KeyType::parse("EC-P256", RsaExponent::Three).is_err());
        assert!(KeyType::parse("AES-256", RsaExponent::Three).is_err());
    }

    #[test]
    fn aes_keys_allow_only_encrypt_decrypt_wrap_unwrap_and_only_managed_hsm() {
        let aes = KeyType::aes(256).unwrap();
        assert_eq!(aes.azure_kty(), "oct-HSM");
        assert_eq!(aes.default_ops().len(), 4);
        assert!(KeyOp::validate_for(&aes.default_ops(), aes).is_ok());
        let err = KeyOp::validate_for(&[KeyOp::Sign], aes).unwrap_err();
        assert!(err.to_string().contains("AES keys allow only"), "{err}");
        assert!(aes.key_vault_refusal().unwrap().contains("Managed HSM"));
        assert!(KeyType::Ec(Curve::P256).key_vault_refusal().is_none());
        use crate::model::TargetKind;
        let refused = aes.check_target(TargetKind::KeyVault).unwrap_err();
        assert_eq!(refused.field, "key_type");
        assert!(
            refused
                .reason
                .contains("Azure Key Vault does not accept oct-HSM")
        );
        assert!(aes.check_target(TargetKind::ManagedHsm).is_ok());
        assert!(
            KeyType::Ec(Curve::P256)
                .check_target(TargetKind::KeyVault)
                .is_ok()
        );
    }

    #[test]
    fn the_aes_variant_is_appended_so_old_records_decode_unchanged() {
        // Postcard encodes the variant index: RSA and EC keep 0 and 1.
        let ec = postcard::to_allocvec(&KeyType::Ec(Curve::P384)).unwrap();
        assert_eq!(ec, vec![1, 1]);
        let aes = postcard::to_allocvec(&KeyType::Aes { bits: 128 }).unwrap();
        assert_eq!(aes[0], 2);
        assert_eq!(
            postcard::from_bytes::<KeyType>(&aes).unwrap(),
            KeyType::Aes { bits: 128 }
        );
    }

    #[test]
    fn ec_keys_allow_only_sign_and_verify() {
        let ec = KeyType::Ec(Curve::P256);
        assert!(KeyOp::validate_for(&[KeyOp::Sign, KeyOp::Verify], ec).is_ok());
        assert!(KeyOp::validate_for(&[KeyOp::Encrypt], ec).is_err());
        assert!(KeyOp::validate_for(&[], ec).is_err());
        assert!(KeyOp::validate_for(&[KeyOp::Sign, KeyOp::Sign], ec).is_err());
    }
}
