//! `byokd restore FILE` (byokd stopped): checks a backup's digest and its seal with the
//! configured HSM token, checks that the token holds every key and credential object the state
//! names, and only then puts the state (and the service log's segments) in place. A state
//! directory that already holds a state is refused, never overwritten.

use super::Args;
use crate::config::{self, Config};
use crate::hsm::{Hsm, HsmConfig};
use crate::logs::Event;
use crate::model::CredentialAuth;
use crate::store::State;
use crate::store::backup::{self, SEAL_AAD};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
enum RestoreError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// Exit 0 restored; 2 refused (nothing was changed); 1 failed part-way.
pub fn restore(args: &Args, file: &Path) -> ExitCode {
    super::run::init_tracing();
    match run(args, file) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(RestoreError::Refused(why)) => {
            tracing::error!(event = Event::StateRestoreRefused.as_str(), service = "system", file = %file.display(), reason = %why,
                "restore of {} refused: {why}", file.display());
            eprintln!("byokd restore: refused, nothing was changed: {why}");
            ExitCode::from(2)
        }
        Err(RestoreError::Failed(why)) => {
            eprintln!("byokd restore: {why}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, file: &Path) -> Result<String, RestoreError> {
    let refused = |e: &dyn std::fmt::Display| RestoreError::Refused(e.to_string());
    let config = config::check_file(&args.config).map_err(|problems| {
        RestoreError::Refused(format!(
            "{}: {}",
            args.config.display(),
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    crate::upgrade::ensure_not_running(&config.state_dir).map_err(|e| refused(&e))?;
    let input =
        std::fs::File::open(file).map_err(|e| refused(&format!("{}: {e}", file.display())))?;
    let mut parsed = backup::parse(std::io::BufReader::new(input))
        .map_err(|e| refused(&format!("{}: {e}", file.display())))?;
    let (records, digest) = (parsed.records, parsed.digest);
    let hsm = start_hsm(&config).map_err(|e| refused(&e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RestoreError::Failed(e.to_string()))?;
    let sealed_ok = rt
        .block_on(hsm.unseal(SEAL_AAD, &parsed.sealed))
        .is_ok_and(|d| d.expose_secret() == digest.as_slice());
    if !sealed_ok {
        return Err(RestoreError::Refused(format!(
            "{}: its sealed digest does not open with this token's sealing key or does not match the content: the file was tampered with, or it was made with another HSM token",
            file.display()
        )));
    }
    let streams = std::mem::take(&mut parsed.streams);
    let staged = backup::stage_restore(&config.state_dir, parsed).map_err(|e| refused(&e))?;
    let missing = rt.block_on(missing_objects(&hsm, &staged.state));
    if !missing.is_empty() {
        return Err(RestoreError::Refused(format!(
            "the HSM token lacks {} object(s) the backup's state names (restore them with the HSM vendor's backup first): {}",
            missing.len(),
            missing.join("; ")
        )));
    }
    let keys = staged.state.keys.len();
    let path = staged
        .publish()
        .map_err(|e| RestoreError::Failed(e.to_string()))?;
    give_to_owner(&config.state_dir, &path).map_err(RestoreError::Failed)?;
    let segments = restore_logs(&config, &streams).map_err(RestoreError::Failed)?;
    let _ = rt.block_on(hsm.shutdown());
    tracing::info!(event = Event::StateRestored.as_str(), service = "system", file = %file.display(), records, keys, log_segments = segments,
        "state restored from {} ({records} records, {keys} keys, {segments} log segments)", file.display());
    Ok(format!(
        "restored {} into {}: {records} state record(s), {keys} key(s), {segments} log segment(s); SHA-256 {}",
        file.display(),
        config.state_dir.display(),
        hex::encode(digest)
    ))
}

fn start_hsm(config: &Config) -> Result<Hsm, String> {
    let pin = config::read_pin(&config.hsm.pin_file).map_err(|e| e.to_string())?;
    let hsm_config = HsmConfig {
        module: config.hsm.module.clone(),
        token_label: config.hsm.token_label.clone(),
        request_timeout: Duration::from_millis(config.limits.hsm_request_timeout_ms),
        allow_host_wrap: config.hsm.allow_host_wrap,
        sessions: config.hsm.sessions,
    };
    Hsm::start(&hsm_config, pin)
        .map(|(hsm, _)| hsm)
        .map_err(|e| format!("HSM: {e}"))
}

/// Every key and credential object the state names that the token does not hold. The sealing
/// key that sealed the credentials' secrets is proven present by the backup's own seal.
async fn missing_objects(hsm: &Hsm, state: &State) -> Vec<String> {
    let on_token: BTreeSet<_> = match hsm.list_keys().await {
        Ok(keys) => keys.into_iter().map(|k| k.id).collect(),
        Err(e) => return vec![format!("the token's keys could not be listed: {e}")],
    };
    let mut absent = Vec::new();
    let walked = state.keys.for_each(|k| {
        if !on_token.contains(&k.hsm_id) {
            absent.push(k.clone());
        }
    });
    if let Err(e) = walked {
        return vec![format!("the restored state's keys could not be read: {e}")];
    }
    absent.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    let mut missing: Vec<String> = absent
        .iter()
        .map(|k| format!("key {}/{} (HSM id {})", k.group, k.name, k.hsm_id.to_hex()))
        .collect();
    for c in state.credentials.values() {
        if let CredentialAuth::Certificate { key_id, .. } = &c.auth
            && hsm.public_key(*key_id).await.is_err()
        {
            missing.push(format!(
                "signing key of credential {} (HSM id {})",
                c.name,
                key_id.to_hex()
            ));
        }
    }
    missing
}

/// Run as root for a daemon that runs as another user: the restored file belongs to the state
/// directory's owner, as the daemon's own files do.
fn give_to_owner(dir: &Path, path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Puts the backup's log segments in the logs directory; segments already there (this
/// appliance's own) are moved to `pre-restore/` inside it first, not deleted.
fn restore_logs(config: &Config, streams: &[(String, Vec<u8>)]) -> Result<usize, String> {
    if streams.is_empty() {
        return Ok(0);
    }
    let dir: PathBuf = config
        .logs
        .dir
        .clone()
        .unwrap_or_else(|| config.state_dir.join("logs"));
    let fail = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(&dir).map_err(|e| fail(&dir, e))?;
    let aside = dir.join("pre-restore");
    for entry in std::fs::read_dir(&dir).map_err(|e| fail(&dir, e))? {
        let entry = entry.map_err(|e| fail(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("segment-") && name.ends_with(".log") {
            std::fs::create_dir_all(&aside).map_err(|e| fail(&aside, e))?;
            std::fs::rename(entry.path(), aside.join(&name)).map_err(|e| fail(&aside, e))?;
        }
    }
    for (name, bytes) in streams {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| fail(&path, e))?;
        give_to_owner(&dir, &path)?;
    }
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail(&dir, e))?;
    Ok(streams.len())
}
