//! `byokctl log`: show (and follow) the service log, export it to a file whose chain is
//! verified before it is kept, and verify a file or the stored log.

use super::Ctx;
use crate::contract::{LogPage, LogVerdict};
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use crate::ctl::output::{self, Column};
use serde_json::{Value, json};

const LOG_COLS: &[Column] = &[
    ("SEQ", "seq"),
    ("TIME (UTC)", "ts"),
    ("SERVICE", "service"),
    ("LEVEL", "level"),
    ("EVENT", "event"),
    ("MESSAGE", "message"),
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
            follow,
        } => log_show(ctx, &filter, after, limit, follow).await,
        LogCmd::Export {
            filter,
            format,
            force,
            file,
        } => log_export(ctx, &filter, format, force, &file).await,
        LogCmd::Verify { file } => log_verify(ctx, file.as_deref()).await,
    }
}

async fn log_show(
    ctx: &Ctx,
    f: &LogFilter,
    mut after: u64,
    limit: usize,
    follow: bool,
) -> Result<(), CtlError> {
    let mut first = true;
    loop {
        let wait = if follow { "30" } else { "0" };
        let q = log_query(
            f,
            &[
                ("after", after.to_string()),
                ("limit", limit.to_string()),
                ("wait", wait.to_owned()),
            ],
        )?;
        let page: LogPage = ctx.get(&format!("/v1/logs?{q}")).await?;
        let records: Vec<Value> = page
            .records
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect();
        after = page.next_after;
        if ctx.output == Output::Json {
            if follow {
                for r in &records {
                    println!("{}", serde_json::to_string(r).unwrap_or_default());
                }
            } else {
                ctx.json(&page);
            }
        } else if follow {
            if !records.is_empty() || first {
                let table = output::table(&records, LOG_COLS);
                let mut lines = table.lines();
                if !first {
                    lines.next(); // the header, once
                }
                for l in lines {
                    println!("{l}");
                }
            }
        } else {
            println!("{}", output::table(&records, LOG_COLS));
            if page.more {
                eprintln!("more records: byokctl log show --after {after} (same filters)");
            }
        }
        first = false;
        if !follow {
            return Ok(());
        }
    }
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
    let exists = |p: &std::path::Path| {
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
    let io = |what: &str, p: &std::path::Path, e: std::io::Error| {
        CtlError::Other(format!("{what} {}: {e}", p.display()))
    };
    let result = async {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io("cannot create", &tmp, e))?;
        let q = log_query(f, &[("format", fmt.to_owned())])?;
        let got = ctx
            .client
            .download(&format!("/v1/logs/export?{q}"), &mut out)
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
        let text = std::fs::read_to_string(&tmp).map_err(|e| io("cannot read", &tmp, e))?;
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
        Ok(verdict)
    }
    .await;
    let verdict = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let summary = json!({
        "file": file.display().to_string(),
        "format": fmt,
        "records": verdict.full,
        "first_seq": verdict.first_seq,
        "last_seq": verdict.last_seq,
        "chain": "verified",
    });
    if !ctx.json(&summary) {
        println!(
            "{} record(s) written to {} ({fmt}, chain verified)",
            verdict.full,
            file.display()
        );
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
    if !ctx.json(&verdict) && verdict.broken.is_none() {
        println!(
            "{what}: chain intact: {} record(s), {} to {}",
            verdict.checked,
            seq(verdict.first_seq),
            seq(verdict.last_seq)
        );
    }
    match verdict.broken {
        None => Ok(()),
        Some(b) => Err(CtlError::ChainBroken(format!(
            "{what}: chain BROKEN at record {} (item {}): {}",
            b.seq, b.position, b.reason
        ))),
    }
}
