//! Errors of the control API: [`ApiError`], what a request gets back as
//! `{"error":{"code":..,"message":..}}` with its status, and [`ControlError`], why the control
//! server could not start.
//!
//! It owns the mapping from service errors to statuses. It must never put a secret in a message:
//! service errors carry none, and request bodies are never echoed.

use crate::contract::{ErrorAnswer, ErrorDetail};
use crate::dual_control::DualControlError;
use crate::hsm::HsmError;
use crate::jobs::JobError;
use crate::model::JobId;
use crate::service::ServiceError;
use http::StatusCode;

/// An error answer of the control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable, machine-readable code such as `invalid_field` or `forbidden`.
    pub code: &'static str,
    /// What happened and what to do, in operator terms.
    pub message: String,
    /// The request field at fault, for validation errors.
    pub field: Option<String>,
    /// The unfinished job that the refused change would have raced (`job_in_progress`).
    pub job: Option<JobId>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            job: None,
        }
    }

    /// 400 naming the field.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        let field = field.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            message: format!("invalid {field}: {reason}"),
            field: Some(field),
            job: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "not_implemented", message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over the limit of {limit} bytes (limits.max_body_bytes)"),
        )
    }

    pub fn too_many_connections(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            format!(
                "the control socket already serves {limit} connections (limits.max_connections); retry shortly"
            ),
        )
    }

    pub fn too_many_connections_from_peer(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            format!(
                "your address already holds {limit} connections to the control socket (limits.max_connections_per_peer); close some or retry shortly"
            ),
        )
    }

    pub fn too_many_long_polls(identity: &str, limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_long_polls",
            format!(
                "{identity} already has {limit} waiting requests (?wait=) open (limits.max_long_polls_per_identity); let one end, or ask without wait"
            ),
        )
    }

    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request was not received within limits.read_timeout_ms; send each request whole, without pauses (or raise that limit)",
        )
    }

    /// The answer's body, as the contract has it.
    pub fn answer(&self) -> ErrorAnswer {
        ErrorAnswer {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                field: self.field.clone(),
                job: self.job.map(|j| j.to_string()),
            },
        }
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self.answer()).unwrap_or_default()
    }
}

impl From<DualControlError> for ApiError {
    fn from(e: DualControlError) -> Self {
        let status = match e {
            DualControlError::Service(s) => return s.into(),
            DualControlError::Job {
                source,
                cloud_state: false,
            } => return source.into(),
            DualControlError::Kek(k) => return Self::invalid(k.field(), k),
            DualControlError::NotFound(_) | DualControlError::NoByokFile(_) => {
                StatusCode::NOT_FOUND
            }
            DualControlError::NotRequester { .. } => StatusCode::FORBIDDEN,
            DualControlError::TooManyPending { .. } => StatusCode::TOO_MANY_REQUESTS,
            DualControlError::SelfApproval(_) => StatusCode::FORBIDDEN,
            DualControlError::JobsUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::CONFLICT,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::NotDesignated => {
                Self::new(StatusCode::CONFLICT, "not_designated", e.to_string())
            }
            JobError::Invalid(m) => Self::invalid("keys", m),
            JobError::Service(s) => s.into(),
            other => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "job_failed_to_start",
                other.to_string(),
            ),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(m) => Self::invalid(m.field, m.reason),
            ServiceError::NotFound { .. } => Self::not_found(e.to_string()),
            ServiceError::Conflict(m) => Self::conflict(m),
            ServiceError::Busy { job, message } => Self {
                job: Some(job),
                ..Self::new(StatusCode::CONFLICT, "job_in_progress", message)
            },
            ServiceError::Forbidden(m) => Self::forbidden(m),
            ServiceError::Limit(m) => Self::new(
                StatusCode::CONFLICT,
                "limit_reached",
                format!("limit reached: {m}"),
            ),
            // The token is healthy; it cannot do this: not a 503.
            ServiceError::Hsm(h @ HsmError::KeyTypeNotSupported { .. }) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "key_type_unsupported",
                h.to_string(),
            ),
            ServiceError::Hsm(h @ HsmError::NonConformingEncoding { .. }) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "non_conforming_blob",
                h.to_string(),
            ),
            ServiceError::Hsm(h) => {
                tracing::error!(error = %h, "HSM error while serving a control request");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "hsm_unavailable",
                    format!("the HSM could not complete the request: {h}"),
                )
            }
            ServiceError::Certificate(m) => {
                tracing::error!(error = %m, "certificate error while serving a control request");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "certificate", m)
            }
            ServiceError::Store(s) => {
                tracing::error!(error = %s, "state error while serving a control request");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "state_unavailable",
                    format!("the change could not be made durable, so it was not made: {s}"),
                )
            }
        }
    }
}

/// Why the control server could not start. Each says which setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control.{setting} {path}: {reason}")]
    Pem {
        setting: &'static str,
        path: String,
        reason: String,
    },
    #[error("control TLS setup: {0}")]
    Tls(String),
    #[error("control.identities[{index}]: {reason}")]
    Identity { index: usize, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}
