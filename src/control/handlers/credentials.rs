//! `/v1/credentials`: add (the secret in the body), list, show, set expiry, and delete under
//! dual control. Admin only for every change; any role may read. Never returns the secret.

use super::{Ctx, Input, Reply, to_json};
use crate::control::approvals::Action;
use crate::control::authz::{Admin, AnyRole, Authorized};
use crate::control::decode::{self, field};
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use crate::model::{CredentialName, Guid};
use crate::secret::SecretBytes;
use crate::service::NewCredential;
use serde::Deserialize;
use serde_json::json;

/// The client secret as it arrives: moved straight into a zeroizing secret type.
pub(super) struct SecretField(SecretBytes);

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(SecretField(SecretBytes::new(s.into_bytes())))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBody {
    name: String,
    tenant_id: String,
    client_id: String,
    secret: SecretField,
    #[serde(default)]
    expires: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    /// Unix seconds, UTC; `null` clears the expiry.
    expires: Option<i64>,
}

pub(super) fn decode_new(body: &[u8]) -> Result<NewCredential, ApiError> {
    let b: NewBody = decode::json(body)?;
    if b.secret.0.is_empty() {
        return Err(ApiError::invalid("secret", "the client secret is empty"));
    }
    Ok(NewCredential {
        name: field("name", CredentialName::try_from(b.name))?,
        tenant_id: field("tenant_id", Guid::parse(&b.tenant_id))?,
        client_id: field("client_id", Guid::parse(&b.client_id))?,
        secret: b.secret.0,
        expires: b.expires,
    })
}

pub(super) fn decode_update(body: &[u8]) -> Result<Option<i64>, ApiError> {
    Ok(decode::json::<UpdateBody>(body)?.expires)
}

pub(super) fn name(p: &Params) -> Result<CredentialName, ApiError> {
    decode::param("credential", p.get("credential"))
}

pub async fn list(_: Authorized<AnyRole>, ctx: &Ctx) -> Result<Reply, ApiError> {
    Reply::ok(json!({ "credentials": to_json(&ctx.service.list_credentials().await)? }))
}

pub async fn add(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let new = decode_new(&i.body)?;
    drop(i);
    let view = ctx.service.add_credential(new, auth.name()).await?;
    Reply::created(to_json(&view)?)
}

pub async fn show(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    Reply::ok(to_json(&ctx.service.credential(&name(&i.params)?).await?)?)
}

pub async fn update(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let name = name(&i.params)?;
    let expires = decode_update(&i.body)?;
    Reply::ok(to_json(
        &ctx.service
            .set_credential_expiry(&name, expires, auth.name())
            .await?,
    )?)
}

/// Deleting a credential needs a second admin: this records the request and answers 202.
pub async fn delete(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let name = name(&i.params)?;
    let view = ctx.service.credential(&name).await?;
    if !view.groups.is_empty() {
        return Err(ApiError::conflict(format!(
            "credential {:?} is in use by key group(s) {}; change or delete those groups first",
            name.as_str(),
            view.groups.join(", ")
        )));
    }
    super::approvals::request(
        &auth,
        ctx,
        Action::DeleteCredential {
            credential: name.to_string(),
        },
    )
}
