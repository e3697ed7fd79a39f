//! `byokctl backup create FILE`: downloads an online backup, checks its SHA-256 frame and
//! writes it atomically (the seal is checked by `byokd restore`, which has the HSM).

use super::download::{Partial, io};
use super::{BackupCmd, CtlError, Ctx};
use http::Method;
use std::path::Path;

pub(super) async fn backup(ctx: &Ctx, cmd: BackupCmd) -> Result<(), CtlError> {
    match cmd {
        BackupCmd::Create { force, file } => create(ctx, force, &file).await,
    }
}

async fn create(ctx: &Ctx, force: bool, file: &Path) -> Result<(), CtlError> {
    let (partial, mut out) = Partial::start(file, force)?;
    let got = ctx
        .client
        .download_as(Method::POST, "/v1/backup", &mut out)
        .await
        .map_err(|e| partial.not_written(e))?;
    if let Err(answer) = got {
        return Err(super::api_error(answer));
    }
    let reader =
        std::fs::File::open(partial.path()).map_err(|e| io("cannot read", partial.path(), e))?;
    let parsed = crate::store::backup::parse(std::io::BufReader::new(reader)).map_err(|e| {
        CtlError::Other(format!(
            "the downloaded backup does not check: {e}; {} was not written",
            file.display()
        ))
    })?;
    partial.publish(out)?;
    println!(
        "{}: backup of {} state record(s) and {} log segment(s), SHA-256 {}",
        file.display(),
        parsed.records,
        parsed.streams.len(),
        hex::encode(parsed.digest)
    );
    Ok(())
}
