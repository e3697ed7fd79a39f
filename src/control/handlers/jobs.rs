//! `/v1/jobs`: list and show jobs, with a long-poll form (`?wait=SECONDS`, at most 60) that
//! returns when the job changes or the wait ends. No job kinds exist until the Azure and jobs
//! subsystems land: the list is empty and every id is 404.

use super::{Input, Reply};
use crate::control::authz::{AnyRole, Authorized};
use crate::control::decode;
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use serde_json::json;

/// The longest long-poll a request may ask for.
pub const MAX_WAIT_SECS: u64 = 60;

pub(super) fn decode_list(query: &str) -> Result<(), ApiError> {
    decode::only_query(query, &["state"])
}

pub(super) fn decode_show(p: &Params, query: &str) -> Result<(uuid::Uuid, u64), ApiError> {
    let id = uuid::Uuid::parse_str(p.get("job"))
        .map_err(|_| ApiError::invalid("job", "a job id is a UUID"))?;
    decode::only_query(query, &["wait"])?;
    let wait = match decode::query_value(query, "wait") {
        None => 0,
        Some(w) => match w.parse::<u64>() {
            Ok(n) if n <= MAX_WAIT_SECS => n,
            _ => {
                return Err(ApiError::invalid(
                    "wait",
                    format!("seconds, from 0 to {MAX_WAIT_SECS}"),
                ));
            }
        },
    };
    Ok((id, wait))
}

pub fn list(_: Authorized<AnyRole>, i: Input) -> Result<Reply, ApiError> {
    decode_list(&i.query)?;
    Reply::ok(json!({ "jobs": [] }))
}

pub fn show(_: Authorized<AnyRole>, i: Input) -> Result<Reply, ApiError> {
    let (id, _wait) = decode_show(&i.params, &i.query)?;
    Err(ApiError::not_found(format!(
        "no job {id}: no jobs exist yet (cloud actions are not available in this build)"
    )))
}
