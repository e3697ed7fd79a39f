//! byokctl: the operator's command line for byokd's control API. `src/bin/byokctl.rs` calls
//! [`run`].
//!
//! Owns: the command line (`cli`), settings (`settings`), the mTLS client (`client`), output
//! (`output`, `describe`, `grid`, `progress`), the man pages (`man`), and the commands (`commands`).
//! Must never take a secret as an argument value, print a secret, or hide a failure behind
//! exit code 0.

mod cli;
mod client;
mod commands;
mod describe;
mod grid;
mod man;
mod output;
mod progress;
mod settings;
mod values;

pub use cli::{Cli, EXIT_CODES};
pub use settings::{Target, parse_server};

use std::process::ExitCode;

/// Why a command failed; each maps to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Connect(String),
    #[error("{status}: {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("job {0} failed")]
    JobFailed(String),
    #[error("{0}")]
    Other(String),
    /// A file that exists and was not to be replaced.
    #[error("{0}")]
    Exists(String),
    /// `log verify` found a broken chain.
    #[error("{0}")]
    ChainBroken(String),
    /// Standard output was closed by its reader (`byokctl job list | head -1`): byokctl stops
    /// quietly, with exit code 0.
    #[error("standard output closed")]
    OutputClosed,
}

impl CtlError {
    /// The process exit code (see `byokctl --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::OutputClosed => 0,
            Self::Usage(_) => 2,
            Self::Auth(_) => 3,
            Self::Connect(_) | Self::Other(_) => 1,
            Self::JobFailed(_) => 6,
            Self::Exists(_) => 5,
            Self::ChainBroken(_) => 8,
            // An admin approving their own request: refused as 403 by the API, but it is a
            // conflict with dual control's rule, not a missing right.
            Self::Api { code, .. } if code == "self_approval" => 5,
            Self::Api { status, .. } => match status {
                400 | 405 | 413 | 415 => 2,
                401 | 403 => 3,
                404 => 4,
                409 => 5,
                501 | 503 => 7,
                _ => 1,
            },
        }
    }
}

/// Parses the command line, runs the command and returns its exit code.
pub fn run() -> ExitCode {
    use clap::Parser;
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::note(&format!("byokctl: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) | Err(CtlError::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            output::note(&format!("byokctl: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}
