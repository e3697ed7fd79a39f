//! Authorization: which role may do what, and the proof that the check was made.
//!
//! An [`Authorized<P>`] can only be built here, by [`require`], from a caller whose client
//! certificate mapped to an identity whose role satisfies policy `P`. Every handler takes one
//! as a parameter, so no handler can run without the check. This module never looks at
//! certificates (see `identity`) and never performs an action.

use super::errors::ApiError;
use super::identity::{Caller, Identity, role_name};
use crate::config::Role;
use std::marker::PhantomData;

/// A rule over roles. Implemented only by the marker types below.
pub trait Policy: sealed::Sealed {
    /// The policy's name, as the API document and errors say it.
    const NAME: &'static str;
    fn allows(role: Role) -> bool;
}

mod sealed {
    pub trait Sealed {}
}

/// Any mapped identity: admin, operator or auditor (reads, listings, jobs, logs, health).
#[derive(Debug)]
pub enum AnyRole {}
/// Admin or operator: keys, groups, rotation, sync, jobs.
#[derive(Debug)]
pub enum Operate {}
/// Admin only: credentials, designated device, destructive cloud actions, approvals.
#[derive(Debug)]
pub enum Admin {}

impl sealed::Sealed for AnyRole {}
impl sealed::Sealed for Operate {}
impl sealed::Sealed for Admin {}

impl Policy for AnyRole {
    const NAME: &'static str = "any";
    fn allows(_: Role) -> bool {
        true
    }
}
impl Policy for Operate {
    const NAME: &'static str = "operator";
    fn allows(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Operator)
    }
}
impl Policy for Admin {
    const NAME: &'static str = "admin";
    fn allows(role: Role) -> bool {
        role == Role::Admin
    }
}

/// Proof that the caller passed policy `P`. Carries the identity, for logs and approvals.
#[derive(Debug)]
pub struct Authorized<P: Policy> {
    identity: Identity,
    _policy: PhantomData<P>,
}

impl<P: Policy> Authorized<P> {
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// Whether the same identity also passes policy `Q` (for a decision the service makes under
    /// its state lock, e.g. whether a key delete needs an admin).
    pub fn satisfies<Q: Policy>(&self) -> bool {
        Q::allows(self.identity.role)
    }

    /// Checks the same identity against a stricter policy, for an action whose rule depends
    /// on the resource (e.g. deleting a key that was pushed needs an admin).
    pub fn escalate<Q: Policy>(&self) -> Result<Authorized<Q>, ApiError> {
        if Q::allows(self.identity.role) {
            Ok(Authorized {
                identity: self.identity.clone(),
                _policy: PhantomData,
            })
        } else {
            Err(ApiError::forbidden(format!(
                "identity {:?} may not do this",
                self.identity.name
            )))
        }
    }
}

/// The policy check: an unmapped certificate is refused whatever the policy, then the role.
pub fn require<P: Policy>(caller: &Caller) -> Result<Authorized<P>, ApiError> {
    let Some(identity) = &caller.identity else {
        return Err(unmapped(caller));
    };
    if !P::allows(identity.role) {
        return Err(ApiError::forbidden(format!(
            "identity {:?} has role {}; this action needs {}",
            identity.name,
            role_name(identity.role),
            match P::NAME {
                "admin" => "the admin role",
                "operator" => "the operator or admin role",
                _ => "a mapped identity",
            }
        )));
    }
    Ok(Authorized {
        identity: identity.clone(),
        _policy: PhantomData,
    })
}

/// The 403 for a certificate that chains to the console CA but is in no mapping.
pub fn unmapped(caller: &Caller) -> ApiError {
    ApiError::forbidden(format!(
        "the client certificate (SHA-256 {}, CN {:?}) is not mapped to an identity; add it to control.identities",
        caller.fingerprint,
        caller.cn.as_deref().unwrap_or("")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Option<Role>) -> Caller {
        Caller {
            fingerprint: "00".repeat(32),
            cn: Some("x".into()),
            identity: role.map(|role| Identity {
                name: "x".into(),
                role,
            }),
        }
    }

    #[test]
    fn roles_are_ordered_admin_operator_auditor() {
        assert!(require::<Admin>(&caller(Some(Role::Admin))).is_ok());
        assert!(require::<Admin>(&caller(Some(Role::Operator))).is_err());
        assert!(require::<Operate>(&caller(Some(Role::Operator))).is_ok());
        assert!(require::<Operate>(&caller(Some(Role::Auditor))).is_err());
        assert!(require::<AnyRole>(&caller(Some(Role::Auditor))).is_ok());
    }

    #[test]
    fn an_unmapped_certificate_is_refused_everywhere() {
        let err = require::<AnyRole>(&caller(None)).unwrap_err();
        assert_eq!(err.status, http::StatusCode::FORBIDDEN);
        assert!(err.message.contains("not mapped"));
    }
}
