//! "Rotate key material": a new key generated in the HSM, named from the group and a timestamp,
//! synced so it becomes the group's current Azure version (with `nbf` = now and `exp` from
//! "keep key valid for N months"), then `last_rotated` set and the previous versions put on the
//! grace-period list, in one durable write, and only if the sync succeeded.
//!
//! The new key's name is journalled before the key is generated; a resumed rotation destroys
//! any HSM object under that name that the state never recorded, so a crash between the
//! generation and its record leaves no unused key in the HSM.

use super::executor::{Flow, begin, fail, finish_cancelled, rfc3339, step};
use super::sync::{Validity, sync_keys};
use super::{JobError, Jobs};
use crate::logs::Event;
use crate::model::{AzureVersion, JobId};
use crate::model::{JobState, KeyName, KeySync, KeySyncState, PendingGrace, RotateStep};
use crate::service::record_step;

pub(super) async fn run(jobs: &Jobs, id: JobId) -> Result<(), JobError> {
    let Some((group, _permit)) = begin(jobs, id, true).await? else {
        return Ok(());
    };
    let by = jobs.service().job(id).await?.started_by;
    let outcome = rotate(jobs, id, &group, &by).await;
    match outcome {
        Ok(()) => {}
        Err(JobError::Cancelled(by)) => finish_cancelled(jobs, id, &group, &by).await?,
        Err(e) => {
            tracing::error!(event = Event::RotationFailed.as_str(), job = id.get(), group = %group.name, vault = %group.vault, identity = %by,
                "Rotation of key group {} failed; last rotation unchanged: {e}", group.name);
            fail(jobs, id, format!("{e} (last rotation unchanged)")).await;
        }
    }
    Ok(())
}

/// The key name of a rotation: the group's name (cut to fit), the job's UTC timestamp and the job
/// id (two rotations within one second must not share a name, or the second would find the
/// first one's key and sync nothing new).
pub(super) fn key_name(group: &str, created: i64, job: JobId) -> Result<KeyName, JobError> {
    let t = time::OffsetDateTime::from_unix_timestamp(created)
        .map_err(|source| JobError::JobTime { created, source })?;
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let stamp = format!("{stamp}-{job}");
    let room = 64 - stamp.len() - 1;
    let prefix: String = group.chars().take(room).collect();
    KeyName::try_from(format!("{prefix}-{stamp}"))
        .map_err(|source| JobError::RotationKeyName { source })
}

async fn rotate(
    jobs: &Jobs,
    id: JobId,
    group: &crate::model::KeyGroup,
    by: &str,
) -> Result<(), JobError> {
    let svc = jobs.service();
    let job = svc.job(id).await?;
    let name = key_name(group.name.as_str(), job.created, id)?;
    let previous: Vec<AzureVersion> = svc
        .list_keys(&group.name)
        .await?
        .into_iter()
        .filter(|k| k.name != name.as_str())
        .filter_map(|k| k.version.map(AzureVersion::new))
        .collect();
    // The planned key is journalled before it is generated. A restart after that step may
    // find an HSM object under the planned label that the state never recorded (killed
    // between the generation and its record): it was never used, so it is destroyed.
    let planned = RotateStep::KeyPlanned { key: name.clone() };
    if job.journalled(&planned.clone().into()) {
        let destroyed = svc.destroy_unrecorded_hsm_keys(&group.name, &name).await?;
        if destroyed > 0 {
            svc.job_step(
                id,
                format!("Destroyed {destroyed} HSM key(s) labelled for {name} that were generated before the restart but never recorded"),
                None,
            )
            .await?;
        }
    }
    if job.keys.is_empty() {
        // A restart after the key was recorded finds it by its name instead of making another.
        if svc.key(&group.name, &name).await.is_err() {
            // Refused before the key is generated (after the clean-up above, so a resumed
            // rotation leaves no unrecorded key): a key no strategy wraps conformingly would
            // be made only to fail at its sync; the reason names the failed encoding class.
            // Once a key exists, the sync refuses instead, after settling the cloud (a KEK or
            // an import from before a restart).
            svc.hsm().wrap_report().strategy_for(group.key_type)?;
            svc.job_record(
                id,
                planned,
                format!("Generating key {name} in the HSM ({})", group.key_type),
                Some(10),
            )
            .await?;
            svc.create_key(&group.name, &name, by).await?;
        }
        let check = svc.key(&group.name, &name).await?.check_digits;
        svc.journal(id, |j| {
            j.keys.push(KeySync {
                key: name.clone(),
                state: KeySyncState::NotStarted,
            });
            record_step(
                j,
                RotateStep::KeyGenerated { key: name.clone() }.into(),
                &format!("Key {name} generated in the HSM (check digits {check})"),
            )
        })
        .await??;
        tracing::info!(event = Event::RotationKeyGenerated.as_str(), job = id.get(), group = %group.name, key = %name, identity = by,
            "Rotation key {name} generated in the HSM (check digits {check})");
    }
    // A rotation always sets `exp` from "keep key valid for N months", also a forced one on a
    // group whose schedule is off.
    let validity = Validity::Months(group.rotation.keep_valid_months);
    if let Flow::Cancelled(by) = sync_keys(jobs, id, group, validity).await? {
        return Err(JobError::Cancelled(by));
    }
    let version =
        svc.key(&group.name, &name)
            .await?
            .version
            .ok_or_else(|| JobError::NoVersionAfterSync {
                key: name.to_string(),
            })?;
    let now = jobs.clock().now_unix();
    let grace_days = i64::from(jobs.settings().grace_days);
    let grace = (grace_days > 0 && !previous.is_empty()).then(|| PendingGrace {
        versions: previous.clone(),
        due: now + grace_days * 86_400,
        new_version: AzureVersion::new(version.as_str()),
    });
    let message = match &grace {
        Some(g) => format!(
            "Rotation finished: version {version} is current; {} previous version(s) will be disabled at {} (grace period {grace_days} days)",
            g.versions.len(),
            rfc3339(g.due)
        ),
        None if previous.is_empty() => {
            format!("Rotation finished: version {version} is current")
        }
        None => format!(
            "Rotation finished: version {version} is current; the grace period is 0, so the previous versions stay enabled"
        ),
    };
    svc.finish_rotation(id, &group.name, now, grace, |j| {
        j.state = JobState::Succeeded;
        j.progress = 1000;
        j.ended = Some(now);
        j.steps.push(step(&message));
    })
    .await?;
    tracing::info!(
        event = Event::RotationSucceeded.as_str(),
        job = id.get(),
        group = %group.name,
        vault = %group.vault,
        key = %name,
        version = %version,
        identity = by,
        last_rotated = now,
        "Key group {} rotated: {message}",
        group.name
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_key_names_carry_the_utc_timestamp_and_fit() {
        assert_eq!(
            key_name("payments", 1_772_236_800, JobId::new(7))
                .unwrap()
                .as_str(),
            "payments-20260228T000000Z-7"
        );
        // Two rotations in the same second get different names.
        assert_ne!(
            key_name("payments", 1_772_236_800, JobId::new(7)).unwrap(),
            key_name("payments", 1_772_236_800, JobId::new(8)).unwrap()
        );
        let long = "a".repeat(127);
        let n = key_name(&long, 0, JobId::new(12)).unwrap();
        assert_eq!(n.as_str().len(), 64);
        assert!(n.as_str().ends_with("-19700101T000000Z-12"));
    }
}
