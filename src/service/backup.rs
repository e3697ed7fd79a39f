//! Online backup: a consistent snapshot of the state and the service log, written while the
//! daemon runs. The state lock is held only to begin the store's read transaction; jobs and
//! commits go on while the snapshot is read. See `store::backup` for the file and its seal.

use super::Service;
use crate::hsm::HsmError;
use crate::secret::SecretBytes;
use crate::store::StoreError;
use crate::store::backup::{BackupError, BackupWriter, SEAL_AAD, end_frame};
use std::io::Write;
use std::path::Path;

/// What a finished backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    /// Records of the state (credentials, groups, keys, jobs, grace, drift).
    pub records: u64,
    /// Service log segments.
    pub log_segments: u64,
    /// The state generation the snapshot holds.
    pub generation: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupFailed {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("state: {0}")]
    Store(#[from] StoreError),
    #[error("sealing the backup's digest: {0}")]
    Hsm(#[from] HsmError),
    #[error("the backup task stopped: {0}")]
    Task(String),
}

impl Service {
    /// Writes a backup into `out`: the state as of the newest durable commit, the service log's
    /// segments, and the digest sealed by the HSM. Returns `out` and what was written.
    pub async fn backup_to<W: Write + Send + 'static>(
        &self,
        out: W,
    ) -> Result<(W, BackupSummary), BackupFailed> {
        let (snapshot, generation) = {
            let data = self.inner.data.lock().await;
            (data.store.snapshot()?, data.store.generation())
        };
        let logs_dir = crate::logs::installed().map(|l| l.dir().to_owned());
        let written = tokio::task::spawn_blocking(move || -> Result<_, BackupError> {
            let mut w = BackupWriter::new(out)?;
            let records = snapshot.write_to(&mut w)?;
            let log_segments = match logs_dir {
                Some(dir) => write_log_segments(&dir, &mut w)?,
                None => 0,
            };
            Ok((w, records, log_segments))
        })
        .await
        .map_err(|e| BackupFailed::Task(e.to_string()))?;
        let (writer, records, log_segments) = written?;
        let digest = writer.digest();
        let sealed = self
            .hsm()
            .seal(SEAL_AAD, &SecretBytes::new(digest.to_vec()))
            .await?;
        let mut out = writer.into_inner();
        let out = tokio::task::spawn_blocking(move || -> std::io::Result<W> {
            out.write_all(&end_frame(&digest, &sealed))?;
            out.flush()?;
            Ok(out)
        })
        .await
        .map_err(|e| BackupFailed::Task(e.to_string()))?
        .map_err(BackupError::from)?;
        Ok((
            out,
            BackupSummary {
                records,
                log_segments,
                generation,
            },
        ))
    }
}

/// Each log segment up to its last complete line (a line being appended meanwhile is left for
/// the next backup); a segment dropped by retention meanwhile is skipped.
fn write_log_segments<W: Write>(dir: &Path, w: &mut BackupWriter<W>) -> Result<u64, BackupError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("segment-") && n.ends_with(".log"))
        .collect();
    names.sort();
    let mut count = 0;
    for name in names {
        let bytes = match std::fs::read(dir.join(&name)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        w.stream(&name)?;
        w.data(&bytes[..complete])?;
        count += 1;
    }
    Ok(count)
}
