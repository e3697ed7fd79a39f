//! byokctl's command-line definition (clap derive). Completions and the man pages are generated
//! from this same definition (`byokctl completion SHELL`, `byokctl generate-man DIR`).
//!
//! It owns the shape of the command line only; it never reads a secret from an argument.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub use super::values::*;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (a dual-control request recorded and waiting for approval is a success too; so is
     output cut short by its reader, as in `byokctl job list | head -1`)
  1  other failure: cannot connect, server error, unexpected answer
  2  usage error: bad arguments, an unreadable input file, or a request the server refused as invalid (400)
  3  authentication or authorization failure: TLS handshake refused (certificate not from the console CA), or 401/403 (the role may not do this)
  4  not found (404)
  5  conflict (409): name taken, resource in use, not the designated device, approval expired or already decided;
     an admin approving their own request; or `log export` to a FILE that exists (without --force)
  6  a job failed or was cancelled
  7  not available: the server answered 501 (not in this build yet) or 503 (HSM or state unavailable)
  8  log verify: the hash chain is broken (the first broken record is named)

Settings come from flags, then BYOKCTL_* variables, then ~/.config/byokctl/config.toml
(keys: server, cert, key, ca, server_name).";

/// byokctl: drive byokd (HSM keys to Azure Key Vault BYOK) over its mTLS control API.
#[derive(Debug, Parser)]
#[command(name = "byokctl", version, about, after_long_help = EXIT_CODES, after_help = "Exit codes: 0 ok, 1 other, 2 usage, 3 authn/authz, 4 not found, 5 conflict, 6 job failed, 7 not available, 8 log chain broken (see --help)")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Server: https://HOST:PORT, or unix:/PATH for the front-panel socket [default: https://localhost:7443].
    #[arg(long, global = true, env = "BYOKCTL_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Client certificate (PEM).
    #[arg(long, global = true, env = "BYOKCTL_CERT", value_name = "PATH")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, global = true, env = "BYOKCTL_KEY", value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// CA certificate (PEM) that the server's certificate chains to.
    #[arg(long, global = true, env = "BYOKCTL_CA", value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// Name to check the server certificate against [default: the server's host, or localhost for unix:].
    #[arg(long, global = true, env = "BYOKCTL_SERVER_NAME", value_name = "NAME")]
    pub server_name: Option<String>,
    /// Settings file [default: ~/.config/byokctl/config.toml].
    #[arg(long, global = true, env = "BYOKCTL_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Output format. Times are RFC 3339 UTC in every format.
    #[arg(long, short, global = true, env = "BYOKCTL_OUTPUT", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Seconds to wait for one answer.
    #[arg(
        long,
        global = true,
        env = "BYOKCTL_TIMEOUT",
        default_value_t = 90,
        value_name = "SECONDS"
    )]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Azure app registrations byokd signs in with (admin).
    #[command(subcommand)]
    Credential(CredentialCmd),
    /// Key groups: one Azure key each, with its Key Vault or Managed HSM, type and rotation policy.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Keys generated in the HSM.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Dual control: actions waiting for a second admin.
    #[command(subcommand)]
    Approval(ApprovalCmd),
    /// Jobs (sync, rotation, delete on cloud) and their progress.
    #[command(subcommand)]
    Job(JobCmd),
    /// The service log.
    #[command(subcommand)]
    Log(LogCmd),
    /// Whether this appliance is the designated device that pushes to the cloud.
    #[command(subcommand)]
    Designated(DesignatedCmd),
    /// Online backups of the state and the service log (admin); restore with `byokd restore`.
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Health of the daemon (HSM, state) and who you are.
    Status,
    /// Print the shell completion script for SHELL, e.g. `byokctl completion bash >
    /// /etc/bash_completion.d/byokctl` (the firmware bundle ships them in completions/).
    /// Subcommands, flags and their values (key types, usages, job states and kinds, output
    /// formats) complete; names of groups, keys, credentials and jobs do not.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write shell completions (bash, zsh, fish, elvish, powershell) into DIR.
    #[command(hide = true)]
    GenerateCompletions { dir: PathBuf },
    /// Write the man pages into DIR: byokctl(1) and one per subcommand, byokd(8) and its
    /// subcommands', and byokd.toml(5) from the configuration reference.
    #[command(hide = true)]
    GenerateMan {
        dir: PathBuf,
        /// The configuration reference (Markdown) byokd.toml(5) is made from.
        #[arg(long, value_name = "PATH", default_value = "docs/configuration.md")]
        config_reference: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Write a consistent snapshot of the state and the service log to FILE while byokd runs
    /// (jobs keep running). The file ends with its SHA-256 sealed by the HSM; it is checked
    /// after the download and written atomically, never over an existing file unless --force.
    /// Credentials stay sealed by the HSM: the file holds no secret in the clear.
    Create {
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// The file to write.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialCmd {
    /// Add a credential. The secret comes from a file or stdin, never from an argument; with
    /// --certificate the HSM generates an RSA-3072 key (never extractable) and a self-signed
    /// certificate to upload to the app registration (see `credential certificate`).
    #[command(visible_alias = "create")]
    Add {
        /// Unique credential name.
        name: String,
        /// Entra tenant id (GUID).
        #[arg(long)]
        tenant_id: String,
        /// App registration (client) id (GUID).
        #[arg(long)]
        client_id: String,
        /// Read the client secret from this file (one trailing newline is removed).
        #[arg(
            long,
            value_name = "PATH",
            group = "secret",
            required_unless_present_any = ["secret_stdin", "certificate"]
        )]
        secret_file: Option<PathBuf>,
        /// Read the client secret from standard input.
        #[arg(long, group = "secret")]
        secret_stdin: bool,
        /// A certificate credential: the key pair is generated in the HSM; client assertions
        /// are signed there (azure.assertion_alg).
        #[arg(long, conflicts_with_all = ["secret_file", "secret_stdin", "expires"])]
        certificate: bool,
        /// Validity of the self-signed certificate in days (1 to 3650; default 365).
        #[arg(long, value_name = "DAYS", requires = "certificate")]
        validity_days: Option<u32>,
        /// When the secret expires: YYYY-MM-DD, RFC 3339, or Unix seconds.
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
        /// Store the secret without signing in with it first (an appliance that cannot reach
        /// Azure yet); it shows as unverified until a sign-in succeeds. A certificate
        /// credential is always stored unverified: upload its certificate first.
        #[arg(long)]
        no_verify: bool,
    },
    /// Print a certificate credential's certificate (PEM) to upload to the app registration,
    /// or with --csr a PKCS#10 request signed in the HSM for your CA.
    Certificate {
        name: String,
        /// Export a certificate signing request instead of the self-signed certificate.
        #[arg(long)]
        csr: bool,
        /// Write the PEM to this file instead of standard output (`-o` is the output format).
        #[arg(short = 'f', long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// List credentials.
    List,
    /// Show one credential.
    Show { name: String },
    /// Set or clear a credential's expiry date.
    SetExpiry {
        name: String,
        /// YYYY-MM-DD, RFC 3339, or Unix seconds.
        #[arg(required_unless_present = "clear")]
        date: Option<String>,
        /// Clear the expiry instead.
        #[arg(long, conflicts_with = "date")]
        clear: bool,
    },
    /// Delete a credential no group uses. Needs a second admin's approval.
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct RotationArgs {
    /// Turn automatic rotation on or off.
    #[arg(long, value_enum)]
    pub rotation: Option<OnOff>,
    /// Rotate every N calendar months (1-120).
    #[arg(long, value_name = "MONTHS")]
    pub rotate_every: Option<u32>,
    /// Each pushed version stays valid N calendar months (1-120).
    #[arg(long, value_name = "MONTHS")]
    pub keep_valid: Option<u32>,
}

#[derive(Debug, Args)]
pub struct JobWait {
    /// Return as soon as the job is accepted, without a progress bar.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a key group, in a Key Vault (--vault) or a Managed HSM (--managed-hsm).
    #[command(group(clap::ArgGroup::new("target").required(true).args(["vault", "managed_hsm"])))]
    Create {
        /// Group name: the Azure key name (1-127 of 0-9, a-z, A-Z, '-').
        name: String,
        /// Credential used to reach the vault or Managed HSM.
        #[arg(long)]
        credential: String,
        /// Key Vault name (<name>.vault.azure.net on the public cloud).
        #[arg(long)]
        vault: Option<String>,
        /// Managed HSM pool name (<name>.managedhsm.azure.net on the public cloud), instead of
        /// --vault; the credential needs the pool's local RBAC role "Managed HSM Crypto User".
        #[arg(long, value_name = "NAME")]
        managed_hsm: Option<String>,
        /// The Azure key type; AES-128, AES-192 and AES-256 (oct-HSM) only with --managed-hsm.
        #[arg(long, value_enum)]
        key_type: KeyTypeArg,
        /// RSA public exponent: 65537 (default) or 3.
        #[arg(long)]
        exponent: Option<u32>,
        /// Key usages, comma separated [default: the key type's usual ones].
        #[arg(long, value_enum, value_delimiter = ',')]
        key_ops: Option<Vec<KeyOpArg>>,
        #[command(flatten)]
        rotation: RotationArgs,
        /// Create the group without checking with Azure that the vault or Managed HSM exists and
        /// that the credential may read it (Get and List key permissions).
        #[arg(long)]
        no_verify: bool,
    },
    /// List key groups.
    List,
    /// Show one key group.
    Show { name: String },
    /// Change a group's rotation policy (refused while a sync or rotation of the group runs).
    Set {
        name: String,
        #[command(flatten)]
        rotation: RotationArgs,
    },
    /// Delete an empty key group (local only; never touches the cloud). Refused while a job
    /// works on the group.
    Delete { name: String },
    /// Push every unpushed key of the group to Azure.
    Sync {
        name: String,
        #[command(flatten)]
        wait: JobWait,
    },
    /// Rotate now: a new HSM key, pushed as the current Azure version (designated device only).
    Rotate {
        name: String,
        #[command(flatten)]
        wait: JobWait,
    },
    /// Check cloud state: report Azure versions unknown here, missing, disabled, expired or with
    /// another public key (read-only; findings shown by `group show`).
    Check {
        name: String,
        #[command(flatten)]
        wait: JobWait,
    },
    /// Delete the group's Azure key, all versions, on the cloud service (admin; needs a second
    /// admin's approval). Local keys are NOT touched: they stay in the HSM. The job is recorded
    /// at once in `waiting-approval` (exit 0); `approval approve` runs it, `approval reject`,
    /// the approval's expiry or `job cancel` ends it cancelled.
    DeleteCloud {
        name: String,
        #[command(flatten)]
        wait: JobWait,
    },
    /// Recover the group's soft-deleted Azure key (all versions) before it is purged (a job,
    /// designated device only). Waits for the job and prints its outcome; the job fails, saying
    /// why, where there is nothing to recover or the vault is unreachable or refuses.
    Recover {
        name: String,
        #[command(flatten)]
        wait: JobWait,
    },
    /// Purge the group's soft-deleted Azure key for good (admin; a job that needs a second
    /// admin's approval). Refused at once, with the reason, where the vault forbids it (purge
    /// protection) or the key is not deleted. Local keys are NOT touched. The job is recorded at
    /// once in `waiting-approval` (exit 0); `approval approve` runs it, `approval reject`, the
    /// approval's expiry or `job cancel` ends it cancelled.
    Purge {
        name: String,
        #[command(flatten)]
        wait: JobWait,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Generate a random key in the HSM for a group.
    Create { group: String, name: String },
    /// List a group's keys, or every group's with --all-groups.
    List {
        #[arg(required_unless_present = "all_groups")]
        group: Option<String>,
        /// The keys of every key group.
        #[arg(long, short = 'A', conflicts_with = "group")]
        all_groups: bool,
    },
    /// Show one key.
    Show { group: String, name: String },
    /// Print a key's public key (PEM, DER or JWK), as the HSM holds it. With `-o json` or
    /// `-o yaml`: the API's answer (PEM and base64 DER).
    Public {
        group: String,
        name: String,
        /// The form to write.
        #[arg(long, value_enum, default_value_t = PublicFormat::Pem)]
        format: PublicFormat,
        /// Write to this file instead of standard output (`-o` is the output format).
        #[arg(short = 'f', long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Delete a key locally; never touches the cloud (a pushed key needs an admin and a second
    /// admin's approval; a key a job works on is refused until the job ends).
    Delete { group: String, name: String },
    /// Push one key to Azure.
    Sync {
        group: String,
        name: String,
        #[command(flatten)]
        wait: JobWait,
    },
    /// Export a key as a .byok file for `az keyvault key import --byok-file` on a machine that
    /// reaches Azure (admin; a second admin must approve with `approval approve`). The key is
    /// wrapped in the HSM under the KEK, as a push wraps it. Waits for the approval, then
    /// writes FILE; with --no-wait, fetch it later with `approval byok-file`.
    ExportByok {
        group: String,
        name: String,
        /// The KEK's public key: the file `az keyvault key download --encoding PEM` wrote
        /// (RSA 2048, 3072 or 4096).
        #[arg(long, value_name = "PEM")]
        kek_pem: PathBuf,
        /// The KEK's versioned key id, on the group's own vault or Managed HSM pool
        /// (https://VAULT.vault.azure.net/keys/NAME/VERSION, https://POOL.managedhsm.azure.net/...).
        #[arg(long, value_name = "KID")]
        kek_kid: String,
        /// The .byok file to write (`-o` is the output format).
        #[arg(short = 'f', long, value_name = "FILE")]
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// Return once the request is recorded (exit 0), without waiting for the approval.
        #[arg(long)]
        no_wait: bool,
    },
    /// Record the Azure version that a manual import of a .byok file made, so the key list,
    /// drift checks and rotation go on as after a push. Azure must show that version with the
    /// HSM key's public key (else exit 5, nothing recorded).
    RecordImport {
        group: String,
        name: String,
        /// The version: the last part of the kid `az keyvault key import` printed.
        #[arg(long, value_name = "VERSION")]
        version: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalCmd {
    /// List approvals (pending and recently decided).
    List {
        /// Only those with this status.
        #[arg(long, value_enum)]
        status: Option<ApprovalStatusArg>,
    },
    /// Show one approval.
    Show { id: String },
    /// Approve (as a different admin than the requester); the action then runs. An admin
    /// cannot approve their own request (exit 5).
    Approve {
        id: String,
        /// Follow the job the approval starts (delete on cloud, purge) until it ends, with a
        /// progress bar; exit 6 if it fails.
        #[arg(long)]
        wait: bool,
    },
    /// Reject.
    Reject { id: String },
    /// Write the .byok file of an approved `key export-byok` (its requester only).
    ByokFile {
        id: String,
        /// The .byok file to write (`-o` is the output format).
        #[arg(short = 'f', long, value_name = "FILE")]
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// List jobs, newest first.
    List {
        #[command(flatten)]
        filter: JobFilter,
        /// Keep showing jobs that start or change (checked every 2 s; Ctrl-C to stop).
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Show one job.
    Show { id: String },
    /// Follow a job with a progress bar until it ends; exit 6 if it failed.
    Watch { id: String },
    /// Cancel a job where that is safe: a pending job at once (one waiting for approval too, and
    /// its approval is withdrawn), a started one at its next safe point (never halfway through
    /// an import); its key exchange key is still cleaned up. Operator. Exit 5 if the job
    /// already ended.
    Cancel { id: String },
}

/// Filters of `job list`.
#[derive(Debug, Clone, Args)]
pub struct JobFilter {
    /// Only jobs in this state.
    #[arg(long, value_enum)]
    pub state: Option<JobStateArg>,
    /// Only jobs of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<JobKindArg>,
    /// Only jobs of this key group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LogCmd {
    /// Show service log records: oldest first, a page at a time; or the last N (--tail),
    /// newest first (--reverse); and follow new ones (--follow). Times are RFC 3339 UTC.
    Show {
        #[command(flatten)]
        filter: LogFilter,
        /// Only records after this sequence number (the next page starts after the last shown).
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: u64,
        /// Records per page (1-1000).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        /// Only the last N records that match the filters.
        #[arg(long, short = 'n', value_name = "N")]
        tail: Option<usize>,
        /// Newest first (without --tail: the newest --limit records).
        #[arg(long, short = 'r', conflicts_with = "follow")]
        reverse: bool,
        /// Keep showing new records as they are stored (Ctrl-C to stop).
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Export records to FILE (the "Export File" button): written atomically, never over an
    /// existing file unless --force; the chain is verified and the record count printed. A
    /// download that breaks off fails (exit 1) and writes nothing. CSV cells that a spreadsheet
    /// would run as a formula get a leading `'`.
    Export {
        #[command(flatten)]
        filter: LogFilter,
        /// File format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// The file to write.
        file: PathBuf,
    },
    /// Check the hash chain: of the stored log (on the server), or of an exported FILE
    /// (offline, no server needed; a file that lost its end row was cut off). Reports the
    /// first broken link; exit code 8 if broken.
    Verify {
        /// An exported file (JSONL or CSV) to check instead of the stored log.
        file: Option<PathBuf>,
    },
}

/// Filters of `log show` and `log export`.
#[derive(Debug, Clone, Args)]
pub struct LogFilter {
    /// Only these services (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub service: Vec<LogService>,
    /// Minimum level.
    #[arg(long, value_enum)]
    pub level: Option<LogLevel>,
    /// From this time on (RFC 3339, e.g. 2026-01-31T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Up to this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only records of this job.
    #[arg(long, value_name = "ID")]
    pub job: Option<u64>,
    /// Only records of this key group.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Only records containing this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DesignatedCmd {
    /// Show whether this appliance is the designated device.
    Get,
    /// Make this appliance the designated device (on) or not (off); `true`/`false` are
    /// accepted too. Admin.
    Set {
        #[arg(value_enum)]
        value: OnOff,
    },
}
