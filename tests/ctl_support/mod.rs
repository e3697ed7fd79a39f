//! Shared by the byokctl test files: a daemon on SoftHSM with the Azure emulator, one
//! credential (`app`), one EC-P256 group (`g1`) with two keys, and byokctl runners that keep
//! stdout and stderr apart or hand stdout to a pipe.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::rig::*;
use std::process::{Command, Output, Stdio};

pub const SECRET: &str = "Ctl~Output.Secret-0042";
pub const VAULT: &str = "byokd-ctl";

pub struct Rig {
    pub d: Daemon,
    pub emu: byokd_emulator::EmulatorHandle,
    _rt: tokio::runtime::Runtime,
    _ca: tempfile::TempDir,
}

/// The emulator and a daemon, with credential `app`, group `g1` (EC-P256) and keys `k1`, `k2`.
pub fn rig() -> Rig {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca = tempfile::tempdir().unwrap();
    let (emu, options) = emulator_and_options(
        &rt,
        &ca.path().join("emulator-ca.pem"),
        (TENANT, CLIENT, SECRET),
        VAULT,
    );
    let d = Daemon::start_with(options);
    let r = Rig {
        d,
        emu,
        _rt: rt,
        _ca: ca,
    };
    let out = r.d.ctl_stdin(
        ADMIN,
        &[
            "credential",
            "add",
            "app",
            "--tenant-id",
            TENANT,
            "--client-id",
            CLIENT,
            "--secret-stdin",
        ],
        Some(SECRET),
    );
    ok(&out);
    r.ok(OPERATOR, &group_create("g1", "EC-P256"));
    r.ok(OPERATOR, &["key", "create", "g1", "k1"]);
    r.ok(OPERATOR, &["key", "create", "g1", "k2"]);
    r
}

/// `group create NAME --key-type KEY_TYPE` on the rig's credential and vault.
pub fn group_create<'a>(name: &'a str, key_type: &'a str) -> [&'a str; 9] {
    [
        "group",
        "create",
        name,
        "--credential",
        "app",
        "--vault",
        VAULT,
        "--key-type",
        key_type,
    ]
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

impl Rig {
    pub fn ok(&self, who: &str, args: &[&str]) -> String {
        ok(&self.d.ctl(who, args))
    }

    /// `byokctl -o json ARGS` as `who`, which must succeed: its parsed stdout.
    pub fn json(&self, who: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(who, &all)).unwrap()
    }

    /// A byokctl command as `who`; the caller chooses its stdio.
    pub fn command(&self, who: &str, args: &[&str]) -> Command {
        let mut cmd = self.d.ctl_command(who, args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `program` (a shell, `script`) with the environment that points byokctl at the rig as
    /// `who`.
    pub fn with_env(&self, who: &str, program: &str) -> Command {
        let base = self.command(who, &[]);
        let mut cmd = Command::new(program);
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Pushes g1's keys (a sync job that succeeds); returns the job id.
    pub fn sync(&self) -> String {
        let v = self.json(OPERATOR, &["group", "sync", "g1"]);
        assert_eq!(v["state"], "succeeded", "{v}");
        v["id"].as_str().unwrap().to_owned()
    }
}

/// Whether `s` is an RFC 3339 UTC time as byokd writes them (`2026-01-31T12:00:00Z`; the
/// service log adds milliseconds).
pub fn is_rfc3339_utc(s: &str) -> bool {
    s.ends_with('Z')
        && s.as_bytes()[10] == b'T'
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}
