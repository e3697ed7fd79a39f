//! Dual control end to end: deleting a credential (and a pushed key) needs a second, different
//! admin; self-approval, approval after expiry and double approval are refused; rejection
//! ends a request; both identities are logged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "control_rig/mod.rs"]
mod rig;

use rig::*;
use serde_json::Value;

fn add_credential(d: &Daemon, name: &str) {
    let body = format!(
        r#"{{"name":"{name}","tenant_id":"{TENANT}","client_id":"{CLIENT}","secret":"top-secret-{name}"}}"#
    );
    assert_eq!(
        d.curl(Some(ADMIN), "POST", "/v1/credentials", Some(&body))
            .0,
        201
    );
}

fn approval_id(v: &Value) -> String {
    v.pointer("/approval/id")
        .and_then(Value::as_str)
        .unwrap()
        .to_owned()
}

#[test]
fn deleting_a_credential_needs_a_second_different_admin() {
    let d = Daemon::start();
    add_credential(&d, "doomed");
    let (status, pending) = d.curl(Some(ADMIN), "DELETE", "/v1/credentials/doomed", None);
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["approval"]["status"], "pending");
    assert_eq!(pending["approval"]["requested_by"], "admin");
    let id = approval_id(&pending);
    // Still there while pending; a duplicate request is refused.
    assert_eq!(
        d.curl(Some(AUDITOR), "GET", "/v1/credentials/doomed", None)
            .0,
        200
    );
    assert_eq!(
        d.curl(Some(ADMIN2), "DELETE", "/v1/credentials/doomed", None)
            .0,
        409
    );
    // Self-approval is refused; an operator cannot approve.
    let (status, answer) = d.curl(
        Some(ADMIN),
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        None,
    );
    assert_eq!((status, code(&answer)), (403, "self_approval"), "{answer}");
    assert_eq!(
        d.curl(
            Some(OPERATOR),
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            None
        )
        .0,
        403
    );
    // The auditor sees it pending.
    let (_, list) = d.curl(Some(AUDITOR), "GET", "/v1/approvals?status=pending", None);
    assert_eq!(list["approvals"].as_array().unwrap().len(), 1, "{list}");
    // A second admin approves with byokctl; the credential is gone.
    let out = d.ctl(ADMIN2, &["approval", "approve", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        d.curl(Some(AUDITOR), "GET", "/v1/credentials/doomed", None)
            .0,
        404
    );
    let (_, shown) = d.curl(Some(AUDITOR), "GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(
        (shown["status"].as_str(), shown["decided_by"].as_str()),
        (Some("approved"), Some("admin2")),
        "{shown}"
    );
    // Double approval is refused (byokctl: conflict, exit 5).
    let (status, answer) = d.curl(
        Some(ADMIN2),
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        None,
    );
    assert_eq!(
        (status, code(&answer)),
        (409, "approval_decided"),
        "{answer}"
    );
    assert_eq!(
        d.ctl(ADMIN, &["approval", "approve", &id]).status.code(),
        Some(5)
    );
    // Both identities are in the log, and the secret is not.
    let log = d.log();
    assert!(
        log.contains("requested_by=admin") && log.contains("approved_by=admin2"),
        "{log}"
    );
    assert!(!log.contains("top-secret"), "a secret reached the log");
}

#[test]
fn a_rejected_request_cannot_be_approved() {
    let d = Daemon::start();
    add_credential(&d, "kept");
    let out = d.ctl(ADMIN, &["credential", "delete", "kept"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pending approval"), "{text}");
    let id = text
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    let out = d.ctl(ADMIN2, &["approval", "reject", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, answer) = d.curl(
        Some(ADMIN2),
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        None,
    );
    assert_eq!(
        (status, code(&answer)),
        (409, "approval_decided"),
        "{answer}"
    );
    assert_eq!(
        d.curl(Some(AUDITOR), "GET", "/v1/credentials/kept", None).0,
        200
    );
    assert!(d.log().contains("rejected_by=admin2"));
}

#[test]
fn an_approval_after_the_window_is_refused() {
    let d = Daemon::start_with(Options {
        approval_window_secs: 2,
        ..Options::default()
    });
    add_credential(&d, "late");
    let (status, pending) = d.curl(Some(ADMIN), "DELETE", "/v1/credentials/late", None);
    assert_eq!(status, 202);
    let id = approval_id(&pending);
    std::thread::sleep(std::time::Duration::from_millis(2600));
    let (status, answer) = d.curl(
        Some(ADMIN2),
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        None,
    );
    assert_eq!(
        (status, code(&answer)),
        (409, "approval_expired"),
        "{answer}"
    );
    assert_eq!(
        d.curl(Some(AUDITOR), "GET", "/v1/credentials/late", None).0,
        200,
        "not deleted"
    );
    let (_, shown) = d.curl(Some(AUDITOR), "GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(shown["status"], "expired");
    // The expiry and the refused approval are in the service log, with who and which approval.
    let (_, logged) = d.curl(Some(AUDITOR), "GET", "/v1/logs?limit=1000", None);
    let records = logged["records"].as_array().unwrap();
    for (event, who) in [("approval.expired", ADMIN), ("approval.refused", ADMIN2)] {
        assert!(
            records
                .iter()
                .any(|r| r["event"] == event && r["identity"] == who && r["approval"] == id),
            "no {event} by {who} for {id}: {logged}"
        );
    }
    // A fresh request can be made and approved in time.
    let (_, pending) = d.curl(Some(ADMIN), "DELETE", "/v1/credentials/late", None);
    let id = approval_id(&pending);
    assert_eq!(
        d.curl(
            Some(ADMIN2),
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            None
        )
        .0,
        200
    );
}

#[test]
fn a_key_never_pushed_is_deleted_at_once() {
    let d = Daemon::start();
    d.seed();
    assert_eq!(
        d.curl(
            Some(OPERATOR),
            "POST",
            "/v1/groups/g1/keys",
            Some(r#"{"name":"k1"}"#)
        )
        .0,
        201
    );
    let (status, answer) = d.curl(Some(OPERATOR), "DELETE", "/v1/groups/g1/keys/k1", None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        d.curl(Some(AUDITOR), "GET", "/v1/groups/g1/keys/k1", None)
            .0,
        404
    );
}

#[test]
fn deleting_a_pushed_key_needs_an_admin_and_a_second_admin() {
    let d = Daemon::start_with(Options {
        seed_state: Some(seed_pushed_key),
        ..Options::default()
    });
    let (status, answer) = d.curl(Some(OPERATOR), "DELETE", "/v1/groups/g1/keys/pushed", None);
    assert_eq!((status, code(&answer)), (403, "forbidden"), "{answer}");
    assert!(answer.to_string().contains("second admin"), "{answer}");
    let (status, pending) = d.curl(Some(ADMIN2), "DELETE", "/v1/groups/g1/keys/pushed", None);
    assert_eq!(status, 202, "{pending}");
    let id = approval_id(&pending);
    assert_eq!(
        d.curl(
            Some(ADMIN2),
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            None
        )
        .1["error"]["code"],
        "self_approval"
    );
    let (status, done) = d.curl(
        Some(ADMIN),
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        None,
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        d.curl(Some(AUDITOR), "GET", "/v1/groups/g1/keys/pushed", None)
            .0,
        404
    );
    let log = d.log();
    assert!(
        log.contains("requested_by=admin2") && log.contains("approved_by=admin"),
        "{log}"
    );
}
