//! Firmware upgrades in a temporary root: `image/build.sh` packages the built binaries (the debug
//! build here; the real image uses `--release`), `byokd upgrade --root` installs them into the
//! A/B layout, the daemon runs from the installed slot against SoftHSM and the Azure emulator,
//! and a second build that writes the next state format (feature `test-next-format`) is
//! installed over it. Also: forged, tampered and truncated bundles, a failed health check and a
//! downgrade across state formats, each refused or rolled back with the tree left as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod control_rig;

use control_rig::{ADMIN, Daemon, OPERATOR, Options};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b";
const SECRET: &str = "Up~grade.KnownSecret-0042";
const VAULT: &str = "byokd-upgrade";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The private half of the key debug builds trust (see src/upgrade/trust.rs).
fn test_key() -> PathBuf {
    repo().join("tests/fixtures/upgrade/test-signing-key.pem")
}

/// The byokd that writes the next state format. Always asks cargo, so it is never stale; the
/// test command builds it beforehand, so this is normally a no-op.
fn next_format_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--features",
            "test-next-format",
            "--bin",
            "byokd-next-format-test",
            "--manifest-path",
        ])
        .arg(repo().join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building byokd-next-format-test: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_byokd"))
        .parent()
        .unwrap()
        .join("byokd-next-format-test");
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// A directory with `byokd` (given) and the built `byokctl`, as `build.sh --bin-dir` wants.
fn bin_dir(byokd: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(byokd, dir.path().join("byokd")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_byokctl"), dir.path().join("byokctl")).unwrap();
    dir
}

fn build_bundle(bins: &Path, version: &str, out: &Path) {
    let o = Command::new("bash")
        .arg(repo().join("image/build.sh"))
        .arg("--bin-dir")
        .arg(bins)
        .arg(version)
        .arg(test_key())
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "build.sh {version}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `byokd upgrade` as the installed byokd would run it (the built one for a first install).
fn upgrade(d: &Daemon, root: &Path, bundle: &Path, extra: &[&str]) -> Output {
    let installed = root.join("opt/byokd/current/bin/byokd");
    let installer = if installed.exists() {
        installed
    } else {
        PathBuf::from(env!("CARGO_BIN_EXE_byokd"))
    };
    let mut cmd = Command::new(installer);
    cmd.arg("--config")
        .arg(&d.config)
        .arg("upgrade")
        .arg("--root")
        .arg(root);
    if !extra.contains(&"--health-timeout") {
        cmd.args(["--health-timeout", "30"]);
    }
    cmd.args(extra)
        .arg(bundle)
        .env("SOFTHSM2_CONF", d.path("softhsm2.conf"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(o: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{what}: {stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// Every entry under `paths`: file bytes and mode, symlink targets, directories.
fn snapshot(paths: &[&Path]) -> BTreeMap<PathBuf, String> {
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let meta = std::fs::symlink_metadata(p).unwrap();
        let entry = if meta.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(p).unwrap().display())
        } else if meta.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), out);
            }
            format!("dir {:o}", meta.permissions().mode())
        } else {
            use sha2::Digest;
            let sum = sha2::Sha256::digest(std::fs::read(p).unwrap());
            format!("file {:o} {}", meta.permissions().mode(), hex::encode(sum))
        };
        out.insert(p.to_path_buf(), entry);
    }
    let mut out = BTreeMap::new();
    for p in paths {
        walk(p, &mut out);
    }
    out
}

fn current_slot(root: &Path) -> String {
    std::fs::read_link(root.join("opt/byokd/current"))
        .unwrap()
        .display()
        .to_string()
}

fn state_format(dir: &Path) -> Option<u16> {
    byokd::store::Store::newest_format(dir).unwrap()
}

fn ctl_ok(d: &Daemon, who: &str, args: &[&str]) -> Value {
    let (code, v) = d.ctl_json(who, args);
    assert_eq!(code, 0, "byokctl {args:?}: {v}\n{}", d.log());
    v
}

#[test]
fn a_package_installs_pushes_and_upgrades_across_a_state_format_keeping_keys_jobs_and_logs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("emulator-ca.pem");
    let (emu, options) =
        control_rig::emulator_and_options(&rt, &ca, (TENANT, CLIENT, SECRET), VAULT);
    let mut d = Daemon::prepare(options);
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let state = d.path("state");

    // 1. Build and install the first package into an empty root.
    let bins1 = bin_dir(Path::new(env!("CARGO_BIN_EXE_byokd")));
    let v1 = work.path().join("byokd-1.0.0.bundle");
    build_bundle(bins1.path(), "1.0.0", &v1);
    let out = ok(&upgrade(&d, &root, &v1, &[]), "install 1.0.0");
    assert!(out.contains("installed byokd 1.0.0 in slot a"), "{out}");
    assert_eq!(current_slot(&root), "a");
    for stable in [
        "usr/bin/byokd",
        "usr/bin/byokctl",
        "etc/systemd/system/byokd.service",
    ] {
        assert!(root.join(stable).exists(), "{stable} does not resolve");
    }
    assert!(
        root.join("etc/byokd/byokd.toml").is_file(),
        "default config"
    );

    // 2. Run the installed daemon: credential, group, key, push.
    d.launch(&root.join("usr/bin/byokd"));
    let secret_file = d.path("client-secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    ctl_ok(
        &d,
        ADMIN,
        &[
            "credential",
            "add",
            "azure-app",
            "--tenant-id",
            TENANT,
            "--client-id",
            CLIENT,
            "--secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    ctl_ok(
        &d,
        ADMIN,
        &[
            "group",
            "create",
            "upg",
            "--credential",
            "azure-app",
            "--vault",
            VAULT,
            "--key-type",
            "EC-P256",
            "--key-ops",
            "sign,verify",
        ],
    );
    ctl_ok(&d, OPERATOR, &["key", "create", "upg", "k1"]);
    let sync = d.ctl(OPERATOR, &["key", "sync", "upg", "k1"]);
    assert!(
        sync.status.success(),
        "sync: {}\n{}",
        String::from_utf8_lossy(&sync.stderr),
        d.log()
    );
    let key_before = ctl_ok(&d, OPERATOR, &["key", "show", "upg", "k1"]);
    let version = key_before["version"]
        .as_str()
        .expect("pushed version")
        .to_owned();
    assert_eq!(emu.key_versions(VAULT, "upg").len(), 1);
    let jobs_before = ctl_ok(&d, OPERATOR, &["job", "list"]);
    assert!(
        !jobs_before.to_string().is_empty() && jobs_before.to_string().contains("upg"),
        "{jobs_before}"
    );
    let creds_before = ctl_ok(&d, ADMIN, &["credential", "list"]);
    d.stop();
    let log_before = d.log();
    assert!(!log_before.is_empty());
    assert_eq!(state_format(&state), Some(byokd::store::FORMAT_VERSION));

    // 3. Upgrade to a build one state format higher.
    let next = next_format_binary();
    let bins2 = bin_dir(&next);
    let v2 = work.path().join("byokd-2.0.0.bundle");
    build_bundle(bins2.path(), "2.0.0", &v2);
    let out = ok(&upgrade(&d, &root, &v2, &[]), "upgrade to 2.0.0");
    let from = byokd::store::FORMAT_VERSION;
    let to = from + 1;
    assert!(
        out.contains("installed byokd 2.0.0 in slot b (was: 1.0.0)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("state format {to}, migrated from format {from}")),
        "{out}"
    );
    assert_eq!(current_slot(&root), "b");
    assert_eq!(state_format(&state), Some(to));
    assert_eq!(
        state_format(&state.join("pre-upgrade")),
        Some(from),
        "old state kept for rollback"
    );
    assert!(
        root.join("opt/byokd/a/bin/byokd").is_file(),
        "the previous slot is kept"
    );

    // 4. The new version serves the same keys, jobs and credentials, and pushes again.
    d.launch(&root.join("usr/bin/byokd"));
    assert_eq!(
        ctl_ok(&d, OPERATOR, &["key", "show", "upg", "k1"]),
        key_before
    );
    assert_eq!(
        ctl_ok(&d, OPERATOR, &["job", "list"]),
        jobs_before,
        "push history"
    );
    assert_eq!(ctl_ok(&d, ADMIN, &["credential", "list"]), creds_before);
    assert!(
        d.log().starts_with(&log_before),
        "the log of the old version is intact"
    );
    ctl_ok(&d, OPERATOR, &["key", "create", "upg", "k2"]);
    let sync = d.ctl(OPERATOR, &["key", "sync", "upg", "k2"]);
    assert!(
        sync.status.success(),
        "sync after upgrade: {}\n{}",
        String::from_utf8_lossy(&sync.stderr),
        d.log()
    );
    let versions = emu.key_versions(VAULT, "upg");
    assert_eq!(versions.len(), 2);
    assert!(versions.iter().any(|v| v.version == version));
    d.stop();

    // 5. Going back to the first package would cross a state format: refused, nothing changed.
    let before = snapshot(&[&root, &state]);
    let o = upgrade(&d, &root, &v1, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("downgrade refused")
            && err.contains(&format!("writes state format {from}"))
            && err.contains(&format!("is format {to}")),
        "{err}"
    );
    assert_eq!(
        snapshot(&[&root, &state]),
        before,
        "a refused downgrade changed files"
    );
}

/// Offset of the data of the archive member `name` (ustar: a 512-byte header before each).
fn member_data(bundle: &[u8], name: &str) -> usize {
    (0..bundle.len())
        .step_by(512)
        .find(|&off| bundle[off..].starts_with(name.as_bytes()) && bundle[off + name.len()] == 0)
        .unwrap_or_else(|| panic!("{name} not in the bundle"))
        + 512
}

#[test]
fn tampered_forged_and_truncated_bundles_are_refused_before_any_change() {
    let work = tempfile::tempdir().unwrap();
    let mut d = Daemon::prepare(Options::default());
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let bins = bin_dir(Path::new(env!("CARGO_BIN_EXE_byokd")));
    let good = work.path().join("good.bundle");
    build_bundle(bins.path(), "1.0.0", &good);
    ok(&upgrade(&d, &root, &good, &[]), "install");
    d.launch(&root.join("usr/bin/byokd"));
    d.seed();
    d.stop();
    let bytes = std::fs::read(&good).unwrap();
    let state = d.path("state");
    let before = snapshot(&[&root, &state]);

    let mut cases: Vec<(String, Vec<u8>, &str)> = vec![];
    // A payload file changed after signing.
    let mut b = bytes.clone();
    b[member_data(&bytes, "payload/bin/byokctl") + 1000] ^= 0x01;
    cases.push(("tampered file".into(), b, "does not match its SHA-256"));
    // The signed manifest changed.
    let mut b = bytes.clone();
    let m = member_data(&bytes, "MANIFEST");
    let at = m + String::from_utf8_lossy(&bytes[m..m + 200])
        .find("version 1.0.0")
        .unwrap();
    b[at + 8] = b'9';
    cases.push(("tampered manifest".into(), b, "signature does not verify"));
    // Signed with another key.
    let x = tempfile::tempdir().unwrap();
    let other = x.path().join("other.pem");
    assert!(
        Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&other)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("tar")
            .arg("-xf")
            .arg(&good)
            .arg("-C")
            .arg(x.path())
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("openssl")
            .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
            .arg(&other)
            .arg("-in")
            .arg(x.path().join("MANIFEST"))
            .arg("-out")
            .arg(x.path().join("MANIFEST.sig"))
            .status()
            .unwrap()
            .success()
    );
    let listing = Command::new("tar").arg("-tf").arg(&good).output().unwrap();
    let names: Vec<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let forged = work.path().join("forged.bundle");
    assert!(
        Command::new("tar")
            .args(["--format=ustar", "-cf"])
            .arg(&forged)
            .arg("-C")
            .arg(x.path())
            .args(&names)
            .status()
            .unwrap()
            .success()
    );
    cases.push((
        "wrong signature".into(),
        std::fs::read(&forged).unwrap(),
        "signature does not verify",
    ));
    // Truncated: mid-payload, without the end-of-archive marker, and right after the signature.
    let last_data = bytes.iter().rposition(|b| *b != 0).unwrap();
    let sig_end = member_data(&bytes, "MANIFEST.sig") + 512;
    for cut in [
        bytes.len() / 1024 * 512,
        (last_data / 512 + 1) * 512,
        sig_end,
    ] {
        cases.push((
            format!("truncated at {cut} of {}", bytes.len()),
            bytes[..cut].to_vec(),
            "nothing was changed",
        ));
    }

    for (what, data, expect) in cases {
        let path = work.path().join("bad.bundle");
        std::fs::write(&path, &data).unwrap();
        let verify = upgrade(&d, &root, &path, &["--verify-only"]);
        assert_eq!(
            verify.status.code(),
            Some(2),
            "{what}: --verify-only accepted it"
        );
        let o = upgrade(&d, &root, &path, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(expect) && err.contains("nothing was changed"),
            "{what}: {err}"
        );
        assert_eq!(snapshot(&[&root, &state]), before, "{what}: files changed");
    }
    let verify = upgrade(&d, &root, &good, &["--verify-only"]);
    assert!(ok(&verify, "verify good").contains("OK (version 1.0.0"));
}

/// A byokd whose daemon fails in `mode` and that otherwise is the next-format build, so the
/// state is migrated before the health check fails.
fn broken_bins(next: &Path, mode: &str) -> tempfile::TempDir {
    let dir = bin_dir(next);
    let script = dir.path().join("byokd");
    std::fs::remove_file(&script).unwrap();
    let on_run = match mode {
        "exit" => "echo 'byokd: simulated start-up failure' >&2; exit 1",
        _ => "exec sleep 300",
    };
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = run ] && {{ {on_run}; }}; done\nexec '{}' \"$@\"\n",
            next.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn a_new_version_that_fails_its_health_check_is_rolled_back_with_its_state() {
    let work = tempfile::tempdir().unwrap();
    let mut d = Daemon::prepare(Options::default());
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let bins = bin_dir(Path::new(env!("CARGO_BIN_EXE_byokd")));
    let v1 = work.path().join("v1.bundle");
    build_bundle(bins.path(), "1.0.0", &v1);
    ok(&upgrade(&d, &root, &v1, &[]), "install");
    d.launch(&root.join("usr/bin/byokd"));
    d.seed();
    let groups = ctl_ok(&d, ADMIN, &["group", "list"]);
    d.stop();
    let state = d.path("state");
    let slots = |s: &Path| snapshot(&[&s.join("state.redb")]);
    let state_before = slots(&state);
    let installed_before = snapshot(&[&root.join("opt/byokd/a"), &root.join("usr")]);
    let next = next_format_binary();

    for (mode, timeout, expect) in [
        ("exit", "30", "exited with"),
        ("hang", "3", "not ready within"),
    ] {
        let bins = broken_bins(&next, mode);
        let bundle = work.path().join(format!("broken-{mode}.bundle"));
        build_bundle(bins.path(), "2.0.0-broken", &bundle);
        let o = upgrade(&d, &root, &bundle, &["--health-timeout", timeout]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{mode}: {err}");
        assert!(
            err.contains("failed (health check)")
                && err.contains(expect)
                && err.contains("rolled back to 1.0.0"),
            "{mode}: {err}"
        );
        assert_eq!(current_slot(&root), "a", "{mode}");
        assert_eq!(slots(&state), state_before, "{mode}: state not restored");
        assert_eq!(state_format(&state), Some(byokd::store::FORMAT_VERSION));
        assert_eq!(
            snapshot(&[&root.join("opt/byokd/a"), &root.join("usr")]),
            installed_before,
            "{mode}: the running version was touched"
        );
    }
    // The old version runs on the old state.
    d.launch(&root.join("usr/bin/byokd"));
    assert_eq!(ctl_ok(&d, ADMIN, &["group", "list"]), groups);
}

/// The shipped configuration names the PIN as a systemd credential (`pin_file = "hsm-pin"`);
/// outside systemd the installer provides it from the unit's `LoadCredential=hsm-pin:PATH`
/// (under the root), in a private directory it removes afterwards.
#[test]
fn the_health_check_gets_the_pin_credential_from_the_units_load_credential_source() {
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::prepare(Options::default());
    let config = std::fs::read_to_string(&d.config).unwrap();
    let absolute = format!("pin_file = \"{}\"", d.path("pin").display());
    assert!(config.contains(&absolute), "{config}");
    std::fs::write(
        &d.config,
        config.replace(&absolute, "pin_file = \"hsm-pin\""),
    )
    .unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("etc/byokd")).unwrap();
    let source = root.join("etc/byokd/hsm-pin");
    let write_pin = |pin: &str| {
        let _ = std::fs::remove_file(&source);
        std::fs::write(&source, pin).unwrap();
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let unit = std::fs::read_to_string(repo().join("systemd/byokd.service")).unwrap();
    assert!(unit.contains("\nLoadCredential=hsm-pin:/etc/byokd/hsm-pin\n"));
    let bins = bin_dir(Path::new(env!("CARGO_BIN_EXE_byokd")));
    let v1 = work.path().join("v1.bundle");
    build_bundle(bins.path(), "1.0.0", &v1);
    let leftovers = || -> Vec<PathBuf> {
        match std::fs::read_dir(root.join("run")) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    };

    // A wrong PIN at the source: the new daemon cannot log in, so the install is rolled back.
    write_pin("9999\n");
    let o = upgrade(&d, &root, &v1, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("failed (health check)") && err.contains("exited with"),
        "{err}"
    );
    assert!(leftovers().is_empty(), "{:?}", leftovers());

    // The installer's own CREDENTIALS_DIRECTORY is not what the daemon reads.
    let decoy = tempfile::tempdir().unwrap();
    std::fs::write(decoy.path().join("hsm-pin"), "1234\n").unwrap();
    std::fs::set_permissions(
        decoy.path().join("hsm-pin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_byokd"));
    let o = cmd
        .arg("--config")
        .arg(&d.config)
        .args(["upgrade", "--health-timeout", "30", "--root"])
        .arg(&root)
        .arg(&v1)
        .env("SOFTHSM2_CONF", d.path("softhsm2.conf"))
        .env("CREDENTIALS_DIRECTORY", decoy.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The right PIN at the source: healthy, installed, and the credential copy is gone.
    write_pin("1234\n");
    ok(
        &upgrade(&d, &root, &v1, &[]),
        "install with the PIN credential",
    );
    assert_eq!(current_slot(&root), "a");
    assert!(leftovers().is_empty(), "{:?}", leftovers());

    // No LoadCredential= for the name: refused with a message naming it, and rolled back.
    let dropins = root.join("etc/systemd/system/byokd.service.d");
    std::fs::create_dir_all(&dropins).unwrap();
    std::fs::write(
        dropins.join("50-reset.conf"),
        "[Service]\nLoadCredential=\n",
    )
    .unwrap();
    let v2 = work.path().join("v2.bundle");
    build_bundle(bins.path(), "1.0.1", &v2);
    let o = upgrade(&d, &root, &v2, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no LoadCredential=hsm-pin:PATH") && err.contains("rolled back to 1.0.0"),
        "{err}"
    );
    assert_eq!(current_slot(&root), "a");
}
