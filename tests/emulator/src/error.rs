//! Errors of the emulator's own API (not the Azure error bodies it serves).

/// Failure to start or drive the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// I/O (listener, files).
    #[error("emulator I/O: {0}")]
    Io(#[from] std::io::Error),
    /// TLS / certificate set-up.
    #[error("emulator TLS set-up: {0}")]
    Tls(String),
    /// Bad configuration.
    #[error("emulator configuration: {0}")]
    Config(String),
    /// Unknown vault or key for a handle call.
    #[error("not found: {0}")]
    NotFound(String),
    /// Key generation or encoding failed.
    #[error("key material: {0}")]
    Key(String),
}
