//! `/v1/logs`, `/v1/logs/export` and `/v1/logs/verify`: the service log, queried (with paging
//! and a follow wait), exported as a streamed JSONL or CSV download, and its chain checked.
//! Any mapped identity may read them: auditors and SIEM operators are the log's main users,
//! and records carry names and ids, never secrets.

use super::{Chunk, Download, Input, Reply};
use crate::contract::{LogPage, LogVerdict};
use crate::control::authz::{AnyRole, Authorized};
use crate::control::errors::ApiError;
use crate::logs::Event;
use crate::logs::export::{Exporter, Format};
use crate::logs::query::{self, Query};
use crate::logs::{Logs, store};
use bytes::Bytes;
use http::StatusCode;

/// Bytes per streamed chunk.
const CHUNK: usize = 64 * 1024;

fn logs() -> Result<Logs, ApiError> {
    crate::logs::installed().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "logs_unavailable",
            "the service log is not open in this process",
        )
    })
}

fn filter_error(e: query::FilterError) -> ApiError {
    ApiError::invalid(e.field, e.reason)
}

pub(super) fn decode_query(q: &str) -> Result<Query, ApiError> {
    query::parse(q, &[]).map(|(q, _)| q).map_err(filter_error)
}

pub(super) fn decode_export(q: &str) -> Result<(Query, Format), ApiError> {
    let (query, rest) = query::parse(q, &["format"]).map_err(filter_error)?;
    if query.after != 0 || query.wait != 0 || query.limit != query::DEFAULT_LIMIT {
        return Err(ApiError::invalid(
            "after",
            "an export takes filters only (service, level, since, until, job, group, text)",
        ));
    }
    let format = match rest.iter().find(|(k, _)| k == "format") {
        None => Format::Jsonl,
        Some((_, v)) => {
            Format::parse(v).ok_or_else(|| ApiError::invalid("format", "jsonl or csv"))?
        }
    };
    Ok((query, format))
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "logs_unavailable",
        e.to_string(),
    )
}

pub async fn query(_: Authorized<AnyRole>, i: Input) -> Result<Reply, ApiError> {
    let q = decode_query(&i.query)?;
    let records = logs()?.query(&q).await.map_err(unavailable)?;
    let next = records.last().map_or(q.after, |r| r.seq);
    let more = records.len() == q.limit;
    Reply::ok(&LogPage {
        records,
        next_after: next,
        more,
    })
}

pub async fn verify(_: Authorized<AnyRole>) -> Result<Reply, ApiError> {
    let verdict = logs()?.verify().await.map_err(unavailable)?;
    Reply::ok(&LogVerdict {
        ok: verdict.ok(),
        verdict,
    })
}

/// Sends what the exporter writes as chunks; a send error means the client left.
pub(super) struct ChunkWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Chunk>,
}

impl ChunkWriter {
    /// A writer that sends what it is given as chunks of a download (from a blocking thread).
    pub(super) fn new(tx: tokio::sync::mpsc::Sender<Chunk>) -> Self {
        Self {
            buf: Vec::with_capacity(CHUNK),
            tx,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Chunk::Data(chunk))
            .map_err(|_| std::io::Error::other("the client closed the download"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Streams an export. The answer (200) begins before the store is read, so a failure part-way
/// can no longer be a status: the stream is aborted instead (the client sees the chunked body
/// cut off), and the export's end row (see `logs::export`) is only written after the last
/// record, so a cut-off file is recognisable offline too.
pub fn export(who: Authorized<AnyRole>, i: Input) -> Result<Reply, ApiError> {
    let (q, format) = decode_export(&i.query)?;
    let logs = logs()?;
    let dir = logs.dir().to_owned();
    let identity = who.name().to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let done = tx.clone();
        let outcome = write_export(&dir, format, q.filter, tx);
        let last = match outcome {
            Ok(records) => {
                tracing::info!(event = Event::LogExported.as_str(), service = "control", identity = %identity, records,
                    "Service log export of {records} record(s) sent to {identity}");
                Chunk::End
            }
            Err(e) => {
                tracing::error!(event = Event::LogExportFailed.as_str(), service = "control", identity = %identity, error = %e,
                    "Service log export for {identity} aborted part-way: {e}");
                Chunk::Abort(e.to_string())
            }
        };
        let _ = done.blocking_send(last);
    });
    let ext = match format {
        Format::Jsonl => "jsonl",
        Format::Csv => "csv",
    };
    Ok(Reply {
        status: StatusCode::OK,
        body: serde_json::Value::Null,
        download: Some(Download {
            content_type: format.content_type(),
            filename: format!("byokd-log.{ext}"),
            chunks: rx,
        }),
    })
}

/// Writes the whole export into the channel; the number of records, or why it stopped.
fn write_export(
    dir: &std::path::Path,
    format: Format,
    filter: crate::logs::query::Filter,
    tx: tokio::sync::mpsc::Sender<Chunk>,
) -> std::io::Result<u64> {
    let out = ChunkWriter {
        buf: Vec::with_capacity(CHUNK),
        tx,
    };
    let mut ex = Exporter::new(out, format, filter)?;
    let mut failed = None;
    store::scan(dir, |r| match ex.push(&r) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })
    .map_err(std::io::Error::other)?;
    if let Some(e) = failed {
        return Err(e);
    }
    ex.finish().map(|(_, n)| n)
}
