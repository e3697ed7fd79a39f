//! Unit tests of the Key Vault bodies and recovery levels.

use super::keys::strip_leading_zeros;
use super::*;

#[test]
fn recovery_levels_follow_the_reference_table() {
    let lv = |s: &str| RecoveryLevel::from(s.to_string());
    assert!(!lv("Purgeable").soft_delete() && !lv("Purgeable").purge_allowed());
    assert!(lv("Recoverable+Purgeable").purge_allowed());
    assert!(lv("CustomizedRecoverable+Purgeable").purge_allowed());
    for p in [
        "Recoverable",
        "CustomizedRecoverable",
        "Recoverable+ProtectedSubscription",
        "CustomizedRecoverable+ProtectedSubscription",
    ] {
        assert!(
            !lv(p).purge_allowed() && lv(p).purge_protected() && lv(p).soft_delete(),
            "{p}"
        );
    }
    assert!(!lv("Something+New").purge_allowed());
    assert_eq!(
        lv("Recoverable+Purgeable").as_str(),
        "Recoverable+Purgeable"
    );
}

#[test]
fn leading_zero_bytes_of_the_exponent_are_stripped() {
    let e = JsonWebKey::decode(Some("AAEAAQ")).unwrap();
    assert_eq!(strip_leading_zeros(e), vec![1, 0, 1]);
}

#[test]
fn key_bundle_example_from_the_spec_parses() {
    let json = r#"{"key":{"kid":"https://myvault.vault.azure.net/keys/CreateSoftKeyTest/78deebed173b48e48f55abf87ed4cf71","kty":"RSA","key_ops":["encrypt","decrypt"],"n":"2HJAE5fU","e":"AQAB"},"attributes":{"enabled":true,"created":1493942451,"updated":1493942451,"recoveryLevel":"Recoverable+Purgeable"},"tags":{"purpose":"unit test"}}"#;
    let b: KeyBundle = serde_json::from_str(json).unwrap();
    assert_eq!(b.version(), "78deebed173b48e48f55abf87ed4cf71");
    assert_eq!(
        b.attributes.recovery_level,
        Some(RecoveryLevel::RecoverablePurgeable)
    );
    let attrs = serde_json::to_value(KeyAttributes {
        enabled: Some(false),
        exp: Some(5),
        ..b.attributes
    })
    .unwrap();
    assert_eq!(
        attrs,
        serde_json::json!({"enabled": false, "exp": 5}),
        "read-only members are never sent"
    );
}
