//! byokctl's commands: each maps to one or two control API calls and prints the answer as a
//! table or JSON. Job-starting commands follow the job with a progress bar unless `--no-wait`.
//!
//! It owns reading local inputs (the secret file or stdin, dates) and printing. It never puts
//! the secret anywhere but the request body.

use super::CtlError;
use super::cli::*;
use super::client::{Answer, Client};
use super::output::{self, Column, Progress};
use super::settings::Settings;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::Read;
use std::time::Duration;
use zeroize::Zeroizing;

const CREDENTIAL_COLS: &[Column] = &[
    ("NAME", "name"),
    ("TENANT", "tenant_id"),
    ("CLIENT", "client_id"),
    ("FINGERPRINT", "fingerprint"),
    ("EXPIRES", "expires"),
    ("GROUPS", "groups"),
];
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
const APPROVAL_COLS: &[Column] = &[
    ("ID", "id"),
    ("STATUS", "status"),
    ("ACTION", "summary"),
    ("REQUESTED BY", "requested_by"),
    ("EXPIRES", "expires_at"),
    ("DECIDED BY", "decided_by"),
    ("JOB", "job_id"),
];
const JOB_COLS: &[Column] = &[
    ("ID", "id"),
    ("KIND", "kind"),
    ("STATE", "state"),
    ("GROUP", "group"),
    ("CREATED", "created"),
];

struct Ctx {
    client: Client,
    output: Output,
}

impl Ctx {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, CtlError> {
        let answer = self.client.call(method, path, body).await?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        let err = answer.body.get("error");
        let text = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Err(CtlError::Api {
            status: answer.status.as_u16(),
            code: if text("code").is_empty() {
                answer.status.to_string()
            } else {
                text("code")
            },
            message: text("message"),
        })
    }

    async fn get(&self, path: &str) -> Result<Value, CtlError> {
        Ok(self.call(Method::GET, path, None).await?.body)
    }

    async fn send(&self, method: Method, path: &str, body: &Value) -> Result<Answer, CtlError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CtlError::Other(e.to_string()))?;
        self.call(method, path, Some(&bytes)).await
    }

    fn json(&self, v: &Value) -> bool {
        if self.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            true
        } else {
            false
        }
    }

    fn list(&self, v: &Value, field: &str, cols: &[Column]) {
        if !self.json(v) {
            let rows = v
                .get(field)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            println!("{}", output::table(&rows, cols));
        }
    }

    fn show(&self, v: &Value) {
        if !self.json(v) {
            println!("{}", output::record(v));
        }
    }

    /// Prints an answer that may be 202 with a pending approval.
    fn done(&self, a: &Answer, what: &str) {
        if self.json(&a.body) {
            return;
        }
        if a.status == StatusCode::ACCEPTED
            && let Some(ap) = a.body.get("approval")
        {
            let id = ap.get("id").and_then(Value::as_str).unwrap_or("?");
            println!(
                "pending approval {id}: {}",
                a.body.get("message").and_then(Value::as_str).unwrap_or("")
            );
            return;
        }
        println!("{what}");
    }
}

pub async fn run(cli: Cli) -> Result<(), CtlError> {
    match &cli.command {
        Command::GenerateCompletions { dir } => return generate_completions(dir),
        Command::GenerateMan { dir } => return generate_man(dir),
        _ => {}
    }
    let settings = Settings::resolve(&cli.global)?;
    let ctx = Ctx {
        client: Client::new(&settings, Duration::from_secs(cli.global.timeout.max(1)))?,
        output: cli.global.output,
    };
    match cli.command {
        Command::Credential(c) => credential(&ctx, c).await,
        Command::Group(c) => group(&ctx, c).await,
        Command::Key(c) => key(&ctx, c).await,
        Command::Approval(c) => approval(&ctx, c).await,
        Command::Job(c) => job(&ctx, c).await,
        Command::Log(c) => log(&ctx, c).await,
        Command::Designated(c) => designated(&ctx, c).await,
        Command::Status => status(&ctx).await,
        Command::GenerateCompletions { .. } | Command::GenerateMan { .. } => Ok(()),
    }
}

/// A path segment as typed; names with characters outside the API's name rules are refused
/// by the server (400), so no escaping is needed beyond refusing '/', '?', '#' and '%'.
fn seg(s: &str) -> Result<&str, CtlError> {
    if s.is_empty() || s.contains(['/', '?', '#', '%']) || s.chars().any(char::is_whitespace) {
        return Err(CtlError::Usage(format!("{s:?} is not a valid name")));
    }
    Ok(s)
}

/// `YYYY-MM-DD` (midnight UTC), RFC 3339, or Unix seconds.
pub fn parse_date(s: &str) -> Result<i64, CtlError> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .map_err(|_| {
            CtlError::Usage(format!(
                "date {s:?}: use YYYY-MM-DD, RFC 3339 or Unix seconds"
            ))
        })
}

fn read_secret(file: Option<&std::path::Path>, stdin: bool) -> Result<Zeroizing<String>, CtlError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    match (file, stdin) {
        (Some(p), _) => {
            let mut f = std::fs::File::open(p)
                .map_err(|e| CtlError::Usage(format!("secret file {}: {e}", p.display())))?;
            f.read_to_end(&mut bytes)
                .map_err(|e| CtlError::Usage(format!("secret file {}: {e}", p.display())))?;
        }
        (None, true) => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| CtlError::Usage(format!("reading the secret from stdin: {e}")))?;
        }
        (None, false) => {
            return Err(CtlError::Usage(
                "give --secret-file PATH or --secret-stdin".into(),
            ));
        }
    }
    let trimmed = Zeroizing::new(crate::secret::trim_trailing_newline(std::mem::take(
        &mut *bytes,
    )));
    let text = std::str::from_utf8(&trimmed)
        .map_err(|_| CtlError::Usage("the secret is not UTF-8 text".into()))?;
    if text.is_empty() {
        return Err(CtlError::Usage("the secret is empty".into()));
    }
    Ok(Zeroizing::new(text.to_owned()))
}

async fn credential(ctx: &Ctx, c: CredentialCmd) -> Result<(), CtlError> {
    match c {
        CredentialCmd::Add {
            name,
            tenant_id,
            client_id,
            secret_file: _,
            secret_stdin: _,
            certificate: true,
            validity_days,
            expires: _,
        } => {
            let a = ctx
                .send(
                    Method::POST,
                    "/v1/credentials",
                    &json!({ "name": name, "tenant_id": tenant_id, "client_id": client_id,
                        "certificate": true, "validity_days": validity_days }),
                )
                .await?;
            ctx.show(&a.body);
        }
        CredentialCmd::Add {
            name,
            tenant_id,
            client_id,
            secret_file,
            secret_stdin,
            certificate: false,
            validity_days: _,
            expires,
        } => {
            let secret = read_secret(secret_file.as_deref(), secret_stdin)?;
            let expires = expires.as_deref().map(parse_date).transpose()?;
            #[derive(serde::Serialize)]
            struct Body<'a> {
                name: &'a str,
                tenant_id: &'a str,
                client_id: &'a str,
                secret: &'a str,
                expires: Option<i64>,
            }
            let body = Body {
                name: &name,
                tenant_id: &tenant_id,
                client_id: &client_id,
                secret: &secret,
                expires,
            };
            let mut bytes = Zeroizing::new(Vec::with_capacity(secret.len() * 6 + 1024));
            serde_json::to_writer(&mut *bytes, &body)
                .map_err(|e| CtlError::Other(e.to_string()))?;
            let a = ctx
                .call(Method::POST, "/v1/credentials", Some(&bytes))
                .await?;
            ctx.show(&a.body);
        }
        CredentialCmd::Certificate { name, csr, file } => {
            let path = format!(
                "/v1/credentials/{}/certificate{}",
                seg(&name)?,
                if csr { "?format=csr" } else { "" }
            );
            let v = ctx.get(&path).await?;
            let field = if csr { "csr_pem" } else { "certificate_pem" };
            let pem = v.get(field).and_then(Value::as_str).unwrap_or_default();
            match file {
                Some(file) => {
                    std::fs::write(&file, pem).map_err(|e| {
                        CtlError::Other(format!("cannot write {}: {e}", file.display()))
                    })?;
                    if !ctx.json(&v) {
                        eprintln!("wrote {}", file.display());
                        if let Some(t) = v.get("thumbprint").and_then(Value::as_str) {
                            eprintln!("thumbprint (SHA-1): {t}");
                        }
                    }
                }
                None => {
                    if !ctx.json(&v) {
                        print!("{pem}");
                    }
                }
            }
        }
        CredentialCmd::List => ctx.list(
            &ctx.get("/v1/credentials").await?,
            "credentials",
            CREDENTIAL_COLS,
        ),
        CredentialCmd::Show { name } => {
            ctx.show(&ctx.get(&format!("/v1/credentials/{}", seg(&name)?)).await?)
        }
        CredentialCmd::SetExpiry { name, date, clear } => {
            let expires = if clear {
                None
            } else {
                date.as_deref().map(parse_date).transpose()?
            };
            let a = ctx
                .send(
                    Method::PATCH,
                    &format!("/v1/credentials/{}", seg(&name)?),
                    &json!({ "expires": expires }),
                )
                .await?;
            ctx.show(&a.body);
        }
        CredentialCmd::Delete { name } => {
            let a = ctx
                .call(
                    Method::DELETE,
                    &format!("/v1/credentials/{}", seg(&name)?),
                    None,
                )
                .await?;
            ctx.done(&a, &format!("credential {name} deleted"));
        }
    }
    Ok(())
}

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

async fn group(ctx: &Ctx, c: GroupCmd) -> Result<(), CtlError> {
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

async fn key(ctx: &Ctx, c: KeyCmd) -> Result<(), CtlError> {
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

/// Starts a job (202 with `job.id`), then follows it unless `--no-wait`.
async fn start_job(ctx: &Ctx, path: &str, wait: JobWait) -> Result<(), CtlError> {
    let a = ctx.call(Method::POST, path, None).await?;
    // A dual-control request: its job waits in `waiting-approval`; nothing to follow yet.
    if a.body.get("approval").is_some() {
        ctx.done(&a, "accepted");
        return Ok(());
    }
    let job = a
        .body
        .get("job")
        .and_then(|j| j.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    match job {
        Some(id) if !wait.no_wait => watch(ctx, &id).await,
        Some(id) => {
            if !ctx.json(&a.body) {
                println!("job {id} started; follow it with `byokctl job watch {id}`");
            }
            Ok(())
        }
        None => {
            ctx.done(&a, "accepted");
            Ok(())
        }
    }
}

/// Long-polls a job until it ends, drawing progress; a failed job is exit code 6.
async fn watch(ctx: &Ctx, id: &str) -> Result<(), CtlError> {
    let id = seg(id)?;
    let mut progress = Progress::new();
    loop {
        let job = ctx.get(&format!("/v1/jobs/{id}?wait=10")).await?;
        let state = job
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let p = job.get("progress");
        let num = |k: &str| {
            p.and_then(|p| p.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let step = job.get("step").and_then(Value::as_str).unwrap_or("");
        if ctx.output == Output::Table {
            progress.update(&state, num("done"), num("total"), step);
        }
        match state.as_str() {
            "succeeded" | "done" | "failed" | "cancelled" => {
                progress.finish();
                ctx.show(&job);
                return if state == "succeeded" || state == "done" {
                    Ok(())
                } else {
                    Err(CtlError::JobFailed(id.to_owned()))
                };
            }
            _ => {}
        }
    }
}

async fn approval(ctx: &Ctx, c: ApprovalCmd) -> Result<(), CtlError> {
    match c {
        ApprovalCmd::List { status } => {
            let path = match status {
                Some(s) => format!("/v1/approvals?status={}", seg(&s)?),
                None => "/v1/approvals".to_owned(),
            };
            ctx.list(&ctx.get(&path).await?, "approvals", APPROVAL_COLS);
        }
        ApprovalCmd::Show { id } => {
            ctx.show(&ctx.get(&format!("/v1/approvals/{}", seg(&id)?)).await?)
        }
        ApprovalCmd::Approve { id } => {
            let a = ctx
                .call(
                    Method::POST,
                    &format!("/v1/approvals/{}/approve", seg(&id)?),
                    None,
                )
                .await?;
            ctx.show(&a.body);
        }
        ApprovalCmd::Reject { id } => {
            let a = ctx
                .call(
                    Method::POST,
                    &format!("/v1/approvals/{}/reject", seg(&id)?),
                    None,
                )
                .await?;
            ctx.show(&a.body);
        }
    }
    Ok(())
}

async fn job(ctx: &Ctx, c: JobCmd) -> Result<(), CtlError> {
    match c {
        JobCmd::List => ctx.list(&ctx.get("/v1/jobs").await?, "jobs", JOB_COLS),
        JobCmd::Show { id } => ctx.show(&ctx.get(&format!("/v1/jobs/{}", seg(&id)?)).await?),
        JobCmd::Watch { id } => watch(ctx, &id).await?,
        JobCmd::Cancel { id } => {
            let a = ctx
                .call(
                    Method::POST,
                    &format!("/v1/jobs/{}/cancel", seg(&id)?),
                    None,
                )
                .await?;
            ctx.show(a.body.get("job").unwrap_or(&a.body));
        }
    }
    Ok(())
}

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

async fn log(ctx: &Ctx, c: LogCmd) -> Result<(), CtlError> {
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
        let page = ctx.get(&format!("/v1/logs?{q}")).await?;
        let records = page
            .get("records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        after = page
            .get("next_after")
            .and_then(Value::as_u64)
            .unwrap_or(after);
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
            if page.get("more") == Some(&json!(true)) {
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
            let err = answer.body.get("error");
            let text = |k: &str| {
                err.and_then(|e| e.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            return Err(CtlError::Api {
                status: answer.status.as_u16(),
                code: text("code"),
                message: text("message"),
            });
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
                serde_json::to_value(crate::logs::export::verify_text(&text)).unwrap_or_default(),
            )
        }
        None => {
            let v = ctx.get("/v1/logs/verify").await?;
            (
                "the stored log".to_owned(),
                v.get("verdict").cloned().unwrap_or_default(),
            )
        }
    };
    let broken = verdict.get("broken").filter(|b| !b.is_null()).cloned();
    if !ctx.json(&verdict) && broken.is_none() {
        {
            println!(
                "{what}: chain intact: {} record(s), {} to {}",
                verdict.get("checked").unwrap_or(&json!(0)),
                verdict.get("first_seq").unwrap_or(&json!(null)),
                verdict.get("last_seq").unwrap_or(&json!(null))
            );
        }
    }
    match broken {
        None => Ok(()),
        Some(b) => Err(CtlError::ChainBroken(format!(
            "{what}: chain BROKEN at record {} (item {}): {}",
            b.get("seq").unwrap_or(&json!(null)),
            b.get("position").unwrap_or(&json!(null)),
            b.get("reason").and_then(Value::as_str).unwrap_or("")
        ))),
    }
}

async fn designated(ctx: &Ctx, c: DesignatedCmd) -> Result<(), CtlError> {
    let v = match c {
        DesignatedCmd::Get => ctx.get("/v1/config/designated").await?,
        DesignatedCmd::Set { value } => {
            ctx.send(
                Method::PUT,
                "/v1/config/designated",
                &json!({ "designated": value }),
            )
            .await?
            .body
        }
    };
    if !ctx.json(&v) {
        let d = v
            .get("designated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        println!(
            "{}",
            if d {
                "designated: yes (this appliance pushes to the cloud)"
            } else {
                "designated: no"
            }
        );
    }
    Ok(())
}

async fn status(ctx: &Ctx) -> Result<(), CtlError> {
    let health = ctx.get("/v1/health").await?;
    let me = ctx.get("/v1/whoami").await?;
    let both = json!({ "health": health, "whoami": me });
    if ctx.json(&both) {
        return Ok(());
    }
    let s = |v: &Value, p: &str| {
        v.pointer(p)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    println!(
        "daemon      byokd {} ({})",
        s(&health, "/version"),
        if health.get("ready") == Some(&json!(true)) {
            "ready"
        } else {
            "NOT READY"
        }
    );
    println!(
        "hsm         {} (token {}, {} {})",
        s(&health, "/hsm/detail"),
        s(&health, "/hsm/token"),
        s(&health, "/hsm/model"),
        s(&health, "/hsm/serial")
    );
    println!(
        "wrap        {} ({})",
        s(&health, "/hsm/wrap_strategy").replace("null", "none"),
        s(&health, "/hsm/wrap_summary")
    );
    println!("state       generation {}", s(&health, "/state/generation"));
    println!("designated  {}", s(&health, "/designated"));
    if health.get("logs").is_some_and(|l| !l.is_null()) {
        println!(
            "logs        {} (next record {}, {} segment(s), {} bytes)",
            match health.pointer("/logs/write/error").and_then(Value::as_str) {
                Some(e) => format!("DEGRADED: {e}"),
                None => "ok".to_owned(),
            },
            s(&health, "/logs/next_seq"),
            s(&health, "/logs/segments"),
            s(&health, "/logs/bytes")
        );
        let refused = health
            .pointer("/logs/unattributed/refused")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if refused > 0 || health.pointer("/logs/unattributed/refusing") == Some(&json!(true)) {
            println!(
                "unattrib.   records of peers without a certificate: {} of {} bytes kept; {} REFUSED (the share is full)",
                s(&health, "/logs/unattributed/bytes"),
                s(&health, "/logs/unattributed/reserve"),
                refused
            );
        }
        for f in health
            .pointer("/logs/forwarders")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            println!(
                "syslog      {} {} ({}, sent {}, queued {}, dropped {})",
                s(f, "/transport"),
                s(f, "/address"),
                if f.get("connected") == Some(&json!(true)) {
                    "connected"
                } else {
                    "NOT CONNECTED"
                },
                s(f, "/sent"),
                s(f, "/queued"),
                s(f, "/dropped")
            );
        }
    }
    println!("you         {} ({})", s(&me, "/identity"), s(&me, "/role"));
    Ok(())
}

fn generate_completions(dir: &std::path::Path) -> Result<(), CtlError> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    std::fs::create_dir_all(dir).map_err(|e| CtlError::Usage(format!("{}: {e}", dir.display())))?;
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let path = clap_complete::generate_to(shell, &mut Cli::command(), "byokctl", dir)
            .map_err(|e| CtlError::Other(format!("{}: {e}", dir.display())))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn generate_man(dir: &std::path::Path) -> Result<(), CtlError> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).map_err(|e| CtlError::Usage(format!("{}: {e}", dir.display())))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| CtlError::Other(format!("{}: {e}", dir.display())))?;
    println!("{}", dir.join("byokctl.1").display());
    Ok(())
}
