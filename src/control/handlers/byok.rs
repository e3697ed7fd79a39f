//! Offline transfer: `POST /v1/groups/{group}/keys/{key}/export-byok` (an admin's request that a
//! second admin approves; approving wraps the key in the HSM), `GET
//! /v1/approvals/{approval}/byok-file` (the requester downloads the file), and `POST
//! /v1/groups/{group}/keys/{key}/record-import` (the version the officer's manual import made,
//! confirmed with Azure, becomes the key's version). Dual control and the job runner decide and
//! log; this decodes and answers.

use super::{Ctx, Input, Reply};
use crate::azure::offline_kek::MAX_PEM_BYTES;
use crate::azure::{AzureError, KeyVaultError};
use crate::contract::{self, ByokExport, RecordImport};
use crate::control::authz::{Admin, Authorized, Operate};
use crate::control::decode;
use crate::control::errors::ApiError;
use crate::jobs::JobError;
use crate::model::{AzureVersion, GroupName, KeyName};
use http::StatusCode;

pub(super) fn decode_export(body: &[u8]) -> Result<ByokExport, ApiError> {
    let b: ByokExport = decode::json(body)?;
    if b.kek_pem.len() > MAX_PEM_BYTES {
        return Err(ApiError::invalid(
            "kek_pem",
            format!("more than {MAX_PEM_BYTES} bytes: not a public key"),
        ));
    }
    if b.kek_kid.len() > 512 {
        return Err(ApiError::invalid("kek_kid", "more than 512 characters"));
    }
    Ok(b)
}

pub(super) fn decode_record(body: &[u8]) -> Result<AzureVersion, ApiError> {
    let b: RecordImport = decode::json(body)?;
    let v = b.version.trim();
    if v.len() != 32 || !v.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            "version",
            "an Azure key version is 32 hex characters: the last part of the kid that `az keyvault key import` printed",
        ));
    }
    Ok(AzureVersion::new(v.to_ascii_lowercase()))
}

/// Requests the export; 202 with the approval a second admin must give.
pub async fn export(who: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let (group, key) = super::keys::names(&i.params)?;
    let body = decode_export(&i.body)?;
    let approval = ctx
        .dual
        .request_byok_export(
            (&group, &key),
            (body.kek_pem.as_bytes(), &body.kek_kid),
            who.name(),
        )
        .await?;
    let id = approval.id;
    let message = format!(
        "{} needs a second admin: a different admin runs `byokctl approval approve {id}` before it expires; then {} downloads the file (GET /v1/approvals/{id}/byok-file)",
        approval.summary, approval.requested_by
    );
    Reply::accepted(&contract::Pending {
        approval: super::approvals::answer(approval),
        message,
        job: None,
    })
}

/// The file of an approved export, for the admin who requested it.
pub async fn file(who: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let id = super::approvals::id(&i.params)?;
    let f = ctx.dual.byok_file(&id, who.name()).await?;
    let byok = String::from_utf8(f.json).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the .byok file is not UTF-8",
        )
    })?;
    Reply::ok(&contract::ByokFile {
        approval: id.to_string(),
        group: f.group,
        key: f.key,
        kek_kid: f.kek_kid,
        byok,
    })
}

/// Records the version a manual import made, once Azure shows it with the HSM key's public key.
pub async fn record_import(
    who: Authorized<Operate>,
    ctx: &Ctx,
    i: Input,
) -> Result<Reply, ApiError> {
    let (group, key) = super::keys::names(&i.params)?;
    let version = decode_record(&i.body)?;
    let jobs = super::cloud::jobs(ctx, "record-import")?;
    let designated = super::cloud::designated(ctx, "record-import").await?;
    let done = jobs
        .record_import(&designated, (&group, &key), &version, who.name())
        .await
        .map_err(|e| refused(&group, &key, &version, e))?;
    let view = ctx.service.key(&group, &key).await?;
    Reply::ok(&contract::ImportRecorded {
        key: super::keys::answer(view),
        previous_version: done.previous.map(|v| v.to_string()),
    })
}

/// A refused record-import as its answer: a version Azure does not have is 404, a public key
/// that is not the HSM key's 409, an unreachable or refusing Azure 502.
fn refused(group: &GroupName, key: &KeyName, version: &AzureVersion, e: JobError) -> ApiError {
    match e {
        JobError::PublicKeyMismatch { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "public_key_mismatch",
            format!(
                "{e}; nothing was recorded: this version is not key {group}/{key} (was another key's .byok file imported?)"
            ),
        ),
        JobError::Azure(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {
            ApiError::not_found(format!(
                "key group {group}'s Azure key has no version {version}; check the version `az keyvault key import` printed"
            ))
        }
        JobError::Azure(a) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "azure_error",
            format!("Azure could not be asked about version {version}: {a}; nothing was recorded"),
        ),
        other => other.into(),
    }
}
