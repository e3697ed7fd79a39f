//! The HSM layer's one error type.
//!
//! Owns: every way a PKCS#11 call, the token set-up or the worker hand-off can fail, phrased for
//! an operator: what happened, why, and which setting or action fixes it.
//! Must never: carry the PIN, key material or plaintext. Variants hold labels, ids, mechanism
//! names and PKCS#11 return codes only, so `Display` and `Debug` are safe to log.

use crate::model::HsmKeyId;
use std::path::PathBuf;
use std::time::Duration;

/// An error from the HSM layer.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("PKCS#11 module not loadable: {path}: {cause}; check hsm.module")]
    ModuleNotLoadable { path: PathBuf, cause: String },

    #[error(
        "PKCS#11 module {path} loaded but failed to initialise: {cause}; check the module's own configuration"
    )]
    ModuleInit { path: PathBuf, cause: String },

    #[error("token with label {label:?} not found; available tokens: {}; check hsm.token_label", list(.available))]
    TokenNotFound {
        label: String,
        available: Vec<String>,
    },

    #[error(
        "{count} tokens carry the label {label:?}; byokd needs exactly one; relabel the extra tokens or check hsm.token_label"
    )]
    TokenAmbiguous { label: String, count: usize },

    #[error(
        "the user PIN of token {label:?} is not initialised: the security officer must set it (C_InitPIN) before byokd can log in"
    )]
    PinNotInitialized { label: String },

    #[error(
        "wrong PIN for token {label:?}: check the PIN file (the systemd credential given to byokd via LoadCredential=) and that it belongs to this token; each failed attempt counts towards the token's lock-out"
    )]
    WrongPin { label: String },

    #[error(
        "the user PIN of token {label:?} is locked after too many wrong attempts: the security officer must reset it (C_InitPIN) before byokd can start"
    )]
    PinLocked { label: String },

    #[error(
        "the user PIN of token {label:?} has expired: change it with the token's tools, then update the PIN file"
    )]
    PinExpired { label: String },

    #[error("sealing key {label:?} on the token is unusable: {reason}")]
    SealingKeyInvalid { label: &'static str, reason: String },

    #[error("the token refuses to generate {key_type} with {mechanism}: {cause}")]
    KeyTypeNotSupported {
        key_type: String,
        mechanism: &'static str,
        cause: String,
    },

    #[error("no key with id {} on the token", .id.to_hex())]
    KeyNotFound { id: HsmKeyId },

    #[error("public key {} on the token is malformed: {reason}", .id.to_hex())]
    MalformedPublicKey { id: HsmKeyId, reason: String },

    #[error("an AES key on the token is not usable: {reason}")]
    MalformedSecretKey { reason: String },

    #[error(
        "key {} is an AES key: it has no public half; compare its key check value (check digits) instead", .id.to_hex()
    )]
    NoPublicKey { id: HsmKeyId },

    #[error(
        "unseal failed: {reason}; the sealed data is corrupt, was sealed with another context (aad), or by another token's sealing key"
    )]
    UnsealFailed { reason: String },

    #[error(
        "no wrap strategy is usable on this token: the token offers neither CKM_RSA_AES_KEY_WRAP nor an RFC 5649 CKM_AES_KEY_WRAP_KWP; set hsm.allow_host_wrap = true only for software tokens (self-test: {detail})"
    )]
    NoWrapStrategy { detail: String },

    #[error(
        "{key_type} keys are not pushed from this token: {reason}; see the wrap report in `byokctl status` ({})",
        if *.host_allowed {
            "the host strategy is allowed and did not serve it either: use a token whose wrap conforms"
        } else {
            "a software token may allow hsm.allow_host_wrap = true, whose blobs byokd re-encodes"
        }
    )]
    NonConformingEncoding {
        key_type: String,
        reason: String,
        /// `hsm.allow_host_wrap` was on, so the hint does not suggest it.
        host_allowed: bool,
    },

    #[error("the key-exchange key (KEK) is not usable: {reason}")]
    InvalidKek { reason: String },

    #[error("wrapping key {} for transfer ({strategy}) failed: {reason}", .id.to_hex())]
    WrapFailed {
        id: HsmKeyId,
        strategy: super::WrapStrategy,
        reason: String,
    },

    #[error("key {} is not a credential signing key (label byokd-cred/...)", .id.to_hex())]
    NotASigningKey { id: HsmKeyId },

    #[error(
        "the token refused to sign with {mechanism}: {source}; the token must support it for certificate credentials (see azure.assertion_alg)"
    )]
    SignFailed {
        mechanism: &'static str,
        #[source]
        source: cryptoki::error::Error,
    },

    #[error("HSM {op} failed: {source}")]
    Pkcs11 {
        op: &'static str,
        #[source]
        source: cryptoki::error::Error,
    },

    #[error(
        "HSM {op} took longer than {after:?}; the token may be hung or overloaded; check hsm.request_timeout"
    )]
    Timeout { op: &'static str, after: Duration },

    #[error("the HSM request queue is full; retry later")]
    Busy,

    #[error("the HSM worker thread has stopped; restart byokd")]
    WorkerGone,

    #[error(
        "a new session on token {label:?} is not logged in (the token did not share byokd's login with it, or logged byokd out); restart byokd, or set hsm.sessions = 1 for a token that keeps a login per session"
    )]
    SessionNotLoggedIn { label: String },
}

impl HsmError {
    /// Wraps a cryptoki error with the operation that failed.
    pub(crate) fn pkcs11(op: &'static str) -> impl FnOnce(cryptoki::error::Error) -> HsmError {
        move |source| HsmError::Pkcs11 { op, source }
    }

    /// Whether the token said the session the request ran on is gone (a new one may serve).
    pub(crate) fn session_lost(&self) -> bool {
        use cryptoki::error::{Error, RvError};
        let source = match self {
            HsmError::Pkcs11 { source, .. } | HsmError::SignFailed { source, .. } => source,
            _ => return false,
        };
        matches!(
            source,
            Error::Pkcs11(RvError::SessionHandleInvalid | RvError::SessionClosed, _)
        )
    }
}

fn list(labels: &[String]) -> String {
    if labels.is_empty() {
        "none (no initialised token is visible to this module)".to_owned()
    } else {
        labels
            .iter()
            .map(|l| format!("{l:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::HsmError;

    /// The refusal suggests `hsm.allow_host_wrap` only where it is off.
    #[test]
    fn a_non_conforming_refusal_suggests_host_only_where_it_is_off() {
        let refusal = |host_allowed| {
            HsmError::NonConformingEncoding {
                key_type: "EC-P521".to_owned(),
                reason: "class \"x\": ECPrivateKey.privateKey is 65 bytes".to_owned(),
                host_allowed,
            }
            .to_string()
        };
        let off = refusal(false);
        assert!(
            off.contains("65 bytes") && off.contains("hsm.allow_host_wrap = true"),
            "{off}"
        );
        let on = refusal(true);
        assert!(
            on.contains("65 bytes") && !on.contains("allow_host_wrap = true"),
            "{on}"
        );
        assert!(on.contains("use a token whose wrap conforms"), "{on}");
    }
}
