//! The `upgrade` and `migrate-state` actions: argument handling and exit codes around
//! [`crate::upgrade`] and the store's migration on load.

use super::{Args, UpgradeArgs};
use crate::store::{FORMAT_VERSION, Store};
use crate::upgrade::{InstallOptions, UpgradeError};
use std::process::ExitCode;
use std::time::Duration;

/// Exit 0 installed (or verified); 1 failed and rolled back or could not finish; 2 refused
/// before any change.
pub fn upgrade(args: &Args, up: &UpgradeArgs) -> ExitCode {
    super::run::init_tracing();
    if up.show_key {
        return match crate::upgrade::trusted_key_hex() {
            Ok(k) => {
                println!("{k}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    let Some(bundle) = up.bundle.clone() else {
        eprintln!("byokd upgrade: a BUNDLE is required");
        return ExitCode::from(2);
    };
    if up.verify_only {
        return match crate::upgrade::verify_bundle(&bundle) {
            Ok(b) => {
                println!(
                    "{}: OK (version {}, state format {}, {} files)",
                    bundle.display(),
                    b.manifest.version,
                    b.manifest.state_format,
                    b.files.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    let opts = InstallOptions {
        bundle,
        root: up.root.clone(),
        config: args.config.clone(),
        health_timeout: Duration::from_secs(up.health_timeout),
    };
    match crate::upgrade::install(&opts) {
        Ok(done) => {
            let from = done.previous.as_deref().unwrap_or("nothing installed");
            println!(
                "installed byokd {} in slot {} (was: {from}); state format {}{}",
                done.version,
                done.slot,
                done.state_format,
                done.migrated_from
                    .map(|f| format!(", migrated from format {f}"))
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &UpgradeError) -> ExitCode {
    eprintln!("byokd upgrade: {e}");
    match e {
        UpgradeError::RolledBack { .. }
        | UpgradeError::RollbackFailed(_)
        | UpgradeError::Io { .. } => ExitCode::FAILURE,
        _ => ExitCode::from(2),
    }
}

/// Opens the state: the store migrates an older format on open and commits it in this build's
/// format.
pub fn migrate_state(args: &Args) -> ExitCode {
    super::run::init_tracing();
    let config = match crate::config::check_file(&args.config) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("{}: {p}", args.config.display());
            }
            return ExitCode::from(2);
        }
    };
    // Opening migrates an older state and commits it before it returns.
    let result =
        Store::open(&config.state_dir).map(|(store, _, report)| (report, store.generation()));
    match result {
        Ok((report, generation)) => {
            match report.migrated_from {
                Some(from) => tracing::info!(
                    event = "state.migrated",
                    from,
                    to = FORMAT_VERSION,
                    generation,
                    "state migrated"
                ),
                None => {
                    tracing::info!(format = FORMAT_VERSION, generation, "state already current")
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("byokd migrate-state: {e}");
            ExitCode::FAILURE
        }
    }
}
