//! `/v1/config/designated`: whether this appliance is the designated device that mutates the
//! cloud. Any role reads it; only an admin sets it.

use super::{Ctx, Input, Reply};
use crate::control::authz::{Admin, AnyRole, Authorized};
use crate::control::decode;
use crate::control::errors::ApiError;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    designated: bool,
}

pub(super) fn decode(body: &[u8]) -> Result<bool, ApiError> {
    Ok(decode::json::<Body>(body)?.designated)
}

pub async fn get_designated(_: Authorized<AnyRole>, ctx: &Ctx) -> Result<Reply, ApiError> {
    Reply::ok(json!({ "designated": ctx.service.designated().await }))
}

pub async fn set_designated(
    auth: Authorized<Admin>,
    ctx: &Ctx,
    i: Input,
) -> Result<Reply, ApiError> {
    let designated = decode(&i.body)?;
    ctx.service.set_designated(designated, auth.name()).await?;
    Reply::ok(json!({ "designated": designated }))
}
