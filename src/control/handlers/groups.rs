//! `/v1/groups`: create, list, show, update the rotation policy, delete when empty.
//! Admin or operator for changes; any role may read. Never touches the cloud.

use super::{Ctx, Input, Reply, to_json};
use crate::control::authz::{AnyRole, Authorized, Operate};
use crate::control::decode::{self, field};
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use crate::model::{
    CredentialName, GroupName, KeyOp, KeyType, RotationPolicy, RsaExponent, VaultName,
};
use crate::service::NewGroup;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBody {
    name: String,
    credential: String,
    vault: String,
    key_type: String,
    #[serde(default)]
    exponent: Option<u32>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    rotation: Option<RotationBody>,
}

/// A rotation policy, whole or in part: missing fields keep their current (or default) value.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RotationBody {
    enabled: Option<bool>,
    rotate_every_months: Option<u32>,
    keep_valid_months: Option<u32>,
}

impl RotationBody {
    fn over(self, base: RotationPolicy) -> RotationPolicy {
        RotationPolicy {
            enabled: self.enabled.unwrap_or(base.enabled),
            rotate_every_months: self.rotate_every_months.unwrap_or(base.rotate_every_months),
            keep_valid_months: self.keep_valid_months.unwrap_or(base.keep_valid_months),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    /// Absent: the policy is unchanged.
    #[serde(default)]
    rotation: RotationBody,
}

pub(super) fn decode_new(body: &[u8]) -> Result<NewGroup, ApiError> {
    let b: NewBody = decode::json(body)?;
    let exponent = match b.exponent {
        Some(e) => field("exponent", RsaExponent::from_value(e))?,
        None => RsaExponent::F4,
    };
    let key_type =
        KeyType::parse(&b.key_type, exponent).map_err(|e| ApiError::invalid(e.field, e.reason))?;
    let key_ops = match b.key_ops {
        Some(ops) => Some(
            ops.iter()
                .map(|o| field("key_ops", KeyOp::parse(o)))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let rotation = b
        .rotation
        .unwrap_or_default()
        .over(RotationPolicy::default());
    rotation
        .validate()
        .map_err(|e| ApiError::invalid(format!("rotation.{}", e.field), e.reason))?;
    Ok(NewGroup {
        name: field("name", GroupName::try_from(b.name))?,
        credential: field("credential", CredentialName::try_from(b.credential))?,
        vault: field("vault", VaultName::try_from(b.vault))?,
        key_type,
        key_ops,
        rotation,
    })
}

/// Decodes a rotation update; applied over the group's current policy by [`update`].
pub(super) fn decode_update(body: &[u8]) -> Result<RotationPolicy, ApiError> {
    let b: UpdateBody = decode::json(body)?;
    let probe = b.rotation.over(RotationPolicy::default());
    probe
        .validate()
        .map_err(|e| ApiError::invalid(format!("rotation.{}", e.field), e.reason))?;
    Ok(probe)
}

pub(super) fn name(p: &Params) -> Result<GroupName, ApiError> {
    decode::param("group", p.get("group"))
}

pub async fn list(_: Authorized<AnyRole>, ctx: &Ctx) -> Result<Reply, ApiError> {
    Reply::ok(json!({ "groups": to_json(&ctx.service.list_groups().await)? }))
}

pub async fn create(auth: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let new = decode_new(&i.body)?;
    let view = ctx.service.create_group(new, auth.name()).await?;
    Reply::created(to_json(&view)?)
}

pub async fn show(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    Reply::ok(to_json(&ctx.service.group(&name(&i.params)?).await?)?)
}

pub async fn update(auth: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let name = name(&i.params)?;
    let patch = decode::json::<UpdateBody>(&i.body)?.rotation;
    // A first look for a clear error; the service applies the patch over the policy it holds
    // under its lock (and validates again), so concurrent updates do not undo each other.
    let current = ctx.service.group(&name).await?.rotation;
    patch
        .over(current)
        .validate()
        .map_err(|e| ApiError::invalid(format!("rotation.{}", e.field), e.reason))?;
    let view = ctx
        .service
        .update_rotation(&name, |now| patch.over(now), auth.name())
        .await?;
    Reply::ok(to_json(&view)?)
}

pub async fn delete(auth: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let name = name(&i.params)?;
    ctx.service.delete_group(&name, auth.name()).await?;
    Reply::ok(json!({ "deleted": name.as_str() }))
}
