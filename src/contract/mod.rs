//! The control API's contract: every request body and every answer, as typed data shared by
//! the server's handlers (which decode requests into these types and build answers from them)
//! and by `byokctl` (which builds requests from them and reads typed answers).
//!
//! It owns the wire shapes only: field names, which fields are optional, and how times are
//! written (RFC 3339 UTC, see [`Timestamp`]). It makes no decision and validates nothing beyond
//! the shape; the handlers turn these types into domain types. `api/openapi.json` describes the
//! same shapes, and `tests/control_openapi.rs` checks it field by field against these types.
//!
//! Request types refuse unknown fields (`deny_unknown_fields`); answers are read leniently, so
//! an older `byokctl` can read a newer daemon's answers.

mod approvals;
mod byok;
mod credentials;
mod groups;
mod jobs;
mod keys;
mod logs;
mod status;
mod time;

pub use approvals::{Approval, ApprovalAction, ApprovalList, ApprovalStatus, Pending};
pub use byok::{ByokExport, ByokFile, ImportRecorded, RecordImport};
pub use credentials::{
    CertificateExport, Credential, CredentialCsr, CredentialList, CredentialUpdate, NewCredential,
    Secret,
};
pub use groups::{
    Drift, DriftFinding, Group, GroupList, GroupUpdate, NewGroup, PendingGrace, RotationPatch,
};
pub use jobs::{Job, JobAnswer, JobKey, JobList, JobStarted, JournalStep, Progress, Step};
pub use keys::{Key, KeyList, NewKey, PublicKey};
pub use logs::{LogPage, LogVerdict};
pub use status::{
    Deleted, Designated, DesignatedSource, ErrorAnswer, ErrorDetail, Health, HsmHealth,
    StateHealth, Whoami,
};
pub use time::Timestamp;
