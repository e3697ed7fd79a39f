//! The shipped systemd files: `byokd.service` passes `systemd-analyze verify`, rates at most 1.5
//! on `systemd-analyze security --offline=true`, keeps the directives the hardening profile
//! promises, and agrees with the shipped configuration; the sysusers and tmpfiles snippets are
//! accepted by systemd's own tools in a scratch root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const MAX_EXPOSURE: f64 = 1.5;

fn systemd_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name)
}

fn unit_text() -> String {
    std::fs::read_to_string(systemd_file("byokd.service")).unwrap()
}

/// Every value of `key=` in the unit, in order.
fn directive(key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit_text()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

fn analyze(args: &[&str], unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        // `security` prints a table sized to the terminal; keep it plain.
        .env("SYSTEMD_COLORS", "0")
        .env("COLUMNS", "200")
        .output()
        .expect("systemd-analyze (apt-get install systemd)")
}

/// "→ Overall exposure level for byokd.service: 0.9 SAFE 😀" → 0.9
fn overall_exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    line.rsplit_once(':')?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_unit_rates_at_most_1_5_on_systemd_analyze_security() {
    let out = analyze(
        &["security", "--offline=true", "--no-pager"],
        &systemd_file("byokd.service"),
    );
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let score = overall_exposure(&report)
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{report}"));
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{report}"
    );
}

#[test]
fn the_exposure_parser_reads_the_overall_line() {
    assert_eq!(
        overall_exposure("x\n→ Overall exposure level for byokd.service: 0.9 SAFE 😀\n"),
        Some(0.9)
    );
    assert_eq!(
        overall_exposure("→ Overall exposure level for a.service: 9.6 UNSAFE 😨"),
        Some(9.6)
    );
    assert_eq!(overall_exposure("nothing"), None);
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    // verify insists that ExecStart= exists: check a copy that runs the binary just built.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("byokd.service");
    let text = unit_text().replace(
        "ExecStart=/usr/bin/byokd ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_byokd")),
    );
    assert_ne!(
        text,
        unit_text(),
        "ExecStart=/usr/bin/byokd not found in the unit"
    );
    std::fs::write(&unit, text).unwrap();
    let out = analyze(&["verify", "--man=no"], &unit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("byokd.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complained:\n{stderr}"
    );
}

#[test]
fn the_unit_is_a_notify_service_with_a_watchdog_and_a_deliberate_restart_policy() {
    assert_eq!(directive("Type"), ["notify"]);
    assert_eq!(directive("NotifyAccess"), ["main"]);
    assert_eq!(directive("WatchdogSec"), ["30s"]);
    assert_eq!(directive("Restart"), ["on-failure"]);
    assert_eq!(directive("StartLimitBurst"), ["5"]);
}

#[test]
fn the_unit_runs_as_its_own_user_with_no_capabilities() {
    assert_eq!(directive("User"), ["byokd"]);
    assert_eq!(directive("Group"), ["byokd"]);
    assert_eq!(directive("CapabilityBoundingSet"), [""]);
    assert_eq!(directive("AmbientCapabilities"), [""]);
    assert_eq!(directive("NoNewPrivileges"), ["yes"]);
    let sysusers = std::fs::read_to_string(systemd_file("byokd.sysusers")).unwrap();
    assert!(
        sysusers.lines().any(|l| l.starts_with("u byokd ")),
        "{sysusers}"
    );
}

#[test]
fn the_pin_credential_is_the_one_the_shipped_config_reads() {
    let config = std::fs::read_to_string(systemd_file("byokd.toml")).unwrap();
    let pin_file = config
        .lines()
        .find_map(|l| l.strip_prefix("pin_file = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("the shipped config sets hsm.pin_file");
    let creds = directive("LoadCredential");
    assert!(
        creds
            .iter()
            .any(|c| c.split(':').next() == Some(pin_file.as_str())),
        "LoadCredential={creds:?} does not provide {pin_file:?}"
    );
    let state_dir = config
        .lines()
        .find_map(|l| l.strip_prefix("state_dir = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(
        format!("/var/lib/{}", directive("StateDirectory")[0]),
        state_dir
    );
    assert!(directive("ExecStart")[0].contains("--config /etc/byokd/byokd.toml"));
}

#[test]
fn the_unit_keeps_the_directory_modes_umask_and_memory_limits() {
    assert_eq!(directive("StateDirectoryMode"), ["0700"]);
    assert_eq!(directive("RuntimeDirectoryMode"), ["0750"]);
    assert_eq!(directive("LogsDirectoryMode"), ["0750"]);
    assert_eq!(directive("UMask"), ["0077"]);
    assert_eq!(directive("LimitCORE"), ["0"]);
    assert_eq!(directive("LimitMEMLOCK"), ["256M"]);
}

#[test]
fn the_unit_keeps_the_full_sandbox() {
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("DevicePolicy", "closed"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("IPAddressDeny", "any"),
    ] {
        assert_eq!(directive(key), [value], "{key}");
    }
    let filters = directive("SystemCallFilter");
    assert_eq!(filters[0], "@system-service", "an allow-list first");
    for group in [
        "@privileged",
        "@resources",
        "@obsolete",
        "@mount",
        "@debug",
        "@raw-io",
        "@clock",
        "@module",
    ] {
        assert!(
            filters.iter().any(|f| f.starts_with('~')
                && f.split_whitespace()
                    .any(|g| g.trim_start_matches('~') == group)),
            "{group} denied"
        );
    }
}

#[test]
fn the_sysusers_and_tmpfiles_snippets_apply_to_a_scratch_root() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(systemd_file("byokd.sysusers"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("byokd:") && l.ends_with(":/usr/sbin/nologin")),
        "{passwd}"
    );
    let out = Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(systemd_file("byokd.tmpfiles"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.path().join("etc/byokd"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o750);
}
