//! The checks of what a configuration names, beyond its text: the configuration file's own
//! permissions, the PIN file, the control socket's certificate, key and CA, and the extra trust
//! anchors of Azure and the syslog collectors. `byokd check-config` and `byokd run` both make
//! them, so `check-config` says OK only for what start-up accepts, and both list every problem
//! in one run.
//!
//! Not checked here, because they depend on more than the files: the user byokd runs as (root
//! is refused unless `allow_root = true`), the HSM login, and a PIN credential name when
//! `$CREDENTIALS_DIRECTORY` is not set (as when an administrator runs `check-config` by hand).

use crate::config::{self, Config, Inspection, PinError, PinOwner, Problem};
use std::path::Path;

/// Everything `byokd check-config` reports for the file at `path`.
pub fn check_config(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = config::read_file(path)?;
    let found = config::inspect(&text);
    let mut problems = found.problems.clone();
    if let Err(e) = crate::system::check_config_file(path) {
        problems.push(Problem {
            line: None,
            message: e.to_string(),
        });
    }
    if let Some(c) = &found.config {
        if let Some(p) = unreachable(c) {
            problems.push(p);
        }
        let owner = if nix::unistd::geteuid().is_root() {
            PinOwner::Anyone
        } else {
            PinOwner::ThisUser
        };
        problems.extend(files(c, &found, owner));
    }
    match found.config {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(problems),
    }
}

/// `check-config` refuses a daemon that no console could reach: without `[control]` it opens
/// neither the TCP listener nor the front-panel socket, so `byokctl`, the web console and the
/// front panel all find nothing. (`byokd run` starts such a daemon, with a warning, for tests
/// and staging; check-config is the installer's gate and is stricter.)
pub fn unreachable(c: &Config) -> Option<Problem> {
    c.control.is_none().then(|| Problem {
        line: None,
        message: UNREACHABLE.to_owned(),
    })
}

/// Why a daemon without `[control]` is refused, and what to add.
pub const UNREACHABLE: &str = "no [control] section: no console could reach this daemon (no TCP listener, no front-panel socket); add [control] with listen, server_cert, server_key, client_ca and one [[control.identities]] per officer (the shipped /etc/byokd/byokd.toml has one to fill in; docs/operator-guide.md#the-console-pki)";

/// What `check-config` reports without refusing the configuration: today, a designated setting
/// set through the API that overrides a different `designated` in this file. The state is read
/// only when a daemon has run on it (its lock file exists, so reading creates nothing) and no
/// daemon holds it now.
pub fn warnings(c: &Config) -> Vec<String> {
    let dir = &c.state_dir;
    if !dir.join("state.lock").is_file() {
        return Vec::new();
    }
    match crate::store::Store::open(dir) {
        Ok((_store, state, _)) => {
            crate::service::DesignatedSetting::resolve(c.designated, state.designated)
                .disagreement()
                .into_iter()
                .collect()
        }
        Err(e) => vec![format!(
            "the designated setting set through the API was not compared with this file ({e}); `byokctl status` shows which applies"
        )],
    }
}

/// The problems of the files a valid configuration names; `owner` says whose PIN file it may be.
pub fn files(c: &Config, at: &Inspection, owner: PinOwner) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            line: at.line_of(key),
            message,
        })
    };
    let credential_name = !c.hsm.pin_file.starts_with('/');
    if !(credential_name && std::env::var_os("CREDENTIALS_DIRECTORY").is_none()) {
        match config::check_pin_file(&c.hsm.pin_file, owner) {
            Ok(()) | Err(PinError::NoCredentialsDirectory { .. }) => {}
            Err(e) => bad("hsm.pin_file", e.to_string()),
        }
    }
    if let Some(control) = &c.control
        && let Err(e) = crate::control::tls::server_config(control)
    {
        let key = match &e {
            crate::control::ControlError::Pem { setting, .. } => format!("control.{setting}"),
            _ => "control.server_cert".to_owned(),
        };
        bad(&key, e.to_string());
    }
    if let Err(e) = crate::azure::http::check_extra_ca(&c.azure.extra_ca) {
        bad("azure.extra_ca", e.to_string());
    }
    for (i, t) in c.logs.syslog.iter().enumerate() {
        if let Some(ca) = &t.ca_file
            && let Err(e) = crate::logs::forward::collector_roots(ca)
        {
            bad(
                &format!("logs.syslog.{i}"),
                format!("logs.syslog ca_file {e}"),
            );
        }
    }
    problems
}
