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
    /// Validate the configuration file and the files it names (its own permissions, the PIN
    /// file, the control TLS files, extra CAs) and print every problem, with its line, at once.
    CheckConfig,
    /// Print the version and the state format version.
    Version,
    /// Verify a signed firmware bundle and install it into the A/B layout, migrating the state;
    /// rolls back when the new version fails its health check. Run with byokd stopped.
    Upgrade(UpgradeArgs),
    /// Open the state directory and rewrite it in this build's state format (run by
    /// `upgrade` with the new binary; byokd must be stopped).
    MigrateState,
    /// Restore a backup made by `byokctl backup create` into an empty state directory (byokd
    /// must be stopped). Checks the file's digest and its seal with the configured HSM token,
    /// and that the token holds every key and credential object the state names; refuses with
    /// the list of missing objects otherwise. Exit 0 restored, 2 refused, 1 failed.
    Restore {
        /// The backup file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpgradeArgs {
    /// The bundle made by image/build.sh.
    #[arg(value_name = "BUNDLE", required_unless_present = "show_key")]
    pub bundle: Option<PathBuf>,
    /// Root of the firmware tree; the layout is ROOT/opt/byokd/{a,b,current}.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Seconds the new version has to become ready before it is rolled back.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub health_timeout: u64,
    /// Only verify the bundle's signature and hashes; change nothing.
    #[arg(long)]
    pub verify_only: bool,
    /// Print the upgrade public key built into this byokd, and exit.
    #[arg(long)]
    pub show_key: bool,
}
