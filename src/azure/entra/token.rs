//! The OAuth access token (zeroizing, `Debug` redacted), when a cached one is renewed, and the
//! parse of Entra's token answer.

use crate::azure::AzureError;
use crate::azure::endpoints::CloudEndpoints;
use crate::azure::http::HttpResponse;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A cached token is renewed this long before it expires.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// An OAuth access token. Cloning shares the same zeroizing storage; `Debug` is redacted.
#[derive(Clone)]
pub struct AccessToken {
    value: Arc<SecretString>,
    expires_at: SystemTime,
}

impl AccessToken {
    pub fn new(value: String, expires_at: SystemTime) -> Self {
        Self {
            value: Arc::new(SecretString::from(value)),
            expires_at,
        }
    }

    /// The token text, for the `Authorization` header only.
    pub fn expose_secret(&self) -> &str {
        self.value.expose_secret()
    }

    /// When Entra says the token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct TokenOk {
    #[serde(default)]
    token_type: String,
    expires_in: serde_json::Value,
    access_token: String,
}

/// `*t.expires_at - margin` (half the lifetime for very short tokens is handled at parse time).
pub(super) fn renew_at(t: &AccessToken) -> SystemTime {
    t.expires_at
        .checked_sub(EXPIRY_MARGIN)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

pub(super) fn parse_token(
    resp: &HttpResponse,
    endpoints: &CloudEndpoints,
    now: SystemTime,
) -> Result<AccessToken, AzureError> {
    let decode = |detail: String| AzureError::Decode {
        host: endpoints.login_host.to_string(),
        status: resp.status.as_u16(),
        detail,
    };
    let ok: TokenOk = serde_json::from_slice(&resp.body).map_err(|e| {
        decode(format!(
            "token response is not the expected JSON ({})",
            e.classify_name()
        ))
    })?;
    if !ok.token_type.is_empty() && !ok.token_type.eq_ignore_ascii_case("bearer") {
        return Err(decode(format!(
            "token_type {:?} is not Bearer",
            ok.token_type
        )));
    }
    // Entra sends expires_in as a number; older endpoints sent a string.
    let secs = match &ok.expires_in {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| decode("expires_in is missing or not a number".into()))?;
    // For very short-lived tokens keep at least half of the lifetime usable.
    let lifetime = Duration::from_secs(secs);
    let usable = if lifetime > EXPIRY_MARGIN * 2 {
        lifetime
    } else {
        lifetime / 2 + EXPIRY_MARGIN
    };
    let expires_at = now + usable;
    Ok(AccessToken::new(ok.access_token, expires_at))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "missing or mistyped field",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}
