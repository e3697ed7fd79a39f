//! Start-up failures name their fix, and no error text ever contains the PIN.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::hsm::{Hsm, HsmConfig, HsmError};
use byokd::secret::Pin;
use common::softhsm::{USER_PIN, isolated};
use std::path::PathBuf;
use std::time::Duration;

fn assert_no_pin(e: &HsmError, pin: &str) {
    let text = format!("{e} {e:?} {e:#?}");
    assert!(!text.contains(pin), "the PIN leaked: {text}");
    assert!(!text.contains(USER_PIN), "the PIN leaked: {text}");
}

#[test]
fn a_wrong_pin_is_reported_with_its_fix() {
    isolated("a_wrong_pin_is_reported_with_its_fix", |t| async move {
        let wrong = "wrong-pin-987654";
        let err = Hsm::start(&t.config(), Pin::new(wrong.into())).unwrap_err();
        assert!(matches!(err, HsmError::WrongPin { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("wrong PIN") && text.contains("check the PIN file"),
            "{text}"
        );
        assert!(text.contains(&t.label), "{text}");
        assert_no_pin(&err, wrong);
        // The right PIN still works afterwards.
        let (hsm, _) = Hsm::start(&t.config(), t.pin()).unwrap();
        hsm.shutdown().await.unwrap();
    });
}

#[test]
fn a_missing_module_is_reported_with_its_fix() {
    let cfg = HsmConfig {
        module: PathBuf::from("/nonexistent/libpkcs11-missing.so"),
        token_label: "byokd".into(),
        request_timeout: Duration::from_secs(5),
        allow_host_wrap: false,
        sessions: 0,
    };
    let err = Hsm::start(&cfg, Pin::new(USER_PIN.into())).unwrap_err();
    assert!(matches!(err, HsmError::ModuleNotLoadable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/libpkcs11-missing.so") && text.contains("check hsm.module"),
        "{text}"
    );
    assert_no_pin(&err, USER_PIN);
}

#[test]
fn a_file_that_is_not_a_pkcs11_module_is_reported_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("libnot-a-module.so");
    std::fs::write(&bogus, b"not an ELF file").unwrap();
    let cfg = HsmConfig {
        module: bogus.clone(),
        token_label: "byokd".into(),
        request_timeout: Duration::from_secs(5),
        allow_host_wrap: false,
        sessions: 0,
    };
    let err = Hsm::start(&cfg, Pin::new(USER_PIN.into())).unwrap_err();
    assert!(matches!(err, HsmError::ModuleNotLoadable { .. }), "{err:?}");
    assert!(err.to_string().contains("check hsm.module"), "{err}");
}

#[test]
fn an_unknown_token_label_lists_the_available_tokens() {
    isolated(
        "an_unknown_token_label_lists_the_available_tokens",
        |t| async move {
            let mut cfg = t.config();
            cfg.token_label = "no-such-token".into();
            let err = Hsm::start(&cfg, t.pin()).unwrap_err();
            match &err {
                HsmError::TokenNotFound { label, available } => {
                    assert_eq!(label, "no-such-token");
                    assert_eq!(available, &vec![t.label.clone()]);
                }
                other => panic!("expected TokenNotFound, got {other:?}"),
            }
            let text = err.to_string();
            assert!(
                text.contains(&format!("{:?}", t.label)) && text.contains("check hsm.token_label"),
                "{text}"
            );
            assert_no_pin(&err, &t.user_pin);
        },
    );
}

#[test]
fn requests_after_shutdown_report_the_worker_gone() {
    isolated(
        "requests_after_shutdown_report_the_worker_gone",
        |t| async move {
            let (hsm, report) = Hsm::start(&t.config(), t.pin()).unwrap();
            assert!(!report.mechanisms.is_empty());
            assert!(
                report.has_mechanism("CKM_AES_GCM"),
                "{:?}",
                report.mechanisms
            );
            assert!(report.has_mechanism("CKM_RSA_PKCS_OAEP"));
            let clone = hsm.clone();
            hsm.shutdown().await.unwrap();
            let err = clone.list_keys().await.unwrap_err();
            assert!(matches!(err, HsmError::WorkerGone), "{err:?}");
        },
    );
}
