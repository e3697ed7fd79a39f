//! byokctl's commands: each maps to one or two control API calls and prints the answer as a
//! table or JSON. Job-starting commands follow the job with a progress bar unless `--no-wait`.
//! One file per command group: `credentials`, `groups` (key groups and keys), `jobs` (jobs,
//! approvals, and following a started job), `logs`, and `status` (health, the designated flag,
//! completions and man pages).
//!
//! It owns reading local inputs (the secret file or stdin, dates) and printing. It never puts
//! the secret anywhere but the request body.

mod credentials;
mod groups;
mod jobs;
mod logs;
mod status;

use super::CtlError;
use super::cli::*;
use super::client::{Answer, Client};
use super::output::{self, Column};
use super::settings::Settings;
use http::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

pub(super) struct Ctx {
    pub(super) client: Client,
    pub(super) output: Output,
}

impl Ctx {
    pub(super) async fn call(
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

    pub(super) async fn get(&self, path: &str) -> Result<Value, CtlError> {
        Ok(self.call(Method::GET, path, None).await?.body)
    }

    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Answer, CtlError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CtlError::Other(e.to_string()))?;
        self.call(method, path, Some(&bytes)).await
    }

    pub(super) fn json(&self, v: &Value) -> bool {
        if self.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            true
        } else {
            false
        }
    }

    pub(super) fn list(&self, v: &Value, field: &str, cols: &[Column]) {
        if !self.json(v) {
            let rows = v
                .get(field)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            println!("{}", output::table(&rows, cols));
        }
    }

    pub(super) fn show(&self, v: &Value) {
        if !self.json(v) {
            println!("{}", output::record(v));
        }
    }

    /// Prints an answer that may be 202 with a pending approval.
    pub(super) fn done(&self, a: &Answer, what: &str) {
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
        Command::GenerateCompletions { dir } => return status::generate_completions(dir),
        Command::GenerateMan { dir } => return status::generate_man(dir),
        _ => {}
    }
    let settings = Settings::resolve(&cli.global)?;
    let ctx = Ctx {
        client: Client::new(&settings, Duration::from_secs(cli.global.timeout.max(1)))?,
        output: cli.global.output,
    };
    match cli.command {
        Command::Credential(c) => credentials::credential(&ctx, c).await,
        Command::Group(c) => groups::group(&ctx, c).await,
        Command::Key(c) => groups::key(&ctx, c).await,
        Command::Approval(c) => jobs::approval(&ctx, c).await,
        Command::Job(c) => jobs::job(&ctx, c).await,
        Command::Log(c) => logs::log(&ctx, c).await,
        Command::Designated(c) => status::designated(&ctx, c).await,
        Command::Status => status::status(&ctx).await,
        Command::GenerateCompletions { .. } | Command::GenerateMan { .. } => Ok(()),
    }
}

/// A path segment as typed; names with characters outside the API's name rules are refused
/// by the server (400), so no escaping is needed beyond refusing '/', '?', '#' and '%'.
pub(super) fn seg(s: &str) -> Result<&str, CtlError> {
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
