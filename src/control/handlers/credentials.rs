//! `/v1/credentials`: add (the secret in the body, or `"certificate": true` for a certificate
//! credential whose key the HSM generates), list, show, set expiry, export the certificate or a
//! CSR, and delete under dual control. Admin only for every change; any role may read. Never
//! returns the secret.

use super::{Ctx, Input, Reply};
use crate::contract::{self, CredentialUpdate, NewCredential as NewBody, Timestamp};
use crate::control::authz::{Admin, AnyRole, Authorized};
use crate::control::decode::{self, field};
use crate::control::errors::ApiError;
use crate::control::routes::Params;
use crate::model::{CredentialName, Guid, check_expires};
use crate::service::{CertificateExport, CredentialView, NewCertificateCredential, NewCredential};

/// A decoded request to add a credential.
pub(super) enum NewRequest {
    /// A client secret, and whether to sign in with it before storing it.
    Secret(NewCredential, bool),
    Certificate(NewCertificateCredential),
}

fn expires(e: Option<Timestamp>) -> Result<Option<i64>, ApiError> {
    e.map(|e| field("expires", check_expires(e.unix())))
        .transpose()
}

pub(super) fn decode_new(body: &[u8]) -> Result<NewRequest, ApiError> {
    let b: NewBody = decode::json(body)?;
    let name = field("name", CredentialName::try_from(b.name))?;
    let tenant_id = field("tenant_id", Guid::parse(&b.tenant_id))?;
    let client_id = field("client_id", Guid::parse(&b.client_id))?;
    match (b.secret, b.certificate) {
        (Some(_), true) => Err(ApiError::invalid(
            "certificate",
            "give either a secret or \"certificate\": true, not both",
        )),
        (None, false) => Err(ApiError::invalid(
            "secret",
            "give the client secret, or \"certificate\": true for a certificate credential",
        )),
        (Some(secret), false) => {
            if secret.is_empty() {
                return Err(ApiError::invalid("secret", "the client secret is empty"));
            }
            if b.validity_days.is_some() {
                return Err(ApiError::invalid(
                    "validity_days",
                    "only a certificate credential has a validity",
                ));
            }
            Ok(NewRequest::Secret(
                NewCredential {
                    name,
                    tenant_id,
                    client_id,
                    secret: secret.into_bytes(),
                    expires: expires(b.expires)?,
                },
                b.verify,
            ))
        }
        (None, true) => {
            if b.verify {
                return Err(ApiError::invalid(
                    "verify",
                    "a certificate credential can sign in only once its certificate is uploaded to the app registration; add it without verify",
                ));
            }
            if b.expires.is_some() {
                return Err(ApiError::invalid(
                    "expires",
                    "a certificate credential expires with its certificate; use validity_days",
                ));
            }
            Ok(NewRequest::Certificate(NewCertificateCredential {
                name,
                tenant_id,
                client_id,
                validity_days: b.validity_days,
            }))
        }
    }
}

/// `?format=certificate` (default) or `?format=csr`; true for a CSR.
pub(super) fn decode_export(p: &Params, query: &str) -> Result<(CredentialName, bool), ApiError> {
    let name = name(p)?;
    decode::only_query(query, &["format"])?;
    let csr = match decode::query_value(query, "format") {
        None | Some("certificate") => false,
        Some("csr") => true,
        Some(_) => return Err(ApiError::invalid("format", "certificate or csr")),
    };
    Ok((name, csr))
}

/// `None`: the body leaves the expiry unchanged; `Some(None)`: clear it; `Some(Some(t))`: set it.
pub(super) fn decode_update(body: &[u8]) -> Result<Option<Option<i64>>, ApiError> {
    decode::json::<CredentialUpdate>(body)?
        .expires
        .map(expires)
        .transpose()
}

pub(super) fn name(p: &Params) -> Result<CredentialName, ApiError> {
    decode::param("credential", p.get("credential"))
}

/// A credential as the API shows it.
fn answer(v: CredentialView) -> contract::Credential {
    contract::Credential {
        name: v.name,
        tenant_id: v.tenant_id,
        client_id: v.client_id,
        kind: v.kind.to_owned(),
        verified: v.verified,
        fingerprint: v.fingerprint,
        created: Timestamp::from_unix(v.created),
        expires: v.expires.map(Timestamp::from_unix),
        groups: v.groups,
    }
}

fn certificate_answer(c: CertificateExport) -> contract::CertificateExport {
    contract::CertificateExport {
        name: c.name,
        certificate_pem: c.certificate_pem,
        thumbprint: c.thumbprint,
        x5t_s256: c.x5t_s256,
        not_after: c.not_after.map(Timestamp::from_unix),
    }
}

pub async fn list(_: Authorized<AnyRole>, ctx: &Ctx) -> Result<Reply, ApiError> {
    let credentials = ctx.service.list_credentials().await;
    Reply::ok(&contract::CredentialList {
        credentials: credentials.into_iter().map(answer).collect(),
    })
}

pub async fn add(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let new = decode_new(&i.body)?;
    drop(i);
    let view = match new {
        NewRequest::Secret(new, false) => ctx.service.add_credential(new, auth.name()).await?,
        NewRequest::Secret(new, true) => {
            let proof = super::verify::secret_sign_in(ctx, &new).await?;
            ctx.service
                .add_verified_credential(new, proof, auth.name())
                .await?
        }
        NewRequest::Certificate(new) => {
            ctx.service
                .add_certificate_credential(new, auth.name())
                .await?
        }
    };
    Reply::created(&answer(view))
}

/// The certificate to upload to the app registration, or a CSR signed in the HSM.
pub async fn certificate(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let (name, csr) = decode_export(&i.params, &i.query)?;
    if csr {
        let pem = ctx.service.credential_csr(&name).await?;
        Reply::ok(&contract::CredentialCsr {
            name: name.to_string(),
            csr_pem: pem,
        })
    } else {
        let cert = ctx.service.credential_certificate(&name).await?;
        Reply::ok(&certificate_answer(cert))
    }
}

pub async fn show(_: Authorized<AnyRole>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    Reply::ok(&answer(ctx.service.credential(&name(&i.params)?).await?))
}

pub async fn update(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let name = name(&i.params)?;
    let view = match decode_update(&i.body)? {
        Some(expires) => {
            ctx.service
                .set_credential_expiry(&name, expires, auth.name())
                .await?
        }
        None => ctx.service.credential(&name).await?,
    };
    Reply::ok(&answer(view))
}

/// Deleting a credential needs a second admin: this records the request and answers 202. The
/// delete itself re-checks, when approved, that no key group uses the credential.
pub async fn delete(auth: Authorized<Admin>, ctx: &Ctx, i: Input) -> Result<Reply, ApiError> {
    let name = name(&i.params)?;
    // Refused early when it could not run; the approved delete checks again under the lock.
    let approval = ctx
        .dual
        .request_credential_delete(&name, auth.name())
        .await?;
    super::approvals::requested(approval)
}
