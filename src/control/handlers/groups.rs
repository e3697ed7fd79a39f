//! `/v1/groups`: create, list, show, update the rotation policy, delete when empty.
//! Admin or operator for changes; any role may read. Changes nothing in the cloud; with
//! `verify`, create first checks that the vault exists and the credential may read it.

use super::{Ctx, Input, Reply};
use crate::contract::{self, GroupUpdate, NewGroup as NewBody, Timestamp};
use crate::control::authz::{AnyRole, Authorized, Operate};
use crate::control::decode::{self, field};
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use crate::model::{
    CredentialName, GroupName, HsmPoolName, KeyOp, KeyType, RotationPolicy, RsaExponent, Target,
    VaultName,
};
use crate::service::{DriftView, GroupView, NewGroup};

/// The new group, and whether to check its vault and credential with Azure first.
pub(super) fn decode_new(body: &[u8]) -> Result<(NewGroup, bool), ApiError> {
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
    let target = match (b.vault, b.managed_hsm) {
        (Some(v), None) => Target::KeyVault(field("vault", VaultName::try_from(v))?),
        (None, Some(p)) => Target::ManagedHsm(field("managed_hsm", HsmPoolName::try_from(p))?),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "managed_hsm",
                "a group targets one Key Vault or one Managed HSM: give `vault` or `managed_hsm`, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "vault",
                "name the group's target: `vault` (a Key Vault) or `managed_hsm` (a Managed HSM pool)",
            ));
        }
    };
    field("key_type", key_type.check_target(target.kind()))?;
    let group = NewGroup {
        name: field("name", GroupName::try_from(b.name))?,
        credential: field("credential", CredentialName::try_from(b.credential))?,
        target,
        key_type,
        key_ops,
        rotation,
    };
    Ok((group, b.verify))
}

/// Decodes a rotation update; applied over the group's current policy by [`update`].
pub(super) fn decode_update(body: &[u8]) -> Result<RotationPolicy, ApiError> {
    let b: GroupUpdate = decode::json(body)?;
    let probe = b.rotation.over(RotationPolicy::default());
    probe
        .validate()
        .map_err(|e| ApiError::invalid(format!("rotation.{}", e.field), e.reason))?;
    Ok(probe)
}

pub(super) fn name(p: &Params) -> Result<GroupName, ApiError> {
    decode::param("group", p.get("group"))
}

/// A key group as the API shows it.
fn answer(v: GroupView) -> contract::Group {
    contract::Group {
        name: v.name,
        credential: v.credential,
        target: v.target.kind().as_str().to_owned(),
        vault: v.target.vault().map(ToString::to_string),
        managed_hsm: v.target.managed_hsm().map(ToString::to_string),
        key_type: v.key_type,
        algorithm: v.algorithm,
        exponent: v.exponent,
        key_ops: v.key_ops.into_iter().map(str::to_owned).collect(),
        rotation: v.rotation,
        last_rotated: v.last_rotated.map(Timestamp::from_unix),
        created: Timestamp::from_unix(v.created),
        keys: v.keys,
        next_rotation: v.next_rotation.map(Timestamp::from_unix),
        pending_grace: v.pending_grace.map(|g| contract::PendingGrace {
            versions: g.versions.iter().map(ToString::to_string).collect(),
            due: Timestamp::from_unix(g.due),
            new_version: g.new_version.to_string(),
        }),
        drift: v.drift.map(drift),
    }
}

fn drift(d: DriftView) -> contract::Drift {
    contract::Drift {
        checked: Timestamp::from_unix(d.checked),
        job: d.job.get(),
        azure_versions: d.azure_versions,
        findings: d
            .findings
            .into_iter()
            .map(|f| contract::DriftFinding {
                code: f.code.to_owned(),
                key: f.key,
                version: f.version,
                message: f.message,
            })
            .collect(),
    }
}

pub async fn list(_: Authorized<AnyRole>, ctx: &Ctx) -> Result<Reply, ApiError> {
    let groups = ctx.service.list_groups().await;
    Reply::ok(&contract::GroupList {
        groups: groups.into_iter().map(answer).collect(),
    })
}

pub async fn create(auth: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let (new, verify) = decode_new(&i.body)?;
    if verify {
        super::verify::vault_access(ctx, &new.credential, &new.target).await?;
    }
    let view = ctx.service.create_group(new, auth.name()).await?;
    Reply::created(&answer(view))
}

pub async fn show(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    Reply::ok(&answer(ctx.service.group(&name(&i.params)?).await?))
}

pub async fn update(auth: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let name = name(&i.params)?;
    let patch = decode::json::<GroupUpdate>(&i.body)?.rotation;
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
    Reply::ok(&answer(view))
}

pub async fn delete(auth: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let name = name(&i.params)?;
    ctx.service.delete_group(&name, auth.name()).await?;
    Reply::ok(&contract::Deleted {
        deleted: name.to_string(),
    })
}
