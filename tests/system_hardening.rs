//! Process hardening of the real `byokd` binary, observed from outside through `/proc`:
//! memory locked, core dumps off, not dumpable, umask 077, root refused unless allowed, and a
//! configuration file that others can read or write refused. Where it matters, the daemon runs
//! as `nobody` (via `setpriv`, with `prlimit` lowering RLIMIT_MEMLOCK), as on the appliance.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod system_support;

use common::softhsm::SoftHsmDir;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use system_support::{Running, status_field, status_kib};

const NOBODY: u32 = 65534;
/// The shipped unit's LimitMEMLOCK=256M.
const UNIT_MEMLOCK: u64 = 256 * 1024 * 1024;

struct Setup {
    dir: tempfile::TempDir,
    hsm: SoftHsmDir,
    config: PathBuf,
    state: PathBuf,
}

/// A token, a PIN file and a config, all owned by `owner`, in directories others cannot enter.
fn setup(owner: u32, extra_config: &str) -> Setup {
    let hsm = SoftHsmDir::new();
    hsm.init_token("hardening");
    chown_tree(hsm.root(), owner);
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("hsm-pin");
    std::fs::write(&pin, format!("{}\n", common::softhsm::USER_PIN)).unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("byokd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n{extra_config}\n[hsm]\nmodule = {:?}\ntoken_label = \"hardening\"\npin_file = {pin:?}\n",
            hsm.module.display().to_string()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown_tree(dir.path(), owner);
    Setup {
        dir,
        hsm,
        config,
        state,
    }
}

fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid);
        }
    }
}

/// `byokd run` as `nobody`, with RLIMIT_MEMLOCK = `memlock` bytes.
fn byokd_as_nobody(s: &Setup, memlock: u64) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--memlock={memlock}:{memlock}"))
        .arg("--")
        .args([
            "setpriv",
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_byokd"))
        .arg("--config")
        .arg(&s.config)
        .arg("run")
        .env("SOFTHSM2_CONF", &s.hsm.conf)
        .env("BYOKD_LOG", "info")
        .env("MALLOC_ARENA_MAX", "2");
    cmd
}

fn byokd_as_root(s: &Setup) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_byokd"));
    cmd.arg("--config")
        .arg(&s.config)
        .arg("run")
        .env("SOFTHSM2_CONF", &s.hsm.conf)
        .env("BYOKD_LOG", "info");
    cmd
}

#[test]
fn a_running_daemon_is_locked_in_memory_coreless_and_umask_077() {
    // As root (allow_root) so that mlockall is not bounded by this machine's 8 MiB hard
    // RLIMIT_MEMLOCK, which an unprivileged test cannot raise; the locked size is checked
    // against the unit's LimitMEMLOCK instead.
    let s = setup(0, "allow_root = true");
    let mut cmd = byokd_as_root(&s);
    // As the unit sets it: glibc's per-thread 64 MiB arenas would otherwise all be locked.
    cmd.env("MALLOC_ARENA_MAX", "2");
    let mut daemon = Running::spawn(cmd);
    daemon.wait_for_log("byokd ready");
    let pid = daemon.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT): the whole mapped memory is locked, within the unit's limit.
    let locked = status_kib(&status, "VmLck").unwrap();
    let rss = status_kib(&status, "VmRSS").unwrap();
    assert!(
        locked > 0 && locked >= rss,
        "VmLck {locked} kB, VmRSS {rss} kB"
    );
    assert!(
        locked * 1024 <= UNIT_MEMLOCK,
        "VmLck {locked} kB exceeds LimitMEMLOCK"
    );
    eprintln!(
        "locked memory when ready: {locked} kB, resident {rss} kB (LimitMEMLOCK {} kB)",
        UNIT_MEMLOCK / 1024
    );
    assert_every_resident_page_is_locked_on_fault(pid);
    assert_eq!(status_field(&status, "Umask"), Some("0077"), "{status}");
    assert_core_limit_zero(pid);
    assert!(daemon.terminate().success(), "{}", daemon.log());
    assert!(s.state.exists());
}

/// The no-swap guarantee page by page: every mapping that holds a resident page is locked
/// (`lo` in smaps' VmFlags), and locking is on fault (`lf`), so untouched memory is not made
/// resident. Only the kernel's own vdso/vvar/vsyscall pages, which cannot be locked and hold
/// no data of byokd's, are exempt.
fn assert_every_resident_page_is_locked_on_fault(pid: u32) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut name = String::new();
    let mut rss = 0u64;
    let (mut mappings, mut on_fault) = (0, 0);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            name = line.split_whitespace().nth(5).unwrap_or("").to_owned();
        } else if let Some(v) = line.strip_prefix("Rss:") {
            rss = v.trim().trim_end_matches(" kB").trim().parse().unwrap();
        } else if let Some(flags) = line.strip_prefix("VmFlags:") {
            let flags: Vec<&str> = flags.split_whitespace().collect();
            if ["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"].contains(&name.as_str()) {
                continue;
            }
            mappings += 1;
            if rss > 0 {
                assert!(
                    flags.contains(&"lo"),
                    "mapping {name:?} has {rss} kB resident but is not locked: {flags:?}"
                );
            }
            if flags.contains(&"lf") {
                on_fault += 1;
            }
        }
    }
    assert!(mappings > 0, "no mappings read from smaps");
    assert_eq!(
        on_fault, mappings,
        "every mapping is locked on fault (MCL_ONFAULT)"
    );
}

fn assert_core_limit_zero(pid: u32) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );
}

#[test]
fn without_enough_lockable_memory_the_daemon_refuses_to_start_by_default() {
    let s = setup(NOBODY, "");
    let out = byokd_as_nobody(&s, 64 * 1024).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot lock byokd's memory") && stderr.contains("LimitMEMLOCK"),
        "{stderr}"
    );
    assert!(
        !s.state.exists(),
        "nothing happens before hardening: {stderr}"
    );
}

#[test]
fn as_its_own_user_the_daemon_is_undumpable_coreless_and_umask_077_and_best_effort_mlock_runs_unlocked()
 {
    let s = setup(NOBODY, "[hardening]\nmlock = \"best-effort\"\n");
    let mut daemon = Running::spawn(byokd_as_nobody(&s, 64 * 1024));
    daemon.wait_for_log("byokd ready");
    let pid = daemon.pid();
    assert!(
        daemon
            .log()
            .contains("mlockall failed; running with unlocked memory"),
        "{}",
        daemon.log()
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // It really runs as nobody, so the checks below are not root's privileges at work.
    assert!(
        status_field(&status, "Uid")
            .unwrap()
            .split_whitespace()
            .all(|u| u == NOBODY.to_string()),
        "{status}"
    );
    assert_eq!(status_kib(&status, "VmLck"), Some(0));
    assert_eq!(status_field(&status, "Umask"), Some("0077"), "{status}");
    assert_core_limit_zero(pid);
    // PR_SET_DUMPABLE 0: the kernel hands the /proc/<pid> files of a non-dumpable process to
    // root, so the daemon's own user (and any process running as it) cannot open its memory,
    // read its status or ptrace it.
    for file in ["mem", "status", "environ", "maps"] {
        let owner = std::fs::metadata(format!("/proc/{pid}/{file}"))
            .unwrap()
            .uid();
        assert_eq!(
            owner, 0,
            "/proc/{pid}/{file} belongs to uid {owner}: the process is dumpable"
        );
    }
    assert!(daemon.terminate().success(), "{}", daemon.log());
}

#[test]
fn root_is_refused_unless_allow_root_is_set() {
    let s = setup(0, "");
    let out = byokd_as_root(&s).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("running as root") && stderr.contains("User=byokd"),
        "{stderr}"
    );
    assert!(
        !s.state.exists(),
        "refused before the PIN is read or state is touched"
    );

    let s = setup(0, "allow_root = true");
    let mut daemon = Running::spawn(byokd_as_root(&s));
    daemon.wait_for_log("byokd ready");
    assert!(
        daemon
            .log()
            .contains("running as root because allow_root = true"),
        "{}",
        daemon.log()
    );
    assert!(daemon.terminate().success());
}

#[test]
fn a_config_file_others_can_read_or_write_is_refused() {
    for (mode, what) in [
        (0o644, "read by other users"),
        (0o602, "written by other users"),
        (0o620, "written by its group"),
    ] {
        let s = setup(0, "allow_root = true");
        // Open the path to others so that the file's own mode decides.
        std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&s.config, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = byokd_as_root(&s).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mode {mode:o}: {stderr}");
        assert!(
            stderr.contains(what) && stderr.contains("chmod 640"),
            "mode {mode:o}: {stderr}"
        );
        assert!(!s.state.exists());
    }
}

#[test]
fn a_pin_file_others_can_read_is_refused_before_the_hsm_is_touched() {
    let s = setup(0, "allow_root = true");
    std::fs::set_permissions(
        s.dir.path().join("hsm-pin"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let out = byokd_as_root(&s).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("chmod 600"),
        "{stderr}"
    );
}
