//! Handlers: one function per route, grouped by resource. Each takes an
//! [`Authorized`](super::authz::Authorized) proof whose policy is the route's role rule, so the
//! dispatcher must pass the policy check before any handler can run.
//!
//! Handlers decode (see `decode`) request bodies of the contract (`crate::contract`), call the
//! service, and build the answer as a contract type. They never touch the HSM or the state
//! directly, and never return a secret.

mod approvals;
mod backup;
mod byok;
mod cloud;
mod config;
mod credentials;
mod groups;
mod health;
mod jobs;
mod keys;
mod logs;
mod verify;

use super::authz::require;
use super::decode;
use super::errors::ApiError;
use super::identity::Caller;
use super::routes::{Op, Params};
use crate::service::Service;
use http::StatusCode;
use serde_json::Value;

/// How many seconds a request will wait for something to happen (a long-poll: `GET /v1/logs`
/// and `GET /v1/jobs/{job}` with `?wait=`), read by the very decoder its handler uses, so the
/// per-identity long-poll count can never miss a wait the handler honours (a repeated or
/// percent-encoded `wait` included). 0 for every other request, and for a query the handler
/// refuses at once.
pub fn wait_secs(op: Op, query: &str) -> u64 {
    match op {
        Op::QueryLogs => logs::decode_query(query).map_or(0, |q| q.wait),
        Op::ShowJob => jobs::decode_wait(query).unwrap_or(0),
        _ => 0,
    }
}

/// What every handler may use.
#[derive(Clone)]
pub struct Ctx {
    pub service: Service,
    /// Dual control: approvals and the jobs that wait for them.
    pub dual: crate::dual_control::DualControl,
    /// The job runner; `None` only where the daemon runs without the Azure layer (tests of the
    /// control API alone).
    pub jobs: Option<crate::jobs::Jobs>,
}

/// A decoded request line and its body.
#[derive(Debug, Default)]
pub struct Input {
    pub params: Params,
    pub query: String,
    pub body: zeroize::Zeroizing<Vec<u8>>,
}

/// A successful answer: JSON, or a streamed download.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub download: Option<Download>,
}

/// A streamed download: chunks arrive on `chunks` until [`Chunk::End`]. [`Chunk::Abort`], or
/// a sender dropped before `End`, aborts the answer mid-stream (the client sees it cut off).
#[derive(Debug)]
pub struct Download {
    pub content_type: &'static str,
    pub filename: String,
    pub chunks: tokio::sync::mpsc::Receiver<Chunk>,
}

/// One piece of a streamed download.
#[derive(Debug)]
pub enum Chunk {
    Data(bytes::Bytes),
    /// The download is complete.
    End,
    /// The download failed part-way (the reason goes to the daemon's log, not the client).
    Abort(String),
}

impl Reply {
    /// 200 with an answer of the contract (`crate::contract`).
    pub fn ok<T: serde::Serialize>(answer: &T) -> Result<Reply, ApiError> {
        Self::json(StatusCode::OK, answer)
    }

    /// 201 with the created resource.
    pub fn created<T: serde::Serialize>(answer: &T) -> Result<Reply, ApiError> {
        Self::json(StatusCode::CREATED, answer)
    }

    /// 202: a job started, or a request waits for a second admin.
    pub fn accepted<T: serde::Serialize>(answer: &T) -> Result<Reply, ApiError> {
        Self::json(StatusCode::ACCEPTED, answer)
    }

    fn json<T: serde::Serialize>(status: StatusCode, answer: &T) -> Result<Reply, ApiError> {
        Ok(Reply {
            status,
            body: to_json(answer)?,
            download: None,
        })
    }
}

/// Serializes a view; views are plain data, so failure would be a bug.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot encode the answer: {e}"),
        )
    })
}

/// Runs a route's handler once the caller passed the handler's policy.
pub async fn dispatch(ctx: &Ctx, caller: &Caller, op: Op, input: Input) -> Result<Reply, ApiError> {
    if !op.takes_body() {
        decode::no_body(&input.body)?;
    }
    let i = input;
    match op {
        Op::Health => health::health(require(caller)?, ctx).await,
        Op::Whoami => health::whoami(require(caller)?, caller),
        Op::ListCredentials => credentials::list(require(caller)?, ctx).await,
        Op::AddCredential => credentials::add(require(caller)?, ctx, i).await,
        Op::ShowCredential => credentials::show(require(caller)?, ctx, i).await,
        Op::UpdateCredential => credentials::update(require(caller)?, ctx, i).await,
        Op::DeleteCredential => credentials::delete(require(caller)?, ctx, i).await,
        Op::CredentialCertificate => credentials::certificate(require(caller)?, ctx, i).await,
        Op::ListGroups => groups::list(require(caller)?, ctx).await,
        Op::CreateGroup => groups::create(require(caller)?, ctx, i).await,
        Op::ShowGroup => groups::show(require(caller)?, ctx, i).await,
        Op::UpdateGroup => groups::update(require(caller)?, ctx, i).await,
        Op::DeleteGroup => groups::delete(require(caller)?, ctx, i).await,
        Op::SyncGroup => cloud::sync_group(require(caller)?, ctx, i).await,
        Op::RotateGroup => cloud::rotate_group(require(caller)?, ctx, i).await,
        Op::DeleteGroupCloud => cloud::delete_cloud(require(caller)?, ctx, i).await,
        Op::PurgeGroup => cloud::purge(require(caller)?, ctx, i).await,
        Op::RecoverGroup => cloud::recover(require(caller)?, ctx, i).await,
        Op::CheckGroup => cloud::check_group(require(caller)?, ctx, i).await,
        Op::ListKeys => keys::list(require(caller)?, ctx, i).await,
        Op::CreateKey => keys::create(require(caller)?, ctx, i).await,
        Op::ShowKey => keys::show(require(caller)?, ctx, i).await,
        Op::DeleteKey => keys::delete(require(caller)?, ctx, i).await,
        Op::KeyPublic => keys::public(require(caller)?, ctx, i).await,
        Op::SyncKey => cloud::sync_key(require(caller)?, ctx, i).await,
        Op::ExportByok => byok::export(require(caller)?, ctx, i).await,
        Op::RecordImport => byok::record_import(require(caller)?, ctx, i).await,
        Op::ByokFile => byok::file(require(caller)?, ctx, i).await,
        Op::ListApprovals => approvals::list(require(caller)?, ctx, i).await,
        Op::ShowApproval => approvals::show(require(caller)?, ctx, i).await,
        Op::Approve => approvals::approve(require(caller)?, ctx, i).await,
        Op::Reject => approvals::reject(require(caller)?, ctx, i).await,
        Op::ListJobs => jobs::list(require(caller)?, ctx, i).await,
        Op::ShowJob => jobs::show(require(caller)?, ctx, i).await,
        Op::CancelJob => jobs::cancel(require(caller)?, ctx, i).await,
        Op::QueryLogs => logs::query(require(caller)?, i).await,
        Op::ExportLogs => logs::export(require(caller)?, i),
        Op::VerifyLogs => logs::verify(require(caller)?).await,
        Op::GetDesignated => config::get_designated(require(caller)?, ctx).await,
        Op::SetDesignated => config::set_designated(require(caller)?, ctx, i).await,
        Op::CreateBackup => backup::create(require(caller)?, ctx),
    }
}

/// Decodes a route's request (path parameters, query and body) exactly as its handler does,
/// without running it. Used by the decoding property test; never panics on any input.
pub fn decode_only(op: Op, input: &Input) -> Result<(), ApiError> {
    if !op.takes_body() {
        decode::no_body(&input.body)?;
    }
    let p = &input.params;
    match op {
        Op::Health | Op::Whoami | Op::ListCredentials | Op::ListGroups | Op::GetDesignated => {
            Ok(())
        }
        Op::CreateBackup => decode::only_query(&input.query, &[]),
        Op::AddCredential => credentials::decode_new(&input.body).map(drop),
        Op::ShowCredential | Op::DeleteCredential => credentials::name(p).map(drop),
        Op::CredentialCertificate => credentials::decode_export(p, &input.query).map(drop),
        Op::UpdateCredential => credentials::name(p)
            .and(credentials::decode_update(&input.body))
            .map(drop),
        Op::CreateGroup => groups::decode_new(&input.body).map(drop),
        Op::ShowGroup | Op::DeleteGroup | Op::ListKeys | Op::SyncGroup | Op::RotateGroup => {
            groups::name(p).map(drop)
        }
        Op::DeleteGroupCloud | Op::PurgeGroup | Op::RecoverGroup | Op::CheckGroup => {
            groups::name(p).map(drop)
        }
        Op::UpdateGroup => groups::name(p)
            .and(groups::decode_update(&input.body))
            .map(drop),
        Op::CreateKey => groups::name(p).and(keys::decode_new(&input.body)).map(drop),
        Op::ShowKey | Op::DeleteKey | Op::KeyPublic | Op::SyncKey => keys::names(p).map(drop),
        Op::ListApprovals => approvals::decode_list(&input.query),
        Op::ExportByok => keys::names(p)
            .and(byok::decode_export(&input.body))
            .map(drop),
        Op::RecordImport => keys::names(p)
            .and(byok::decode_record(&input.body))
            .map(drop),
        Op::ShowApproval | Op::Approve | Op::Reject | Op::ByokFile => approvals::id(p).map(drop),
        Op::ListJobs => jobs::decode_list(&input.query).map(drop),
        Op::ShowJob => jobs::decode_show(p, &input.query).map(drop),
        Op::CancelJob => jobs::decode_cancel(p, &input.query).map(drop),
        Op::QueryLogs => logs::decode_query(&input.query).map(drop),
        Op::ExportLogs => logs::decode_export(&input.query).map(drop),
        Op::VerifyLogs => decode::only_query(&input.query, &[]),
        Op::SetDesignated => config::decode(&input.body).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_counts_however_the_query_spells_it() {
        for q in [
            "wait=20",
            "wait=0&wait=20",
            "w%61it=20",
            "wait=%32%30",
            "after=5&wait=20&limit=10",
        ] {
            assert_eq!(wait_secs(Op::QueryLogs, q), 20, "{q}");
        }
        assert_eq!(wait_secs(Op::ShowJob, "wait=20"), 20);
        for q in ["", "wait=0", "after=5", "wait=x", "wait=999999"] {
            assert_eq!(wait_secs(Op::QueryLogs, q), 0, "{q}");
        }
        // The job handler refuses what it does not read: no wait it honours goes uncounted.
        for q in ["w%61it=20", "wait=%32%30", "wait=20&x=1"] {
            assert!(jobs::decode_wait(q).is_err(), "{q}");
        }
        assert_eq!(wait_secs(Op::ListJobs, "wait=20"), 0);
    }
}
