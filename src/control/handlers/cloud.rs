//! Cloud actions: synchronize a key or group, force a rotation, delete on the cloud service,
//! purge and recover. They will answer 202 with a job id once the Azure and jobs subsystems
//! land; until then they check the caller, the target and the designated-device rule, and
//! answer 501 saying so. Delete on cloud and purge will also need a second admin's approval.

use super::{Ctx, Input, Reply};
use crate::control::authz::{Admin, Authorized, Operate};
use crate::control::errors::ApiError;
use http::StatusCode;

const NOT_YET: &str = "pushing to Azure Key Vault is not available in this build yet: the Azure client and the job executor have not landed. \
The route exists and is authorized; it will answer 202 with a job id once they do.";

async fn refuse(ctx: &Ctx, i: &Input, what: &str, key: bool) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    if key {
        let (g, k) = super::keys::names(&i.params)?;
        ctx.service.key(&g, &k).await?;
    } else {
        ctx.service.group(&group).await?;
    }
    if !ctx.service.designated().await {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_designated",
            format!(
                "{what} refused: this appliance is not the designated device, and only the designated device mutates the cloud (PUT /v1/config/designated)"
            ),
        ));
    }
    Err(ApiError::not_implemented(format!("{what}: {NOT_YET}")))
}

pub async fn sync_group(_: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    refuse(ctx, &i, "synchronize", false).await
}

pub async fn rotate_group(_: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    refuse(ctx, &i, "rotate", false).await
}

pub async fn recover(_: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    refuse(ctx, &i, "recover", false).await
}

pub async fn sync_key(_: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    refuse(ctx, &i, "synchronize", true).await
}

/// Will need a second admin's approval (dual control) once available.
pub async fn delete_cloud(_: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    refuse(ctx, &i, "delete on cloud", false).await
}

/// Will need a second admin's approval (dual control) once available.
pub async fn purge(_: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    refuse(ctx, &i, "purge", false).await
}
