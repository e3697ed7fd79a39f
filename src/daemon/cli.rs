//! The `byokd` command line.

use std::path::PathBuf;

/// byokd: brings HSM-generated keys to Azure Key Vault (BYOK) and manages them.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "byokd", version, about, long_about = None)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = crate::config::DEFAULT_PATH, value_name = "PATH")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration file and print every problem with its line.
    CheckConfig,
    /// Print the version and the state format version.
    Version,
}
