//! Cloud actions: synchronize a key or group (202 with a job), force a rotation, delete on the
//! cloud service, purge and recover. The last four check the caller, the target and the
//! designated-device rule, and answer 501 until the lifecycle work lands. Delete on cloud and purge will also need a second admin's approval.

use super::{Ctx, Input, Reply};
use crate::control::authz::{Admin, Authorized, Operate};
use crate::control::errors::ApiError;
use http::StatusCode;

const NOT_YET: &str = "this cloud action is not available in this build yet (synchronize is); \
the route exists and is authorized, and will answer 202 with a job id once it lands.";

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

/// "Synchronize HSM protected key(s)" for every key of the group that has no Azure version.
pub async fn sync_group(who: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let group = super::groups::name(&i.params)?;
    let keys: Vec<_> = ctx
        .service
        .list_keys(&group)
        .await?
        .into_iter()
        .filter(|k| k.version.is_none())
        .filter_map(|k| crate::model::LocalKeyName::try_from(k.name).ok())
        .collect();
    if keys.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_sync",
            format!(
                "every key of group {group} already has its Azure version (or the group has no keys)"
            ),
        ));
    }
    submit_sync(ctx, &who, &group, &keys).await
}

async fn submit_sync(
    ctx: &Ctx,
    who: &Authorized<Operate>,
    group: &crate::model::KeyName,
    keys: &[crate::model::LocalKeyName],
) -> Result<Reply, ApiError> {
    let Some(jobs) = &ctx.jobs else {
        return refuse_unavailable("synchronize");
    };
    let id = jobs
        .submit_sync(group, keys, who.name())
        .await
        .map_err(job_error)?;
    let job = ctx.service.job(id).await?;
    Reply::accepted(serde_json::json!({ "job": super::jobs::view(&job) }))
}

fn refuse_unavailable(what: &str) -> Result<Reply, ApiError> {
    Err(ApiError::not_implemented(format!("{what}: {NOT_YET}")))
}

fn job_error(e: crate::jobs::JobError) -> ApiError {
    use crate::jobs::JobError;
    match e {
        JobError::NotDesignated => {
            ApiError::new(StatusCode::CONFLICT, "not_designated", e.to_string())
        }
        JobError::Invalid(m) => ApiError::invalid("keys", m),
        JobError::Service(s) => s.into(),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "job_failed_to_start",
            other.to_string(),
        ),
    }
}

pub async fn rotate_group(_: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    refuse(ctx, &i, "rotate", false).await
}

pub async fn recover(_: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    refuse(ctx, &i, "recover", false).await
}

/// "Synchronize HSM protected key(s)" for one key; a pushed key is a no-op that reports its version.
pub async fn sync_key(who: Authorized<Operate>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let (group, key) = super::keys::names(&i.params)?;
    ctx.service.key(&group, &key).await?;
    submit_sync(ctx, &who, &group, &[key]).await
}

/// Will need a second admin's approval (dual control) once available.
pub async fn delete_cloud(_: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    refuse(ctx, &i, "delete on cloud", false).await
}

/// Will need a second admin's approval (dual control) once available.
pub async fn purge(_: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    refuse(ctx, &i, "purge", false).await
}
