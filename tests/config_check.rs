//! `byokd check-config`: a good configuration passes; bad ones list every problem with its line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Writes `text` as a configuration file only its owner can read (as the daemon requires).
fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("byokd.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    check_path(&path)
}

fn check_path(path: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_byokd"))
        .arg("--config")
        .arg(path)
        .arg("check-config")
        .env_remove("CREDENTIALS_DIRECTORY")
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
    let (ok, stdout, stderr) = check_reachable(&good());
    assert!(ok, "stderr: {stderr}");
    assert!(stdout.contains("OK"));
}

/// Without `[control]` the daemon opens neither the TCP listener nor the front-panel socket:
/// check-config refuses it and says what to add.
#[test]
fn a_daemon_no_console_could_reach_is_refused() {
    let (ok, _, stderr) = check(&good());
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("no [control] section: no console could reach this daemon")
            && stderr.contains("server_cert, server_key, client_ca"),
        "{stderr}"
    );
}

#[test]
fn the_shipped_default_configuration_is_valid_apart_from_its_module_path() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/byokd.toml"))
        .unwrap();
    // Its paths filled in: the module, and the console files where the operator guide puts them.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    console_files(d);
    let text = text
        .replace("/usr/lib/softhsm/libsofthsm2.so", &module())
        .replace("/etc/byokd/console", &d.display().to_string())
        .replace("/run/byokd", &d.display().to_string());
    let (ok, _, stderr) = check(&text);
    assert!(ok, "{stderr}");
    assert!(text.contains("[control]") && text.contains("[[control.identities]]"));
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
        stderr.contains(
            "line 13: limits.max_connections must be a whole number from 1 to 65536, not a string"
        ),
        "{stderr}"
    );
    // The type errors do not hide the checks of the other settings.
    assert!(
        stderr.contains("line 1: state_dir \"relative/dir\" must be an absolute path"),
        "{stderr}"
    );
    // And a sixth: no [control], so no console could reach the daemon.
    assert!(stderr.contains("6 problem(s)"), "{stderr}");
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
        stderr.contains(
            "limits.max_body_bytes = 0 is out of range: it must be a whole number from 1 to 67108864"
        ),
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
        let (ok, _, stderr) = check_reachable(&text);
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
    let (ok, _, stderr) = check_reachable(&with(
        "max_connections_per_peer = 16\nmax_long_polls_per_identity = 8\nhandshake_timeout_ms = 5000\nauth_failure_window_secs = 60",
    ));
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = check(&with(
        "max_connections_per_peer = 64\nmax_long_polls_per_identity = 0\nhandshake_timeout_ms = 600000\nauth_failure_window_secs = 0",
    ));
    assert!(!ok);
    for want in [
        "limits.max_connections_per_peer 64 must be from 1 to 63 (less than limits.max_connections, 64)",
        "limits.max_long_polls_per_identity = 0 is out of range: it must be a whole number from 1 to 65536",
        "limits.handshake_timeout_ms = 600000 is out of range: it must be a whole number from 100 to 60000",
        "limits.auth_failure_window_secs = 0 is out of range: it must be a whole number from 1 to 3600",
    ] {
        assert!(stderr.contains(want), "{want:?} not in {stderr}");
    }
    assert_eq!(stderr.matches("line ").count(), 4, "{stderr}");
}

/// Every integer setting, with a value past any sane bound (usize::MAX >> 3 is tokio's largest
/// semaphore; more overflows time-outs and channels).
const INTEGER_SETTINGS: &[(&str, &str)] = &[
    ("azure", "connect_timeout_ms"),
    ("azure", "read_timeout_ms"),
    ("azure", "total_timeout_ms"),
    ("azure", "max_attempts"),
    ("azure", "max_retry_wait_ms"),
    ("azure", "retry_base_ms"),
    ("azure", "kek_size"),
    ("azure", "vault_create_budget"),
    ("azure", "vault_budget_window_ms"),
    ("azure", "vault_concurrent_imports"),
    ("limits", "hsm_request_timeout_ms"),
    ("limits", "max_body_bytes"),
    ("limits", "max_header_bytes"),
    ("limits", "max_connections"),
    ("limits", "max_connections_per_peer"),
    ("limits", "handshake_timeout_ms"),
    ("limits", "max_long_polls_per_identity"),
    ("limits", "auth_failure_window_secs"),
    ("limits", "read_timeout_ms"),
    ("limits", "idle_timeout_ms"),
    ("limits", "max_keys"),
    ("limits", "max_groups"),
    ("limits", "max_credentials"),
    ("logs", "max_segment_bytes"),
    ("logs", "max_total_bytes"),
    ("logs", "fsync_interval_ms"),
    ("lifecycle", "grace_days"),
    ("lifecycle", "drift_check_hours"),
    ("jobs", "retain_count"),
    ("jobs", "retain_days"),
];

#[test]
fn every_integer_setting_has_an_upper_bound() {
    let huge = (usize::MAX >> 3) + 1;
    let mut text = format!(
        "[hsm]\nmodule = \"{}\"\ntoken_label = \"byokd\"\npin_file = \"hsm-pin\"\n",
        module()
    );
    let mut section = "";
    for (s, key) in INTEGER_SETTINGS {
        if *s != section {
            text.push_str(&format!("[{s}]\n"));
            section = s;
        }
        text.push_str(&format!("{key} = {huge}\n"));
    }
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    for (s, key) in INTEGER_SETTINGS {
        assert!(
            stderr.contains(&format!("{s}.{key} = {huge} is out of range")),
            "{s}.{key}: {stderr}"
        );
    }
    assert!(
        // And one for the missing [control].
        stderr.contains(&format!("{} problem(s)", INTEGER_SETTINGS.len() + 1)),
        "{stderr}"
    );
}

#[test]
fn a_huge_max_connections_is_refused_by_check_config_and_by_the_daemon() {
    let text = good().replace(
        "max_body_bytes = 65536",
        "max_connections = 2305843009213693952",
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    let expected = "limits.max_connections = 2305843009213693952 is out of range: it must be a whole number from 1 to 65536";
    assert!(stderr.contains(expected), "{stderr}");
    // The daemon refuses the same file with the same words, before it touches anything.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("byokd.toml");
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_byokd"))
        .arg("--config")
        .arg(&path)
        .arg("run")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_type_error_does_not_hide_range_and_cross_setting_problems() {
    let text = good().replace(
        "max_body_bytes = 65536",
        r#"max_connections = "many"
max_body_bytes = 0

[logs]
fsync_interval_ms = 0

[[logs.syslog]]
transport = "tls"
address = "collector.example:6514"
queue = "lots""#,
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    for expected in [
        "line 16: limits.max_connections must be a whole number from 1 to 65536, not a string",
        "line 17: limits.max_body_bytes = 0 is out of range",
        "line 20: logs.fsync_interval_ms = 0 is out of range: it must be a whole number from 1 to 60000",
        "line 25: logs.syslog.0.queue must be a whole number from 1 to 1000000, not a string",
        "line 22: a tls syslog collector needs ca_file",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    // And a sixth: no [control], so no console could reach the daemon.
    assert!(stderr.contains("6 problem(s)"), "{stderr}");
}

#[test]
fn a_wrong_type_is_named_with_its_article() {
    let (ok, _, stderr) = check(&good().replace("state_dir = \"/var/lib/byokd\"", "state_dir = 5"));
    assert!(!ok);
    assert!(
        stderr.contains("line 1: state_dir must be a string, not an integer"),
        "{stderr}"
    );
}

/// A configuration whose every file is in `dir`: the PIN (absolute path), the control
/// certificate, key and CA.
/// A console CA, a server certificate and key, and a PIN file in `d`, as the daemon accepts them.
fn console_files(d: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &rcgen::Issuer::new(ca, ca_key))
        .unwrap();
    std::fs::write(d.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(d.join("server.pem"), server.pem()).unwrap();
    std::fs::write(d.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(d.join("pin"), "1234\n").unwrap();
    for f in ["server.key", "pin"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// `text` with a `[control]` section whose files exist: a daemon a console can reach.
fn check_reachable(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    console_files(d);
    check(&format!(
        "{text}\n[control]\nserver_cert = \"{d}/server.pem\"\nserver_key = \"{d}/server.key\"\nclient_ca = \"{d}/ca.pem\"\n",
        d = d.display()
    ))
}

fn with_files(dir: &Path) -> String {
    format!(
        "{}\n[control]\nserver_cert = \"{d}/server.pem\"\nserver_key = \"{d}/server.key\"\nclient_ca = \"{d}/ca.pem\"\n",
        good().replace(
            "pin_file = \"hsm-pin\"",
            &format!("pin_file = \"{}/pin\"", dir.display())
        ),
        d = dir.display()
    )
}

#[test]
fn check_config_reports_every_file_the_daemon_would_refuse_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("byokd.toml");
    std::fs::write(&config, with_files(dir.path())).unwrap();
    // Readable by others through an open directory: the daemon refuses it at start-up.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    // No PIN file, no certificate, no key, no CA.
    let (ok, _, stderr) = check_path(&config);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("can be read by other users") && stderr.contains("chmod 640"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "cannot read the PIN file {}/pin",
            dir.path().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("control.server_cert"), "{stderr}");
    assert!(stderr.contains("3 problem(s)"), "{stderr}");

    // A PIN file others can read, and a FIFO instead of one.
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "1234\n").unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, _, stderr) = check_path(&config);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    std::fs::remove_file(&pin).unwrap();
    nix::unistd::mkfifo(&pin, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (_, _, stderr) = check_path(&config);
    assert!(stderr.contains("is a FIFO, not a regular file"), "{stderr}");
}

#[test]
fn check_config_passes_a_configuration_whose_files_the_daemon_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    console_files(d);
    let (ok, stdout, stderr) = check(&with_files(d));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn fifos_in_place_of_certificates_keys_and_trust_anchors_are_each_reported_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pin"), "1234\n").unwrap();
    std::fs::set_permissions(d.join("pin"), std::fs::Permissions::from_mode(0o600)).unwrap();
    // Nobody writes to these FIFOs: a blocking open or read would hang check-config (and
    // start-up) for ever.
    for f in ["server.pem", "server.key", "ca.pem", "extra-ca.pem"] {
        nix::unistd::mkfifo(&d.join(f), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
    let text = with_files(d).replace(
        "cloud = \"public\"\n",
        &format!(
            "cloud = \"public\"\nextra_ca = [\"{}/extra-ca.pem\"]\n",
            d.display()
        ),
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok, "{stderr}");
    for named in ["control.server_cert", "extra-ca.pem"] {
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
    assert!(
        stderr.matches("is a FIFO, not a regular file").count() >= 2,
        "{stderr}"
    );
}
