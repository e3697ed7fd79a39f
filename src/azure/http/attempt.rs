//! One attempt of a request under its time-outs, and how it ended: a response, a transient
//! failure (sent or not) or a fatal one; a lost response and a refused redirect as errors.

use super::body::{ReqBody, ZBuf};
use super::connector::ConnectError;
use super::{AzureMetrics, Failure, HttpClient, HttpRequest, HttpResponse};
use crate::azure::AzureError;
use crate::azure::endpoints::Destination;
use http::Uri;
use http::header::LOCATION;
use http_body_util::{BodyExt, Limited};

impl HttpClient {
    pub(super) async fn attempt(
        &self,
        req: &HttpRequest,
        target: &Destination,
    ) -> Result<HttpResponse, Failure> {
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(req.url.clone());
        for (name, value) in &req.headers {
            builder = builder.header(name, value.clone());
        }
        let body = ReqBody {
            data: req.body.as_ref().map(|b| ZBuf {
                bytes: b.clone(),
                pos: 0,
            }),
        };
        let request = builder.body(body).map_err(|e| {
            Failure::Fatal(AzureError::Encode {
                what: "request",
                detail: e.to_string(),
            })
        })?;
        let head_time = self.opts.connect_timeout + self.opts.read_timeout;
        let client = if req.pooled {
            &self.client
        } else {
            &self.single_use
        };
        let response = match tokio::time::timeout(head_time, client.request(request)).await {
            Err(_) => {
                return Err(Failure::Transient {
                    reason: "read time-out waiting for the response".into(),
                    sent: true,
                });
            }
            Ok(Err(e)) => return Err(classify(&e, target)),
            Ok(Ok(r)) => r,
        };
        let (parts, incoming) = response.into_parts();
        let limited = Limited::new(incoming, self.opts.max_response_bytes);
        let body = match tokio::time::timeout(self.opts.read_timeout, limited.collect()).await {
            Err(_) => {
                return Err(Failure::Transient {
                    reason: "read time-out in the response body".into(),
                    sent: true,
                });
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Failure::Fatal(AzureError::TooLarge {
                    host: target.host.clone(),
                    limit: self.opts.max_response_bytes,
                }));
            }
            Ok(Err(e)) => {
                return Err(Failure::Transient {
                    reason: format!("response body cut: {e}"),
                    sent: true,
                });
            }
            Ok(Ok(c)) => c.to_bytes(),
        };
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A non-idempotent request may have been applied but its outcome is unknown: counted, logged
    /// (without headers or body) and returned for the caller to look before repeating it.
    pub(super) fn response_lost(
        &self,
        req: &HttpRequest,
        target: &Destination,
        attempt: u32,
        reason: String,
    ) -> AzureError {
        AzureMetrics::inc(&self.metrics.response_lost);
        tracing::error!(host = %target.host, method = %req.method, attempt, reason = %reason,
            "outcome of a non-idempotent request is unknown; not retrying blindly");
        AzureError::ResponseLost {
            method: req.method.to_string(),
            host: target.host.clone(),
            path: req.url.path().to_string(),
            reason,
        }
    }

    /// A 3xx is never followed: the error names the Location host, which is checked (and so
    /// logged) against the allowlist for the operator's benefit.
    pub(super) fn redirect(&self, from: &Destination, resp: &HttpResponse) -> AzureError {
        let location = resp
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let location_host = location
            .parse::<Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase))
            .unwrap_or_else(|| from.host.clone());
        AzureMetrics::inc(&self.metrics.refused);
        tracing::error!(host = %from.host, location_host = %location_host, status = resp.status.as_u16(),
            reason = "redirects are never followed", "outbound redirect refused");
        AzureError::Redirect {
            status: resp.status.as_u16(),
            host: from.host.clone(),
            location_host,
        }
    }
}

/// Maps a client error: connect-phase failures were never sent.
pub(super) fn classify(e: &hyper_util::client::legacy::Error, target: &Destination) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(c) = s.downcast_ref::<ConnectError>() {
            return match c {
                ConnectError::NotAllowed { host, reason } => {
                    Failure::Fatal(AzureError::NotAllowed {
                        host: host.clone(),
                        reason,
                    })
                }
                ConnectError::NoSuchName { host } => {
                    let (what, hint) = target_label(host);
                    Failure::Fatal(AzureError::NameDoesNotResolve {
                        what,
                        hint,
                        host: host.clone(),
                    })
                }
                ConnectError::Tls(detail) => Failure::Fatal(AzureError::Tls {
                    host: target.host.clone(),
                    detail: detail.clone(),
                }),
                other => Failure::Transient {
                    reason: other.to_string(),
                    sent: false,
                },
            };
        }
        source = s.source();
    }
    Failure::Transient {
        reason: format!("connection failed: {}", error_chain(e)),
        sent: !e.is_connect(),
    }
}

/// How the operator knows a host (`vault NAME` for a Key Vault, `Managed HSM pool NAME` for a pool,
/// else the host itself) and what to check when its name does not resolve.
fn target_label(host: &str) -> (String, &'static str) {
    match host.split_once('.') {
        // Every cloud's vault suffix starts with `vault.` (`endpoints/mod.rs`).
        Some((vault, rest)) if rest.starts_with("vault.") => (
            format!("vault {vault}"),
            "check the vault name and azure.cloud",
        ),
        // And every Managed HSM suffix with `managedhsm.`.
        Some((pool, rest)) if rest.starts_with("managedhsm.") => (
            format!("Managed HSM pool {pool}"),
            "check the Managed HSM pool name and azure.cloud",
        ),
        _ => (
            host.to_string(),
            "check azure.cloud and the appliance's DNS settings",
        ),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::target_label;

    #[test]
    fn a_host_that_does_not_resolve_is_named_as_the_operator_knows_it() {
        assert_eq!(
            target_label("kv1.vault.azure.net").0,
            "vault kv1",
            "a Key Vault by its name"
        );
        let (what, hint) = target_label("pool1.managedhsm.usgovcloudapi.net");
        assert_eq!(what, "Managed HSM pool pool1");
        assert!(hint.contains("Managed HSM pool name"), "{hint}");
        assert_eq!(
            target_label("login.microsoftonline.com").0,
            "login.microsoftonline.com"
        );
    }
}
