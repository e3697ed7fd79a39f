//! The domain, pure and without I/O: credentials, key groups, keys, key types, rotation policy
//! and the validated names they use. Nothing here touches the HSM, the disk or the network.

mod credential;
mod error;
pub(crate) mod group;
mod ids;
mod job;
mod key;
mod key_type;
mod lifecycle;
mod names;
mod policy;
mod target;

pub use credential::{
    Credential, CredentialAuth, EXPIRES_MAX, EXPIRES_MIN, certificate_thumbprint, check_expires,
    secret_fingerprint,
};
pub use error::ModelError;
pub use group::KeyGroup;
pub use ids::{ApprovalId, AzureVersion};
pub use job::{
    CheckCloudStep, DeleteCloudStep, Job, JobId, JobKind, JobState, JobStep, JobUndo, KekJournal,
    KeySync, KeySyncState, PurgeStep, RecoverStep, RotateStep, StepMessage, SyncStep,
};
pub use key::{HsmKeyId, Key, Storage};
pub use key_type::{Curve, KeyOp, KeyType, RsaExponent};
pub use lifecycle::{DriftFinding, DriftReport, PendingGrace};
pub use names::{CredentialName, GroupName, Guid, HsmPoolName, KeyName, VaultName};
pub use policy::{RotationPolicy, add_months};
pub use target::{Named, Target, TargetKind};
