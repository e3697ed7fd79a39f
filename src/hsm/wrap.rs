//! Wrapping a target key for Azure's BYOK transfer, and the start-up self-test that picks how.
//!
//! Owns: the wrap strategies (`native`: CKM_RSA_AES_KEY_WRAP in one call; `two-step`: an
//! ephemeral on-token AES-256 key, the token's RFC 5649 wrap, then CKM_RSA_PKCS_OAEP; `host`:
//! unwrap on the host, trim, check, re-wrap with the `rsa` and `aes-kw` crates), their
//! known-answer self-tests, the `WrapReport` that says why each was or was not chosen, and the
//! session objects (imported KEK, ephemeral AES keys) those calls need.
//! Must never: choose `two-step` for a token whose padded key wrap is not byte-identical to
//! RFC 5649 (SoftHSM 2.6.1's CKM_AES_KEY_WRAP_PAD is not), run `host` unless the configuration
//! allows it, leave a session object behind on any path, or let key material reach an error, a
//! log or `Debug` (errors carry lengths, mechanism names and return codes only).
//!
//! See `../shared/azure-byok.md` §2 for the blob and the measured token behaviour.

use super::capability::Capabilities;
use super::conformance::{self, KeyFamily, KeyTypeCheck};
use super::host::{self, AES256_LEN, KwpBehaviour};
use super::keygen::find_one;
use super::report::{
    CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD, CKM_RSA_AES_KEY_WRAP, CKM_RSA_PKCS_OAEP,
};
use super::spki::{curve_from_params, ec_point_of};
use super::strict::{self, Expected};
use super::{HsmError, TokenReport};
use crate::model::HsmKeyId;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use rsa::traits::PublicKeyParts as _;
use zeroize::{Zeroize as _, Zeroizing};

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
    /// One entry per key family (RSA, EC-P256, EC-P384, EC-P521, EC-P256K): the encoding
    /// conformance self-test.
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

/// The token's padded AES key wrap mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PadMechanism {
    /// CKM_AES_KEY_WRAP_KWP (0x210B).
    Kwp,
    /// CKM_AES_KEY_WRAP_PAD (0x210A).
    Pad,
}

impl PadMechanism {
    fn name(self) -> &'static str {
        match self {
            Self::Kwp => CKM_AES_KEY_WRAP_KWP,
            Self::Pad => CKM_AES_KEY_WRAP_PAD,
        }
    }

    fn mechanism(self) -> Mechanism<'static> {
        match self {
            Self::Kwp => Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
                MechanismType::AES_KEY_WRAP_KWP,
                None,
            )),
            Self::Pad => Mechanism::AesKeyWrapPad,
        }
    }
}

/// What the worker needs to wrap: the usable strategies with their mechanisms, and the
/// strategy each key family uses.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Some when `two-step` is usable: the token's RFC 5649 mechanism.
    two_step: Option<PadMechanism>,
    /// Some when `host` is usable: the padded wrap the key leaves the token under.
    host: Option<PadMechanism>,
    /// Per key family: the strategy, or why none conforms.
    families: Vec<(KeyFamily, Result<WrapStrategy, String>)>,
    /// Why no strategy is usable (for the error), empty otherwise.
    missing: String,
    /// `hsm.allow_host_wrap` (for the hint of a refused key family).
    allow_host_wrap: bool,
}

impl Plan {
    fn any(&self) -> bool {
        self.missing.is_empty()
    }

    fn strategy_for(&self, family: KeyFamily) -> Result<WrapStrategy, String> {
        self.families
            .iter()
            .find(|(f, _)| *f == family)
            .map_or_else(
                || Err(format!("{family} was not covered by the self-test")),
                |(_, s)| s.clone(),
            )
    }
}

/// The AES-256 key of the known-answer tests.
const KAT_AES_KEY: [u8; AES256_LEN] = [
    0x5e, 0x2a, 0x91, 0x0c, 0x77, 0xd4, 0x3b, 0xe8, 0x19, 0xa6, 0x44, 0xf1, 0x08, 0x6d, 0xc3, 0x52,
    0xb9, 0x1e, 0x85, 0x60, 0xfa, 0x27, 0xdc, 0x93, 0x4e, 0x0b, 0x78, 0xc5, 0x31, 0xae, 0x6f, 0xd2,
];
/// The self-tests' KEK, PKCS#8 DER.
const TEST_KEK: &[u8] = include_bytes!("fixtures/test-kek.der");
/// The known secret's length: 67 bytes, a P-256 PKCS#8's length and not a multiple of 8.
const KAT_SECRET_LEN: usize = 67;

fn kat_secret() -> Vec<u8> {
    (0..KAT_SECRET_LEN)
        .map(|i| u8::try_from((i * 37 + 11) % 251).unwrap_or(0))
        .collect()
}

/// A session object destroyed on drop, so that no path leaves one behind.
pub(super) struct Temporary<'a> {
    session: &'a Session,
    pub(super) handle: ObjectHandle,
    what: &'static str,
}

impl<'a> Temporary<'a> {
    pub(super) fn create(
        session: &'a Session,
        template: &[Attribute],
        what: &'static str,
        op: &'static str,
    ) -> Result<Self, HsmError> {
        let handle = session
            .create_object(template)
            .map_err(HsmError::pkcs11(op))?;
        Ok(Self {
            session,
            handle,
            what,
        })
    }
}

impl Drop for Temporary<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.session.destroy_object(self.handle) {
            tracing::warn!(object = self.what, error = %e, "destroying a session object failed");
        }
    }
}

/// A session AES-256 key with a known value (self-test or host strategy). `value` is copied into
/// the template and that copy is zeroized right after C_CreateObject.
fn import_aes<'a>(
    session: &'a Session,
    value: &[u8; AES256_LEN],
    readable: bool,
    what: &'static str,
) -> Result<Temporary<'a>, HsmError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(!readable),
        Attribute::Extractable(readable),
        Attribute::Wrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Value(value.to_vec()),
    ];
    let result = Temporary::create(session, &template, what, "importing a session AES key");
    zeroize_values(&mut template);
    result
}

fn zeroize_values(template: &mut [Attribute]) {
    for attr in template {
        if let Attribute::Value(v) = attr {
            v.zeroize();
        }
    }
}

/// Imports an RSA public key as a session object that can wrap.
fn import_rsa_public<'a>(
    session: &'a Session,
    n: &[u8],
    e: &[u8],
    what: &'static str,
) -> Result<Temporary<'a>, HsmError> {
    let template = [
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Wrap(true),
        Attribute::Encrypt(true),
        Attribute::Verify(false),
        Attribute::Modulus(n.to_vec()),
        Attribute::PublicExponent(e.to_vec()),
    ];
    Temporary::create(session, &template, what, "importing an RSA public key")
}

/// RSA-OAEP with SHA-1, MGF1-SHA-1 and an empty label.
fn oaep_params() -> PkcsOaepParams<'static> {
    PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    )
}

/// CK_RSA_AES_KEY_WRAP_PARAMS, laid out as PKCS#11 defines it. cryptoki has no typed
/// mechanism for CKM_RSA_AES_KEY_WRAP, so it is passed through `Mechanism::VendorDefined`,
/// which hands C_WrapKey a pointer to this struct and its size. This stays in safe Rust: making
/// a raw pointer is safe, and `oaep` outlives every use (see `wrap_native`).
#[repr(C)]
struct RsaAesKeyWrapParams<'a> {
    /// ulAESKeyBits.
    aes_key_bits: Ulong,
    /// pOAEPParams: a CK_RSA_PKCS_OAEP_PARAMS (cryptoki's `PkcsOaepParams` is `repr(C)`).
    oaep: *const PkcsOaepParams<'a>,
}

/// C_WrapKey(CKM_RSA_AES_KEY_WRAP {AES-256, OAEP-SHA1}, wrapping, key).
fn wrap_native(
    session: &Session,
    wrapping: ObjectHandle,
    key: ObjectHandle,
) -> Result<Vec<u8>, cryptoki::error::Error> {
    let oaep = oaep_params();
    let params = RsaAesKeyWrapParams {
        aes_key_bits: Ulong::from(std::ffi::c_ulong::from(256u32)),
        oaep: std::ptr::from_ref(&oaep),
    };
    let mechanism = Mechanism::VendorDefined(VendorDefinedMechanism::new(
        MechanismType::RSA_AES_KEY_WRAP,
        Some(&params),
    ));
    // `oaep` and `params` are locals of this function, so they outlive the call that reads
    // them through `mechanism`.
    session.wrap_key(&mechanism, wrapping, key)
}

/// Runs the known-answer tests, picks the strategy, then runs the encoding conformance
/// self-test (`conformance`) to pick, per key family, the first usable strategy whose blobs
/// conform. Never fails: a failing test is a reason in the report.
pub(crate) fn self_test(
    session: &Session,
    report: &TokenReport,
    caps: &Capabilities,
    allow_host_wrap: bool,
) -> (WrapReport, Plan) {
    let secret = kat_secret();

    // The padded AES key wraps the token lists, each compared with RFC 5649.
    let mut pads: Vec<(PadMechanism, Result<KwpBehaviour, String>)> = Vec::new();
    let mut pad_notes = Vec::new();
    for pad in [PadMechanism::Kwp, PadMechanism::Pad] {
        if !report.has_mechanism(pad.name()) {
            pad_notes.push(format!("{} is not offered", pad.name()));
            continue;
        }
        let result = kat_pad(session, pad, &secret);
        pad_notes.push(match &result {
            Ok(KwpBehaviour::Rfc5649) => format!("{} output equals RFC 5649", pad.name()),
            Ok(KwpBehaviour::ZeroPadded) => format!(
                "{} output differs from RFC 5649 (it zero-pads and puts the padded length in the IV)",
                pad.name()
            ),
            Ok(KwpBehaviour::Unusable) => {
                format!("{} output differs from RFC 5649", pad.name())
            }
            Err(e) => format!("{} known-answer test failed: {e}", pad.name()),
        });
        pads.push((pad, result));
    }
    let conforming = pads
        .iter()
        .find(|(_, r)| matches!(r, Ok(KwpBehaviour::Rfc5649)))
        .map(|(p, _)| *p);
    let host_pad = conforming.or_else(|| {
        pads.iter()
            .find(|(_, r)| matches!(r, Ok(KwpBehaviour::ZeroPadded)))
            .map(|(p, _)| *p)
    });
    let has_native = report.has_mechanism(CKM_RSA_AES_KEY_WRAP);
    let has_oaep = report.has_mechanism(CKM_RSA_PKCS_OAEP);

    // The test KEK of the OAEP tests and of the conformance self-test: a committed RSA-2048 key
    // (made once with `openssl genpkey`), so that start-up generates none. It only ever opens
    // blobs of the self-test's own keys.
    let test_rsa = Some(
        <rsa::PrivateKey as pkcs8::DecodePrivateKey>::from_pkcs8_der(TEST_KEK)
            .map_err(|e| e.to_string()),
    );

    let native = if !has_native {
        StrategyCheck {
            strategy: WrapStrategy::Native,
            usable: false,
            detail: format!("the token does not offer {CKM_RSA_AES_KEY_WRAP} (0x1054)"),
        }
    } else {
        let result = match &test_rsa {
            Some(Ok(key)) => kat_native(session, key, &secret),
            Some(Err(e)) => Err(format!("cannot make the host test key: {e}")),
            None => Err("no host test key".to_owned()),
        };
        match result {
            Ok(()) => StrategyCheck {
                strategy: WrapStrategy::Native,
                usable: true,
                detail: format!("{CKM_RSA_AES_KEY_WRAP} known-answer test passed"),
            },
            Err(e) => StrategyCheck {
                strategy: WrapStrategy::Native,
                usable: false,
                detail: format!("{CKM_RSA_AES_KEY_WRAP} known-answer test failed: {e}"),
            },
        }
    };

    let two_step = match conforming {
        None => StrategyCheck {
            strategy: WrapStrategy::TwoStep,
            usable: false,
            detail: format!(
                "no RFC 5649 key wrap on the token: {}",
                pad_notes.join(", ")
            ),
        },
        Some(pad) if !has_oaep => StrategyCheck {
            strategy: WrapStrategy::TwoStep,
            usable: false,
            detail: format!(
                "{} output equals RFC 5649, but the token does not offer {CKM_RSA_PKCS_OAEP}",
                pad.name()
            ),
        },
        Some(pad) => {
            let result = match &test_rsa {
                Some(Ok(key)) => kat_oaep(session, key),
                Some(Err(e)) => Err(format!("cannot make the host test key: {e}")),
                None => Err("no host test key".to_owned()),
            };
            match result {
                Ok(()) => StrategyCheck {
                    strategy: WrapStrategy::TwoStep,
                    usable: true,
                    detail: format!(
                        "{} output equals RFC 5649 and {CKM_RSA_PKCS_OAEP} (SHA-1) known-answer test passed",
                        pad.name()
                    ),
                },
                Err(e) => StrategyCheck {
                    strategy: WrapStrategy::TwoStep,
                    usable: false,
                    detail: format!(
                        "{} output equals RFC 5649, but the {CKM_RSA_PKCS_OAEP} (SHA-1) known-answer test failed: {e}",
                        pad.name()
                    ),
                },
            }
        }
    };

    let host = match host_pad {
        None => StrategyCheck {
            strategy: WrapStrategy::Host,
            usable: false,
            detail: format!(
                "no padded AES key wrap usable for host unwrapping: {}",
                pad_notes.join(", ")
            ),
        },
        Some(pad) if !allow_host_wrap => StrategyCheck {
            strategy: WrapStrategy::Host,
            usable: false,
            detail: format!(
                "possible with {}, but disabled (hsm.allow_host_wrap = false)",
                pad.name()
            ),
        },
        Some(pad) => StrategyCheck {
            strategy: WrapStrategy::Host,
            usable: true,
            detail: format!(
                "enabled by hsm.allow_host_wrap = true; keys leave the token under {} and are re-wrapped in host memory",
                pad.name()
            ),
        },
    };

    let checks = vec![native, two_step, host];
    let chosen = checks.iter().find(|c| c.usable).map(|c| c.strategy);
    let usable: Vec<WrapStrategy> = checks
        .iter()
        .filter(|c| c.usable)
        .map(|c| c.strategy)
        .collect();
    let mut plan = Plan {
        two_step: conforming.filter(|_| usable.contains(&WrapStrategy::TwoStep)),
        host: host_pad.filter(|_| usable.contains(&WrapStrategy::Host)),
        families: Vec::new(),
        missing: String::new(),
        allow_host_wrap,
    };
    let test_kek = test_rsa.as_ref().and_then(|r| r.as_ref().ok());
    let key_types = {
        let plan = &plan;
        let wrap = |strategy: WrapStrategy, key: ObjectHandle, expected: &Expected| {
            let kek = test_kek.ok_or(HsmError::InvalidKek {
                reason: "no host test KEK".to_owned(),
            })?;
            let (n, e) = (kek.n().to_be_bytes(), kek.e().to_be_bytes());
            let target = Target {
                key,
                expected,
                kek: &kek.to_public_key(),
                n: host::strip_zeros(&n),
                e: host::strip_zeros(&e),
            };
            wrap_with(session, plan, strategy, &target)
        };
        conformance::run(session, &usable, caps, test_kek, &wrap)
    };
    plan.families = KeyFamily::ALL
        .into_iter()
        .zip(&key_types)
        .map(|(family, kt)| (family, kt.verdict()))
        .collect();
    let wrap_report = WrapReport {
        chosen,
        allow_host_wrap,
        checks,
        key_types,
    };
    if chosen.is_none() {
        plan.missing = wrap_report.summary();
    }
    let chosen_name = chosen.map_or("none", WrapStrategy::as_str);
    let detail = |s: WrapStrategy| {
        wrap_report
            .check(s)
            .map(|c| c.detail.clone())
            .unwrap_or_default()
    };
    if chosen.is_some() {
        tracing::info!(
            token = %report.token_label,
            strategy = chosen_name,
            native = %detail(WrapStrategy::Native),
            two_step = %detail(WrapStrategy::TwoStep),
            host = %detail(WrapStrategy::Host),
            "wrap strategy self-test done"
        );
    } else {
        tracing::warn!(
            token = %report.token_label,
            strategy = chosen_name,
            native = %detail(WrapStrategy::Native),
            two_step = %detail(WrapStrategy::TwoStep),
            host = %detail(WrapStrategy::Host),
            "wrap strategy self-test done: no strategy is usable, pushes to Azure will fail"
        );
    }
    for kt in &wrap_report.key_types {
        for e in &kt.encodings {
            if e.conforming {
                tracing::info!(key_type = %kt.key_type, strategy = e.strategy.as_str(), detail = %e.detail, "wrap conformance self-test passed");
            } else {
                tracing::warn!(
                    key_type = %kt.key_type,
                    strategy = e.strategy.as_str(),
                    class = e.failed_class.as_deref().unwrap_or(""),
                    reason = %e.detail,
                    served_by = kt.strategy.map_or("none: pushes of this key type are refused", WrapStrategy::as_str),
                    "wrap conformance self-test failed: this strategy's blobs of this key type do not conform"
                );
            }
        }
    }
    (wrap_report, plan)
}

/// A 67-byte generic secret with a known value, extractable and not sensitive.
fn import_secret<'a>(session: &'a Session, secret: &[u8]) -> Result<Temporary<'a>, HsmError> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Value(secret.to_vec()),
    ];
    Temporary::create(
        session,
        &template,
        "self-test secret",
        "importing the self-test secret",
    )
}

/// Wraps the known secret under the known AES key with `pad` and classifies the output.
fn kat_pad(session: &Session, pad: PadMechanism, secret: &[u8]) -> Result<KwpBehaviour, String> {
    let aes =
        import_aes(session, &KAT_AES_KEY, true, "self-test AES key").map_err(|e| e.to_string())?;
    let target = import_secret(session, secret).map_err(|e| e.to_string())?;
    let wrapped = session
        .wrap_key(&pad.mechanism(), aes.handle, target.handle)
        .map_err(|e| format!("C_WrapKey: {e}"))?;
    host::classify_kwp(&KAT_AES_KEY, secret, &wrapped)
}

/// Wraps the known AES key under the host test key with CKM_RSA_PKCS_OAEP (SHA-1) and decrypts
/// it on the host.
fn kat_oaep(session: &Session, test_key: &rsa::PrivateKey) -> Result<(), String> {
    let (n, e) = (test_key.n().to_be_bytes(), test_key.e().to_be_bytes());
    let kek = import_rsa_public(
        session,
        host::strip_zeros(&n),
        host::strip_zeros(&e),
        "self-test RSA key",
    )
    .map_err(|e| e.to_string())?;
    let aes =
        import_aes(session, &KAT_AES_KEY, true, "self-test AES key").map_err(|e| e.to_string())?;
    let wrapped = session
        .wrap_key(
            &Mechanism::RsaPkcsOaep(oaep_params()),
            kek.handle,
            aes.handle,
        )
        .map_err(|e| format!("C_WrapKey: {e}"))?;
    let plain = host::oaep_sha1_decrypt(test_key, &wrapped)?;
    if plain[..] == KAT_AES_KEY[..] {
        Ok(())
    } else {
        Err("the OAEP-wrapped key does not decrypt to the known key".to_owned())
    }
}

/// Wraps the known secret under the host test key with CKM_RSA_AES_KEY_WRAP and unwraps it on
/// the host (OAEP-SHA1, then strict RFC 5649).
fn kat_native(session: &Session, test_key: &rsa::PrivateKey, secret: &[u8]) -> Result<(), String> {
    let (n, e) = (test_key.n().to_be_bytes(), test_key.e().to_be_bytes());
    let kek = import_rsa_public(
        session,
        host::strip_zeros(&n),
        host::strip_zeros(&e),
        "self-test RSA key",
    )
    .map_err(|e| e.to_string())?;
    let target = import_secret(session, secret).map_err(|e| e.to_string())?;
    let wrapped =
        wrap_native(session, kek.handle, target.handle).map_err(|e| format!("C_WrapKey: {e}"))?;
    let k = test_key.size();
    if wrapped.len() != k + host::kwp_len(secret.len()) {
        return Err(format!(
            "the output is {} bytes, {} expected",
            wrapped.len(),
            k + host::kwp_len(secret.len())
        ));
    }
    let (rsa_part, kwp_part) = wrapped.split_at(k);
    let aes = host::oaep_sha1_decrypt(test_key, rsa_part)?;
    let aes: [u8; AES256_LEN] = aes[..]
        .try_into()
        .map_err(|_| format!("the wrapped AES key is {} bytes, not 32", aes.len()))?;
    let aes = Zeroizing::new(aes);
    if host::kwp_wrap(&aes, secret)? == kwp_part {
        Ok(())
    } else {
        Err("the AES key wrap part differs from RFC 5649".to_owned())
    }
}

/// What one wrap needs: the key, what its blob must hold, and the KEK (as an `rsa` key for the
/// host strategy, as big-endian n and e for the token).
struct Target<'a> {
    key: ObjectHandle,
    expected: &'a Expected,
    kek: &'a rsa::PublicKey,
    n: &'a [u8],
    e: &'a [u8],
}

/// Wraps private key `id` under `kek` with the strategy its key family uses:
/// `RSA-OAEP-SHA1(kek, aes256) || AES-KWP(aes256, PKCS#8 of the key)`.
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
    let key =
        find_one(session, ObjectClass::PRIVATE_KEY, id)?.ok_or(HsmError::KeyNotFound { id })?;
    let expected = expected_key(session, id, key)?;
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

/// One wrap with `strategy` (the self-test's and the push's).
fn wrap_with(
    session: &Session,
    plan: &Plan,
    strategy: WrapStrategy,
    target: &Target<'_>,
) -> Result<Vec<u8>, HsmError> {
    let missing = |what: &str| HsmError::WrapFailed {
        id: HsmKeyId([0; 16]),
        strategy,
        reason: format!("no {what} was selected"),
    };
    match strategy {
        WrapStrategy::Native => {
            let kek_obj = import_rsa_public(session, target.n, target.e, "KEK")?;
            wrap_native(session, kek_obj.handle, target.key)
                .map_err(HsmError::pkcs11("wrapping a key with CKM_RSA_AES_KEY_WRAP"))
        }
        WrapStrategy::TwoStep => {
            let pad = plan.two_step.ok_or_else(|| missing("RFC 5649 key wrap"))?;
            two_step(session, pad, target.key, target.n, target.e)
        }
        WrapStrategy::Host => {
            let pad = plan.host.ok_or_else(|| missing("padded key wrap"))?;
            host_wrap(session, pad, target)
        }
    }
}

/// Ephemeral on-token AES-256, the token's RFC 5649 wrap of the key, then OAEP of the AES key.
fn two_step(
    session: &Session,
    pad: PadMechanism,
    key: ObjectHandle,
    n: &[u8],
    e: &[u8],
) -> Result<Vec<u8>, HsmError> {
    let aes_handle = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                // RSA-OAEP wraps it out, under the KEK only.
                Attribute::Extractable(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(false),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::ValueLen(Ulong::from(std::ffi::c_ulong::from(32u32))),
            ],
        )
        .map_err(HsmError::pkcs11("generating the ephemeral AES-256 key"))?;
    let aes = Temporary {
        session,
        handle: aes_handle,
        what: "ephemeral AES key",
    };
    let kwp_part = session
        .wrap_key(&pad.mechanism(), aes.handle, key)
        .map_err(HsmError::pkcs11(
            "wrapping a key with the token's RFC 5649 key wrap",
        ))?;
    let kek = import_rsa_public(session, n, e, "KEK")?;
    let mut out = session
        .wrap_key(
            &Mechanism::RsaPkcsOaep(oaep_params()),
            kek.handle,
            aes.handle,
        )
        .map_err(HsmError::pkcs11(
            "wrapping the ephemeral AES key with CKM_RSA_PKCS_OAEP",
        ))?;
    drop(kek);
    drop(aes);
    out.extend(kwp_part);
    Ok(out)
}

/// The `host` strategy. The key leaves the token under a fresh AES-256 key k1, is unwrapped into
/// a `Zeroizing` buffer, trimmed to its exact DER length, re-encoded canonically and strictly
/// checked as PKCS#8 of the token's key (`strict::canonical_pkcs8`: a token that drops an EC
/// scalar's leading zero bytes still gives a conforming blob), and re-wrapped under a fresh k2
/// with `aes-kw`; k2 goes under the KEK with `rsa`. Every plaintext buffer is `Zeroizing` and
/// dropped before this returns; the daemon `mlockall()`s its memory at start-up, so none of it
/// reaches swap.
fn host_wrap(
    session: &Session,
    pad: PadMechanism,
    target: &Target<'_>,
) -> Result<Vec<u8>, HsmError> {
    let failed = |reason: String| HsmError::WrapFailed {
        id: HsmKeyId([0; 16]),
        strategy: WrapStrategy::Host,
        reason,
    };
    let k1 = host::random_aes256().map_err(failed)?;
    let wrapped = {
        let k1_obj = import_aes(session, &k1, false, "host-wrap AES key")?;
        session
            .wrap_key(&pad.mechanism(), k1_obj.handle, target.key)
            .map_err(HsmError::pkcs11("wrapping a key for host re-wrapping"))?
    };
    let mut der = host::kwp_unwrap(&k1, &wrapped).map_err(failed)?;
    drop(k1);
    host::trim_der(&mut der).map_err(failed)?;
    let canonical = strict::canonical_pkcs8(&der, target.expected).map_err(failed)?;
    drop(der);
    let ciphertext = host::transfer_ciphertext(target.kek, &canonical).map_err(failed)?;
    let want = target.kek.size() + host::kwp_len(canonical.len());
    drop(canonical);
    if ciphertext.len() != want {
        return Err(failed(format!(
            "the ciphertext is {} bytes, {want} expected",
            ciphertext.len()
        )));
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// CK_RSA_AES_KEY_WRAP_PARAMS is { CK_ULONG ulAESKeyBits; CK_RSA_PKCS_OAEP_PARAMS_PTR
    /// pOAEPParams; }: two machine words on LP64, no padding.
    #[test]
    fn rsa_aes_key_wrap_params_have_the_pkcs11_layout() {
        assert_eq!(
            std::mem::size_of::<RsaAesKeyWrapParams<'_>>(),
            std::mem::size_of::<std::ffi::c_ulong>() + std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::offset_of!(RsaAesKeyWrapParams<'_>, aes_key_bits),
            0
        );
        assert_eq!(
            std::mem::offset_of!(RsaAesKeyWrapParams<'_>, oaep),
            std::mem::size_of::<std::ffi::c_ulong>()
        );
        assert_eq!(
            std::mem::size_of::<Ulong>(),
            std::mem::size_of::<std::ffi::c_ulong>()
        );
    }

    #[test]
    fn strategies_serialise_with_their_config_names() {
        for (s, name) in [
            (WrapStrategy::Native, "native"),
            (WrapStrategy::TwoStep, "two-step"),
            (WrapStrategy::Host, "host"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), name);
            assert_eq!(s.to_string(), name);
        }
    }

    #[test]
    fn the_self_test_secret_is_not_a_multiple_of_8() {
        let secret = kat_secret();
        assert_eq!(secret.len(), KAT_SECRET_LEN);
        assert_ne!(secret.len() % 8, 0);
        assert!(secret.iter().any(|b| *b != 0));
    }
}

#[cfg(test)]
mod kek_fixture_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    #[test]
    fn the_committed_test_kek_is_an_rsa_2048_key() {
        use rsa::traits::PublicKeyParts as _;
        let key =
            <rsa::PrivateKey as pkcs8::DecodePrivateKey>::from_pkcs8_der(super::TEST_KEK).unwrap();
        assert_eq!(key.size(), 256);
    }
}
