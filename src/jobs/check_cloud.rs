//! "Check cloud state": lists the group's Azure versions and compares them with what the
//! appliance believes. Reports versions Azure has that no local key records, recorded versions
//! that Azure is missing, has disabled or lets expire, and versions whose public key differs
//! from the HSM key (compared by check digits). Read-only: allowed on any appliance.

use super::executor::run_with;
use super::sign_in::sign_in;
use super::{JobError, Jobs};
use crate::azure::jwk::jwk_matches_spki;
use crate::azure::{AzureError, JsonWebKey, KeyVaultError};
use crate::logs::Event;
use crate::model::JobId;
use crate::model::{AzureVersion, CheckCloudStep, DriftFinding, DriftReport, KeyGroup};

pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    run_with(jobs, id, false, async |group| check(jobs, id, group).await).await
}

async fn check(jobs: &Jobs, id: JobId, group: &KeyGroup) -> Result<String, JobError> {
    let svc = jobs.service();
    let kv = jobs.azure().keyvault();
    let vault = group.vault.as_str();
    let name = group.name.as_str();
    let token = sign_in(jobs, id, group).await?;
    let keys = svc.list_keys(&group.name).await?;
    let listed = match kv.list_versions(&token, vault, name).await {
        Ok(items) if !items.is_empty() => Some(items),
        // An empty listing: the key itself may be gone (Azure lists no versions of a deleted key).
        Ok(items) => match kv.get_key(&token, vault, name, None).await {
            Ok(_) => Some(items),
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => None,
            Err(e) => return Err(e.into()),
        },
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => None,
        Err(e) => return Err(e.into()),
    };
    let versions = listed.as_ref().map_or(0, Vec::len);
    svc.job_record(
        id,
        CheckCloudStep::Listed {
            versions: u32::try_from(versions).unwrap_or(u32::MAX),
        },
        format!("Azure lists {versions} version(s) of {vault}/{name}"),
        Some(400),
    )
    .await?;
    let now = jobs.clock().now_unix();
    let mut findings = Vec::new();
    let recorded: Vec<_> = keys
        .iter()
        .filter_map(|k| {
            k.version
                .as_ref()
                .map(|v| (k, AzureVersion::new(v.as_str())))
        })
        .collect();
    match &listed {
        None => {
            if !recorded.is_empty() {
                findings.push(DriftFinding::KeyMissing);
            }
        }
        Some(items) => {
            for item in items {
                let v = item.version();
                if !recorded
                    .iter()
                    .any(|(_, rv)| rv.as_str().eq_ignore_ascii_case(v))
                {
                    findings.push(DriftFinding::UnknownVersion {
                        version: item.azure_version(),
                    });
                }
            }
            for (key, version) in &recorded {
                let Some(item) = items
                    .iter()
                    .find(|i| i.version().eq_ignore_ascii_case(version.as_str()))
                else {
                    findings.push(DriftFinding::MissingVersion {
                        key: key.name.clone(),
                        version: version.clone(),
                    });
                    continue;
                };
                if item.attributes.enabled == Some(false) {
                    findings.push(DriftFinding::DisabledVersion {
                        key: key.name.clone(),
                        version: version.clone(),
                    });
                }
                if let Some(exp) = item.attributes.exp
                    && exp <= now
                {
                    findings.push(DriftFinding::ExpiredVersion {
                        key: key.name.clone(),
                        version: version.clone(),
                        exp,
                    });
                }
                let local = crate::model::KeyName::try_from(key.name.clone())?;
                let spki = svc.key_public_der(&group.name, &local).await?;
                let bundle = kv
                    .get_key(&token, vault, name, Some(version.as_str()))
                    .await?;
                if !jwk_matches_spki(&bundle.key, &spki) {
                    findings.push(DriftFinding::PublicKeyMismatch {
                        key: key.name.clone(),
                        version: version.clone(),
                        hsm_check_digits: key.check_digits.clone(),
                        azure_check_digits: azure_check_digits(&bundle.key, &spki),
                    });
                }
            }
        }
    }
    for f in &findings {
        tracing::warn!(
            event = Event::DriftFound.as_str(),
            job = id.get(),
            group = %group.name,
            vault,
            kind = f.code(),
            key = f.key().unwrap_or(""),
            version = f.version().unwrap_or(""),
            "{}",
            f.describe()
        );
    }
    let count = findings.len();
    svc.set_drift(
        &group.name,
        DriftReport {
            checked: now,
            job: id,
            azure_versions: listed.as_ref().map_or(0, Vec::len),
            findings,
        },
    )
    .await?;
    if count == 0 {
        tracing::info!(event = Event::DriftClean.as_str(), job = id.get(), group = %group.name, vault, "Azure matches the appliance");
        Ok("Azure matches the appliance: no drift".to_owned())
    } else {
        Ok(format!(
            "{count} difference(s) between Azure and the appliance; see `byokctl group show {name}`"
        ))
    }
}

/// The check digits of the public key Azure reports: RSA from its modulus and exponent, EC by
/// putting Azure's point into the HSM key's SPKI (same curve, same encoding length).
fn azure_check_digits(jwk: &JsonWebKey, hsm_spki: &[u8]) -> String {
    use rsa::pkcs8::EncodePublicKey;
    let unknown = || "????".to_owned();
    if let (Some(n), Some(e)) = (
        JsonWebKey::decode(jwk.n.as_deref()),
        JsonWebKey::decode(jwk.e.as_deref()),
    ) {
        #[allow(deprecated)]
        let key = rsa::RsaPublicKey::new(
            rsa::BoxedUint::from_be_slice_vartime(&n),
            rsa::BoxedUint::from_be_slice_vartime(&e),
        );
        return key
            .ok()
            .and_then(|k| k.to_public_key_der().ok())
            .map_or_else(unknown, |d| crate::hsm::check_digits(d.as_bytes()));
    }
    if let (Some(x), Some(y)) = (
        JsonWebKey::decode(jwk.x.as_deref()),
        JsonWebKey::decode(jwk.y.as_deref()),
    ) {
        let point_len = 1 + x.len() + y.len();
        if hsm_spki.len() > point_len {
            let mut der = hsm_spki[..hsm_spki.len() - point_len].to_vec();
            der.push(0x04);
            der.extend_from_slice(&x);
            der.extend_from_slice(&y);
            return crate::hsm::check_digits(&der);
        }
    }
    unknown()
}
