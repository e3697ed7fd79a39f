//! Starting the real `byokd` binary: a good start-up reaches "ready" and stops cleanly on
//! SIGTERM; a wrong PIN, a missing module, an unknown token, a PIN file others can read and
//! damaged state each stop it with a message that names the fix, and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::softhsm::{SoftHsmDir, SoftHsmToken};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

/// A set-up byokd accepts: the SoftHSM token, its PIN in a 0600 file.
fn good_setup() -> (Setup, SoftHsmToken) {
    setup(
        &common::softhsm::module_path(),
        "byokd-daemon",
        common::softhsm::USER_PIN,
        0o600,
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
    let (s, token) = good_setup();
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
    let (s, _) = good_setup();
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
    let (s, _) = good_setup();
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str("colour = \"blue\"\n");
    std::fs::write(&s.config, text).unwrap();
    let err = failing_start(&s);
    assert!(err.contains("unknown key \"colour\""), "{err}");
}

/// Waits for the daemon to exit; a daemon still running after `limit` is killed and the test
/// fails (a hang is the defect these tests look for).
fn exit_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("byokd did not exit within {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_of(child: &mut std::process::Child) -> String {
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    err
}

#[test]
fn a_fifo_at_the_pin_path_is_refused_without_blocking() {
    let (s, _) = good_setup();
    let pin = s.config.with_file_name("hsm-pin");
    std::fs::remove_file(&pin).unwrap();
    nix::unistd::mkfifo(&pin, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = byokd(&s).stderr(Stdio::piped()).spawn().unwrap();
    let status = exit_within(&mut child, Duration::from_secs(60));
    let err = stderr_of(&mut child);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("is a FIFO, not a regular file") && err.contains("hsm-pin"),
        "{err}"
    );
    assert!(!s.state.exists(), "nothing is written");
}

#[test]
fn a_symlinked_or_foreign_pin_file_is_refused() {
    let (s, _) = good_setup();
    let pin = s.config.with_file_name("hsm-pin");
    let real = s.config.with_file_name("real-pin");
    std::fs::rename(&pin, &real).unwrap();
    std::os::unix::fs::symlink(&real, &pin).unwrap();
    let err = failing_start(&s);
    assert!(err.contains("is a symbolic link"), "{err}");
    // Owned by another user (nobody), mode 0600: refused, since that user could change it.
    std::fs::remove_file(&pin).unwrap();
    std::fs::rename(&real, &pin).unwrap();
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&pin, Some(65534), None).unwrap();
        let err = failing_start(&s);
        assert!(
            err.contains("is owned by uid 65534") && err.contains("chown"),
            "{err}"
        );
    }
}

#[test]
fn a_fifo_as_the_configuration_is_refused_without_blocking() {
    let (s, _) = good_setup();
    std::fs::remove_file(&s.config).unwrap();
    nix::unistd::mkfifo(&s.config, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = byokd(&s).stderr(Stdio::piped()).spawn().unwrap();
    let status = exit_within(&mut child, Duration::from_secs(60));
    let err = stderr_of(&mut child);
    assert!(!status.success(), "{err}");
    assert!(err.contains("is a FIFO, not a regular file"), "{err}");
}

#[test]
fn sigterm_during_start_up_stops_the_daemon() {
    // Start-up blocks inside the PKCS#11 module, which reads its own configuration (a FIFO
    // nobody writes to stands in for a hung mount or a stuck HSM): SIGTERM must still stop it.
    // byokd's own files are opened without blocking, so the module is where a hang can be.
    let (s, _) = good_setup();
    let module_conf = s.config.with_file_name("softhsm2-fifo.conf");
    nix::unistd::mkfifo(
        &module_conf,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let mut child = byokd(&s)
        .env("SOFTHSM2_CONF", &module_conf)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let pid = child.id();
    // A non-blocking open for writing succeeds once byokd opens the FIFO to read it, that is
    // once start-up is under way (the handlers are installed before anything else). The writer
    // stays open and writes nothing, so byokd stays blocked in its read.
    let deadline = Instant::now() + Duration::from_secs(60);
    let _writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&module_conf)
        {
            Ok(w) => break w,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                child.kill().unwrap();
                panic!("the module never opened its configuration: {e}");
            }
        }
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = exit_within(&mut child, Duration::from_secs(60));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{status:?}: {rest}");
    assert!(
        rest.contains("stopped by a signal during start-up"),
        "{rest}"
    );
}
