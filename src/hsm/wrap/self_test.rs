//! The start-up self-test: runs the known-answer tests, picks the strategy, runs the encoding
//! conformance self-test per key family, and logs the verdict.

use super::conformance;
use super::kat::{TEST_KEK, kat_native, kat_oaep, kat_pad, kat_secret};
use super::plan::{PadMechanism, Plan};
use super::strategies::{Target, wrap_with};
use super::verdict::KeyFamily;
use super::{StrategyCheck, WrapReport, WrapStrategy};
use crate::hsm::capability::Capabilities;
use crate::hsm::host::{self, KwpBehaviour};
use crate::hsm::report::{CKM_RSA_AES_KEY_WRAP, CKM_RSA_PKCS_OAEP};
use crate::hsm::strict::Expected;
use crate::hsm::{HsmError, TokenReport};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use rsa::traits::PublicKeyParts as _;

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
