//! `byokctl group` and `byokctl key`: key groups and their keys, and the jobs started on them
//! (sync, rotate, check, delete on cloud, recover, purge).

use super::jobs::start_job;
use super::{Ctx, seg, value_name};
use crate::contract::{
    Group, GroupList, GroupUpdate, Key, KeyList, NewGroup, NewKey, RotationPatch,
};
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use crate::ctl::output::{Column, col, wide};
use http::Method;

const GROUP_COLS: &[Column] = &[
    col("NAME", "name"),
    col("TARGET", "target"),
    col("VAULT", "vault"),
    col("MANAGED HSM", "managed_hsm"),
    col("CREDENTIAL", "credential"),
    col("ALGORITHM", "algorithm"),
    wide("KEY OPS", "key_ops"),
    col("ROTATION", "rotation"),
    wide("LAST ROTATED", "last_rotated"),
    wide("NEXT ROTATION", "next_rotation"),
    col("KEYS", "keys"),
    wide("CREATED", "created"),
];
const KEY_COLS: &[Column] = &[
    col("NAME", "name"),
    col("KEY GROUP", "group"),
    col("VERSION", "version"),
    col("STORAGE", "storage"),
    col("KEY TYPE", "key_type"),
    col("ALGORITHM", "algorithm"),
    col("CHECK DIGITS", "check_digits"),
    col("CREATED", "created"),
    wide("HSM ID", "hsm_id"),
];

fn rotation_body(r: &RotationArgs) -> RotationPatch {
    RotationPatch {
        enabled: r.rotation.map(|v| v == OnOff::On),
        rotate_every_months: r.rotate_every,
        keep_valid_months: r.keep_valid,
    }
}

pub(super) async fn group(ctx: &Ctx, c: GroupCmd) -> Result<(), CtlError> {
    match c {
        GroupCmd::Create {
            name,
            credential,
            vault,
            managed_hsm,
            key_type,
            exponent,
            key_ops,
            rotation,
            no_verify,
        } => {
            if vault.is_some()
                && let Some(reason) = key_type.key_vault_refusal()
            {
                return Err(CtlError::Usage(format!("--key-type: {reason}")));
            }
            let body = NewGroup {
                name,
                credential,
                vault,
                managed_hsm,
                key_type: value_name(key_type),
                exponent,
                key_ops: key_ops.map(|ops| ops.into_iter().map(value_name).collect()),
                rotation: Some(rotation_body(&rotation)),
                verify: !no_verify,
            };
            let created: Group = ctx.send(Method::POST, "/v1/groups", &body).await?;
            ctx.show(&created)?;
        }
        GroupCmd::List => ctx.list(
            &ctx.get::<GroupList>("/v1/groups").await?,
            "groups",
            GROUP_COLS,
        )?,
        GroupCmd::Show { name } => ctx.show(
            &ctx.get::<Group>(&format!("/v1/groups/{}", seg(&name)?))
                .await?,
        )?,
        GroupCmd::Set { name, rotation } => {
            let body = GroupUpdate {
                rotation: rotation_body(&rotation),
            };
            let path = format!("/v1/groups/{}", seg(&name)?);
            let updated: Group = ctx.send(Method::PATCH, &path, &body).await?;
            ctx.show(&updated)?;
        }
        GroupCmd::Delete { name } => {
            let path = format!("/v1/groups/{}", seg(&name)?);
            let a = ctx.call(Method::DELETE, &path, None).await?;
            ctx.done(&path, a, &format!("key group {name} deleted (local only)"))?;
        }
        GroupCmd::Sync { name, wait } => {
            start_job(ctx, &format!("/v1/groups/{}/sync", seg(&name)?), wait).await?
        }
        GroupCmd::Rotate { name, wait } => {
            start_job(ctx, &format!("/v1/groups/{}/rotate", seg(&name)?), wait).await?
        }
        GroupCmd::Check { name, wait } => {
            start_job(ctx, &format!("/v1/groups/{}/check", seg(&name)?), wait).await?
        }
        GroupCmd::DeleteCloud { name, wait } => {
            start_job(
                ctx,
                &format!("/v1/groups/{}/delete-cloud", seg(&name)?),
                wait,
            )
            .await?
        }
        GroupCmd::Recover { name, wait } => {
            start_job(ctx, &format!("/v1/groups/{}/recover", seg(&name)?), wait).await?
        }
        GroupCmd::Purge { name, wait } => {
            start_job(ctx, &format!("/v1/groups/{}/purge", seg(&name)?), wait).await?
        }
    }
    Ok(())
}

pub(super) async fn key(ctx: &Ctx, c: KeyCmd) -> Result<(), CtlError> {
    match c {
        KeyCmd::Create { group, name } => {
            let path = format!("/v1/groups/{}/keys", seg(&group)?);
            let created: Key = ctx.send(Method::POST, &path, &NewKey { name }).await?;
            ctx.show(&created)?;
        }
        KeyCmd::List {
            group: Some(group), ..
        } => ctx.list(
            &ctx.get::<KeyList>(&format!("/v1/groups/{}/keys", seg(&group)?))
                .await?,
            "keys",
            KEY_COLS,
        )?,
        KeyCmd::List { group: None, .. } => {
            let groups: GroupList = ctx.get("/v1/groups").await?;
            let mut keys = Vec::new();
            for g in &groups.groups {
                let path = format!("/v1/groups/{}/keys", seg(&g.name)?);
                match ctx.get::<KeyList>(&path).await {
                    Ok(list) => keys.extend(list.keys),
                    // Deleted between the two calls.
                    Err(CtlError::Api { status: 404, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            ctx.list(&KeyList { keys }, "keys", KEY_COLS)?
        }
        KeyCmd::Public {
            group,
            name,
            format,
            file,
        } => super::public::public(ctx, &group, &name, format, file.as_deref()).await?,
        KeyCmd::Show { group, name } => ctx.show(
            &ctx.get::<Key>(&format!("/v1/groups/{}/keys/{}", seg(&group)?, seg(&name)?))
                .await?,
        )?,
        KeyCmd::Delete { group, name } => {
            let path = format!("/v1/groups/{}/keys/{}", seg(&group)?, seg(&name)?);
            let a = ctx.call(Method::DELETE, &path, None).await?;
            ctx.done(
                &path,
                a,
                &format!("key {group}/{name} deleted locally (the cloud is untouched)"),
            )?;
        }
        KeyCmd::ExportByok {
            group,
            name,
            kek_pem,
            kek_kid,
            file,
            force,
            no_wait,
        } => {
            let target = super::byok::Target { file, force };
            super::byok::export(ctx, (&group, &name), (&kek_pem, kek_kid), target, no_wait).await?
        }
        KeyCmd::RecordImport {
            group,
            name,
            version,
        } => super::byok::record_import(ctx, (&group, &name), version).await?,
        KeyCmd::Sync { group, name, wait } => {
            start_job(
                ctx,
                &format!("/v1/groups/{}/keys/{}/sync", seg(&group)?, seg(&name)?),
                wait,
            )
            .await?
        }
    }
    Ok(())
}
