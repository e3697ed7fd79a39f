//! Online backup and restore end to end: the real daemon on a SoftHSM token pushes to the Azure
//! emulator over real TLS; `byokctl backup create` takes a backup while a sync runs (admin only);
//! the daemon is killed with SIGKILL in the middle of backups; `byokd restore` refuses a damaged,
//! truncated or tampered file, a non-empty state directory and a token without the state's
//! keys, and restores onto a fresh state directory with the same token, after which a push and a
//! rotation work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod control_rig;

use control_rig::{ADMIN, Daemon, OPERATOR};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "6a1d3c5e-2b4f-4e8a-9c7d-1e2f3a4b5c6d";
const SECRET: &str = "Back~up.KnownSecret-0017";
const VAULT: &str = "byokd-backup";

fn ctl_ok(d: &Daemon, who: &str, args: &[&str]) -> Value {
    let (code, v) = d.ctl_json(who, args);
    assert_eq!(code, 0, "byokctl {args:?}: {v}\n{}", d.log());
    v
}

fn restore(d: &Daemon, file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_byokd"))
        .arg("--config")
        .arg(d.path("byokd.toml"))
        .arg("restore")
        .arg(file)
        .env("SOFTHSM2_CONF", d.path("softhsm2.conf"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn wait_job(d: &Daemon, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, job) = d.curl(
            Some(OPERATOR),
            "GET",
            &format!("/v1/jobs/{id}?wait=5"),
            None,
        );
        assert_eq!(status, 200, "job {id}: {job}");
        if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a job with a `--no-wait` byokctl command; returns its id.
fn start_job(d: &Daemon, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--no-wait");
    let v = ctl_ok(d, OPERATOR, &all);
    v.pointer("/job/id")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no job id from {args:?}: {v}"))
        .to_owned()
}

/// The names of the keys of group `bk`.
fn keys(d: &Daemon) -> Vec<String> {
    let (status, v) = d.curl(Some(OPERATOR), "GET", "/v1/groups/bk/keys", None);
    assert_eq!(status, 200, "{v}");
    let list = v["keys"]
        .as_array()
        .or(v.as_array())
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|k| k["name"].as_str().map(str::to_owned))
        .collect()
}

/// `byokctl` as [`Daemon::ctl`] runs it, started in the background.
fn ctl_spawn(d: &Daemon, who: &str, args: &[&str]) -> std::process::Child {
    let url = d.url("/");
    Command::new(env!("CARGO_BIN_EXE_byokctl"))
        .args(args)
        .env("BYOKCTL_SERVER", url.trim_end_matches('/'))
        .env("BYOKCTL_CERT", d.path(&format!("{who}.pem")))
        .env("BYOKCTL_KEY", d.path(&format!("{who}.key")))
        .env("BYOKCTL_CA", d.path("ca.pem"))
        .env("BYOKCTL_CONFIG", d.path("no-such-byokctl.toml"))
        .env_remove("BYOKCTL_OUTPUT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_backup_taken_while_jobs_run_restores_onto_a_fresh_state_directory_and_pushes_again() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("emulator-ca.pem");
    let (emu, options) =
        control_rig::emulator_and_options(&rt, &ca, (TENANT, CLIENT, SECRET), VAULT);
    let mut d = Daemon::start_with(options);
    let secret_file = d.path("client-secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let secret_arg = secret_file.to_str().unwrap();
    ctl_ok(
        &d,
        ADMIN,
        &[
            "credential",
            "add",
            "app",
            "--tenant-id",
            TENANT,
            "--client-id",
            CLIENT,
            "--secret-file",
            secret_arg,
        ],
    );
    ctl_ok(
        &d,
        ADMIN,
        &[
            "group",
            "create",
            "bk",
            "--credential",
            "app",
            "--vault",
            VAULT,
            "--key-type",
            "EC-P256",
            "--key-ops",
            "sign,verify",
        ],
    );
    ctl_ok(&d, OPERATOR, &["key", "create", "bk", "k1"]);
    let first = start_job(&d, &["key", "sync", "bk", "k1"]);
    assert_eq!(wait_job(&d, &first)["state"], "succeeded");

    // A backup while a sync runs (each Azure call slowed down): the job goes on and succeeds.
    ctl_ok(&d, OPERATOR, &["key", "create", "bk", "k2"]);
    emu.set_rtt_delay(Duration::from_millis(300));
    let running = start_job(&d, &["key", "sync", "bk", "k2"]);
    let file = work.path().join("byokd.backup");
    let out = d.ctl(ADMIN, &["backup", "create", file.to_str().unwrap()]);
    assert!(out.status.success(), "backup: {}\n{}", text(&out), d.log());
    assert!(text(&out).contains("state record(s)"), "{}", text(&out));
    assert_eq!(wait_job(&d, &running)["state"], "succeeded");
    emu.set_rtt_delay(Duration::ZERO);
    // Only an admin may take one; an existing file is not replaced.
    let denied = d.ctl(
        OPERATOR,
        &[
            "backup",
            "create",
            work.path().join("op.backup").to_str().unwrap(),
        ],
    );
    assert!(!denied.status.success() && !work.path().join("op.backup").exists());
    let again = d.ctl(ADMIN, &["backup", "create", file.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(5), "{}", text(&again));
    // The file holds no secret in the clear.
    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    assert!(d.log().contains("backup.created"));

    // kill -9 while backups are in flight: a cut-off download writes nothing, and the state
    // opens as it was.
    for round in 0..3u64 {
        let partial = work.path().join(format!("killed-{round}.backup"));
        let mut child = ctl_spawn(&d, ADMIN, &["backup", "create", partial.to_str().unwrap()]);
        std::thread::sleep(Duration::from_millis(5 + round * 7));
        d.kill9();
        let status = child.wait().unwrap();
        // Either the backup finished (and checked) before the kill, or nothing was written.
        assert_eq!(status.success(), partial.exists(), "round {round}");
        d.spawn();
        assert_eq!(keys(&d), ["k1", "k2"], "round {round}");
    }
    d.stop();

    // Refusals: damaged, truncated, a state directory that holds a state.
    let flipped = work.path().join("flipped.backup");
    let mut b = bytes.clone();
    b[bytes.len() / 2] ^= 1;
    std::fs::write(&flipped, &b).unwrap();
    let cut = work.path().join("cut.backup");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    for (bad, why) in [(&flipped, "does not match"), (&cut, "truncated")] {
        let o = restore(&d, bad);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(why), "{}", text(&o));
    }
    let o = restore(&d, &file);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already holds a state"), "{}", text(&o));

    // Restore onto a fresh state directory with the same token.
    let state = d.path("state");
    std::fs::rename(&state, work.path().join("state-before")).unwrap();
    let o = restore(&d, &file);
    assert!(o.status.success(), "restore: {}", text(&o));
    assert!(text(&o).contains("key(s)"), "{}", text(&o));
    d.spawn();
    assert_eq!(keys(&d), ["k1", "k2"]);
    let k1 = ctl_ok(&d, OPERATOR, &["key", "show", "bk", "k1"]);
    assert!(
        k1["version"].is_string(),
        "the pushed version is restored: {k1}"
    );
    // Push and rotate afterwards.
    ctl_ok(&d, OPERATOR, &["key", "create", "bk", "k3"]);
    let push = start_job(&d, &["key", "sync", "bk", "k3"]);
    assert_eq!(wait_job(&d, &push)["state"], "succeeded", "{}", d.log());
    let rotate = start_job(&d, &["group", "rotate", "bk"]);
    assert_eq!(wait_job(&d, &rotate)["state"], "succeeded", "{}", d.log());
    assert!(
        d.log().contains("backup.created"),
        "the service log came back too"
    );
    d.stop();
}

#[test]
fn a_restore_onto_a_token_without_the_states_keys_is_refused_with_the_missing_objects() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("emulator-ca.pem");
    let (_emu, options) =
        control_rig::emulator_and_options(&rt, &ca, (TENANT, CLIENT, SECRET), VAULT);
    let mut d = Daemon::start_with(options.clone());
    d.seed();
    ctl_ok(&d, OPERATOR, &["key", "create", "g1", "kept"]);
    ctl_ok(&d, OPERATOR, &["key", "create", "g1", "gone"]);
    let file = work.path().join("byokd.backup");
    let out = d.ctl(ADMIN, &["backup", "create", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // The key is deleted (its HSM object destroyed) after the backup named it.
    let del = d.ctl(OPERATOR, &["key", "delete", "g1", "gone"]);
    assert!(del.status.success(), "{}", text(&del));
    d.stop();
    std::fs::rename(d.path("state"), work.path().join("state-before")).unwrap();
    let o = restore(&d, &file);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("lacks 1 object") && t.contains("key g1/gone") && !t.contains("g1/kept"),
        "the refusal lists exactly the missing object: {t}"
    );
    assert!(!d.path("state").join("state.redb").exists());
    assert!(!d.path("state").join("state.redb.new").exists());
    // Another appliance with its own token: the seal does not open there.
    let other = Daemon::prepare(options);
    let o = restore(&other, &file);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("another HSM token"), "{}", text(&o));
    assert!(!other.path("state").join("state.redb").exists());
}
