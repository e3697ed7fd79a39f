//! "Check cloud state": lists the group's Azure versions and compares them with what the
//! appliance believes. Reports versions Azure has that no local key records, recorded versions
//! that Azure is missing, has disabled or lets expire, and versions whose public key differs
//! from the HSM key (compared by check digits). Read-only: allowed on any appliance.

use super::executor::{run_with, sign_in_to_vault};
use super::ports::{JobStore, KeyHsm, LocalKeys, Vault};
use super::{JobError, Jobs};
use crate::azure::jwk::jwk_matches;
use crate::azure::{AzureError, JsonWebKey, KeyVaultError};
use crate::clock::Clock;
use crate::hsm::KeyIdentity;
use crate::logs::Event;
use crate::model::JobId;
use crate::model::{CheckCloudStep, DriftFinding, DriftReport, KeyGroup};

pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    run_with(jobs, id, async |group| {
        let vault = sign_in_to_vault(jobs, id, group).await?;
        let svc = jobs.service();
        check(&vault, (svc, svc.hsm()), id, group, jobs.clock().as_ref()).await
    })
    .await
}

/// The check's state machine: one listing of the Azure versions, compared with the group's
/// local keys (their public keys read from the HSM), the report kept on the group.
pub(super) async fn check<S: JobStore + LocalKeys>(
    kv: &impl Vault,
    (store, hsm): (&S, &impl KeyHsm),
    id: JobId,
    group: &KeyGroup,
    clock: &dyn Clock,
) -> Result<String, JobError> {
    let vault = group.target.name();
    let name = group.name.as_str();
    let keys = store.keys(&group.name).await?;
    let listed = match kv.list_versions(name).await {
        Ok(items) if !items.is_empty() => Some(items),
        // An empty listing: the key itself may be gone (Azure lists no versions of a deleted key).
        Ok(items) => match kv.get_key(name).await {
            Ok(_) => Some(items),
            Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => None,
            Err(e) => return Err(e.into()),
        },
        Err(AzureError::KeyVault(KeyVaultError::NotFound { .. })) => None,
        Err(e) => return Err(e.into()),
    };
    let versions = listed.as_ref().map_or(0, Vec::len);
    store
        .record(
            id,
            CheckCloudStep::Listed {
                versions: u32::try_from(versions).unwrap_or(u32::MAX),
            }
            .into(),
            format!("Azure lists {versions} version(s) of {vault}/{name}"),
            Some(400),
        )
        .await?;
    let now = clock.now_unix();
    let mut findings = Vec::new();
    let recorded: Vec<_> = keys
        .iter()
        .filter_map(|k| k.azure_version.as_ref().map(|v| (k, v.clone())))
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
                let key_name = key.name.to_string();
                let Some(item) = items
                    .iter()
                    .find(|i| i.version().eq_ignore_ascii_case(version.as_str()))
                else {
                    findings.push(DriftFinding::MissingVersion {
                        key: key_name,
                        version: version.clone(),
                    });
                    continue;
                };
                if item.attributes.enabled == Some(false) {
                    findings.push(DriftFinding::DisabledVersion {
                        key: key_name.clone(),
                        version: version.clone(),
                    });
                }
                if let Some(exp) = item.attributes.exp
                    && exp <= now
                {
                    findings.push(DriftFinding::ExpiredVersion {
                        key: key_name.clone(),
                        version: version.clone(),
                        exp,
                    });
                }
                let identity = hsm.key_identity(key.hsm_id).await?;
                let bundle = kv.get_version(name, version).await?;
                match &identity {
                    KeyIdentity::Public(public) if !jwk_matches(&bundle.key, &identity) => {
                        findings.push(DriftFinding::PublicKeyMismatch {
                            key: key_name,
                            version: version.clone(),
                            hsm_check_digits: key.check_digits.clone(),
                            azure_check_digits: azure_check_digits(&bundle.key, &public.spki_der),
                        });
                    }
                    KeyIdentity::Public(_) => {}
                    // Azure never returns an oct key's material: only its type can be compared,
                    // and the report says so rather than claiming a match.
                    KeyIdentity::Secret(_) if !jwk_matches(&bundle.key, &identity) => {
                        findings.push(DriftFinding::PublicKeyMismatch {
                            key: key_name,
                            version: version.clone(),
                            hsm_check_digits: key.check_digits.clone(),
                            azure_check_digits: format!(
                                "none (Azure reports kty {})",
                                bundle.key.kty.as_deref().unwrap_or("(none)")
                            ),
                        });
                    }
                    KeyIdentity::Secret(_) => {
                        findings.push(DriftFinding::KeyMaterialNotComparable {
                            key: key_name,
                            version: version.clone(),
                            hsm_check_digits: key.check_digits.clone(),
                        });
                    }
                }
            }
        }
    }
    for f in findings.iter().filter(|f| f.is_drift()) {
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
    let count = findings.iter().filter(|f| f.is_drift()).count();
    let not_compared = findings.len() - count;
    let report = DriftReport {
        checked: now,
        job: id,
        azure_versions: versions,
        findings,
    };
    store.set_drift(&group.name, report).await?;
    if count == 0 && not_compared > 0 {
        tracing::info!(event = Event::DriftClean.as_str(), job = id.get(), group = %group.name, vault, not_compared,
            "Azure matches the appliance as far as it can tell: {not_compared} AES key version(s) are checked by type only (Azure never returns an oct key's material)");
        Ok(format!(
            "Azure matches the appliance: no drift; {not_compared} AES key version(s) checked by type only, their key material not comparable"
        ))
    } else if count == 0 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::jobs::fakes::FakeVersion;
    use crate::jobs::fakes::{FakeHsm, FakeStore, FakeVault, ec_key, group, local_key};
    use crate::model::AzureVersion;

    const ID: JobId = JobId::new(4);

    fn version(v: &str, seed: u8, enabled: bool, exp: Option<i64>) -> FakeVersion {
        FakeVersion {
            version: v.into(),
            fingerprint: None,
            enabled,
            exp,
            jwk: ec_key(seed).1,
        }
    }

    #[tokio::test]
    async fn drift_is_reported_per_version_from_one_listing() {
        let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH);
        clock.advance(time::Duration::seconds(1_000));
        // k1 matches; k2's version is disabled; k3's is missing; k4's expired; k5's shows
        // another public key; v9 is unknown here.
        let vault = FakeVault::new()
            .with("payments", version("v1", 1, true, None))
            .with("payments", version("v2", 2, false, None))
            .with("payments", version("v4", 4, true, Some(1_000)))
            .with("payments", version("v5", 6, true, None))
            .with("payments", version("v9", 9, true, None));
        let store = FakeStore::default().with_local([
            local_key("k1", 1, Some("v1")),
            local_key("k2", 2, Some("v2")),
            local_key("k3", 3, Some("v3")),
            local_key("k4", 4, Some("v4")),
            local_key("k5", 5, Some("v5")),
            local_key("k6", 7, None),
        ]);
        let hsm = FakeHsm::default();
        let done = check(&vault, (&store, &hsm), ID, &group(), &clock)
            .await
            .unwrap();
        assert!(done.starts_with("5 difference(s)"), "{done}");
        let v = AzureVersion::new;
        let report = store.drift().unwrap();
        assert_eq!(
            report.findings,
            [
                DriftFinding::UnknownVersion { version: v("v9") },
                DriftFinding::DisabledVersion {
                    key: "k2".into(),
                    version: v("v2"),
                },
                DriftFinding::MissingVersion {
                    key: "k3".into(),
                    version: v("v3"),
                },
                DriftFinding::ExpiredVersion {
                    key: "k4".into(),
                    version: v("v4"),
                    exp: 1_000,
                },
                DriftFinding::PublicKeyMismatch {
                    key: "k5".into(),
                    version: v("v5"),
                    hsm_check_digits: "0005".into(),
                    azure_check_digits: crate::hsm::check_digits(&ec_key(6).0),
                },
            ]
        );
        assert_eq!(
            (report.checked, report.job, report.azure_versions),
            (1_000, ID, 5)
        );
        assert_eq!(
            store.steps(),
            [CheckCloudStep::Listed { versions: 5 }.into()]
        );
        // Read-only.
        assert!(vault.changes().is_empty());
    }

    #[tokio::test]
    async fn a_missing_azure_key_is_one_finding_and_a_match_is_none() {
        let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH);
        let hsm = FakeHsm::default();
        let store = FakeStore::default().with_local([local_key("k1", 1, Some("v1"))]);
        check(&FakeVault::new(), (&store, &hsm), ID, &group(), &clock)
            .await
            .unwrap();
        assert_eq!(store.drift().unwrap().findings, [DriftFinding::KeyMissing]);

        let vault = FakeVault::new().with("payments", version("v1", 1, true, None));
        let done = check(&vault, (&store, &hsm), ID, &group(), &clock)
            .await
            .unwrap();
        assert_eq!(done, "Azure matches the appliance: no drift");
        assert!(store.drift().unwrap().findings.is_empty());
    }
}
