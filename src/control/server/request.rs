//! One request's path: an unmapped certificate refused first, the cross-site checks, the
//! route, the per-identity long-poll cap, the body under its limits, dispatch, and the log
//! line or the refusal counted.

use super::response::{
    Body, ErrorCode, console_response, download_response, error_response, json_response,
};
use super::{Shared, read_timeout};
use crate::config::Limits;
use crate::control::browser;
use crate::control::errors::ApiError;
use crate::control::failures::{Browser, Denied};
use crate::control::fairness::Peer;
use crate::control::handlers::{self, Input, Reply};
use crate::control::identity::Caller;
use crate::control::limits::Activity;
use crate::control::routes::{self, Matched, Op};
use crate::control::ui;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Whether a request waits for something to happen (a long-poll), as its handler will read
/// the query (see [`handlers::wait_secs`]).
fn is_long_poll(op: Op, query: &str) -> bool {
    handlers::wait_secs(op, query) > 0
}

/// The answer to one request, and the route it matched.
async fn answer(
    req: Request<Incoming>,
    shared: &Shared,
    peer: Peer,
    caller: &Caller,
    began: tokio::time::Instant,
) -> (Option<&'static str>, Response<Body>) {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    // A certificate of the console CA that maps to no identity may do nothing: refused before
    // anything else, and counted against its peer address like a failed handshake, so such a
    // certificate can neither flood the log nor take the share of identified callers.
    if caller.identity.is_none() {
        let e = crate::control::authz::unmapped(caller);
        shared.counted.failures.failed(
            peer,
            &format!("{} refused: {}", target(&method, &path), e.message),
        );
        return (None, error_response(&e, false));
    }
    if let Err(e) = browser::check_origin(&method, req.headers(), &shared.origins) {
        return (None, error_response(&e, true));
    }
    if ui::is_console(&path) {
        return (Some("/ui/"), console_response(ui::answer(&method, &path)));
    }
    match routes::matching(&method, &path) {
        Matched::NotFound => {
            let e = ApiError::not_found(format!(
                "no route {method} {path}; the API is under /v1 (see api/openapi.json)"
            ));
            (None, error_response(&e, false))
        }
        Matched::WrongMethod(allowed) => {
            let list = allowed
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let e = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{path} allows only {list} (see api/openapi.json or `byokctl --help`)"),
            );
            let mut resp = error_response(&e, false);
            if let Ok(v) = HeaderValue::from_str(&list) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            (None, resp)
        }
        Matched::Found(route, params) => {
            if let Err(e) = browser::check_content_type(&method, req.headers()) {
                return (Some(route.path), error_response(&e, true));
            }
            let _waiting = if is_long_poll(route.op, &query) {
                match shared.long_polls.try_take(caller.log_name()) {
                    Some(p) => Some(p),
                    None => {
                        let e = ApiError::too_many_long_polls(
                            &caller.log_name(),
                            shared.long_polls.cap(),
                        );
                        return (Some(route.path), error_response(&e, true));
                    }
                }
            } else {
                None
            };
            let deadline = began + read_timeout(&shared.limits);
            let close = route.op.carries_secret();
            let resp = match read_body(req, &shared.limits, deadline).await {
                Err(e) => error_response(&e, true),
                Ok(body) => {
                    let input = Input {
                        params,
                        query,
                        body,
                    };
                    match handlers::dispatch(&shared.ctx, caller, route.op, input).await {
                        Ok(Reply {
                            download: Some(d), ..
                        }) => download_response(d),
                        Ok(reply) => json_response(reply.status, &reply.body, close),
                        Err(e) => error_response(&e, close),
                    }
                }
            };
            (Some(route.path), resp)
        }
    }
}

/// What a request aims at, for records of refusals made before routing: the method and the
/// route's template, never the caller's own text (a path can be as long as the header limit).
fn target(method: &http::Method, path: &str) -> String {
    match routes::matching(method, path) {
        Matched::Found(r, _) => format!("{method} {}", r.path),
        _ => "a request to no route".to_owned(),
    }
}

/// One request: checks, route, body under limits, dispatch, answer, log.
pub(super) async fn handle(
    req: Request<Incoming>,
    shared: &Shared,
    peer: Peer,
    caller: &Caller,
    activity: &Activity,
) -> Response<Body> {
    let began = activity.handling();
    let started = std::time::Instant::now();
    let method = req.method().clone();
    // What a refused cross-origin request aimed at (the refusal comes before routing).
    let aimed = target(&method, req.uri().path());
    let console = ui::is_console(req.uri().path());
    let (route, mut resp) = answer(req, shared, peer, caller, began).await;
    browser::secure_headers(resp.headers_mut());
    if console {
        ui::console_headers(resp.headers_mut());
    }
    let status = resp.status();
    let code = resp.extensions().get::<ErrorCode>().map_or("", |c| c.0);
    let fields = (caller.log_name(), caller.role_name(), route.unwrap_or("-"));
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if caller.identity.is_none() {
        // Counted and recorded by `failures` (see `answer`).
        tracing::debug!(peer = %peer, identity = %fields.0, method = %method, status = status.as_u16(), "control request of an unmapped certificate");
    } else if matches!(code, "cross_origin_refused" | "cors_refused") {
        // Counted per identity: a page elsewhere sets the pace, so it must not set the log's.
        shared.counted.cross_origin.failed(
            Browser(fields.0.clone()),
            &format!("{aimed} (role {}) from another site", fields.1),
        );
    } else if status == StatusCode::FORBIDDEN && code != "self_approval" {
        // Counted per identity: asking again and again must not push older records out. A
        // self-approval is no denial of the route (admins may approve): dual control recorded
        // it as a refused decision (`approval.refused`), saying the admin cannot approve their
        // own request.
        shared.counted.denials.failed(
            Denied(fields.0.clone()),
            &format!("{method} {} (role {})", fields.2, fields.1),
        );
    } else if status.is_server_error() {
        tracing::warn!(identity = %fields.0, role = fields.1, route = fields.2, method = %method, status = status.as_u16(), elapsed_ms, "control request");
    } else {
        tracing::info!(identity = %fields.0, role = fields.1, route = fields.2, method = %method, status = status.as_u16(), elapsed_ms, "control request");
    }
    activity.idle();
    resp
}

/// How much of an over-limit body is read and discarded before answering 413, so the client
/// sees the answer instead of a reset.
const DRAIN_CAP: u64 = 1024 * 1024;

/// Reads the body within the size limit and the request's read deadline.
async fn read_body(
    req: Request<Incoming>,
    limits: &Limits,
    deadline: tokio::time::Instant,
) -> Result<zeroize::Zeroizing<Vec<u8>>, ApiError> {
    let max = limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > (max as u64).saturating_add(DRAIN_CAP)) {
        return Err(ApiError::payload_too_large(max));
    }
    let mut body = req.into_body();
    let mut out = zeroize::Zeroizing::new(Vec::new());
    let mut seen: u64 = 0;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                ApiError::bad_request("bad_body", "the request body could not be read")
            })?;
            if let Ok(data) = frame.into_data() {
                seen = seen.saturating_add(data.len() as u64);
                if seen > max as u64 {
                    out.clear();
                    if seen > (max as u64).saturating_add(DRAIN_CAP) {
                        break;
                    }
                } else {
                    out.extend_from_slice(&data);
                }
            }
        }
        Ok::<(), ApiError>(())
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(())) if seen > max as u64 => Err(ApiError::payload_too_large(max)),
        Ok(r) => r.map(|()| out),
        Err(_) => Err(ApiError::request_timeout()),
    }
}
