//! Errors of job submission and execution, in operator terms.

use crate::azure::AzureError;
use crate::hsm::HsmError;
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
    #[error("{0}")]
    Failed(String),
    /// Azure did not recover the key: the vault could not be reached or refused the request.
    #[error(
        "the key was not recovered: {source}; check the group's vault name ({vault}), the network path to it and that the credential may recover keys there, then run `byokctl group recover` again"
    )]
    Recover {
        vault: String,
        #[source]
        source: Box<AzureError>,
    },
    /// Azure did not purge the key: the vault could not be reached or refused the request.
    #[error(
        "the key was not purged: {source}; check the group's vault name ({vault}), the network path to it and that the credential may purge keys there, then request the purge again (`byokctl group purge`)"
    )]
    Purge {
        vault: String,
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
