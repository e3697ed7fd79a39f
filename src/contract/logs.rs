//! `/v1/logs` and `/v1/logs/verify`: a page of service-log records, and the chain check.

use crate::logs::chain::Verdict;
use crate::logs::record::Record;
use serde::{Deserialize, Serialize};

/// `GET /v1/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub records: Vec<Record>,
    /// The `after` of the next page.
    pub next_after: u64,
    /// Whether the page is full, so more records may follow.
    pub more: bool,
}

/// `GET /v1/logs/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogVerdict {
    pub ok: bool,
    pub verdict: Verdict,
}
