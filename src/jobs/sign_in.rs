//! Signing in for a job: an Entra ID token for the group's credential, from the cache when still
//! valid; a client secret unsealed in the HSM for one request, or a client assertion signed in
//! the HSM for a certificate credential; and the one re-sign-in after Key Vault answers 401.
//!
//! Must never: hold an unsealed secret past the token request, sign an assertion that will not be
//! sent, or retry a 401 more than once per job run.

use super::ports::{Session, SignedIn};
use super::{JobError, Jobs};
use crate::azure::entra::build_client_assertion;
use crate::azure::{AccessToken, AssertionSigner, AzureError, ClientAuth, KeyVaultError};
use crate::config::AssertionAlg;
use crate::hsm::{Hsm, SignatureScheme};
use crate::logs::Event;
use crate::model::JobId;
use crate::model::{HsmKeyId, KeyGroup, Target};
use crate::service::SignInMaterial;
use std::future::Future;
use std::pin::Pin;

/// Signs client assertions with a certificate credential's key, inside the HSM.
pub struct HsmAssertionSigner {
    hsm: Hsm,
    key_id: HsmKeyId,
    certificate_der: Vec<u8>,
    alg: AssertionAlg,
}

impl HsmAssertionSigner {
    pub fn new(hsm: Hsm, key_id: HsmKeyId, certificate_der: Vec<u8>, alg: AssertionAlg) -> Self {
        Self {
            hsm,
            key_id,
            certificate_der,
            alg,
        }
    }
}

impl AssertionSigner for HsmAssertionSigner {
    fn algorithm(&self) -> &'static str {
        match self.alg {
            AssertionAlg::PS256 => "PS256",
            AssertionAlg::RS256 => "RS256",
        }
    }

    fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    fn sign<'a>(
        &'a self,
        signing_input: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, AzureError>> + Send + 'a>> {
        let scheme = match self.alg {
            AssertionAlg::PS256 => SignatureScheme::Ps256,
            AssertionAlg::RS256 => SignatureScheme::Rs256,
        };
        Box::pin(async move {
            self.hsm
                .sign(self.key_id, scheme, signing_input)
                .await
                .map_err(|e| AzureError::Signing {
                    detail: e.to_string(),
                })
        })
    }
}

/// A Key Vault token for the group's credential, with the job's steps around it.
pub(super) async fn sign_in(
    jobs: &Jobs,
    id: JobId,
    group: &KeyGroup,
) -> Result<AccessToken, JobError> {
    let svc = jobs.service();
    let cred = svc.credential(&group.credential).await?;
    if let Some(t) = jobs.azure().entra().cached(
        &cred.name,
        &cred.tenant_id,
        &cred.client_id,
        group.target.kind(),
    ) {
        // Every job's cloud steps start with a token record, signed in or not.
        tracing::info!(event = Event::AzureTokenReused.as_str(), service = "azure", job = id.get(), group = %group.name, vault = %group.target.name(),
            "Entra ID token for credential {} (tenant {}) reused from the cache", cred.name, cred.tenant_id);
        return Ok(t);
    }
    svc.job_step(
        id,
        format!(
            "Requesting an Entra ID token for credential {} ({})",
            cred.name, cred.kind
        ),
        Some(50),
    )
    .await?;
    let token = credential_token(jobs, group).await?;
    svc.job_step(id, "Entra ID token acquired", Some(100))
        .await?;
    tracing::info!(event = Event::AzureTokenAcquired.as_str(), service = "azure", job = id.get(), group = %group.name, vault = %group.target.name(),
        "Entra ID token acquired for credential {} (tenant {})", cred.name, cred.tenant_id);
    Ok(token)
}

/// A Key Vault token for the group's credential (cached, or signed in with the sealed secret,
/// unsealed for the request only, or with an assertion signed in the HSM).
pub(super) async fn credential_token(
    jobs: &Jobs,
    group: &KeyGroup,
) -> Result<AccessToken, JobError> {
    let svc = jobs.service();
    let cred = svc.credential(&group.credential).await?;
    let entra = jobs.azure().entra();
    let kind = group.target.kind();
    if let Some(t) = entra.cached(&cred.name, &cred.tenant_id, &cred.client_id, kind) {
        return Ok(t);
    }
    let token = match svc.sign_in_material(&group.credential).await? {
        SignInMaterial::Secret(secret) => {
            let token = entra
                .token(&cred.name, &cred.tenant_id, &cred.client_id, kind, &secret)
                .await;
            drop(secret);
            token?
        }
        SignInMaterial::Certificate {
            key_id,
            certificate_der,
        } => {
            let signer = HsmAssertionSigner::new(
                svc.hsm().clone(),
                key_id,
                certificate_der,
                jobs.settings().assertion_alg,
            );
            let jwt = build_client_assertion(
                &signer,
                &entra.token_url(&cred.tenant_id),
                &cred.client_id,
                svc.clock().now_system(),
            )
            .await?;
            entra
                .token_with(
                    &cred.name,
                    &cred.tenant_id,
                    &cred.client_id,
                    kind,
                    ClientAuth::Assertion(jwt),
                )
                .await?
        }
    };
    Ok(token)
}

/// Whether an error is Key Vault refusing the token (401) in a way a new token can fix. A
/// challenge naming another tenant than the credential's is turned into a clear error instead.
pub(super) async fn needs_new_token(
    jobs: &Jobs,
    group: &KeyGroup,
    err: &JobError,
) -> Result<bool, JobError> {
    let JobError::Azure(AzureError::KeyVault(KeyVaultError::Unauthorized { tenant, .. })) = err
    else {
        return Ok(false);
    };
    let cred = jobs.service().credential(&group.credential).await?;
    if let Some(t) = tenant
        && !t.eq_ignore_ascii_case(&cred.tenant_id)
    {
        return Err(JobError::WrongTenant {
            target: group.target.clone(),
            tenant: t.clone(),
            credential: cred.name.to_string(),
            credential_tenant: cred.tenant_id.clone(),
        });
    }
    Ok(true)
}

/// Forgets the group credential's cached token after a 401 and records why.
pub(super) async fn drop_token(jobs: &Jobs, id: JobId, group: &KeyGroup) -> Result<(), JobError> {
    jobs.azure().entra().invalidate(group.credential.as_str());
    tracing::warn!(event = Event::AzureTokenRefused.as_str(), job = id.get(), group = %group.name,
        vault = %group.target.name(), credential = %group.credential,
        "Key Vault refused the access token (401); signing in again once");
    jobs.service()
        .job_step(
            id,
            "Key Vault refused the access token (401); requesting a new token",
            None,
        )
        .await?;
    Ok(())
}

impl Session for Jobs {
    type Vault<'a> = SignedIn<'a>;

    async fn sign_in(&self, id: JobId, group: &KeyGroup) -> Result<AccessToken, JobError> {
        sign_in(self, id, group).await
    }

    async fn needs_new_token(&self, group: &KeyGroup, err: &JobError) -> Result<bool, JobError> {
        needs_new_token(self, group, err).await
    }

    async fn drop_token(&self, id: JobId, group: &KeyGroup) -> Result<(), JobError> {
        drop_token(self, id, group).await
    }

    fn vault<'a>(&'a self, vault: &'a Target, token: &AccessToken) -> SignedIn<'a> {
        SignedIn::new(self.azure().keyvault(), token.clone(), vault)
    }
}
