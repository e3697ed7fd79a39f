//! The configuration's shape and defaults.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the durable state lives (mode 0700).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Whether this appliance is the designated device that pushes key material to the cloud.
    #[serde(default)]
    pub designated: bool,
    /// Refuse to run as root unless this is true.
    #[serde(default)]
    pub allow_root: bool,
    pub hsm: HsmSection,
    #[serde(default)]
    pub azure: AzureSection,
    #[serde(default)]
    pub control: Option<ControlSection>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub hardening: HardeningSection,
    #[serde(default)]
    pub logs: LogsSection,
    #[serde(default)]
    pub lifecycle: LifecycleSection,
    #[serde(default)]
    pub jobs: JobsSection,
}

/// Retention of finished jobs. Unfinished jobs are always kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSection {
    /// Most finished jobs kept; the oldest finished beyond this are pruned.
    #[serde(default = "d_retain_count")]
    pub retain_count: usize,
    /// Finished jobs that ended more than this many days ago are pruned.
    #[serde(default = "d_retain_days")]
    pub retain_days: u32,
}

impl Default for JobsSection {
    fn default() -> Self {
        Self {
            retain_count: d_retain_count(),
            retain_days: d_retain_days(),
        }
    }
}

fn d_retain_count() -> usize {
    1000
}
fn d_retain_days() -> u32 {
    90
}

/// The service log: where it is kept, how big it may grow, where it is sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Directory of the log segments (default `<state_dir>/logs`; the unit's
    /// `LogsDirectory=byokd` gives `/var/log/byokd`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A segment is closed and a new one started past this size.
    #[serde(default = "d_log_segment")]
    pub max_segment_bytes: u64,
    /// The oldest segments are dropped (and the drop recorded) past this total.
    #[serde(default = "d_log_total")]
    pub max_total_bytes: u64,
    /// Records are fsynced in batches at most this far apart.
    #[serde(default = "d_log_fsync")]
    pub fsync_interval_ms: u64,
    /// Send records to the systemd journal when running under systemd.
    #[serde(default = "d_true")]
    pub journald: bool,
    /// Syslog collectors (RFC 5424).
    #[serde(default)]
    pub syslog: Vec<SyslogTarget>,
}

impl Default for LogsSection {
    fn default() -> Self {
        Self {
            dir: None,
            max_segment_bytes: d_log_segment(),
            max_total_bytes: d_log_total(),
            fsync_interval_ms: d_log_fsync(),
            journald: true,
            syslog: Vec::new(),
        }
    }
}

/// Key lifecycle settings: the grace period after a rotation and the drift check schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSection {
    /// Days after a rotation before the previous Azure versions are disabled; 0 never disables.
    #[serde(default = "d_grace_days")]
    pub grace_days: u32,
    /// Hours between scheduled drift checks of every group; 0 runs them on demand only.
    #[serde(default = "d_drift_hours")]
    pub drift_check_hours: u32,
}

impl Default for LifecycleSection {
    fn default() -> Self {
        Self {
            grace_days: d_grace_days(),
            drift_check_hours: d_drift_hours(),
        }
    }
}

/// One syslog collector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTarget {
    pub transport: SyslogTransport,
    /// `host:port` of the collector.
    pub address: String,
    /// CA certificate (PEM) for `tls`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name the collector's certificate must carry (default: the address's host).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Records held while the collector is unreachable; more are dropped and counted.
    #[serde(default = "d_syslog_queue")]
    pub queue: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    Udp,
    Tcp,
    Tls,
}

fn d_log_segment() -> u64 {
    4 * 1024 * 1024
}
fn d_log_total() -> u64 {
    64 * 1024 * 1024
}
fn d_log_fsync() -> u64 {
    200
}
fn d_true() -> bool {
    true
}
fn d_syslog_queue() -> usize {
    10_000
}
fn d_grace_days() -> u32 {
    7
}
fn d_drift_hours() -> u32 {
    24
}

/// Process hardening settings (see `hardening/README.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardeningSection {
    /// What to do when `mlockall` fails: stop start-up (`required`, the default) or log at WARN
    /// and run with unlocked memory (`best-effort`).
    #[serde(default)]
    pub mlock: MlockPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MlockPolicy {
    #[default]
    Required,
    BestEffort,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmSection {
    /// Path of the PKCS#11 module (a shared library).
    pub module: PathBuf,
    /// Label of the token byokd logs in to.
    pub token_label: String,
    /// The PIN file: a bare name is read from `$CREDENTIALS_DIRECTORY` (systemd
    /// `LoadCredential=`); an absolute path must be owned by byokd's user with mode 0600 or 0400.
    #[serde(default = "default_pin_file")]
    pub pin_file: String,
    /// Allow the `host` wrap strategy (software tokens only); every use is logged at WARN.
    #[serde(default)]
    pub allow_host_wrap: bool,
    /// HSM sessions byokd opens, each served by its own thread; 0 (the default) chooses one
    /// more than the cores, within the token's session limits. With two or more, one session
    /// is kept out of key generation so that wraps and signatures never wait behind it.
    #[serde(default)]
    pub sessions: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    #[default]
    Public,
    China,
    Usgov,
}

/// The JWS algorithm of client assertions for certificate credentials (`azure.assertion_alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum AssertionAlg {
    /// RSASSA-PSS SHA-256, header `x5t#S256` (CKM_SHA256_RSA_PKCS_PSS in the HSM).
    #[default]
    PS256,
    /// RSASSA-PKCS1-v1_5 SHA-256, header `x5t` (SHA-1 thumbprint), for tokens without PSS.
    RS256,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSection {
    #[serde(default)]
    pub cloud: Cloud,
    /// Host name → `ip:port`, like curl's `--resolve`. SNI and certificate checks keep the name.
    /// When set it is the whole of name resolution: a host it does not list does not resolve.
    #[serde(default)]
    pub resolve: BTreeMap<String, SocketAddr>,
    /// Extra trust anchors (PEM files) added to the system roots.
    #[serde(default)]
    pub extra_ca: Vec<PathBuf>,
    /// TCP connect plus TLS handshake time-out.
    #[serde(default = "d_az_connect")]
    pub connect_timeout_ms: u64,
    /// Time-out for the response head, and again for the body, of one attempt.
    #[serde(default = "d_az_read")]
    pub read_timeout_ms: u64,
    /// Time-out of one whole call to Azure, retries and back-off included.
    #[serde(default = "d_az_total")]
    pub total_timeout_ms: u64,
    /// Attempts per call, the first included.
    #[serde(default = "d_az_attempts")]
    pub max_attempts: u32,
    /// The most time one call spends waiting between retries.
    #[serde(default = "d_az_retry_wait")]
    pub max_retry_wait_ms: u64,
    /// First back-off step when Azure sends no retry hint; later steps double (1, 2, 4, 8, 16×).
    #[serde(default = "d_az_retry_base")]
    pub retry_base_ms: u64,
    /// Size of the key exchange key byokd creates in the vault for each push job.
    #[serde(default = "d_kek_size")]
    pub kek_size: u32,
    /// How certificate credentials sign their client assertions: `PS256` (default) or `RS256`.
    #[serde(default)]
    pub assertion_alg: AssertionAlg,
    /// CREATE transactions (key create and import) byokd sends to one vault in any window of
    /// `vault_budget_window_ms`, all jobs together (docs/byok-protocol.md#throttling-and-retries: 10 per 10 s); 0 turns
    /// pacing off.
    #[serde(default = "d_vault_create_budget")]
    pub vault_create_budget: u32,
    /// The window of `vault_create_budget`, in ms (Azure's is 10 s; benchmarks scale it).
    #[serde(default = "d_vault_budget_window")]
    pub vault_budget_window_ms: u64,
    /// Imports in flight to one vault at once, over all its jobs (1 to 32). Each still waits
    /// for its CREATE slot; several in flight keep the budget used when one import's round
    /// trip is longer than a slot.
    #[serde(default = "d_vault_concurrent_imports")]
    pub vault_concurrent_imports: u32,
}

impl Default for AzureSection {
    fn default() -> Self {
        Self {
            cloud: Cloud::default(),
            resolve: BTreeMap::new(),
            extra_ca: Vec::new(),
            connect_timeout_ms: d_az_connect(),
            read_timeout_ms: d_az_read(),
            total_timeout_ms: d_az_total(),
            max_attempts: d_az_attempts(),
            max_retry_wait_ms: d_az_retry_wait(),
            retry_base_ms: d_az_retry_base(),
            kek_size: d_kek_size(),
            assertion_alg: AssertionAlg::default(),
            vault_create_budget: d_vault_create_budget(),
            vault_budget_window_ms: d_vault_budget_window(),
            vault_concurrent_imports: d_vault_concurrent_imports(),
        }
    }
}

fn d_az_connect() -> u64 {
    10_000
}
fn d_az_read() -> u64 {
    30_000
}
fn d_vault_create_budget() -> u32 {
    10
}
fn d_vault_budget_window() -> u64 {
    10_000
}
fn d_vault_concurrent_imports() -> u32 {
    4
}
fn d_az_total() -> u64 {
    180_000
}
fn d_az_attempts() -> u32 {
    6
}
fn d_az_retry_wait() -> u64 {
    60_000
}
fn d_az_retry_base() -> u64 {
    1_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// TCP address of the control socket. Loopback by default.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Optional unix socket for the front panel (mode 0600, same TLS).
    #[serde(default)]
    pub unix_socket: Option<PathBuf>,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The console CA: client certificates must chain to it.
    pub client_ca: PathBuf,
    /// How long a dual-control request waits for a second admin.
    #[serde(default = "default_approval_window")]
    pub approval_window_secs: u64,
    #[serde(default)]
    pub identities: Vec<IdentityMapping>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityMapping {
    /// The identity's name, shown in logs and approvals.
    pub name: String,
    pub role: Role,
    /// SHA-256 fingerprint of the client certificate (hex, colons allowed).
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Or the certificate's subject CN.
    #[serde(default)]
    pub cn: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Auditor,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Time-out of one request to the HSM worker.
    #[serde(default = "d_hsm_timeout")]
    pub hsm_request_timeout_ms: u64,
    /// Largest control request body.
    #[serde(default = "d_body")]
    pub max_body_bytes: usize,
    /// Largest request header block.
    #[serde(default = "d_header")]
    pub max_header_bytes: usize,
    /// Concurrent control connections.
    #[serde(default = "d_conns")]
    pub max_connections: usize,
    /// Concurrent control connections from one peer address (an IPv6 /64 counts as one
    /// address; the unix socket has no such cap). Less than `max_connections`; default a
    /// quarter of it.
    #[serde(default)]
    pub max_connections_per_peer: Option<usize>,
    /// Time for a new control connection to complete its TLS handshake.
    #[serde(default = "d_handshake")]
    pub handshake_timeout_ms: u64,
    /// Waiting requests (`?wait=` on `/v1/logs` and `/v1/jobs/{job}`) one identity may have
    /// open at once; more are answered 429. Less than `max_connections`; default 8 (at most
    /// half of `max_connections`).
    #[serde(default)]
    pub max_long_polls_per_identity: Option<usize>,
    /// Window over which failed handshakes of one peer address are summed up in one service
    /// log record (after the first few, recorded one by one).
    #[serde(default = "d_auth_window")]
    pub auth_failure_window_secs: u64,
    /// Time to receive a whole request (headers and body) on the control socket.
    #[serde(default = "d_read")]
    pub read_timeout_ms: u64,
    /// Idle keep-alive time on the control socket.
    #[serde(default = "d_idle")]
    pub idle_timeout_ms: u64,
    /// Most credentials, groups and keys (each), so state stays bounded.
    #[serde(default = "d_max_keys")]
    pub max_keys: usize,
    #[serde(default = "d_max_groups")]
    pub max_groups: usize,
    #[serde(default = "d_max_credentials")]
    pub max_credentials: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            hsm_request_timeout_ms: d_hsm_timeout(),
            max_body_bytes: d_body(),
            max_header_bytes: d_header(),
            max_connections: d_conns(),
            max_connections_per_peer: None,
            handshake_timeout_ms: d_handshake(),
            max_long_polls_per_identity: None,
            auth_failure_window_secs: d_auth_window(),
            read_timeout_ms: d_read(),
            idle_timeout_ms: d_idle(),
            max_keys: d_max_keys(),
            max_groups: d_max_groups(),
            max_credentials: d_max_credentials(),
        }
    }
}

impl Limits {
    /// The per-peer connection cap in force: the setting, or a quarter of `max_connections`.
    pub fn connections_per_peer(&self) -> usize {
        self.max_connections_per_peer
            .unwrap_or(self.max_connections / 4)
            .max(1)
    }

    /// The per-identity long-poll cap in force: the setting, or 8 (at most half of
    /// `max_connections`).
    pub fn long_polls_per_identity(&self) -> usize {
        self.max_long_polls_per_identity
            .unwrap_or((self.max_connections / 2).min(8))
            .max(1)
    }
}

fn d_handshake() -> u64 {
    5_000
}
fn d_auth_window() -> u64 {
    60
}

fn d_kek_size() -> u32 {
    4096
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/byokd")
}
fn default_pin_file() -> String {
    "hsm-pin".to_owned()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7443))
}
fn default_approval_window() -> u64 {
    900
}
fn d_hsm_timeout() -> u64 {
    60_000
}
fn d_body() -> usize {
    64 * 1024
}
fn d_header() -> usize {
    16 * 1024
}
fn d_conns() -> usize {
    64
}
fn d_read() -> u64 {
    10_000
}
fn d_idle() -> u64 {
    60_000
}
fn d_max_keys() -> usize {
    100_000
}
fn d_max_groups() -> usize {
    20_000
}
fn d_max_credentials() -> usize {
    1_000
}
