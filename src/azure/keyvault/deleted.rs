//! The calls on deleted keys: delete a key, read it as deleted, purge it, recover it.

use super::KeyVault;
use super::errors::{KvOp, map_error};
use super::request::key_name;
use super::types::{DeletedKeyBundle, KeyBundle};
use crate::azure::AzureError;
use crate::azure::entra::AccessToken;
use crate::model::Target;
use http::Method;

impl KeyVault {
    /// `DELETE /keys/{name}`: deletes every version.
    pub async fn delete_key(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
    ) -> Result<DeletedKeyBundle, AzureError> {
        let path = format!("/keys/{}", key_name(name)?);
        let deleted: DeletedKeyBundle = self
            .call(
                token,
                target,
                name,
                KvOp::Delete,
                Method::DELETE,
                &path,
                None,
                true,
            )
            .await?;
        tracing::info!(
            vault = target.name(),
            kid = deleted.bundle.kid(),
            "deleted key"
        );
        Ok(deleted)
    }

    /// `GET /deletedkeys/{name}` (404 for a while right after a delete).
    pub async fn get_deleted_key(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
    ) -> Result<DeletedKeyBundle, AzureError> {
        let path = format!("/deletedkeys/{}", key_name(name)?);
        self.call(
            token,
            target,
            name,
            KvOp::GetDeleted,
            Method::GET,
            &path,
            None,
            true,
        )
        .await
    }

    /// `DELETE /deletedkeys/{name}`: 204. A 409 is [`KeyVaultError::BeingDeleted`] (retry later); a
    /// 403 without a permission code is [`KeyVaultError::PurgeProtected`].
    pub async fn purge_deleted_key(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
    ) -> Result<(), AzureError> {
        let path = format!("/deletedkeys/{}", key_name(name)?);
        let url = self.url(target, &path)?;
        let resp = self.send(token, Method::DELETE, &url, None, true).await?;
        if resp.status.is_success() {
            tracing::info!(vault = target.name(), key = name, "purged deleted key");
            return Ok(());
        }
        Err(map_error(&self.endpoints, target, name, KvOp::Purge, &resp))
    }

    /// `POST /deletedkeys/{name}/recover`.
    pub async fn recover_deleted_key(
        &self,
        token: &AccessToken,
        target: &Target,
        name: &str,
    ) -> Result<KeyBundle, AzureError> {
        let path = format!("/deletedkeys/{}/recover", key_name(name)?);
        self.call(
            token,
            target,
            name,
            KvOp::Recover,
            Method::POST,
            &path,
            None,
            false,
        )
        .await
    }
}
