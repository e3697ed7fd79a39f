//! Credential operations: add (sealing the secret in the HSM, or generating a certificate
//! credential's signing key there), list, show, set expiry, delete, export of a certificate or
//! CSR, and what sign-in needs. Views never carry the secret.

use super::credential_cert::{self, Artefact, DEFAULT_VALIDITY_DAYS, MAX_VALIDITY_DAYS};
use super::{Service, ServiceError};
use crate::azure::SignInProof;
use crate::dual_control::{Approved, DeleteCredential};
use crate::logs::Event;
use crate::model::{
    Credential, CredentialAuth, CredentialName, Guid, HsmKeyId, certificate_thumbprint,
    secret_fingerprint,
};
use crate::secret::SecretBytes;
use base64::Engine;
use serde::Serialize;

/// A request to add a credential. The secret moves in and is zeroized when dropped.
#[derive(Debug)]
pub struct NewCredential {
    pub name: CredentialName,
    pub tenant_id: Guid,
    pub client_id: Guid,
    pub secret: SecretBytes,
    pub expires: Option<i64>,
}

/// A request to add a certificate credential: byokd generates the key pair in the HSM and a
/// self-signed certificate valid for `validity_days` (default 365).
#[derive(Debug)]
pub struct NewCertificateCredential {
    pub name: CredentialName,
    pub tenant_id: Guid,
    pub client_id: Guid,
    pub validity_days: Option<u32>,
}

/// What sign-in needs of a credential.
pub enum SignInMaterial {
    /// The unsealed client secret; drop it as soon as the request is sent.
    Secret(SecretBytes),
    /// The HSM signing key and the certificate registered with the app.
    Certificate {
        key_id: HsmKeyId,
        certificate_der: Vec<u8>,
    },
}

/// A certificate credential's certificate, for upload to the app registration.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertificateExport {
    pub name: String,
    /// The certificate, PEM (`-----BEGIN CERTIFICATE-----`).
    pub certificate_pem: String,
    /// SHA-1 thumbprint, upper-case hex, as the Azure portal shows it.
    pub thumbprint: String,
    /// base64url SHA-256 of the DER: the `x5t#S256` of PS256 assertions.
    pub x5t_s256: String,
    /// Unix seconds, UTC.
    pub not_after: Option<i64>,
}

/// What listing shows of a credential: never the secret.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CredentialView {
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    pub kind: &'static str,
    /// Whether Entra ID has accepted a sign-in with it.
    pub verified: bool,
    pub fingerprint: String,
    pub created: i64,
    pub expires: Option<i64>,
    pub groups: Vec<String>,
}

impl Service {
    /// Adds a client-secret credential no sign-in has proved: recorded and shown as unverified
    /// until a sign-in succeeds.
    pub async fn add_credential(
        &self,
        new: NewCredential,
        by: &str,
    ) -> Result<CredentialView, ServiceError> {
        self.add_secret_credential(new, None, by).await
    }

    /// Adds a client-secret credential Entra ID accepted a sign-in with just now.
    pub async fn add_verified_credential(
        &self,
        new: NewCredential,
        proof: SignInProof,
        by: &str,
    ) -> Result<CredentialView, ServiceError> {
        self.add_secret_credential(new, Some(proof), by).await
    }

    async fn add_secret_credential(
        &self,
        new: NewCredential,
        proof: Option<SignInProof>,
        by: &str,
    ) -> Result<CredentialView, ServiceError> {
        if new.secret.is_empty() {
            return Err(
                crate::model::ModelError::new("secret", "the client secret is empty").into(),
            );
        }
        self.check_new_credential(&new.name).await?;
        let sealed = self
            .hsm()
            .seal(new.name.as_str().as_bytes(), &new.secret)
            .await?;
        let fingerprint = secret_fingerprint(&new.name, new.secret.expose_secret());
        drop(new.secret);
        let auth = CredentialAuth::Secret { sealed };
        let verified = proof.is_some();
        let credential = Credential {
            name: new.name.clone(),
            tenant_id: new.tenant_id,
            client_id: new.client_id,
            auth: if verified { auth } else { auth.unverified() },
            fingerprint,
            created: self.now_unix(),
            expires: new.expires,
        };
        let view = self.insert_credential(credential).await?;
        tracing::warn!(event = Event::CredentialAdded.as_str(), service = "control", credential = %new.name, identity = by,
            verified, "Client-secret credential added: {}, by {by} ({})", new.name,
            if verified { "Entra ID accepted its sign-in" } else { "not verified: no sign-in tried yet" });
        Ok(view)
    }

    /// Adds a certificate credential: an RSA-3072 key pair generated in the HSM (not
    /// extractable) and a self-signed certificate signed there. The key is destroyed again if
    /// the credential cannot be stored.
    pub async fn add_certificate_credential(
        &self,
        new: NewCertificateCredential,
        by: &str,
    ) -> Result<CredentialView, ServiceError> {
        let days = new.validity_days.unwrap_or(DEFAULT_VALIDITY_DAYS);
        if days == 0 || days > MAX_VALIDITY_DAYS {
            return Err(crate::model::ModelError::new(
                "validity_days",
                format!("the certificate validity must be 1 to {MAX_VALIDITY_DAYS} days"),
            )
            .into());
        }
        self.check_new_credential(&new.name).await?;
        let key = self.hsm().generate_signing_key(new.name.as_str()).await?;
        let built = credential_cert::build(
            self.hsm(),
            &new.name,
            key.id,
            &key.public.spki_der,
            days,
            false,
            self.clock().now(),
        )
        .await;
        let (der, not_after) = match built {
            Ok(Artefact::Certificate { der, not_after }) => (der, not_after),
            Ok(Artefact::Csr { .. }) => {
                self.discard_signing_key(key.id).await;
                return Err(ServiceError::Certificate(
                    "the builder returned a CSR".into(),
                ));
            }
            Err(e) => {
                self.discard_signing_key(key.id).await;
                return Err(e);
            }
        };
        let credential = Credential {
            name: new.name.clone(),
            tenant_id: new.tenant_id,
            client_id: new.client_id,
            fingerprint: certificate_thumbprint(&der),
            // Unproved until its certificate is uploaded and a sign-in succeeds.
            auth: CredentialAuth::Certificate {
                key_id: key.id,
                certificate_der: der,
            }
            .unverified(),
            created: self.now_unix(),
            expires: Some(not_after),
        };
        match self.insert_credential(credential).await {
            Ok(view) => {
                tracing::warn!(event = Event::CredentialCertificateCreated.as_str(), service = "control", credential = %new.name,
                    kid = %key.id.to_hex(), thumbprint = %view.fingerprint, identity = by,
                    "certificate credential added");
                Ok(view)
            }
            Err(e) => {
                self.discard_signing_key(key.id).await;
                Err(e)
            }
        }
    }

    async fn discard_signing_key(&self, id: HsmKeyId) {
        if let Err(e) = self.hsm().destroy(id).await {
            tracing::warn!(kid = %id.to_hex(), error = %e,
                "could not destroy an unused credential signing key; remove it with the token's tools");
        }
    }

    async fn check_new_credential(&self, name: &CredentialName) -> Result<(), ServiceError> {
        let limit = self.config().limits.max_credentials;
        let data = self.inner.data.lock().await;
        if data.state.credentials.contains_key(name) {
            return Err(ServiceError::Conflict(format!(
                "credential {:?} already exists",
                name.as_str()
            )));
        }
        if data.state.credentials.len() >= limit {
            return Err(ServiceError::Limit(format!(
                "at most {limit} credentials (limits.max_credentials)"
            )));
        }
        Ok(())
    }

    async fn insert_credential(
        &self,
        credential: Credential,
    ) -> Result<CredentialView, ServiceError> {
        let name = credential.name.clone();
        let limit = self.config().limits.max_credentials;
        // Checked again under the lock that commits: adds that ran while the key was generated
        // may have taken the name or the last place.
        let mut data = self.inner.data.lock().await;
        if data.state.credentials.contains_key(&name) {
            return Err(ServiceError::Conflict(format!(
                "credential {:?} already exists",
                name.as_str()
            )));
        }
        if data.state.credentials.len() >= limit {
            return Err(ServiceError::Limit(format!(
                "at most {limit} credentials (limits.max_credentials)"
            )));
        }
        data.state.credentials.insert(name.clone(), credential);
        if let Err(e) = data.commit().await {
            data.state.credentials.remove(&name);
            return Err(e);
        }
        view(&data.state, &name)
    }

    /// The certificate of a certificate credential, PEM, for the app registration.
    pub async fn credential_certificate(
        &self,
        name: &CredentialName,
    ) -> Result<CertificateExport, ServiceError> {
        let (_, der, expires) = self.certificate_parts(name).await?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        Ok(CertificateExport {
            name: name.to_string(),
            certificate_pem: pem,
            thumbprint: certificate_thumbprint(&der),
            x5t_s256: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(<sha2::Sha256 as sha2::Digest>::digest(&der)),
            not_after: expires,
        })
    }

    /// A PKCS#10 CSR (PEM) for the credential's HSM key, signed in the HSM, for a CA that
    /// issues the certificate instead of the self-signed one.
    pub async fn credential_csr(&self, name: &CredentialName) -> Result<String, ServiceError> {
        let (key_id, _, _) = self.certificate_parts(name).await?;
        let public = self.hsm().public_key(key_id).await?;
        match credential_cert::build(
            self.hsm(),
            name,
            key_id,
            &public.spki_der,
            DEFAULT_VALIDITY_DAYS,
            true,
            self.clock().now(),
        )
        .await?
        {
            Artefact::Csr { pem } => Ok(pem),
            Artefact::Certificate { .. } => Err(ServiceError::Certificate(
                "the builder returned a certificate".into(),
            )),
        }
    }

    async fn certificate_parts(
        &self,
        name: &CredentialName,
    ) -> Result<(HsmKeyId, Vec<u8>, Option<i64>), ServiceError> {
        let data = self.inner.data.lock().await;
        let cred = data
            .state
            .credentials
            .get(name)
            .ok_or_else(|| ServiceError::not_found("credential", name))?;
        match cred.auth.material() {
            CredentialAuth::Certificate {
                key_id,
                certificate_der,
            } => Ok((*key_id, certificate_der.clone(), cred.expires)),
            _ => Err(ServiceError::Conflict(format!(
                "credential {:?} uses a client secret, not a certificate",
                name.as_str()
            ))),
        }
    }

    /// What a sign-in needs: the unsealed secret, or the certificate and its HSM key.
    pub async fn sign_in_material(
        &self,
        name: &CredentialName,
    ) -> Result<SignInMaterial, ServiceError> {
        let auth = {
            let data = self.inner.data.lock().await;
            data.state
                .credentials
                .get(name)
                .ok_or_else(|| ServiceError::not_found("credential", name))?
                .auth
                .material()
                .clone()
        };
        match auth {
            CredentialAuth::Certificate {
                key_id,
                certificate_der,
            } => Ok(SignInMaterial::Certificate {
                key_id,
                certificate_der,
            }),
            CredentialAuth::Secret { sealed } => Ok(SignInMaterial::Secret(
                self.hsm().unseal(name.as_str().as_bytes(), &sealed).await?,
            )),
            CredentialAuth::Unverified(_) => Err(ServiceError::Conflict(format!(
                "credential {:?} is stored in a nested unverified form; add it again",
                name.as_str()
            ))),
        }
    }

    /// Records that Entra ID accepted a sign-in with the credential: it shows as verified from
    /// now on. Commits only when it was unverified.
    pub async fn mark_credential_verified(
        &self,
        name: &CredentialName,
        _proof: &SignInProof,
    ) -> Result<(), ServiceError> {
        let mut data = self.inner.data.lock().await;
        let Some(cred) = data.state.credentials.get_mut(name) else {
            return Ok(());
        };
        if cred.auth.verified() {
            return Ok(());
        }
        let before = cred.auth.clone();
        cred.auth = before.clone().into_verified();
        if let Err(e) = data.commit().await {
            if let Some(c) = data.state.credentials.get_mut(name) {
                c.auth = before;
            }
            return Err(e);
        }
        tracing::info!(event = Event::CredentialVerified.as_str(), service = "control", credential = %name, "Credential {name} verified: Entra ID accepted its sign-in");
        Ok(())
    }

    pub async fn list_credentials(&self) -> Vec<CredentialView> {
        let data = self.inner.data.lock().await;
        data.state
            .credentials
            .keys()
            .filter_map(|n| view(&data.state, n).ok())
            .collect()
    }

    pub async fn credential(&self, name: &CredentialName) -> Result<CredentialView, ServiceError> {
        let data = self.inner.data.lock().await;
        view(&data.state, name)
    }

    pub async fn set_credential_expiry(
        &self,
        name: &CredentialName,
        expires: Option<i64>,
        by: &str,
    ) -> Result<CredentialView, ServiceError> {
        let mut data = self.inner.data.lock().await;
        let cred = data
            .state
            .credentials
            .get_mut(name)
            .ok_or_else(|| ServiceError::not_found("credential", name))?;
        let before = std::mem::replace(&mut cred.expires, expires);
        if let Err(e) = data.commit().await {
            if let Some(c) = data.state.credentials.get_mut(name) {
                c.expires = before;
            }
            return Err(e);
        }
        tracing::warn!(event = Event::CredentialExpiryChanged.as_str(), service = "control", credential = %name, identity = by,
            expires, was = before, "Expiry of credential {name} set by {by}: {} (was {})",
            expires.map_or_else(|| "none".to_owned(), |e| e.to_string()),
            before.map_or_else(|| "none".to_owned(), |e| e.to_string()));
        view(&data.state, name)
    }

    /// Whether a credential may be deleted now: it exists and no key group uses it (a group's
    /// jobs sign in with it). The approved delete checks again, under the state lock.
    pub async fn check_credential_deletable(
        &self,
        name: &CredentialName,
    ) -> Result<(), ServiceError> {
        let data = self.inner.data.lock().await;
        deletable(&data.state, name)
    }

    /// Deletes the credential a second admin approved deleting, re-checking under the state
    /// lock that no key group uses it.
    pub async fn delete_credential_approved(
        &self,
        approved: &Approved<DeleteCredential>,
    ) -> Result<(), ServiceError> {
        let name = CredentialName::try_from(approved.action().credential.clone())?;
        let by = approved.by();
        let mut data = self.inner.data.lock().await;
        deletable(&data.state, &name)?;
        let removed = data.state.credentials.remove(&name);
        if let Err(e) = data.commit().await {
            if let Some(c) = removed {
                data.state.credentials.insert(name.clone(), c);
            }
            return Err(e);
        }
        drop(data);
        tracing::warn!(event = Event::CredentialDeleted.as_str(), service = "control", credential = %name, identity = %by,
            approval = %approved.id(), "Credential {name} deleted by {by}");
        if let Some(CredentialAuth::Certificate { key_id, .. }) =
            removed.as_ref().map(|c| c.auth.material())
        {
            self.discard_signing_key(*key_id).await;
        }
        Ok(())
    }

    /// Unseals a credential's secret inside the HSM, for one sign-in. The caller drops it as
    /// soon as the request is sent.
    pub async fn unseal_credential(
        &self,
        name: &CredentialName,
    ) -> Result<SecretBytes, ServiceError> {
        let sealed = {
            let data = self.inner.data.lock().await;
            let cred = data
                .state
                .credentials
                .get(name)
                .ok_or_else(|| ServiceError::not_found("credential", name))?;
            match cred.auth.material() {
                CredentialAuth::Secret { sealed } => sealed.clone(),
                _ => {
                    return Err(ServiceError::Conflict(format!(
                        "credential {:?} is a certificate credential and has no secret",
                        name.as_str()
                    )));
                }
            }
        };
        Ok(self.hsm().unseal(name.as_str().as_bytes(), &sealed).await?)
    }
}

/// Refuses to delete a credential that does not exist or that a key group uses.
fn deletable(state: &crate::store::State, name: &CredentialName) -> Result<(), ServiceError> {
    if !state.credentials.contains_key(name) {
        return Err(ServiceError::not_found("credential", name));
    }
    let users: Vec<String> = state
        .groups_using(name)
        .map(|g| g.name.to_string())
        .collect();
    if !users.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "credential {:?} is in use by key group(s) {}; change or delete those groups first",
            name.as_str(),
            users.join(", ")
        )));
    }
    Ok(())
}

fn view(
    state: &crate::store::State,
    name: &CredentialName,
) -> Result<CredentialView, ServiceError> {
    let c = state
        .credentials
        .get(name)
        .ok_or_else(|| ServiceError::not_found("credential", name))?;
    Ok(CredentialView {
        name: c.name.to_string(),
        tenant_id: c.tenant_id.to_string(),
        client_id: c.client_id.to_string(),
        kind: c.auth.kind(),
        verified: c.auth.verified(),
        fingerprint: c.fingerprint.clone(),
        created: c.created,
        expires: c.expires,
        groups: state
            .groups_using(name)
            .map(|g| g.name.to_string())
            .collect(),
    })
}
