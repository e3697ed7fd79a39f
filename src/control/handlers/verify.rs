//! The fail-fast checks behind `credential add` and `group create`: one sign-in with a new
//! client secret, and side-effect-free probes that a group's vault exists and that its credential
//! may read it. Azure's refusal comes back as a 422 naming Azure's reason and, for a missing
//! permission, the permission in the guide's words (Get, List, Create, Import, Delete, Purge).
//!
//! Only Get and List can be probed without changing the vault: a GET of a key name byokd never
//! uses, and a listing of that name's versions, both answer 404 or an empty list when allowed.
//! Create, Import, Delete and Purge are found missing at their first use (the first sync, delete
//! on cloud or purge), which then fails naming the permission.

use super::Ctx;
use crate::azure::{AccessToken, AzureError, ClientAuth, KeyVaultError, SignInProof};
use crate::control::errors::ApiError;
use crate::logs::Event;
use crate::model::{CredentialName, Target, TargetKind};
use crate::service::{NewCredential, SignInMaterial};
use http::StatusCode;

/// A key name byokd never creates: probing it reads nothing and changes nothing.
const PROBE_KEY: &str = "byokd-permission-probe";

fn azure(ctx: &Ctx) -> Result<&crate::jobs::Jobs, ApiError> {
    ctx.jobs.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "azure_unavailable",
            "this daemon runs without its Azure layer, so it cannot check with Azure; repeat with --no-verify (\"verify\": false)",
        )
    })
}

/// Azure's refusal of a check, worded for the operator.
fn refused(what: &str, e: &AzureError) -> ApiError {
    let (code, hint) = match e {
        AzureError::Entra(_) => ("sign_in_refused", ""),
        AzureError::KeyVault(KeyVaultError::PermissionDenied { .. }) => ("permission_missing", ""),
        AzureError::NameDoesNotResolve { .. } => ("vault_not_found", ""),
        _ if e.is_retryable() => (
            "azure_unreachable",
            "; if the appliance cannot reach Azure yet, repeat with --no-verify",
        ),
        _ => ("azure_refused", ""),
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        format!("{what}: {e}{hint}"),
    )
}

/// Signs in once with a new client secret; the token is not kept.
pub(super) async fn secret_sign_in(
    ctx: &Ctx,
    new: &NewCredential,
) -> Result<SignInProof, ApiError> {
    let jobs = azure(ctx)?;
    let tenant = new.tenant_id.to_string();
    let client = new.client_id.to_string();
    jobs.azure()
        .entra()
        .sign_in_once(
            new.name.as_str(),
            &tenant,
            &client,
            // Any scope proves the sign-in; a credential is not tied to a target kind.
            TargetKind::KeyVault,
            ClientAuth::Secret(&new.secret),
        )
        .await
        .map(|(_, proof)| proof)
        .map_err(|e| {
            tracing::warn!(event = Event::CredentialRefused.as_str(), service = "control", credential = %new.name,
                tenant = %tenant, client_id = %client, error = %e,
                "Credential {} not added: Entra ID refused its sign-in: {e}", new.name);
            refused(&format!("credential {} was not added", new.name), &e)
        })
}

/// A token for an existing credential (secret unsealed in the HSM for the request only, or an
/// assertion signed there), not cached; and the proof that Entra accepted it.
async fn credential_token(
    ctx: &Ctx,
    name: &CredentialName,
    kind: TargetKind,
) -> Result<(AccessToken, SignInProof), ApiError> {
    let jobs = azure(ctx)?;
    let cred = ctx.service.credential(name).await?;
    let entra = jobs.azure().entra();
    let signed = match ctx.service.sign_in_material(name).await? {
        SignInMaterial::Secret(secret) => {
            entra
                .sign_in_once(
                    &cred.name,
                    &cred.tenant_id,
                    &cred.client_id,
                    kind,
                    ClientAuth::Secret(&secret),
                )
                .await
        }
        SignInMaterial::Certificate {
            key_id,
            certificate_der,
        } => {
            let signer = crate::jobs::HsmAssertionSigner::new(
                ctx.service.hsm().clone(),
                key_id,
                certificate_der,
                ctx.service.config().azure.assertion_alg,
            );
            match crate::azure::entra::build_client_assertion(
                &signer,
                &entra.token_url(&cred.tenant_id),
                &cred.client_id,
                ctx.service.clock().now_system(),
            )
            .await
            {
                Ok(jwt) => {
                    entra
                        .sign_in_once(
                            &cred.name,
                            &cred.tenant_id,
                            &cred.client_id,
                            kind,
                            ClientAuth::Assertion(jwt),
                        )
                        .await
                }
                Err(e) => Err(e),
            }
        }
    };
    signed.map_err(|e| refused(&format!("credential {name} cannot sign in"), &e))
}

/// Checks that the Key Vault or Managed HSM `target` exists and that `credential` may read it
/// (Get and List); records the credential as verified when its sign-in works.
pub(super) async fn vault_access(
    ctx: &Ctx,
    credential: &CredentialName,
    target: &Target,
) -> Result<(), ApiError> {
    let field_name = target.kind().as_str();
    // Refused before any sign-in on a cloud without Managed HSM.
    let jobs = azure(ctx)?;
    let az = jobs.azure();
    az.allowlist()
        .endpoints()
        .host(target)
        .map_err(|e| ApiError::invalid(field_name, e))?;
    let (token, proof) = credential_token(ctx, credential, target.kind()).await?;
    ctx.service
        .mark_credential_verified(credential, &proof)
        .await?;
    // The target is not allowed until a group naming it is committed: allow it for the probe.
    let _probe = az
        .allowlist()
        .probe(target)
        .map_err(|e| ApiError::invalid(field_name, e))?;
    let what = format!("{target} cannot be used with credential {credential}");
    match az.keyvault().get_key(&token, target, PROBE_KEY, None).await {
        Ok(_) | Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => {}
        Err(e) => return Err(refused(&what, &e)),
    }
    match az.keyvault().list_versions(&token, target, PROBE_KEY).await {
        Ok(_) | Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => Ok(()),
        Err(e) => Err(refused(&what, &e)),
    }
}
