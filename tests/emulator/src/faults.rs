//! Fault injection rules: which requests they match and what they do to them.
//!
//! Rules are evaluated in insertion order; the first matching rule with budget left fires.

use serde::{Deserialize, Serialize};

/// The logical operation a request maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Entra token request.
    Token,
    /// `POST /keys/{name}/create`.
    CreateKey,
    /// `PUT /keys/{name}`.
    ImportKey,
    /// `GET /keys/{name}/{version}`.
    GetKey,
    /// `GET /keys/{name}/versions`.
    GetKeyVersions,
    /// `GET /keys`.
    GetKeys,
    /// `PATCH /keys/{name}/{version}`.
    UpdateKey,
    /// `DELETE /keys/{name}`.
    DeleteKey,
    /// `GET /deletedkeys/{name}`.
    GetDeletedKey,
    /// `GET /deletedkeys`.
    GetDeletedKeys,
    /// `DELETE /deletedkeys/{name}`.
    PurgeDeletedKey,
    /// `POST /deletedkeys/{name}/recover`.
    RecoverDeletedKey,
    /// ARM `GET .../providers/Microsoft.KeyVault/vaults/{v}`.
    ArmGetVault,
    /// Anything else (unknown route, admin).
    Other,
}

impl Op {
    /// The spec's operationId, for schema lookups and logs.
    pub fn operation_id(self) -> &'static str {
        match self {
            Op::Token => "Token",
            Op::CreateKey => "CreateKey",
            Op::ImportKey => "ImportKey",
            Op::GetKey => "GetKey",
            Op::GetKeyVersions => "GetKeyVersions",
            Op::GetKeys => "GetKeys",
            Op::UpdateKey => "UpdateKey",
            Op::DeleteKey => "DeleteKey",
            Op::GetDeletedKey => "GetDeletedKey",
            Op::GetDeletedKeys => "GetDeletedKeys",
            Op::PurgeDeletedKey => "PurgeDeletedKey",
            Op::RecoverDeletedKey => "RecoverDeletedKey",
            Op::ArmGetVault => "Vaults_Get",
            Op::Other => "Other",
        }
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultAction {
    /// Wait this long, then serve the request normally.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Answer with this status (500/502/503/504/408) without performing the operation.
    Status {
        /// HTTP status code.
        status: u16,
    },
    /// Answer 429 `Throttled` (with the configured retry hint) without performing the operation.
    Throttle,
    /// Drop the TCP connection (RST) without any response, without performing the operation.
    Reset,
    /// Perform the operation, then drop the TCP connection instead of answering.
    CommitThenReset,
    /// Perform the operation, then wait this long before answering: the client's view of a
    /// request that Azure committed but whose answer has not arrived (e.g. to kill the client
    /// at that instant). See [`crate::EmulatorHandle::holds`].
    CommitThenHold {
        /// Milliseconds.
        ms: u64,
    },
}

/// A fault rule. Empty matchers match everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Match this operation only.
    #[serde(default)]
    pub op: Option<Op>,
    /// Match this HTTP method only (upper case).
    #[serde(default)]
    pub method: Option<String>,
    /// Match requests whose host contains this.
    #[serde(default)]
    pub host_contains: Option<String>,
    /// Match requests whose path contains this.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Let this many matching requests through first.
    #[serde(default)]
    pub skip: u32,
    /// Fire for this many matching requests, then retire. `None`: forever.
    #[serde(default)]
    pub times: Option<u32>,
    /// What to do.
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule for every request of `op`.
    pub fn every(op: Op, action: FaultAction) -> Self {
        FaultRule {
            op: Some(op),
            method: None,
            host_contains: None,
            path_contains: None,
            skip: 0,
            times: None,
            action,
        }
    }

    /// A rule for the next `n` requests of `op`.
    pub fn next(op: Op, n: u32, action: FaultAction) -> Self {
        FaultRule {
            times: Some(n),
            ..FaultRule::every(op, action)
        }
    }

    pub(crate) fn matches(&self, op: Op, method: &str, host: &str, path: &str) -> bool {
        self.op.is_none_or(|o| o == op)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .host_contains
                .as_deref()
                .is_none_or(|h| host.contains(&h.to_ascii_lowercase()))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// A rule with its live counters.
#[derive(Debug, Clone)]
pub(crate) struct ActiveRule {
    pub rule: FaultRule,
    pub seen: u32,
    pub fired: u32,
}

impl ActiveRule {
    pub fn new(rule: FaultRule) -> Self {
        ActiveRule {
            rule,
            seen: 0,
            fired: 0,
        }
    }

    fn exhausted(&self) -> bool {
        self.rule.times.is_some_and(|t| self.fired >= t)
    }
}

/// Pick the action for a request, updating counters.
pub(crate) fn pick(
    rules: &mut Vec<ActiveRule>,
    op: Op,
    method: &str,
    host: &str,
    path: &str,
) -> Option<FaultAction> {
    let mut out = None;
    for r in rules.iter_mut() {
        if r.exhausted() || !r.rule.matches(op, method, host, path) {
            continue;
        }
        r.seen += 1;
        if r.seen <= r.rule.skip {
            continue;
        }
        r.fired += 1;
        out = Some(r.rule.action.clone());
        break;
    }
    rules.retain(|r| !r.exhausted());
    out
}
