//! The control API end to end: the real daemon, a real SoftHSM token, generated certificates,
//! driven with curl. Roles on every route class, TLS refusals, unmapped certificates, errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "control_rig/mod.rs"]
mod rig;

use rig::*;

#[test]
fn each_role_is_allowed_and_denied_on_every_route_class() {
    let d = Daemon::start();
    d.seed();
    let new_key = |n: &str| format!(r#"{{"name":"{n}"}}"#);
    // (method, path, body, [admin, operator, auditor] expected statuses)
    let cases: Vec<(&str, String, Option<String>, [u16; 3])> = vec![
        // Reads: every role.
        ("GET", "/v1/health".into(), None, [200, 200, 200]),
        ("GET", "/v1/whoami".into(), None, [200, 200, 200]),
        ("GET", "/v1/credentials".into(), None, [200, 200, 200]),
        ("GET", "/v1/credentials/c1".into(), None, [200, 200, 200]),
        ("GET", "/v1/groups".into(), None, [200, 200, 200]),
        ("GET", "/v1/groups/g1".into(), None, [200, 200, 200]),
        ("GET", "/v1/groups/g1/keys".into(), None, [200, 200, 200]),
        ("GET", "/v1/approvals".into(), None, [200, 200, 200]),
        ("GET", "/v1/jobs".into(), None, [200, 200, 200]),
        ("GET", "/v1/jobs/999999".into(), None, [404, 404, 404]),
        ("GET", "/v1/config/designated".into(), None, [200, 200, 200]),
        ("GET", "/v1/logs".into(), None, [200, 200, 200]),
        ("GET", "/v1/logs/export".into(), None, [200, 200, 200]),
        ("GET", "/v1/logs/verify".into(), None, [200, 200, 200]),
        // Keys, groups, rotation, sync: admin and operator. `{who}` is the caller's name.
        ("POST", "/v1/groups/g1/keys".into(), Some(new_key("k-{who}")), [201, 201, 403]),
        ("DELETE", "/v1/groups/g1/keys/k-{who}".into(), None, [200, 200, 403]),
        ("PATCH", "/v1/groups/g1".into(), Some(r#"{"rotation":{"enabled":true,"rotate_every_months":6}}"#.into()), [200, 200, 403]),
        ("POST", "/v1/groups".into(), Some(r#"{"name":"g2-{who}","credential":"c1","vault":"contoso-kv","key_type":"RSA-2048"}"#.into()), [201, 201, 403]),
        ("DELETE", "/v1/groups/g2-{who}".into(), None, [200, 200, 403]),
        ("POST", "/v1/groups/g1/sync".into(), None, [202, 202, 403]),
        ("POST", "/v1/groups/g1/rotate".into(), None, [202, 202, 403]),
        ("POST", "/v1/groups/g1/check".into(), None, [202, 202, 403]),
        ("POST", "/v1/groups/g1/keys/k1/sync".into(), None, [202, 202, 403]),
        ("GET", "/v1/groups/g1/keys/k1/public".into(), None, [200, 200, 200]),
        ("POST", "/v1/jobs/999999/cancel".into(), None, [404, 404, 403]),
        // Credentials, designated device, destructive cloud actions, approvals: admin only.
        ("POST", "/v1/credentials".into(), Some(format!(r#"{{"name":"c2-{{who}}","tenant_id":"{TENANT}","client_id":"{CLIENT}","secret":"x"}}"#)), [201, 403, 403]),
        ("PATCH", "/v1/credentials/c2-{who}".into(), Some(r#"{"expires":"2030-03-17T17:46:40Z"}"#.into()), [200, 403, 403]),
        ("PUT", "/v1/config/designated".into(), Some(r#"{"designated":true}"#.into()), [200, 403, 403]),
        ("POST", "/v1/groups/g1/delete-cloud".into(), None, [202, 403, 403]),
        ("POST", "/v1/groups/g1/purge".into(), None, [202, 403, 403]),
        ("DELETE", "/v1/credentials/c2-{who}".into(), None, [202, 403, 403]),
        ("POST", "/v1/approvals/6f1c1b7e-3b0a-4f43-9a57-1b2b2f1d0c11/approve".into(), None, [404, 403, 403]),
        ("POST", "/v1/approvals/6f1c1b7e-3b0a-4f43-9a57-1b2b2f1d0c11/reject".into(), None, [404, 403, 403]),
    ];
    assert_eq!(
        d.curl(
            Some(ADMIN),
            "POST",
            "/v1/groups/g1/keys",
            Some(&new_key("k1"))
        )
        .0,
        201
    );
    for (method, path, body, expected) in &cases {
        for (i, who) in [ADMIN, OPERATOR, AUDITOR].into_iter().enumerate() {
            let path = path.replace("{who}", who);
            let body = body.as_ref().map(|b| b.replace("{who}", who));
            let (status, answer) = d.curl(Some(who), method, &path, body.as_deref());
            assert_eq!(status, expected[i], "{who} {method} {path}: {answer}");
            if status == 403 {
                assert_eq!(code(&answer), "forbidden", "{answer}");
            }
        }
        let (status, answer) = d.curl(Some(STRANGER), method, path, body.as_deref());
        assert_eq!(status, 403, "unmapped {method} {path}: {answer}");
        assert!(answer.to_string().contains("not mapped"), "{answer}");
    }
}

#[test]
fn certificates_outside_the_console_ca_and_missing_ones_fail_at_tls() {
    let d = Daemon::start();
    let (status, _) = d.curl(Some(FOREIGN), "GET", "/v1/health", None);
    assert_eq!(
        status, 0,
        "another CA's certificate must not get an HTTP answer"
    );
    let (status, _) = d.curl(None, "GET", "/v1/health", None);
    assert_eq!(
        status, 0,
        "no client certificate must not get an HTTP answer"
    );
    let out = d.ctl(FOREIGN, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "byokctl exit code for a TLS refusal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A certificate from the console CA that is in no mapping gets 403, on every route.
    let (status, answer) = d.curl(Some(STRANGER), "GET", "/v1/health", None);
    assert_eq!(status, 403);
    assert!(
        answer
            .pointer("/error/message")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("not mapped")
    );
    assert_eq!(d.ctl(STRANGER, &["status"]).status.code(), Some(3));
    // And the daemon still serves.
    assert_eq!(d.curl(Some(AUDITOR), "GET", "/v1/health", None).0, 200);
}

#[test]
fn health_reports_hsm_and_state() {
    let d = Daemon::start();
    let (status, h) = d.curl(Some(AUDITOR), "GET", "/v1/health", None);
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["live"], true);
    assert_eq!(h["ready"], true, "{h}");
    assert_eq!(h["hsm"]["token"], "ctl-test");
    assert!(h["state"]["generation"].is_u64());
    let (_, me) = d.curl(Some(ADMIN2), "GET", "/v1/whoami", None);
    assert_eq!(
        (me["identity"].as_str(), me["role"].as_str()),
        (Some("admin2"), Some("admin"))
    );
}

#[test]
fn bad_input_gets_400_naming_the_field() {
    let d = Daemon::start();
    d.seed();
    let cases = [
        (
            "POST",
            "/v1/groups",
            r#"{"name":"g9","credential":"c1","vault":"contoso-kv""#,
            "malformed_json",
            "",
        ),
        (
            "POST",
            "/v1/groups",
            r#"{"name":"g9","credential":"c1","vault":"contoso-kv","key_type":2048}"#,
            "invalid_field",
            "key_type",
        ),
        (
            "POST",
            "/v1/groups",
            r#"{"name":"g9","credential":"c1","vault":"contoso-kv","key_type":"RSA-2048","colour":"red"}"#,
            "invalid_field",
            "colour",
        ),
        (
            "POST",
            "/v1/groups",
            r#"{"name":"g9","credential":"c1","vault":"x","key_type":"RSA-2048"}"#,
            "invalid_field",
            "vault",
        ),
        (
            "POST",
            "/v1/groups",
            r#"{"name":"g9","credential":"c1","vault":"contoso-kv","key_type":"RSA-1024"}"#,
            "invalid_field",
            "key_type",
        ),
        (
            "POST",
            "/v1/groups",
            r#"{"name":"g9","credential":"c1","vault":"contoso-kv","key_type":"EC-P256","rotation":{"rotate_every_months":"six"}}"#,
            "invalid_field",
            "rotation.rotate_every_months",
        ),
        (
            "POST",
            "/v1/groups",
            r#"{"name":"g9","credential":"c1","vault":"contoso-kv","key_type":"EC-P256","rotation":{"rotate_every_months":0}}"#,
            "invalid_field",
            "rotation.rotate_every_months",
        ),
        (
            "PATCH",
            "/v1/groups/g1",
            r#"{"rotation":{"enabled":"yes"}}"#,
            "invalid_field",
            "rotation.enabled",
        ),
        (
            "POST",
            "/v1/credentials",
            &format!(
                r#"{{"name":"c9","tenant_id":"not-a-guid","client_id":"{CLIENT}","secret":"x"}}"#
            ),
            "invalid_field",
            "tenant_id",
        ),
        (
            "POST",
            "/v1/credentials",
            &format!(r#"{{"name":"c9","tenant_id":"{TENANT}","client_id":"{CLIENT}"}}"#),
            "invalid_field",
            "secret",
        ),
        (
            "POST",
            "/v1/credentials",
            &format!(
                r#"{{"name":"c9","tenant_id":"{TENANT}","client_id":"{CLIENT}","secret":12345}}"#
            ),
            "invalid_field",
            "secret",
        ),
        (
            "POST",
            "/v1/groups/g1/keys",
            r#"{"name":"bad name"}"#,
            "invalid_field",
            "name",
        ),
        (
            "POST",
            "/v1/groups/g1/keys",
            r#"[1,2,3]"#,
            "invalid_body",
            "body",
        ),
        (
            "PUT",
            "/v1/config/designated",
            r#"{"designated":"true"}"#,
            "invalid_field",
            "designated",
        ),
        ("PUT", "/v1/config/designated", "", "missing_body", "body"),
    ];
    for (method, path, body, want_code, want_field) in cases {
        let (status, answer) = d.curl(Some(ADMIN), method, path, Some(body));
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        assert_eq!(code(&answer), want_code, "{body}: {answer}");
        if !want_field.is_empty() {
            assert_eq!(field(&answer), want_field, "{body}: {answer}");
        }
        assert!(
            !answer.to_string().contains("12345"),
            "a secret value came back: {answer}"
        );
    }
    // AES keys (oct-HSM) only in a Managed HSM: a Key Vault group of them is refused, saying
    // why, and EC usages for AES are refused too.
    let (status, answer) = d.curl(
        Some(ADMIN),
        "POST",
        "/v1/groups",
        Some(r#"{"name":"g9","credential":"c1","vault":"contoso-kv","key_type":"AES-256"}"#),
    );
    assert_eq!((status, field(&answer)), (400, "key_type"), "{answer}");
    let m = answer["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("Managed HSM") && m.contains("Key Vault does not accept oct-HSM"),
        "{m}"
    );
    let (status, answer) = d.curl(
        Some(ADMIN),
        "POST",
        "/v1/groups",
        Some(
            r#"{"name":"g9","credential":"c1","managed_hsm":"contoso-hsm","key_type":"AES-128","key_ops":["sign"]}"#,
        ),
    );
    assert_eq!((status, field(&answer)), (400, "key_ops"), "{answer}");
    // Path parameters are validated and named too.
    let (status, answer) = d.curl(Some(ADMIN), "GET", "/v1/groups/bad_name", None);
    assert_eq!((status, field(&answer)), (400, "group"), "{answer}");
    let (status, answer) = d.curl(Some(ADMIN), "GET", "/v1/approvals/xyz", None);
    assert_eq!((status, field(&answer)), (400, "approval"), "{answer}");
    let (status, answer) = d.curl(Some(ADMIN), "GET", "/v1/jobs/1?wait=999", None);
    assert_eq!((status, field(&answer)), (400, "wait"), "{answer}");
    let (status, answer) = d.curl(Some(ADMIN), "GET", "/v1/jobs/not-a-number", None);
    assert_eq!((status, field(&answer)), (400, "job"), "{answer}");
    // Unknown routes and methods.
    assert_eq!(d.curl(Some(ADMIN), "GET", "/v1/nothing", None).0, 404);
    let (status, v) = d.curl(Some(ADMIN), "PUT", "/v1/groups", None);
    assert_eq!(status, 405);
    // The answer says what the path does allow, and where to look.
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("allows only GET, POST") && m.contains("openapi"),
        "{m}"
    );
    // Conflicts.
    let (status, answer) = d.curl(
        Some(ADMIN),
        "POST",
        "/v1/groups",
        Some(r#"{"name":"g1","credential":"c1","vault":"contoso-kv","key_type":"EC-P256"}"#),
    );
    assert_eq!((status, code(&answer)), (409, "conflict"), "{answer}");
    let (status, answer) = d.curl(Some(ADMIN), "DELETE", "/v1/credentials/c1", None);
    assert_eq!(
        (status, code(&answer)),
        (409, "conflict"),
        "credential in use: {answer}"
    );
    let (status, _) = d.curl(
        Some(ADMIN),
        "POST",
        "/v1/groups",
        Some(r#"{"name":"g8","credential":"nope","vault":"contoso-kv","key_type":"EC-P256"}"#),
    );
    assert_eq!(status, 404);
}

#[test]
fn an_oversized_body_gets_413_and_oversized_headers_are_refused() {
    let d = Daemon::start();
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(20_000));
    let (status, answer) = d.curl(Some(ADMIN), "POST", "/v1/groups", Some(&big));
    assert_eq!((status, code(&answer)), (413, "body_too_large"), "{answer}");
    // Chunked, so no Content-Length to refuse early.
    let (status, _) = d.curl_raw(
        Some(ADMIN),
        "POST",
        "/v1/groups",
        Some(&big),
        &["-H", "transfer-encoding: chunked"],
    );
    assert_eq!(status, 413);
    let huge_header = format!("x-filler: {}", "b".repeat(40_000));
    let (status, _) = d.curl_raw(
        Some(ADMIN),
        "GET",
        "/v1/health",
        None,
        &["-H", &huge_header],
    );
    assert!(
        status == 431 || status == 0,
        "oversized header block answered {status}"
    );
    assert_eq!(
        d.curl(Some(ADMIN), "GET", "/v1/health", None).0,
        200,
        "still serving"
    );
}

#[test]
fn the_unix_socket_is_private_and_speaks_the_same_tls() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let d = Daemon::start();
    let meta = std::fs::metadata(&d.unix_socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let sock = format!("unix:{}", d.unix_socket.display());
    let out = d.ctl(
        AUDITOR,
        &["--server", &sock, "--output", "json", "designated", "get"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["designated"], true);
    let out = d.ctl(FOREIGN, &["--server", &sock, "status"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_credential_expiry_is_a_real_rfc3339_date_and_patch_changes_only_what_it_names() {
    let d = Daemon::start();
    let add = |expires: &str| {
        d.curl(
            Some(ADMIN),
            "POST",
            "/v1/credentials",
            Some(&format!(
                r#"{{"name":"exp","tenant_id":"{TENANT}","client_id":"{CLIENT}","secret":"s3cret","expires":{expires}}}"#
            )),
        )
    };
    // Before 2000-01-01, after 9999-12-31 (not writable in RFC 3339), not RFC 3339 at all,
    // and Unix seconds (times in the API are RFC 3339 strings only).
    let out_of_range = [
        r#""1999-12-31T23:59:59Z""#,
        r#""1970-01-01T00:00:00Z""#,
        r#""10000-01-01T00:00:00Z""#,
        r#""2030-03-17""#,
        r#""2030-03-17 17:46:40""#,
        r#""""#,
        "0",
        "1900000000",
        "-9223372036854775808",
        "9223372036854775807",
    ];
    for bad in out_of_range {
        let (status, body) = add(bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(field(&body), "expires", "{bad}: {body}");
    }
    // Any offset is read; the API answers in UTC.
    let (status, body) = add(r#""2030-03-17T19:46:40+02:00""#);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires"], "2030-03-17T17:46:40Z");
    assert!(
        body["created"].as_str().is_some_and(|c| c.ends_with('Z')),
        "{body}"
    );
    let patch = |body: &str| d.curl(Some(ADMIN), "PATCH", "/v1/credentials/exp", Some(body));
    // An absent field is unchanged (an empty PATCH used to clear the expiry).
    let (status, body) = patch("{}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires"], "2030-03-17T17:46:40Z", "{body}");
    for bad in out_of_range {
        let (status, body) = patch(&format!(r#"{{"expires":{bad}}}"#));
        assert_eq!((status, field(&body)), (400, "expires"), "{bad}: {body}");
    }
    let (_, body) = d.curl(Some(ADMIN), "GET", "/v1/credentials/exp", None);
    assert_eq!(
        body["expires"], "2030-03-17T17:46:40Z",
        "a refused PATCH changes nothing"
    );
    let (status, body) = patch(r#"{"expires":"9999-12-31T23:59:59Z"}"#);
    assert_eq!(
        (status, &body["expires"]),
        (200, &"9999-12-31T23:59:59Z".into())
    );
    // An explicit null clears it.
    let (status, body) = patch(r#"{"expires":null}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body["expires"].is_null(), "{body}");
}
