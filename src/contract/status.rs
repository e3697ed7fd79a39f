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
    pub designated: bool,
    /// Where `designated` comes from: `state` once an admin set it (`PUT
    /// /v1/config/designated`, kept in the state and winning over the file), else `config`
    /// (`designated` in byokd.toml).
    pub designated_source: String,
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
