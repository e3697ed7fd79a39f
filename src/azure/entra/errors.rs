//! Entra errors with what the operator should do, and the mapping of a refused token request
//! into them by `error_codes` (then `error`), never by the description text.

use crate::azure::http::HttpResponse;

/// Entra errors, with what the operator should do.
#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    #[error(
        "Entra ID rejected the client secret of credential {credential} (AADSTS7000215): the secret is wrong; paste the secret's Value, not its ID, from the app registration's 'Certificates & secrets'"
    )]
    WrongSecret { credential: String },
    #[error(
        "the client secret of credential {credential} has expired (AADSTS7000222): create a new secret in the app registration and update the credential"
    )]
    SecretExpired { credential: String },
    #[error(
        "application {client_id} was not found in tenant {tenant} (AADSTS700016): check the client id and tenant id of credential {credential}, and that the app is registered (or consented) in that tenant"
    )]
    AppNotInTenant {
        credential: String,
        tenant: String,
        client_id: String,
    },
    #[error(
        "tenant {tenant} was not found (AADSTS90002): check the tenant id of credential {credential} and the configured cloud"
    )]
    TenantNotFound { credential: String, tenant: String },
    #[error(
        "Entra ID rejected the client assertion of credential {credential} (AADSTS{code}): {hint}"
    )]
    BadAssertion {
        credential: String,
        /// The AADSTS code Entra gave.
        code: u64,
        /// What it means and what to do (`assertion_hint`).
        hint: &'static str,
    },
    #[error(
        "Entra ID refused a token for credential {credential}: HTTP {status}, {error} (codes {codes:?}, trace {trace_id})"
    )]
    Other {
        credential: String,
        status: u16,
        error: String,
        codes: Vec<u64>,
        trace_id: String,
    },
    #[error(
        "invalid {what} {value:?} for credential {credential}: only letters, digits, '-' and '.' are allowed"
    )]
    InvalidId {
        credential: String,
        what: &'static str,
        value: String,
    },
    #[error(
        "Key Vault's authentication challenge names resource {resource}, which is not this cloud's vault resource {expected}: refused"
    )]
    ChallengeMismatch { resource: String, expected: String },
    #[error(
        "Key Vault's authentication challenge names authority {authority}, which is not a sign-in host of this cloud ({expected}): refused; check azure.cloud"
    )]
    ChallengeAuthorityMismatch {
        authority: String,
        expected: &'static str,
    },
}

#[derive(serde::Deserialize, Default)]
struct TokenErr {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_codes: Vec<u64>,
    #[serde(default)]
    trace_id: String,
}

/// The codes Entra answers a bad client assertion (certificate credential) with, most specific
/// first, and what the operator should do about each.
const ASSERTION_CODES: [(u64, &str); 6] = [
    (
        700_027,
        "the assertion's signature does not verify with a certificate the app registration holds (unknown certificate or bad signature); check that the certificate uploaded to the app registration is this credential's (`byokctl credential show` gives its thumbprint), and upload it again if it was replaced",
    ),
    (
        7_000_274,
        "the app registration does not accept the certificate the assertion names; check that the certificate uploaded to the app registration is this credential's current one and has not expired there, and upload it again",
    ),
    (
        700_024,
        "the assertion is outside its valid time range; check the appliance clock (NTP): byokd makes assertions valid from now for a few minutes",
    ),
    (
        700_023,
        "the assertion's audience is not this tenant's token endpoint; check the credential's tenant id and azure.cloud",
    ),
    (
        700_021,
        "the assertion's issuer and subject are not the app's client id; check the credential's client id",
    ),
    (
        50_012,
        "check that the certificate uploaded to the app registration is the one byokd holds, and the appliance clock",
    ),
];

/// Branches on `error_codes` (then `error`), never on the description text.
pub(super) fn map_error(
    credential: &str,
    tenant: &str,
    client_id: &str,
    resp: &HttpResponse,
) -> EntraError {
    let err: TokenErr = serde_json::from_slice(&resp.body).unwrap_or_default();
    let cred = credential.to_string();
    let has = |code: u64| err.error_codes.contains(&code);
    let mapped = if has(7_000_215) {
        EntraError::WrongSecret { credential: cred }
    } else if has(7_000_222) {
        EntraError::SecretExpired { credential: cred }
    } else if has(700_016) {
        EntraError::AppNotInTenant {
            credential: cred,
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
        }
    } else if has(90_002) {
        EntraError::TenantNotFound {
            credential: cred,
            tenant: tenant.to_string(),
        }
    } else if let Some((code, hint)) = ASSERTION_CODES.iter().find(|(code, _)| has(*code)).copied()
    {
        EntraError::BadAssertion {
            credential: cred,
            code,
            hint,
        }
    } else {
        EntraError::Other {
            credential: cred,
            status: resp.status.as_u16(),
            error: if err.error.is_empty() {
                "(no error code)".into()
            } else {
                err.error.clone()
            },
            codes: err.error_codes.clone(),
            trace_id: err.trace_id.clone(),
        }
    };
    tracing::error!(credential, tenant, status = resp.status.as_u16(), error = %err.error,
        codes = ?err.error_codes, trace_id = %err.trace_id, "Entra ID refused a token");
    mapped
}
