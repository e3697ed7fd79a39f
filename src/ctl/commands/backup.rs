//! `byokctl backup create FILE`: downloads an online backup, checks its SHA-256 frame and
//! writes it atomically (the seal is checked by `byokd restore`, which has the HSM).

use super::{BackupCmd, CtlError, Ctx};
use http::Method;
use std::path::Path;

pub(super) async fn backup(ctx: &Ctx, cmd: BackupCmd) -> Result<(), CtlError> {
    match cmd {
        BackupCmd::Create { force, file } => create(ctx, force, &file).await,
    }
}

async fn create(ctx: &Ctx, force: bool, file: &Path) -> Result<(), CtlError> {
    let exists = |p: &Path| {
        CtlError::Exists(format!(
            "{} exists; choose another file or add --force to replace it",
            p.display()
        ))
    };
    if !force && file.exists() {
        return Err(exists(file));
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| CtlError::Usage(format!("{} is not a file name", file.display())))?;
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let io = |what: &str, p: &Path, e: std::io::Error| {
        CtlError::Other(format!("{what} {}: {e}", p.display()))
    };
    let result = async {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io("cannot create", &tmp, e))?;
        let got = ctx
            .client
            .download_as(Method::POST, "/v1/backup", &mut out)
            .await
            .map_err(|e| match e {
                CtlError::Connect(m) => {
                    CtlError::Connect(format!("{m}; {} was not written", file.display()))
                }
                e => e,
            })?;
        if let Err(answer) = got {
            return Err(super::api_error(answer));
        }
        out.sync_all().map_err(|e| io("cannot write", &tmp, e))?;
        let reader = std::fs::File::open(&tmp).map_err(|e| io("cannot read", &tmp, e))?;
        let parsed = crate::store::backup::parse(std::io::BufReader::new(reader)).map_err(|e| {
            CtlError::Other(format!(
                "the downloaded backup does not check: {e}; {} was not written",
                file.display()
            ))
        })?;
        if force {
            std::fs::rename(&tmp, file).map_err(|e| io("cannot write", file, e))?;
        } else {
            // A hard link never replaces an existing file, even one created meanwhile.
            std::fs::hard_link(&tmp, file).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    exists(file)
                } else {
                    io("cannot write", file, e)
                }
            })?;
            let _ = std::fs::remove_file(&tmp);
        }
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(parsed)
    }
    .await;
    let parsed = match result {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    println!(
        "{}: backup of {} state record(s) and {} log segment(s), SHA-256 {}",
        file.display(),
        parsed.records,
        parsed.streams.len(),
        hex::encode(parsed.digest)
    );
    Ok(())
}
