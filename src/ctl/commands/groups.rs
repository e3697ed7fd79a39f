//! `byokctl group` and `byokctl key`: key groups and their keys, and the jobs started on them
//! (sync, rotate, check, delete on cloud, recover, purge).

use super::jobs::start_job;
use super::{Ctx, seg};
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use crate::ctl::output::Column;
use http::Method;
use serde_json::{Value, json};

const GROUP_COLS: &[Column] = &[
    ("NAME", "name"),
    ("VAULT", "vault"),
    ("CREDENTIAL", "credential"),
    ("ALGORITHM", "algorithm"),
    ("ROTATION", "rotation"),
    ("KEYS", "keys"),
];
const KEY_COLS: &[Column] = &[
    ("NAME", "name"),
    ("KEY GROUP", "group"),
    ("VERSION", "version"),
    ("STORAGE", "storage"),
    ("KEY TYPE", "key_type"),
    ("ALGORITHM", "algorithm"),
    ("CHECK DIGITS", "check_digits"),
    ("CREATED", "created"),
];

fn rotation_body(r: &RotationArgs) -> Value {
    let mut o = serde_json::Map::new();
    if let Some(v) = r.rotation {
        o.insert("enabled".into(), json!(v == OnOff::On));
    }
    if let Some(v) = r.rotate_every {
        o.insert("rotate_every_months".into(), json!(v));
    }
    if let Some(v) = r.keep_valid {
        o.insert("keep_valid_months".into(), json!(v));
    }
    Value::Object(o)
}

pub(super) async fn group(ctx: &Ctx, c: GroupCmd) -> Result<(), CtlError> {
    match c {
        GroupCmd::Create {
            name,
            credential,
            vault,
            key_type,
            exponent,
            key_ops,
            rotation,
        } => {
            let mut body = json!({ "name": name, "credential": credential, "vault": vault, "key_type": key_type, "rotation": rotation_body(&rotation) });
            if let Some(o) = body.as_object_mut() {
                if let Some(e) = exponent {
                    o.insert("exponent".into(), json!(e));
                }
                if let Some(ops) = key_ops {
                    o.insert("key_ops".into(), json!(ops));
                }
            }
            ctx.show(&ctx.send(Method::POST, "/v1/groups", &body).await?.body);
        }
        GroupCmd::List => ctx.list(&ctx.get("/v1/groups").await?, "groups", GROUP_COLS),
        GroupCmd::Show { name } => {
            ctx.show(&ctx.get(&format!("/v1/groups/{}", seg(&name)?)).await?)
        }
        GroupCmd::Set { name, rotation } => {
            let body = json!({ "rotation": rotation_body(&rotation) });
            ctx.show(
                &ctx.send(Method::PATCH, &format!("/v1/groups/{}", seg(&name)?), &body)
                    .await?
                    .body,
            );
        }
        GroupCmd::Delete { name } => {
            let a = ctx
                .call(Method::DELETE, &format!("/v1/groups/{}", seg(&name)?), None)
                .await?;
            ctx.done(&a, &format!("key group {name} deleted (local only)"));
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
            let a = ctx
                .send(
                    Method::POST,
                    &format!("/v1/groups/{}/keys", seg(&group)?),
                    &json!({ "name": name }),
                )
                .await?;
            ctx.show(&a.body);
        }
        KeyCmd::List { group } => ctx.list(
            &ctx.get(&format!("/v1/groups/{}/keys", seg(&group)?))
                .await?,
            "keys",
            KEY_COLS,
        ),
        KeyCmd::Show { group, name } => ctx.show(
            &ctx.get(&format!("/v1/groups/{}/keys/{}", seg(&group)?, seg(&name)?))
                .await?,
        ),
        KeyCmd::Delete { group, name } => {
            let a = ctx
                .call(
                    Method::DELETE,
                    &format!("/v1/groups/{}/keys/{}", seg(&group)?, seg(&name)?),
                    None,
                )
                .await?;
            ctx.done(
                &a,
                &format!("key {group}/{name} deleted locally (the cloud is untouched)"),
            );
        }
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
