//! `/v1/health`, `/v1/whoami`, `/v1/config/designated`, the answer of a local delete, and the
//! error answer every route may give.

use crate::hsm::{WrapReport, WrapStrategy};
use crate::logs::Status as LogStatus;

use serde::{Deserialize, Serialize};

/// `GET /v1/health`: liveness and readiness, with the HSM's, the state's and the log's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub live: bool,
    pub ready: bool,
    /// True while the service log cannot be written.
    pub degraded: bool,
    pub logs: Option<LogStatus>,
    pub version: String,
    /// The designated setting in force.
    pub designated: bool,
    /// Where it comes from: `file` (byokd.toml) or `api` (set through the API, overriding the
    /// file).
    pub designated_source: DesignatedSource,
    /// `designated` in byokd.toml, whichever applies.
    pub designated_file: bool,
    pub hsm: HsmHealth,
    pub state: StateHealth,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HsmHealth {
    pub ready: bool,
    pub detail: String,
    pub token: String,
    pub model: String,
    pub serial: String,
    pub wrap_strategy: Option<WrapStrategy>,
    pub wrap_summary: String,
    pub wrap_report: WrapReport,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHealth {
    pub ready: bool,
    pub generation: u64,
}

/// Where the designated setting in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesignatedSource {
    /// `designated` in byokd.toml.
    File,
    /// Set through the API to a value other than the file's, which it overrides.
    Api,
}

/// `GET /v1/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    pub identity: String,
    /// `admin`, `operator` or `auditor`.
    pub role: String,
    pub fingerprint: String,
    pub cn: Option<String>,
}

/// `GET` and `PUT /v1/config/designated` (the `PUT` body too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Designated {
    pub designated: bool,
}

/// A local delete that happened at once: what was deleted (`group`, or `group/key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: String,
}

/// Every error answer: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable machine-readable code, e.g. `invalid_field`.
    pub code: String,
    /// What happened and what to do, for an operator.
    pub message: String,
    /// The request field at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `job_in_progress`: the unfinished job holding the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}
