//! `/v1/logs` and `/v1/logs/export`: the service log, queried and exported. Filled in by the
//! logs subsystem; until it lands both answer 501, to any mapped identity.

use super::{Input, Reply};
use crate::control::authz::{AnyRole, Authorized};
use crate::control::errors::ApiError;

const NOT_YET: &str = "the service log is not yet available over the control API: the logs subsystem has not landed. Use journalctl -u byokd meanwhile.";

pub fn query(_: Authorized<AnyRole>, _: Input) -> Result<Reply, ApiError> {
    Err(ApiError::not_implemented(NOT_YET))
}

pub fn export(_: Authorized<AnyRole>, _: Input) -> Result<Reply, ApiError> {
    Err(ApiError::not_implemented(NOT_YET))
}
