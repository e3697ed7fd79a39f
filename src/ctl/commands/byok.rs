//! `byokctl key export-byok`, `byokctl approval byok-file` and `byokctl key record-import`: the
//! offline transfer. The export is requested with the KEK file's PEM, waits for a second admin's
//! approval, and writes the `.byok` file; recording the manual import sends the version the
//! Azure CLI printed.
//!
//! It owns reading the KEK file and writing the `.byok` file whole (checked, never half
//! written); the daemon checks the KEK and wraps the key.

use super::download::{Partial, io};
use super::{Ctx, seg};
use crate::azure::offline_kek::MAX_PEM_BYTES;
use crate::contract::{
    Approval, ApprovalStatus, ByokExport, ByokFile, ImportRecorded, Pending, RecordImport,
};
use crate::ctl::CtlError;
use crate::ctl::output::{note, say};
use http::Method;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a waiting export asks whether it was decided.
const POLL: Duration = Duration::from_secs(1);

/// Where the `.byok` file goes.
pub(super) struct Target {
    pub(super) file: PathBuf,
    pub(super) force: bool,
}

/// Requests the export, then (unless `no_wait`) waits for the decision and writes the file.
pub(super) async fn export(
    ctx: &Ctx,
    (group, key): (&str, &str),
    (pem_path, kek_kid): (&Path, String),
    target: Target,
    no_wait: bool,
) -> Result<(), CtlError> {
    if !target.force && target.file.exists() {
        return Err(CtlError::Exists(format!(
            "{} exists; choose another file or add --force to replace it",
            target.file.display()
        )));
    }
    let kek_pem = read_pem(pem_path)?;
    let path = format!("/v1/groups/{}/keys/{}/export-byok", seg(group)?, seg(key)?);
    let pending: Pending = ctx
        .send(Method::POST, &path, &ByokExport { kek_pem, kek_kid })
        .await?;
    let id = pending.approval.id.to_string();
    if no_wait {
        if !ctx.machine(&pending)? {
            say(&format!(
                "pending approval {id}: {}; once approved, write the file with `byokctl approval byok-file {id} -f {}`",
                pending.message,
                target.file.display()
            ))?;
        }
        return Ok(());
    }
    note(&format!(
        "pending approval {id}: {}\nwaiting for a second admin (Ctrl-C stops waiting; the request stays: `byokctl approval byok-file {id}` writes the file once approved)",
        pending.message
    ));
    let decided = wait_decided(ctx, &id).await?;
    match decided.status {
        ApprovalStatus::Approved => download(ctx, &id, &target).await,
        other => Err(CtlError::Api {
            status: 409,
            code: format!("approval_{}", other.as_str()),
            message: format!(
                "export {id} was not approved: it is {}{}; nothing was written",
                other.as_str(),
                decided
                    .outcome
                    .map(|o| format!(" ({o})"))
                    .unwrap_or_default()
            ),
        }),
    }
}

/// Polls approval `id` until it is no longer pending.
async fn wait_decided(ctx: &Ctx, id: &str) -> Result<Approval, CtlError> {
    let path = format!("/v1/approvals/{}", seg(id)?);
    loop {
        let a: Approval = ctx.get(&path).await?;
        if a.status != ApprovalStatus::Pending {
            return Ok(a);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Writes the file of approved export `id` to `target`, whole and checked.
pub(super) async fn download(ctx: &Ctx, id: &str, target: &Target) -> Result<(), CtlError> {
    let path = format!("/v1/approvals/{}/byok-file", seg(id)?);
    let (partial, mut out) = Partial::start(&target.file, target.force)?;
    let f: ByokFile = ctx.get(&path).await.map_err(|e| partial.not_written(e))?;
    check(&f)?;
    out.write_all(f.byok.as_bytes())
        .map_err(|e| io("cannot write", partial.path(), e))?;
    partial.publish(out)?;
    if !ctx.machine(&serde_json::json!({
        "file": target.file,
        "approval": f.approval,
        "group": f.group,
        "key": f.key,
        "kek_kid": f.kek_kid,
    }))? {
        say(&format!(
            "wrote {}: key {}/{} wrapped under {}\nimport it on a machine that reaches Azure: az keyvault key import --vault-name VAULT (--hsm-name POOL on a Managed HSM) --name {} --byok-file {} --kty RSA|EC|oct --ops ...\nthen record the version it made: byokctl key record-import {} {} --version VERSION",
            target.file.display(),
            f.group,
            f.key,
            f.kek_kid,
            f.group,
            target.file.display(),
            f.group,
            f.key
        ))?;
    }
    Ok(())
}

/// The answer is a `.byok` file for the KEK it names: refuse anything else before writing.
fn check(f: &ByokFile) -> Result<(), CtlError> {
    let bad = |why: &str| {
        CtlError::Other(format!(
            "the daemon's .byok file is not usable ({why}); nothing was written"
        ))
    };
    let v: serde_json::Value = serde_json::from_str(&f.byok).map_err(|e| bad(&e.to_string()))?;
    if v["schema_version"] != "1.0.0" || v["header"]["kid"] != f.kek_kid.as_str() {
        return Err(bad("its schema or KEK id is not the one asked for"));
    }
    if v["ciphertext"].as_str().is_none_or(str::is_empty) {
        return Err(bad("it has no ciphertext"));
    }
    Ok(())
}

fn read_pem(p: &Path) -> Result<String, CtlError> {
    let unreadable = |why: String| CtlError::Usage(format!("--kek-pem {}: {why}", p.display()));
    let meta = std::fs::metadata(p).map_err(|e| unreadable(e.to_string()))?;
    if meta.len() > MAX_PEM_BYTES as u64 {
        return Err(unreadable(format!(
            "{} bytes: not a public key file (az keyvault key download --encoding PEM writes one)",
            meta.len()
        )));
    }
    let text = std::fs::read(p).map_err(|e| unreadable(e.to_string()))?;
    String::from_utf8(text).map_err(|_| unreadable("not a PEM text file".into()))
}

/// Records the version a manual import made.
pub(super) async fn record_import(
    ctx: &Ctx,
    (group, key): (&str, &str),
    version: String,
) -> Result<(), CtlError> {
    let path = format!(
        "/v1/groups/{}/keys/{}/record-import",
        seg(group)?,
        seg(key)?
    );
    let done: ImportRecorded = ctx
        .send(Method::POST, &path, &RecordImport { version })
        .await?;
    if !ctx.machine(&done)? {
        let previous = done
            .previous_version
            .map(|v| format!(" (it replaces version {v})"))
            .unwrap_or_default();
        say(&format!(
            "key {group}/{key} is version {} in Azure{previous}: Azure shows the HSM key's public key",
            done.key.version.as_deref().unwrap_or_default()
        ))?;
    }
    Ok(())
}
