//! `/v1/groups/{group}/keys`: create a random key in the HSM, list, show, read the public key,
//! and delete locally. Deleting a key that was pushed to Azure needs an admin and a second
//! admin's approval; a key that a job works on cannot be deleted. Never touches the cloud.

use super::{Ctx, Input, Reply};
use crate::contract::{self, NewKey, Timestamp};
use crate::control::authz::{Admin, AnyRole, Authorized, Operate};
use crate::control::decode::{self, field};
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use crate::dual_control::DeleteKey;
use crate::model::{GroupName, KeyName};
use crate::service::{KeyDeletion, KeyView};
use base64::Engine;

pub(super) fn decode_new(body: &[u8]) -> Result<KeyName, ApiError> {
    let b: NewKey = decode::json(body)?;
    field("name", KeyName::try_from(b.name))
}

pub(super) fn names(p: &Params) -> Result<(GroupName, KeyName), ApiError> {
    Ok((super::groups::name(p)?, decode::param("key", p.get("key"))?))
}

/// A key as the API shows it.
pub(super) fn answer(v: KeyView) -> contract::Key {
    contract::Key {
        name: v.name,
        group: v.group,
        version: v.version,
        storage: v.storage,
        key_type: v.key_type,
        algorithm: v.algorithm,
        check_digits: v.check_digits,
        created: Timestamp::from_unix(v.created),
        hsm_id: v.hsm_id,
    }
}

pub async fn list(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    let keys = ctx.service.list_keys(&group).await?;
    Reply::ok(&contract::KeyList {
        keys: keys.into_iter().map(answer).collect(),
    })
}

pub async fn create(auth: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    let name = decode_new(&i.body)?;
    Reply::created(&answer(
        ctx.service.create_key(&group, &name, auth.name()).await?,
    ))
}

pub async fn show(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let (group, key) = names(&i.params)?;
    Reply::ok(&answer(ctx.service.key(&group, &key).await?))
}

pub async fn public(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let (group, key) = names(&i.params)?;
    let der = ctx.service.key_public_der(&group, &key).await?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let pem_body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        pem_body.join("\n")
    );
    Reply::ok(&contract::PublicKey {
        group: group.to_string(),
        key: key.to_string(),
        spki_der_base64: b64,
        pem,
    })
}

/// Deletes a key locally. The service decides under its state lock: a key an unfinished job
/// works on is refused (409 `job_in_progress`, naming the job); a pushed key needs an admin and
/// then a second admin's approval (202); any other key goes at once.
pub async fn delete(auth: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let (group, key) = names(&i.params)?;
    match ctx.service.delete_key(&auth, &group, &key).await? {
        KeyDeletion::Deleted => Reply::ok(&contract::Deleted {
            deleted: format!("{group}/{key}"),
        }),
        KeyDeletion::NeedsApproval { hsm_id, .. } => {
            let admin: Authorized<Admin> = auth.escalate()?;
            let key = DeleteKey {
                group: group.to_string(),
                key: key.to_string(),
                hsm_id,
            };
            let approval = ctx.dual.request_key_delete(key, admin.name()).await?;
            super::approvals::requested(approval)
        }
    }
}
