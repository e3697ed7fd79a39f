//! The request log: one record per request, secrets removed.
//!
//! Never stored: `client_secret`, `client_assertion`, `key_hsm`, private JWK members, tokens.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One logged request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Sequence number (1-based).
    pub seq: u64,
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// HTTP method.
    pub method: String,
    /// Host (lower case, no port).
    pub host: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// HTTP version ("HTTP/1.1", "HTTP/2.0").
    pub http_version: String,
    /// Operation.
    pub op: crate::faults::Op,
    /// Status answered (0 when the connection was reset instead).
    pub status: u16,
    /// Error `code` (Key Vault) or `error` (Entra), if any.
    pub error_code: Option<String>,
    /// App (client id) the request authenticated as, if any.
    pub client_id: Option<String>,
    /// Tenant of that app.
    pub tenant: Option<String>,
    /// Request body with secrets replaced by `"<redacted>"`.
    pub body: Option<Value>,
    /// How a token request authenticated: `client_secret`, or `client_assertion:{alg}` with
    /// the JWT header's `alg` (set whether or not it was accepted).
    #[serde(default)]
    pub client_auth: Option<String>,
    /// Schema violation found in the body, if any.
    pub schema_violation: Option<String>,
    /// Fault injected, if any.
    pub fault: Option<String>,
}

const SECRET_MEMBERS: [&str; 10] = [
    "key_hsm",
    "d",
    "dp",
    "dq",
    "qi",
    "p",
    "q",
    "k",
    "client_secret",
    "client_assertion",
];

/// Replace secret members (anywhere in the tree) with a marker.
pub(crate) fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SECRET_MEMBERS.contains(&k.as_str()) {
                    *val = Value::String("<redacted>".into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}
