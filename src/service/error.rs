//! Errors of the application core, each with the class the control API maps to a status.

use crate::hsm::HsmError;
use crate::model::JobId;
use crate::model::ModelError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] ModelError),
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    #[error("{0}")]
    Conflict(String),
    /// Refused because an unfinished job works on the target.
    #[error("{message}")]
    Busy { job: JobId, message: String },
    /// The caller's role may not do this to this resource (e.g. an operator deleting a key that
    /// was pushed).
    #[error("{0}")]
    Forbidden(String),
    #[error("limit reached: {0}")]
    Limit(String),
    #[error("HSM: {0}")]
    Hsm(#[from] HsmError),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("state: {0}")]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub(crate) fn not_found(what: &'static str, name: impl ToString) -> Self {
        Self::NotFound {
            what,
            name: name.to_string(),
        }
    }
}
