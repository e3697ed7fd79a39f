//! Small helpers: time, base64url, form decoding, JSON responses.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

/// The response type of every handler.
pub(crate) type Resp = Response<Full<Bytes>>;

/// Unix time in seconds.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix time in milliseconds.
pub(crate) fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// base64url without padding.
pub(crate) fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Strict base64url decoding: no padding, URL-safe alphabet only.
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.as_bytes()).ok()
}

/// Standard base64 (for nothing secret; tokens, ids).
pub(crate) fn b64std(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// 32 lowercase hex chars, like a Key Vault version id.
pub(crate) fn new_version_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Percent-decode one `application/x-www-form-urlencoded` component.
pub(crate) fn form_decode_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Parse a form-encoded body or query string. Duplicate keys: the last wins. `None` if malformed.
pub(crate) fn parse_form(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(form_decode_component(k)?, form_decode_component(v)?);
    }
    Some(out)
}

/// Percent-encode a query component.
pub(crate) fn query_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON response with Key Vault-style headers.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

/// An empty response.
pub(crate) fn empty_response(status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// A Key Vault error body `{"error":{"code","message","innererror"?}}`.
pub(crate) fn kv_error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Resp {
    let mut err = json!({"code": code, "message": message});
    if let Some(inner) = inner {
        err["innererror"] = json!({"code": inner});
    }
    json_response(status, &json!({"error": err}))
}

/// 400 BadParameter.
pub(crate) fn bad_parameter(message: &str) -> Resp {
    kv_error(StatusCode::BAD_REQUEST, "BadParameter", message, None)
}

/// Add a header (ignores invalid values, which never happen for our own strings).
pub(crate) fn set_header(resp: &mut Resp, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}
