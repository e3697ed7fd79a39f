//! `/v1/config/designated`: whether this appliance is the designated device that mutates the
//! cloud. Any role reads it; only an admin sets it.

use super::{Ctx, Input, Reply};
use crate::contract::Designated;
use crate::control::authz::{Admin, AnyRole, Authorized};
use crate::control::decode;
use crate::control::errors::ApiError;

pub(super) fn decode(body: &[u8]) -> Result<bool, ApiError> {
    Ok(decode::json::<Designated>(body)?.designated)
}

pub async fn get_designated(_: Authorized<AnyRole>, ctx: &Ctx) -> Result<Reply, ApiError> {
    Reply::ok(&Designated {
        designated: ctx.service.designated().await,
    })
}

pub async fn set_designated(
    auth: Authorized<Admin>,
    ctx: &Ctx,
    i: Input,
) -> Result<Reply, ApiError> {
    let designated = decode(&i.body)?;
    ctx.service.set_designated(designated, auth.name()).await?;
    Reply::ok(&Designated { designated })
}
