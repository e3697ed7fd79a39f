//! The wrap strategies, the vault's KEK, and the self-test's verdict (`WrapReport`) that says
//! which strategy each key family uses and why.

use crate::hsm::HsmError;
use crate::hsm::strict::Expected;
use crate::model::{Curve, KeyType};

/// How a key is wrapped for transfer. Chosen once, at start-up, by the self-test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WrapStrategy {
    /// CKM_RSA_AES_KEY_WRAP in one C_WrapKey call. Production HSMs have it.
    Native,
    /// An ephemeral AES-256 key on the token, the token's RFC 5649 key wrap, then RSA-OAEP-SHA1.
    TwoStep,
    /// The key is unwrapped in host memory and re-wrapped there. Only with
    /// `hsm.allow_host_wrap = true`, for software tokens.
    Host,
}

impl WrapStrategy {
    /// `native`, `two-step` or `host`, as in the configuration and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::TwoStep => "two-step",
            Self::Host => "host",
        }
    }
}

impl std::fmt::Display for WrapStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The vault's key-exchange key (KEK): an RSA public key, big-endian, leading zeros stripped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekPublicKey {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

/// What the self-test found out about one strategy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StrategyCheck {
    pub strategy: WrapStrategy,
    /// The strategy works on this token and is allowed.
    pub usable: bool,
    /// Why: the mechanism used, or what is missing, differs or is disabled.
    pub detail: String,
}

/// The self-test's verdict: the chosen strategy and, for each strategy, why it was or was not
/// chosen; and for each key family whether the token generates it and which strategy wraps it
/// conformingly. Shown by `byokctl status` and logged at start-up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrapReport {
    /// The first usable strategy of native, two-step, host; `None` if none is. A key family
    /// may use a later one when this one's blobs do not conform for it (see `key_types`).
    pub chosen: Option<WrapStrategy>,
    /// `hsm.allow_host_wrap`.
    pub allow_host_wrap: bool,
    /// One entry per strategy, in preference order: native, two-step, host.
    pub checks: Vec<StrategyCheck>,
    /// One entry per key family (RSA, EC-P256, EC-P384, EC-P521, EC-P256K, AES): the encoding
    /// conformance self-test (for AES: the raw key value of every size).
    pub key_types: Vec<KeyTypeCheck>,
}

impl WrapReport {
    /// The check of `strategy`.
    pub fn check(&self, strategy: WrapStrategy) -> Option<&StrategyCheck> {
        self.checks.iter().find(|c| c.strategy == strategy)
    }

    /// The conformance verdict on the family of `key_type`.
    pub fn key_type(&self, key_type: crate::model::KeyType) -> Option<&KeyTypeCheck> {
        let name = KeyFamily::of(key_type).to_string();
        self.key_types.iter().find(|k| k.key_type == name)
    }

    /// The strategy keys of `key_type` are wrapped with; the error says why there is none.
    pub fn strategy_for(&self, key_type: crate::model::KeyType) -> Result<WrapStrategy, HsmError> {
        if self.chosen.is_none() {
            return Err(HsmError::NoWrapStrategy {
                detail: self.summary(),
            });
        }
        let family = KeyFamily::of(key_type);
        self.key_type(key_type)
            .ok_or_else(|| format!("{family} was not covered by the self-test"))
            .and_then(KeyTypeCheck::verdict)
            .map_err(|reason| HsmError::NonConformingEncoding {
                key_type: family.to_string(),
                reason,
                host_allowed: self.allow_host_wrap,
            })
    }

    /// Why a key group of `key_type` must not be created on this token, if it must not: a wrap
    /// strategy is usable but none made a conforming blob of every encoding class of the key
    /// type's family, so none of its keys could ever be pushed. The reason names each
    /// strategy's failed class and rule, and what to change. `None` when a strategy serves
    /// the family, when the token cannot generate it (the capability check refuses that), and
    /// when no strategy is usable at all (a token-wide matter: logged at start-up, shown by
    /// `status`, and the error of every push).
    pub fn refuses_group(&self, key_type: crate::model::KeyType) -> Option<String> {
        let kt = self.key_type(key_type)?;
        if kt.strategy.is_some() || !kt.can_generate || kt.encodings.is_empty() {
            return None;
        }
        let failed = kt
            .encodings
            .iter()
            .map(|e| format!("{}: {}", e.strategy, e.detail))
            .collect::<Vec<_>>()
            .join("; ");
        let hint = if self.allow_host_wrap {
            "use a token whose wrap conforms, or another key type".to_owned()
        } else {
            "allow a strategy that conforms (for a software token, hsm.allow_host_wrap = true, whose blobs byokd re-encodes), use a token whose wrap conforms, or choose another key type".to_owned()
        };
        Some(format!(
            "{} keys made on this token could not be pushed: no usable wrap strategy makes a conforming transfer blob of every encoding class ({failed}); {hint}; see the wrap report in `byokctl status`",
            kt.key_type
        ))
    }

    /// One line: `native: ...; two-step: ...; host: ...`, then every key family a usable
    /// strategy refused: `EC-P521 on two-step: class "...": ...`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .checks
            .iter()
            .map(|c| format!("{}: {}", c.strategy, c.detail))
            .collect();
        for kt in &self.key_types {
            for e in kt.encodings.iter().filter(|e| !e.conforming) {
                parts.push(format!(
                    "{} on {}: non-conforming blob, {}{}",
                    kt.key_type,
                    e.strategy,
                    e.detail,
                    match kt.strategy {
                        Some(s) => format!(" (served by {s})"),
                        None => " (pushes refused)".to_owned(),
                    }
                ));
            }
        }
        parts.join("; ")
    }
}

/// A key family the self-test covers: RSA (every size), one curve, or AES (every size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    Rsa,
    Ec(Curve),
    /// AES-128, -192 and -256: the transfer blob wraps the raw key value (a secret key).
    Aes,
}

impl KeyFamily {
    /// Every family, in report order.
    pub const ALL: [KeyFamily; 6] = [
        Self::Rsa,
        Self::Ec(Curve::P256),
        Self::Ec(Curve::P384),
        Self::Ec(Curve::P521),
        Self::Ec(Curve::P256K),
        Self::Aes,
    ];

    /// The family of a key type.
    pub fn of(key_type: KeyType) -> Self {
        match key_type {
            KeyType::Rsa { .. } => Self::Rsa,
            KeyType::Ec(curve) => Self::Ec(curve),
            KeyType::Aes { .. } => Self::Aes,
        }
    }

    pub(crate) fn of_expected(expected: &Expected) -> Self {
        match expected {
            Expected::Rsa { .. } => Self::Rsa,
            Expected::Ec { curve, .. } => Self::Ec(*curve),
            Expected::Aes { .. } => Self::Aes,
        }
    }
}

impl std::fmt::Display for KeyFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rsa => f.write_str("RSA"),
            Self::Ec(curve) => KeyType::Ec(*curve).fmt(f),
            Self::Aes => f.write_str("AES"),
        }
    }
}

/// How one strategy did on one key family.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncodingCheck {
    pub strategy: WrapStrategy,
    /// Every encoding class of the family gave a conforming blob.
    pub conforming: bool,
    /// The first class that did not, if any.
    pub failed_class: Option<String>,
    /// What was tested, or which rule the failing class broke.
    pub detail: String,
}

/// The self-test's verdict on one key family: can the token generate it, does each strategy
/// wrap it conformingly, and which strategy pushes of it use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyTypeCheck {
    /// `RSA` (every size), `EC-P256`, `EC-P384`, `EC-P521`, `EC-P256K` or `AES` (every size).
    pub key_type: String,
    /// The token can generate it (start-up probe).
    pub can_generate: bool,
    /// What the probe found.
    pub generation: String,
    /// The strategy that wraps keys of this family: the first usable strategy whose blobs
    /// conformed for every class. `None`: pushes of this family are refused.
    pub strategy: Option<WrapStrategy>,
    /// One entry per usable strategy, in preference order.
    pub encodings: Vec<EncodingCheck>,
}

impl KeyTypeCheck {
    /// The strategy keys of this family are wrapped with, or why there is none.
    pub fn verdict(&self) -> Result<WrapStrategy, String> {
        match self.strategy {
            Some(s) => Ok(s),
            None if !self.can_generate => Err(format!(
                "the token cannot generate {}: {}",
                self.key_type, self.generation
            )),
            None if self.encodings.is_empty() => {
                Err("no wrap strategy is usable on this token".to_owned())
            }
            None => Err(format!(
                "no usable wrap strategy makes a conforming transfer blob: {}",
                self.encodings
                    .iter()
                    .map(|e| format!("{}: {}", e.strategy, e.detail))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }
}
