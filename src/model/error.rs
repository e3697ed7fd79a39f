//! Validation errors for domain values. Each names the field and says what is allowed.

/// A domain value that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ModelError {
    /// The field or setting that was wrong, e.g. `vault` or `key_type`.
    pub field: &'static str,
    /// What is allowed, in operator terms.
    pub reason: String,
}

impl ModelError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}
