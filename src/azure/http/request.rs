//! One outbound request (its body in a zeroizing buffer, its bearer header marked sensitive)
//! and a complete, size-bounded response.

use crate::azure::budget::Pace;
use crate::azure::{AccessToken, AzureError};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Uri};
use std::fmt;
use zeroize::Zeroizing;

/// One outbound request. The body is kept in a zeroizing buffer (it may hold a client secret).
pub struct HttpRequest {
    pub method: Method,
    pub url: Uri,
    pub headers: HeaderMap,
    pub(super) body: Option<Zeroizing<Vec<u8>>>,
    /// Whether repeating the request after a lost response is harmless.
    pub idempotent: bool,
    /// Whether the connection may go back to the pool afterwards (see [`HttpRequest::single_use`]).
    pub(super) pooled: bool,
    /// The CREATE budget each attempt waits for (see [`HttpRequest::paced`]).
    pub(super) pace: Option<Pace>,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("body_len", &self.body.as_ref().map(|b| b.len()))
            .field("idempotent", &self.idempotent)
            .field("pooled", &self.pooled)
            .finish_non_exhaustive()
    }
}

impl HttpRequest {
    /// A request; `url` must be absolute. GET, HEAD, PUT-less reads and DELETE/PATCH callers
    /// decide idempotency explicitly.
    pub fn new(method: Method, url: &str, idempotent: bool) -> Result<Self, AzureError> {
        let url = url.parse::<Uri>().map_err(|_| AzureError::InvalidUrl {
            url: url.to_string(),
        })?;
        Ok(Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            idempotent,
            pooled: true,
            pace: None,
        })
    }

    /// Sends the request on a connection of its own, closed once the response is read, never
    /// pooled. For a body that carries a secret (a token request's `client_secret` or client
    /// assertion): hyper, h2 and rustls keep copies of what they sent in their connection
    /// buffers, which a pooled connection would hold (unzeroed) until it idles out; a closed
    /// connection frees them, and the zeroing allocator wipes them.
    pub fn single_use(mut self) -> Self {
        self.pooled = false;
        self
    }

    /// Each attempt, the first and every retry, waits for a slot of `pace` before it is sent.
    pub fn paced(mut self, pace: Pace) -> Self {
        self.pace = Some(pace);
        self
    }

    /// A JSON body (sets `content-type`).
    pub fn json<T: serde::Serialize>(mut self, value: &T) -> Result<Self, AzureError> {
        let body = serde_json::to_vec(value).map_err(|e| AzureError::Encode {
            what: "request body",
            detail: e.to_string(),
        })?;
        self.body = Some(Zeroizing::new(body));
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(self)
    }

    /// A form-encoded body that is already in a zeroizing buffer (sets `content-type`).
    pub fn form(mut self, body: Zeroizing<Vec<u8>>) -> Self {
        self.body = Some(body);
        self.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        self
    }

    /// `Authorization: Bearer …`, marked sensitive (never indexed by HPACK, redacted in Debug).
    pub fn bearer(mut self, token: &AccessToken) -> Result<Self, AzureError> {
        let text = Zeroizing::new(format!("Bearer {}", token.expose_secret()));
        let mut value = HeaderValue::from_str(&text).map_err(|_| AzureError::Encode {
            what: "authorization header",
            detail: "the access token has characters not allowed in a header".into(),
        })?;
        value.set_sensitive(true);
        self.headers.insert(AUTHORIZATION, value);
        Ok(self)
    }
}

/// A complete response (body fully read, size-bounded).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}
