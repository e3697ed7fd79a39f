//! byokctl's commands: each maps to one or two control API calls and prints the answer as a
//! table or JSON. Job-starting commands follow the job with a progress bar unless `--no-wait`.
//! One file per command group: `credentials`, `groups` (key groups and keys), `jobs` (jobs,
//! approvals, and following a started job), `logs`, and `status` (health, the designated flag,
//! completions and man pages).
//!
//! It owns reading local inputs (the secret file or stdin, dates) and printing. It never puts
//! the secret anywhere but the request body.

mod backup;
mod byok;
mod credentials;
mod download;
mod groups;
mod jobs;
mod logs;
mod public;
mod status;

use super::CtlError;
use super::cli::*;
use super::client::{Answer, Client};
use super::output::{self, Column, say};
use super::settings::Settings;
use crate::contract::{ErrorAnswer, Pending, Timestamp};
use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

pub(super) struct Ctx {
    pub(super) client: Client,
    pub(super) output: Output,
}

impl Ctx {
    /// Calls the API; an error answer becomes [`CtlError::Api`] with its code and message.
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
        Err(api_error(answer))
    }

    /// `GET`s a typed answer.
    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CtlError> {
        typed(path, self.call(Method::GET, path, None).await?)
    }

    /// Sends a request body of the contract and reads the typed answer.
    pub(super) async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, CtlError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CtlError::Other(e.to_string()))?;
        typed(path, self.call(method, path, Some(&bytes)).await?)
    }

    /// Prints `v` in a machine format (`json`, `yaml`, `tsv`) or not at all (`none`); false
    /// for `table` and `wide`, which the caller prints its own way.
    pub(super) fn machine<T: Serialize>(&self, v: &T) -> Result<bool, CtlError> {
        output::machine(self.output, v)
    }

    /// Prints the list in `v`'s `field` as a table (or `v` in a machine format).
    pub(super) fn list<T: Serialize>(
        &self,
        v: &T,
        field: &str,
        cols: &[Column],
    ) -> Result<(), CtlError> {
        output::list(self.output, v, field, cols)
    }

    /// Prints `v` describe-style (or in a machine format).
    pub(super) fn show<T: Serialize>(&self, v: &T) -> Result<(), CtlError> {
        output::record(self.output, v)
    }

    /// Prints an answer that may be 202 with a pending approval, or `what` when it is done.
    pub(super) fn done(&self, path: &str, a: Answer, what: &str) -> Result<(), CtlError> {
        if a.status == StatusCode::ACCEPTED {
            let pending: Pending = typed(path, a)?;
            if !self.machine(&pending)? {
                say(&format!(
                    "pending approval {}: {}",
                    pending.approval.id, pending.message
                ))?;
            }
        } else if !self.machine(&a.body)? {
            say(what)?;
        }
        Ok(())
    }
}

/// An answer's body as the contract type `T`.
pub(super) fn typed<T: DeserializeOwned>(path: &str, a: Answer) -> Result<T, CtlError> {
    serde_json::from_value(a.body).map_err(|e| {
        CtlError::Other(format!(
            "the daemon's answer to {path} is not what this byokctl understands ({e}); use a byokctl of the daemon's version"
        ))
    })
}

/// An error answer as [`CtlError::Api`].
pub(super) fn api_error(answer: Answer) -> CtlError {
    let status = answer.status;
    match serde_json::from_value::<ErrorAnswer>(answer.body) {
        Ok(e) => CtlError::Api {
            status: status.as_u16(),
            code: e.error.code,
            message: e.error.message,
        },
        Err(_) => CtlError::Api {
            status: status.as_u16(),
            code: status.to_string(),
            message: String::new(),
        },
    }
}

pub async fn run(cli: Cli) -> Result<(), CtlError> {
    match &cli.command {
        Command::Completion { shell } => return status::completion(*shell),
        Command::GenerateCompletions { dir } => return status::generate_completions(dir),
        Command::GenerateMan {
            dir,
            config_reference,
        } => return status::generate_man(dir, config_reference),
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
        Command::Backup(c) => backup::backup(&ctx, c).await,
        Command::Status => status::status(&ctx).await,
        Command::Completion { .. }
        | Command::GenerateCompletions { .. }
        | Command::GenerateMan { .. } => Ok(()),
    }
}

/// A value enum's name on the command line (the API's name for it).
pub(super) fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
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
pub fn parse_date(s: &str) -> Result<Timestamp, CtlError> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(Timestamp::from_unix(n));
    }
    if let Some(t) = Timestamp::parse(s) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| Timestamp::from_unix(d.midnight().assume_utc().unix_timestamp()))
        .map_err(|_| {
            CtlError::Usage(format!(
                "date {s:?}: use YYYY-MM-DD, RFC 3339 or Unix seconds"
            ))
        })
}
