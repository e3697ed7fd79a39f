//! The daemon's entry: command-line actions (`run`, `check-config`, `version`, `upgrade`,
//! `migrate-state`, `restore`), start-up order
//! and shutdown. `main` in `src/bin/byokd.rs` is a few lines that call [`main`].
//!
//! Start-up order: signal handlers → config and the files it names → PIN → HSM login → state →
//! control socket → ready. Any failure exits non-zero with a message that names the fix; byokd
//! never starts half-configured. SIGTERM or SIGINT at any point of start-up stops it promptly.

pub(crate) mod cli;
mod preflight;
mod restore;
mod run;

mod upgrade;

pub use cli::{Action, Args, UpgradeArgs};
pub use run::{DaemonError, run};

use std::process::ExitCode;

/// Parses arguments and runs the chosen action.
pub fn main() -> ExitCode {
    use clap::Parser;
    let args = Args::parse();
    match args.action.clone().unwrap_or(Action::Run) {
        Action::Version => {
            println!(
                "byokd {} (state format {})",
                env!("CARGO_PKG_VERSION"),
                crate::store::FORMAT_VERSION
            );
            ExitCode::SUCCESS
        }
        Action::CheckConfig => match preflight::check_config(&args.config) {
            Ok(c) => {
                for w in preflight::warnings(&c) {
                    eprintln!("{}: warning: {w}", args.config.display());
                }
                println!("{}: OK", args.config.display());
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("{}: {p}", args.config.display());
                }
                eprintln!("{}: {} problem(s)", args.config.display(), problems.len());
                ExitCode::from(2)
            }
        },
        Action::Run => run::run_blocking(&args),
        Action::Upgrade(up) => upgrade::upgrade(&args, &up),
        Action::MigrateState => upgrade::migrate_state(&args),
        Action::Restore { file } => restore::restore(&args, &file),
    }
}
