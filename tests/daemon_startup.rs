//! Starting the real `byokd` binary: a good start-up reaches "ready" and stops cleanly on
//! SIGTERM; a wrong PIN, a missing module, an unknown token, a PIN file others can read and
//! damaged state each stop it with a message that names the fix, and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::softhsm::{SoftHsmDir, SoftHsmToken};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Setup {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
    hsm: SoftHsmDir,
}

fn setup(module: &Path, label: &str, pin: &str, pin_mode: u32) -> (Setup, SoftHsmToken) {
    let hsm = SoftHsmDir::new();
    let token = hsm.init_token("byokd-daemon");
    let tmp = tempfile::tempdir().unwrap();
    let pin_file = tmp.path().join("hsm-pin");
    std::fs::write(&pin_file, format!("{pin}\n")).unwrap();
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(pin_mode)).unwrap();
    let state = tmp.path().join("state");
    let config = tmp.path().join("byokd.toml");
    std::fs::write(
        &config,
        format!("state_dir = {state:?}\nallow_root = true\n[hsm]\nmodule = {:?}\ntoken_label = {label:?}\npin_file = {pin_file:?}\n", module.display().to_string()),
    )
    .unwrap();
    // byokd refuses a configuration file that others can read (src/system/hardening.rs).
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    (
        Setup {
            _tmp: tmp,
            config,
            state,
            hsm,
        },
        token,
    )
}

fn byokd(s: &Setup) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_byokd"));
    cmd.arg("--config")
        .arg(&s.config)
        .env("SOFTHSM2_CONF", &s.hsm.conf)
        .env("BYOKD_LOG", "info");
    cmd
}

fn failing_start(s: &Setup) -> String {
    let out = byokd(s).output().unwrap();
    assert!(!out.status.success(), "byokd must refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_good_start_reaches_ready_and_stops_on_sigterm() {
    let (s, token) = setup(
        &common::softhsm::module_path(),
        "byokd-daemon",
        common::softhsm::USER_PIN,
        0o600,
    );
    let mut child = byokd(&s).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        seen.push(std::mem::take(&mut line));
        if seen.last().is_some_and(|l| l.contains("byokd ready")) {
            break;
        }
        assert!(Instant::now() < deadline, "no ready line: {seen:#?}");
    }
    assert!(seen.iter().any(|l| l.contains("byokd ready")), "{seen:#?}");
    let log = seen.join("\n");
    assert!(!log.contains(&token.user_pin), "the PIN must not be logged");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {rest}");
    assert!(rest.contains("byokd stopping"), "{rest}");
    assert!(s.state.exists(), "state directory created");
}

#[test]
fn a_wrong_pin_is_refused_with_a_hint() {
    let (s, _) = setup(
        &common::softhsm::module_path(),
        "byokd-daemon",
        "not-the-pin",
        0o600,
    );
    let err = failing_start(&s);
    assert!(err.contains("wrong PIN"), "{err}");
    assert!(
        !err.contains("not-the-pin"),
        "the PIN must not be echoed: {err}"
    );
    assert!(
        !s.state.exists(),
        "nothing is written before the HSM login succeeds"
    );
}

#[test]
fn a_missing_module_is_refused_with_a_hint() {
    let (s, _) = setup(
        Path::new("/bin/sh"),
        "byokd-daemon",
        common::softhsm::USER_PIN,
        0o600,
    );
    let err = failing_start(&s);
    assert!(err.contains("module not loadable"), "{err}");
    let (s, _) = setup(
        Path::new("/nonexistent/libpkcs11.so"),
        "byokd-daemon",
        common::softhsm::USER_PIN,
        0o600,
    );
    let err = failing_start(&s);
    assert!(
        err.contains("hsm.module") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn an_unknown_token_is_refused_listing_the_available_ones() {
    let (s, _) = setup(
        &common::softhsm::module_path(),
        "no-such-token",
        common::softhsm::USER_PIN,
        0o600,
    );
    let err = failing_start(&s);
    assert!(
        err.contains("not found") && err.contains("byokd-daemon"),
        "{err}"
    );
}

#[test]
fn a_pin_file_others_can_read_is_refused() {
    let (s, _) = setup(
        &common::softhsm::module_path(),
        "byokd-daemon",
        common::softhsm::USER_PIN,
        0o644,
    );
    let err = failing_start(&s);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn damaged_state_with_no_valid_generation_stops_the_daemon() {
    let (s, _) = setup(
        &common::softhsm::module_path(),
        "byokd-daemon",
        common::softhsm::USER_PIN,
        0o600,
    );
    std::fs::create_dir_all(&s.state).unwrap();
    std::fs::write(s.state.join("state.a"), b"BYOKDST\0truncated").unwrap();
    let err = failing_start(&s);
    assert!(
        err.contains("no valid state generation") && err.contains("restore the state directory"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(s.state.join("state.a")).unwrap(),
        b"BYOKDST\0truncated",
        "damaged state is left for recovery"
    );
}

#[test]
fn an_unknown_config_key_stops_the_daemon_with_its_line() {
    let (s, _) = setup(
        &common::softhsm::module_path(),
        "byokd-daemon",
        common::softhsm::USER_PIN,
        0o600,
    );
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str("colour = \"blue\"\n");
    std::fs::write(&s.config, text).unwrap();
    let err = failing_start(&s);
    assert!(err.contains("unknown key \"colour\""), "{err}");
}
