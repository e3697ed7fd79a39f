//! `byokd check-config`: a good configuration passes; bad ones list every problem with its line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("byokd.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_byokd"))
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn module() -> String {
    // Any existing absolute file passes the "module exists" check; the tests don't load it.
    std::env::var("BYOKD_PKCS11_MODULE").unwrap_or_else(|_| "/bin/sh".into())
}

fn good() -> String {
    format!(
        r#"state_dir = "/var/lib/byokd"
designated = true

[hsm]
module = "{}"
token_label = "byokd"
pin_file = "hsm-pin"

[azure]
cloud = "public"

[azure.resolve]
"login.microsoftonline.com" = "127.0.0.1:8443"

[limits]
max_body_bytes = 65536
"#,
        module()
    )
}

#[test]
fn a_good_configuration_passes() {
    let (ok, stdout, stderr) = check(&good());
    assert!(ok, "stderr: {stderr}");
    assert!(stdout.contains("OK"));
}

#[test]
fn the_shipped_default_configuration_is_valid_apart_from_its_module_path() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/byokd.toml"))
        .unwrap();
    let text = text.replace("/usr/lib/softhsm/libsofthsm2.so", &module());
    let (ok, _, stderr) = check(&text);
    assert!(ok, "{stderr}");
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = format!(
        r#"state_dir = "relative/dir"
colour = "blue"

[hsm]
module = "{}"
token_label = "byokd"
pin = "1234"

[azure]
cloud = "mars"

[limits]
max_connections = "many"
"#,
        module()
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    assert!(
        stderr.contains("line 2: unknown key \"colour\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 7: unknown key \"pin\" in [hsm]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 10: azure.cloud: \"mars\" is not one of public, china, usgov"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 13: limits.max_connections must be a non-negative integer"),
        "{stderr}"
    );
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
}

#[test]
fn semantic_problems_name_the_setting_and_line() {
    let text = good()
        .replace(
            "state_dir = \"/var/lib/byokd\"",
            "state_dir = \"var/lib/byokd\"",
        )
        .replace(
            &format!("module = \"{}\"", module()),
            "module = \"/nonexistent/libvendor.so\"",
        )
        .replace("max_body_bytes = 65536", "max_body_bytes = 0");
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    assert!(
        stderr.contains("line 1: state_dir \"var/lib/byokd\" must be an absolute path"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 5: hsm.module \"/nonexistent/libvendor.so\" does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("limits.max_body_bytes must be greater than 0"),
        "{stderr}"
    );
}

#[test]
fn syntax_errors_and_missing_sections_are_reported() {
    let (ok, _, stderr) = check("state_dir = \"/x\"\n[hsm\nmodule = 1\n");
    assert!(!ok);
    assert!(stderr.contains("line 2"), "{stderr}");
    let (ok, _, stderr) = check("state_dir = \"/x\"\n");
    assert!(!ok);
    assert!(
        stderr.contains("missing required section [hsm]"),
        "{stderr}"
    );
    let (ok, _, stderr) = check("[hsm]\nmodule = \"/bin/sh\"\n");
    assert!(!ok);
    assert!(
        stderr.contains("missing required key \"token_label\" in [hsm]"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_byokd"))
        .args(["--config", "/nonexistent/byokd.toml", "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/byokd.toml"));
}

#[test]
fn assertion_alg_takes_ps256_or_rs256_only() {
    for alg in ["PS256", "RS256"] {
        let text = good().replace(
            "cloud = \"public\"",
            &format!("cloud = \"public\"\nassertion_alg = \"{alg}\""),
        );
        let (ok, _, stderr) = check(&text);
        assert!(ok, "{alg}: {stderr}");
    }
    let text = good().replace(
        "cloud = \"public\"",
        "cloud = \"public\"\nassertion_alg = \"ES256\"",
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    assert!(
        stderr.contains("line 11: azure.assertion_alg: \"ES256\" is not one of PS256, RS256"),
        "{stderr}"
    );
}

#[test]
fn the_control_fairness_limits_are_bounded() {
    let with = |lines: &str| {
        good().replace(
            "max_body_bytes = 65536",
            &format!("max_body_bytes = 65536\nmax_connections = 64\n{lines}"),
        )
    };
    let (ok, _, stderr) = check(&with(
        "max_connections_per_peer = 16\nmax_long_polls_per_identity = 8\nhandshake_timeout_ms = 5000\nauth_failure_window_secs = 60",
    ));
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = check(&with(
        "max_connections_per_peer = 64\nmax_long_polls_per_identity = 0\nhandshake_timeout_ms = 600000\nauth_failure_window_secs = 0",
    ));
    assert!(!ok);
    for want in [
        "limits.max_connections_per_peer 64 must be from 1 to 63 (less than limits.max_connections, 64)",
        "limits.max_long_polls_per_identity 0 must be from 1 to 63",
        "limits.handshake_timeout_ms 600000 must be from 100 to 60000",
        "limits.auth_failure_window_secs 0 must be from 1 to 3600",
    ] {
        assert!(stderr.contains(want), "{want:?} not in {stderr}");
    }
    assert_eq!(stderr.matches("line ").count(), 4, "{stderr}");
}
