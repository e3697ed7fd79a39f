//! `POST /v1/backup`: an online backup of the state and the service log, streamed as the
//! answer (admin only). Jobs keep running; see `service::backup` and `store::backup`.

use super::logs::ChunkWriter;
use super::{Chunk, Ctx, Download, Reply};
use crate::control::authz::{Admin, Authorized};
use crate::control::errors::ApiError;
use crate::logs::Event;
use http::StatusCode;

/// Streams a backup. The answer (200) begins before the snapshot is read, so a failure part-way
/// aborts the stream (the client sees it cut off); the file's sealed end frame comes last, so a
/// cut-off file is recognisable at restore too.
pub fn create(who: Authorized<Admin>, ctx: &Ctx) -> Result<Reply, ApiError> {
    let service = ctx.service.clone();
    let identity = who.name().to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let last = match service.backup_to(ChunkWriter::new(tx.clone())).await {
            Ok((_, done)) => {
                tracing::info!(event = Event::BackupCreated.as_str(), service = "control", identity = %identity,
                    records = done.records, log_segments = done.log_segments, generation = done.generation,
                    "Backup of state generation {} ({} records, {} log segments) sent to {identity}",
                    done.generation, done.records, done.log_segments);
                Chunk::End
            }
            Err(e) => {
                tracing::error!(event = Event::BackupFailed.as_str(), service = "control", identity = %identity, error = %e,
                    "Backup for {identity} broke off: {e}");
                Chunk::Abort(e.to_string())
            }
        };
        let _ = tx.send(last).await;
    });
    Ok(Reply {
        status: StatusCode::OK,
        body: serde_json::Value::Null,
        download: Some(Download {
            content_type: "application/octet-stream",
            filename: "byokd.backup".into(),
            chunks: rx,
        }),
    })
}
