//! Errors of job submission and execution, in operator terms. Each variant keeps the error it
//! came from as its source; its text is what the job's `Failed:` step shows.

use crate::azure::AzureError;
use crate::hsm::HsmError;
use crate::model::{ModelError, Target};
use crate::service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(
        "this appliance is not the designated device, so it does not change the cloud; set `designated = true` (or `byokctl designated set true`) on the one appliance that should"
    )]
    NotDesignated,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Azure(#[from] AzureError),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// The runner stops (the daemon shuts down) while the job waits for a slot.
    #[error("job runner is shutting down")]
    ShuttingDown,
    /// The job had failed before the daemon restarted; the restarted run only cleaned up. The
    /// reason is the one journalled then (its source did not survive the restart).
    #[error("{reason}")]
    FailedBefore { reason: String },
    /// The job failed, and cleaning up after it failed too.
    #[error("{source}; and cleaning up: {cleanup}")]
    CleanupFailed {
        #[source]
        source: Box<JobError>,
        cleanup: Box<JobError>,
    },
    /// No token to clean up with: the job's KEK may stay in the vault or pool until it expires.
    #[error("{source}; the key exchange key {kek} may remain in {} until it expires", .target.named())]
    KekLeftBehind {
        kek: String,
        target: Target,
        #[source]
        source: Box<JobError>,
    },
    /// Key Vault's (or Managed HSM's) 401 names another tenant than the group's credential signs
    /// in to.
    #[error(
        "{} belongs to tenant {tenant}, but credential {credential} signs in to tenant {credential_tenant}: give the group a credential of {}'s tenant", .target.named(), .target.kind().the()
    )]
    WrongTenant {
        target: Target,
        tenant: String,
        credential: String,
        credential_tenant: String,
    },
    /// This job's KEK was deleted before a restart, so its name is taken until purged.
    #[error(
        "this job's key exchange key {name} was already deleted; run the synchronization again"
    )]
    KekAlreadyDeleted { name: String },
    /// Azure's answer for the KEK lacks a part of its public key.
    #[error("the key exchange key in {} has no {part}", .target.named())]
    KekIncomplete { target: Target, part: &'static str },
    /// A deleted key did not show in the deleted keys within the wait.
    #[error(
        "key {name} was deleted but is not listed in the deleted keys of {} after {secs} s; purge it by hand", .target.named()
    )]
    DeletedNotListed {
        name: String,
        target: Target,
        secs: u64,
    },
    /// Azure still answered "being deleted" after every retry of a purge.
    #[error("key {name} in {} is still being deleted; purge it later", .target.named())]
    StillBeingDeleted { name: String, target: Target },
    /// A delete on cloud found neither the key nor a deleted key of its name.
    #[error("{} has no key {name} and no deleted key of that name: nothing to delete", .target.named())]
    NothingToDelete { target: Target, name: String },
    /// An import task panicked or was aborted.
    #[error("an import task stopped: {source}")]
    ImportTask {
        #[source]
        source: tokio::task::JoinError,
    },
    /// The BYOK transfer blob could not be encoded.
    #[error("cannot encode the transfer blob: {source}")]
    TransferBlob {
        #[source]
        source: serde_json::Error,
    },
    /// Azure's public key for an imported version is not the HSM key's.
    #[error(
        "Azure reports a public key for {kid} that differs from the HSM key {key}; disable that version and investigate"
    )]
    PublicKeyMismatch { kid: String, key: String },
    /// A rotation's job time is outside what a date can hold.
    #[error("job time {created}: {source}")]
    JobTime {
        created: i64,
        #[source]
        source: time::error::ComponentRange,
    },
    /// The rotation's key name, made from the group's name, is refused.
    #[error("rotation key name: {source}")]
    RotationKeyName {
        #[source]
        source: ModelError,
    },
    /// A value read from the state that the model refuses.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The rotation's key has no Azure version although its sync succeeded.
    #[error("key {key} has no Azure version after the push")]
    NoVersionAfterSync { key: String },
    /// Azure did not recover the key: the vault or pool could not be reached or refused the request.
    #[error(
        "the key was not recovered: {source}; check the group's {} name ({}), the network path to it and that the credential may recover keys there, then run `byokctl group recover` again", .target.kind().noun(), .target.name()
    )]
    Recover {
        target: Target,
        #[source]
        source: Box<AzureError>,
    },
    /// Azure did not purge the key: the vault or pool could not be reached or refused the request.
    #[error(
        "the key was not purged: {source}; check the group's {} name ({}), the network path to it and that the credential may purge keys there, then request the purge again (`byokctl group purge`)", .target.kind().noun(), .target.name()
    )]
    Purge {
        target: Target,
        #[source]
        source: Box<AzureError>,
    },
    /// Stopped at a safe point because this identity cancelled the job.
    #[error("cancelled by {0}")]
    Cancelled(String),
}

impl From<crate::service::NotDesignated> for JobError {
    fn from(_: crate::service::NotDesignated) -> Self {
        Self::NotDesignated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn job_errors_keep_their_source_and_the_operator_text() {
        let vault = Target::KeyVault(crate::model::VaultName::try_from("kv1").unwrap());
        let pool = Target::ManagedHsm(crate::model::HsmPoolName::try_from("pool1").unwrap());
        let first = JobError::StillBeingDeleted {
            name: "byokd-kek-7".into(),
            target: vault.clone(),
        };
        let cleanup = JobError::DeletedNotListed {
            name: "byokd-kek-7".into(),
            target: vault,
            secs: 120,
        };
        let both = JobError::CleanupFailed {
            source: Box::new(first),
            cleanup: Box::new(cleanup),
        };
        assert_eq!(
            both.to_string(),
            "key byokd-kek-7 in vault kv1 is still being deleted; purge it later; and cleaning up: key byokd-kek-7 was deleted but is not listed in the deleted keys of vault kv1 after 120 s; purge it by hand"
        );
        let source = both.source().map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("key byokd-kek-7 in vault kv1 is still being deleted; purge it later")
        );
        // A Managed HSM pool is named as one, from the group's typed target.
        let in_pool = JobError::NothingToDelete {
            target: pool.clone(),
            name: "payments".into(),
        };
        assert_eq!(
            in_pool.to_string(),
            "Managed HSM pool pool1 has no key payments and no deleted key of that name: nothing to delete"
        );
        let wrong_tenant = JobError::WrongTenant {
            target: pool,
            tenant: "t2".into(),
            credential: "cred".into(),
            credential_tenant: "t1".into(),
        };
        assert!(
            wrong_tenant
                .to_string()
                .ends_with("give the group a credential of the pool's tenant"),
            "{wrong_tenant}"
        );
        let bad_name = JobError::RotationKeyName {
            source: crate::model::KeyName::try_from(String::new()).unwrap_err(),
        };
        assert!(bad_name.to_string().starts_with("rotation key name: "));
        assert!(bad_name.source().is_some());
    }
}
