//! Credential operations: add (sealing the secret in the HSM), list, show, set expiry, delete,
//! and unseal for sign-in. Views never carry the secret.

use super::{Service, ServiceError, now_unix};
use crate::model::{Credential, CredentialAuth, CredentialName, Guid, secret_fingerprint};
use crate::secret::SecretBytes;
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

/// What listing shows of a credential: never the secret.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CredentialView {
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    pub kind: &'static str,
    pub fingerprint: String,
    pub created: i64,
    pub expires: Option<i64>,
    pub groups: Vec<String>,
}

impl Service {
    pub async fn add_credential(
        &self,
        new: NewCredential,
        by: &str,
    ) -> Result<CredentialView, ServiceError> {
        if new.secret.is_empty() {
            return Err(
                crate::model::ModelError::new("secret", "the client secret is empty").into(),
            );
        }
        let limit = self.config().limits.max_credentials;
        {
            let data = self.inner.data.lock().await;
            if data.state.credentials.contains_key(&new.name) {
                return Err(ServiceError::Conflict(format!(
                    "credential {:?} already exists",
                    new.name.as_str()
                )));
            }
            if data.state.credentials.len() >= limit {
                return Err(ServiceError::Limit(format!(
                    "at most {limit} credentials (limits.max_credentials)"
                )));
            }
        }
        let sealed = self
            .hsm()
            .seal(new.name.as_str().as_bytes(), &new.secret)
            .await?;
        let fingerprint = secret_fingerprint(&new.name, new.secret.expose_secret());
        drop(new.secret);
        let credential = Credential {
            name: new.name.clone(),
            tenant_id: new.tenant_id,
            client_id: new.client_id,
            auth: CredentialAuth::Secret { sealed },
            fingerprint,
            created: now_unix(),
            expires: new.expires,
        };
        let mut data = self.inner.data.lock().await;
        if data.state.credentials.contains_key(&new.name) {
            return Err(ServiceError::Conflict(format!(
                "credential {:?} already exists",
                new.name.as_str()
            )));
        }
        data.state.credentials.insert(new.name.clone(), credential);
        if let Err(e) = data.commit() {
            data.state.credentials.remove(&new.name);
            return Err(e);
        }
        tracing::info!(credential = %new.name, identity = by, "credential added");
        view(&data.state, &new.name)
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
        if let Err(e) = data.commit() {
            if let Some(c) = data.state.credentials.get_mut(name) {
                c.expires = before;
            }
            return Err(e);
        }
        tracing::info!(credential = %name, identity = by, expires, "credential expiry set");
        view(&data.state, name)
    }

    /// Deletes a credential that no key group uses.
    pub async fn delete_credential(
        &self,
        name: &CredentialName,
        by: &str,
    ) -> Result<(), ServiceError> {
        let mut data = self.inner.data.lock().await;
        if !data.state.credentials.contains_key(name) {
            return Err(ServiceError::not_found("credential", name));
        }
        let users: Vec<String> = data
            .state
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
        let removed = data.state.credentials.remove(name);
        if let Err(e) = data.commit() {
            if let Some(c) = removed {
                data.state.credentials.insert(name.clone(), c);
            }
            return Err(e);
        }
        tracing::info!(credential = %name, identity = by, "credential deleted");
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
            match &cred.auth {
                CredentialAuth::Secret { sealed } => sealed.clone(),
            }
        };
        Ok(self.hsm().unseal(name.as_str().as_bytes(), &sealed).await?)
    }
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
        kind: match c.auth {
            CredentialAuth::Secret { .. } => "secret",
        },
        fingerprint: c.fingerprint.clone(),
        created: c.created,
        expires: c.expires,
        groups: state
            .groups_using(name)
            .map(|g| g.name.to_string())
            .collect(),
    })
}
