//! The outbound Azure layer: the allowlisted HTTP client, Entra ID tokens and the Key Vault keys
//! API (api-version 7.5), as docs/byok-protocol.md describes Azure's behaviour.
//!
//! Owns every byte byokd sends to Azure and every connection it opens: nothing else in the daemon
//! links an HTTP client (docs/security.md#invariants, the one outbound client). It speaks REST and maps Azure's answers into typed
//! errors that tell the operator what to do. It must never wrap or see key material (the HSM layer
//! builds the transfer blob), never follow a redirect or reach a host outside the [`Allowlist`],
//! and never put a client secret or token in a log line, an error or a `Debug` output.
//!
//! ```no_run
//! # async fn demo(config: &byokd::config::Config, secret: &byokd::secret::SecretBytes)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use byokd::azure::{Allowlist, Azure, AzureMetrics, SystemClock};
//! use std::sync::Arc;
//! let allowlist = Arc::new(Allowlist::new(config.azure.cloud, ["myvault"])?);
//! let az = Azure::new(&config.azure, allowlist, AzureMetrics::new(), SystemClock::shared())?;
//! let vault = byokd::model::Target::KeyVault("myvault".parse()?);
//! let token = az.entra().token("cred-1", "tenant-id", "client-id", vault.kind(), secret).await?;
//! let kek = az.keyvault().create_kek(&token, &vault, "byokd-kek-1", 4096, 1_900_000_000).await?;
//! # let _ = kek; Ok(()) }
//! ```

pub mod budget;
pub mod endpoints;
pub mod entra;
pub mod http;
pub mod jwk;
pub mod keyvault;
pub mod offline_kek;
pub mod retry_notice;
pub mod transfer_blob;

pub use budget::CreateBudget;
pub use endpoints::{Allowlist, CloudEndpoints, Destination};
pub use entra::{
    AccessToken, AssertionSigner, Challenge, ClientAuth, Entra, EntraError, SignInProof,
};
pub use http::{AzureMetrics, HttpClient, HttpOptions, HttpRequest, HttpResponse, MetricsSnapshot};
pub use keyvault::{
    DeletedKeyBundle, ImportRequest, JsonWebKey, Kek, KeyAttributes, KeyBundle, KeyItem, KeyUpdate,
    KeyVault, KeyVaultError, KvOp, RecoveryLevel,
};

use crate::config::AzureSection;
use std::sync::Arc;

/// Errors of the Azure layer. None carries a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    #[error(
        "refused to connect to {host}: {reason} (the allowlist has the cloud's sign-in and ARM hosts and the Key Vaults and Managed HSM pools that key groups name, https on port 443 only)"
    )]
    NotAllowed { host: String, reason: &'static str },
    #[error(
        "{host} answered {status} redirecting to {location_host}; byokd never follows redirects: check the vault name and cloud"
    )]
    Redirect {
        status: u16,
        host: String,
        location_host: String,
    },
    #[error("invalid URL {url}")]
    InvalidUrl { url: String },
    #[error(
        "azure.cloud = \"{}\" has no Azure Managed HSM: a key group on this cloud must target a Key Vault", endpoints::cloud_name(*cloud)
    )]
    NoManagedHsm { cloud: crate::config::Cloud },
    #[error("invalid {kind} name {name:?}")]
    InvalidName { kind: &'static str, name: String },
    #[error(
        "TLS with {host} failed: {detail} (the server's certificate must chain to the system roots or azure.extra_ca and name the host)"
    )]
    Tls { host: String, detail: String },
    #[error("trust anchors from {path}: {detail}")]
    TrustAnchors { path: String, detail: String },
    /// The host name does not exist (or is missing from a configured `[azure.resolve]` map):
    /// never retried, since only a configuration change can fix it.
    #[error("{what}: name does not resolve; {hint}")]
    NameDoesNotResolve {
        what: String,
        host: String,
        hint: &'static str,
    },
    #[error("{host} could not be reached after {attempts} attempt(s): {reason}")]
    Unreachable {
        host: String,
        attempts: u32,
        reason: String,
    },
    /// A non-idempotent request was sent but its outcome is unknown: the connection broke or
    /// timed out before the answer, or Azure answered 500/502/503/504. It may have been applied.
    #[error(
        "the outcome of {method} {path} on {host} is unknown ({reason}); it may have been applied: check the state in Azure before repeating it"
    )]
    ResponseLost {
        method: String,
        host: String,
        path: String,
        reason: String,
    },
    #[error("the response from {host} exceeds {limit} bytes")]
    TooLarge { host: String, limit: usize },
    #[error("could not encode the {what}: {detail}")]
    Encode { what: &'static str, detail: String },
    #[error("unexpected answer from {host} ({status}): {detail}")]
    Decode {
        host: String,
        status: u16,
        detail: String,
    },
    #[error(
        "the HSM could not sign the client assertion: {detail}; with a token that lacks RSA-PSS set azure.assertion_alg = \"RS256\""
    )]
    Signing { detail: String },
    #[error(transparent)]
    Entra(#[from] EntraError),
    #[error(transparent)]
    KeyVault(#[from] KeyVaultError),
}

impl AzureError {
    /// Whether repeating the whole operation later is reasonable (throttling, transient outage,
    /// a key still being deleted). `ResponseLost` is not: check state first.
    pub fn is_retryable(&self) -> bool {
        match self {
            AzureError::Unreachable { .. } => true,
            AzureError::KeyVault(e) => e.is_retryable(),
            _ => false,
        }
    }
}

pub use crate::clock::{Clock, SharedClock, SystemClock};

/// The Azure layer's entry point: one shared HTTP client, Entra tokens and Key Vault calls.
pub struct Azure {
    http: Arc<HttpClient>,
    entra: Entra,
    keyvault: KeyVault,
}

impl Azure {
    /// Builds the layer from `[azure]`: retry and time-out settings come from the section;
    /// `clock` is the daemon's one clock (token expiry, `Retry-After` dates).
    pub fn new(
        cfg: &AzureSection,
        allowlist: Arc<Allowlist>,
        metrics: Arc<AzureMetrics>,
        clock: SharedClock,
    ) -> Result<Self, AzureError> {
        Self::with_options(
            cfg,
            HttpOptions::from_config(cfg),
            allowlist,
            metrics,
            clock,
        )
    }

    /// As [`Azure::new`] with explicit client options (tests shrink the back-off).
    pub fn with_options(
        cfg: &AzureSection,
        opts: HttpOptions,
        allowlist: Arc<Allowlist>,
        metrics: Arc<AzureMetrics>,
        clock: SharedClock,
    ) -> Result<Self, AzureError> {
        let endpoints = *allowlist.endpoints();
        let http = Arc::new(HttpClient::new(
            cfg,
            opts,
            allowlist,
            metrics,
            clock.clone(),
        )?);
        Ok(Self {
            entra: Entra::new(http.clone(), endpoints, clock),
            keyvault: KeyVault::new(http.clone(), endpoints).with_budget(Arc::new(
                CreateBudget::new(
                    cfg.vault_create_budget,
                    std::time::Duration::from_millis(cfg.vault_budget_window_ms),
                ),
            )),
            http,
        })
    }

    pub fn entra(&self) -> &Entra {
        &self.entra
    }

    pub fn keyvault(&self) -> &KeyVault {
        &self.keyvault
    }

    pub fn http(&self) -> &Arc<HttpClient> {
        &self.http
    }

    pub fn allowlist(&self) -> &Arc<Allowlist> {
        self.http.allowlist()
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.http.metrics().snapshot()
    }
}
