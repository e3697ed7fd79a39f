//! `byokctl log`: show (and follow) the service log, export it to a file whose chain is
//! verified before it is kept, and verify a file or the stored log.

use super::Ctx;
use super::download::{Partial, io};
use crate::contract::{Health, LogPage, LogVerdict};
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use crate::ctl::output::{self, Column, col, note, say, wide};
use crate::logs::record::Record;
use serde_json::{Value, json};
use std::collections::VecDeque;

const LOG_COLS: &[Column] = &[
    col("SEQ", "seq"),
    col("TIME (UTC)", "ts"),
    col("SERVICE", "service"),
    col("LEVEL", "level"),
    col("EVENT", "event"),
    wide("IDENTITY", "identity"),
    wide("JOB", "job"),
    wide("GROUP", "group"),
    wide("KEY", "key"),
    col("MESSAGE", "message"),
];

fn log_query(f: &LogFilter, extra: &[(&str, String)]) -> Result<String, CtlError> {
    use crate::logs::query::Filter;
    let mut filter = Filter::default();
    let mut set = |k: &str, v: &str| {
        filter
            .set(k, v)
            .map(drop)
            .map_err(|e| CtlError::Usage(format!("--{e}")))
    };
    for s in &f.service {
        set("service", &format!("{s:?}").to_lowercase())?;
    }
    if let Some(l) = f.level {
        set("level", &format!("{l:?}"))?;
    }
    for (k, v) in [
        ("since", &f.since),
        ("until", &f.until),
        ("group", &f.group),
        ("text", &f.text),
    ] {
        if let Some(v) = v {
            set(k, v)?;
        }
    }
    if let Some(j) = f.job {
        set("job", &j.to_string())?;
    }
    let mut pairs = filter.to_pairs();
    pairs.extend(extra.iter().cloned());
    Ok(crate::logs::query::encode(&pairs))
}

pub(super) async fn log(ctx: &Ctx, c: LogCmd) -> Result<(), CtlError> {
    match c {
        LogCmd::Show {
            filter,
            after,
            limit,
            tail,
            reverse,
            follow,
        } => {
            let show = Show {
                after,
                limit,
                tail,
                reverse,
                follow,
            };
            log_show(ctx, &filter, show).await
        }
        LogCmd::Export {
            filter,
            format,
            force,
            file,
        } => log_export(ctx, &filter, format, force, &file).await,
        LogCmd::Verify { file } => log_verify(ctx, file.as_deref()).await,
    }
}

/// What `log show` shows: a page from `after`, or the last `tail` records; newest first with
/// `reverse`; then new records as they come with `follow`.
struct Show {
    after: u64,
    limit: usize,
    tail: Option<usize>,
    reverse: bool,
    follow: bool,
}

/// One page of records from `after`, in sequence order.
async fn page(
    ctx: &Ctx,
    f: &LogFilter,
    after: u64,
    limit: usize,
    wait: u64,
) -> Result<LogPage, CtlError> {
    let q = log_query(
        f,
        &[
            ("after", after.to_string()),
            ("limit", limit.to_string()),
            ("wait", wait.to_string()),
        ],
    )?;
    ctx.get(&format!("/v1/logs?{q}")).await
}

/// The last `n` records matching the filters (after `after`), oldest first. The log is read
/// forward only, so this reads a window before the log's end, widening it until it holds `n`
/// matching records or reaches `after`.
async fn tail(ctx: &Ctx, f: &LogFilter, after: u64, n: usize) -> Result<Vec<Record>, CtlError> {
    let health: Health = ctx.get("/v1/health").await?;
    let end = health.logs.map_or(u64::MAX, |l| l.next_seq);
    let mut window = (n as u64).max(100);
    loop {
        let from = if end == u64::MAX {
            after
        } else {
            end.saturating_sub(window.saturating_add(1)).max(after)
        };
        let mut got: VecDeque<Record> = VecDeque::with_capacity(n + 1);
        let mut cursor = from;
        loop {
            let p = page(ctx, f, cursor, 1000, 0).await?;
            cursor = p.next_after;
            for r in p.records {
                got.push_back(r);
                if got.len() > n {
                    got.pop_front();
                }
            }
            if !p.more {
                break;
            }
        }
        if got.len() >= n || from <= after {
            return Ok(got.into());
        }
        window = window.saturating_mul(4);
    }
}

fn as_values(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect()
}

/// Prints records; `header` for the first batch of a table or TSV.
fn print_records(ctx: &Ctx, records: &[Record], header: bool) -> Result<(), CtlError> {
    let rows = as_values(records);
    if !header && rows.is_empty() {
        return Ok(());
    }
    let text = match ctx.output {
        Output::None => return Ok(()),
        Output::Json => {
            for r in &rows {
                say(&serde_json::to_string(r).unwrap_or_default())?;
            }
            return Ok(());
        }
        Output::Yaml => {
            for r in &rows {
                say(&format!("---\n{}", output::yaml(r)?.trim_end()))?;
            }
            return Ok(());
        }
        Output::Tsv => output::tsv(&rows, LOG_COLS),
        Output::Table | Output::Wide => output::table(&rows, LOG_COLS, ctx.output == Output::Wide),
    };
    let mut lines = text.lines();
    if !header {
        lines.next(); // the header, once
    }
    for l in lines {
        say(l)?;
    }
    Ok(())
}

async fn log_show(ctx: &Ctx, f: &LogFilter, s: Show) -> Result<(), CtlError> {
    let tail_n = match (s.tail, s.reverse) {
        (Some(n), _) => Some(n),
        (None, true) => Some(s.limit),
        (None, false) => None,
    };
    let (mut records, mut after, more) = match tail_n {
        Some(n) => {
            let records = tail(ctx, f, s.after, n).await?;
            let last = records.last().map_or(s.after, |r| r.seq);
            (records, last, false)
        }
        None => {
            let p = page(ctx, f, s.after, s.limit, 0).await?;
            (p.records, p.next_after, p.more)
        }
    };
    if s.reverse {
        records.reverse();
    }
    if s.follow {
        print_records(ctx, &records, true)?;
        loop {
            let p = page(ctx, f, after, s.limit, 30).await?;
            after = p.next_after;
            print_records(ctx, &p.records, false)?;
        }
    }
    let whole = LogPage {
        records,
        next_after: after,
        more,
    };
    if ctx.machine(&whole)? {
        return Ok(());
    }
    say(&output::table(
        &as_values(&whole.records),
        LOG_COLS,
        ctx.output == Output::Wide,
    ))?;
    if more {
        note(&format!(
            "more records: byokctl log show --after {after} (same filters)"
        ));
    }
    Ok(())
}

async fn log_export(
    ctx: &Ctx,
    f: &LogFilter,
    format: ExportFormat,
    force: bool,
    file: &std::path::Path,
) -> Result<(), CtlError> {
    let fmt = match format {
        ExportFormat::Jsonl => "jsonl",
        ExportFormat::Csv => "csv",
    };
    let (partial, mut out) = Partial::start(file, force)?;
    let q = log_query(f, &[("format", fmt.to_owned())])?;
    let got = ctx
        .client
        .download(&format!("/v1/logs/export?{q}"), &mut out)
        .await
        .map_err(|e| partial.not_written(e))?;
    if let Err(answer) = got {
        return Err(super::api_error(answer));
    }
    let text = std::fs::read_to_string(partial.path())
        .map_err(|e| io("cannot read", partial.path(), e))?;
    let verdict = crate::logs::export::verify_text(&text);
    if let Some(b) = &verdict.broken {
        return Err(CtlError::ChainBroken(format!(
            "the downloaded export does not verify at record {} (row {}): {}; {} was not written",
            b.seq,
            b.position,
            b.reason,
            file.display()
        )));
    }
    partial.publish(out)?;
    let summary = json!({
        "file": file.display().to_string(),
        "format": fmt,
        "records": verdict.full,
        "first_seq": verdict.first_seq,
        "last_seq": verdict.last_seq,
        "chain": "verified",
    });
    if !ctx.machine(&summary)? {
        say(&format!(
            "{} record(s) written to {} ({fmt}, chain verified)",
            verdict.full,
            file.display()
        ))?;
    }
    Ok(())
}

async fn log_verify(ctx: &Ctx, file: Option<&std::path::Path>) -> Result<(), CtlError> {
    let (what, verdict) = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CtlError::Usage(format!("cannot read {}: {e}", p.display())))?;
            (
                p.display().to_string(),
                crate::logs::export::verify_text(&text),
            )
        }
        None => {
            let v: LogVerdict = ctx.get("/v1/logs/verify").await?;
            ("the stored log".to_owned(), v.verdict)
        }
    };
    let seq = |s: Option<u64>| s.map_or_else(|| "null".to_owned(), |n| n.to_string());
    if !ctx.machine(&verdict)? && verdict.broken.is_none() {
        say(&format!(
            "{what}: chain intact: {} record(s), {} to {}",
            verdict.checked,
            seq(verdict.first_seq),
            seq(verdict.last_seq)
        ))?;
    }
    match verdict.broken {
        None => Ok(()),
        Some(b) => Err(CtlError::ChainBroken(format!(
            "{what}: chain BROKEN at record {} (item {}): {}",
            b.seq, b.position, b.reason
        ))),
    }
}
