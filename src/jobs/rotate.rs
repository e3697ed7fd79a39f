//! "Rotate key material": a new key generated in the HSM, named from the group and a timestamp,
//! synced so it becomes the group's current Azure version (with `nbf` = now and `exp` from
//! "keep key valid for N months"), then `last_rotated` set and the previous versions put on the
//! grace-period list, in one durable write, and only if the sync succeeded.
//!
//! The new key's name is journalled before the key is generated; a resumed rotation destroys
//! any HSM object under that name that the state never recorded, so a crash between the
//! generation and its record leaves no unused key in the HSM.

use super::executor::{Flow, begin_cloud, fail, finish_cancelled, rfc3339};
use super::ports::{JobStore, KeyHsm, LocalKeys, Validity};
use super::{JobError, Jobs};
use crate::clock::Clock;
use crate::logs::Event;
use crate::model::{AzureVersion, JobId, KeyGroup, KeyName, PendingGrace, RotateStep};
use crate::service::Designated;

/// Runs a rotation job; `sync` is the procedure that pushes the new key (the sync's, wired in
/// by the dispatcher, so this kind does not depend on another).
pub(super) async fn run(
    jobs: &Jobs,
    id: JobId,
    sync: impl AsyncFn(&Jobs, JobId, &KeyGroup, Validity, &Designated) -> Result<Flow, JobError>,
) -> Result<(), JobError> {
    let Some((group, _permit, designated)) = begin_cloud(jobs, id).await? else {
        return Ok(());
    };
    let job = jobs.service().job(id).await?;
    let rotation = Rotation {
        id,
        group: &group,
        by: &job.started_by,
        created: job.created,
        grace_days: jobs.settings().grace_days,
    };
    let svc = jobs.service();
    let push = async |validity| sync(jobs, id, &group, validity, &designated).await;
    let outcome = rotate(&rotation, svc, svc.hsm(), jobs.clock().as_ref(), push).await;
    match outcome {
        Ok(()) => {}
        Err(JobError::Cancelled(by)) => finish_cancelled(jobs, id, &group, &by).await?,
        Err(e) => {
            let by = &job.started_by;
            tracing::error!(event = Event::RotationFailed.as_str(), job = id.get(), group = %group.name, vault = %group.target.name(), identity = %by,
                "Rotation of key group {} failed; last rotation unchanged: {e}", group.name);
            fail(jobs, id, format!("{e} (last rotation unchanged)")).await;
        }
    }
    Ok(())
}

/// What one rotation works on: its job, the group, who started it, when the job was created
/// (the new key's name carries it) and `lifecycle.grace_days`.
pub(super) struct Rotation<'a> {
    pub(super) id: JobId,
    pub(super) group: &'a KeyGroup,
    pub(super) by: &'a str,
    pub(super) created: i64,
    pub(super) grace_days: u32,
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

/// The rotation's state machine: plan the key (journalled), generate it in the HSM once, `push`
/// it as the group's new Azure version valid as the rotation policy says, then end the
/// rotation with the previous versions put on the grace list.
pub(super) async fn rotate<S: JobStore + LocalKeys>(
    r: &Rotation<'_>,
    store: &S,
    hsm: &impl KeyHsm,
    clock: &dyn Clock,
    push: impl AsyncFnOnce(Validity) -> Result<Flow, JobError>,
) -> Result<(), JobError> {
    let (id, group, by) = (r.id, r.group, r.by);
    let name = key_name(group.name.as_str(), r.created, id)?;
    let previous: Vec<AzureVersion> = store
        .keys(&group.name)
        .await?
        .into_iter()
        .filter(|k| k.name != name)
        .filter_map(|k| k.azure_version)
        .collect();
    // The planned key is journalled before it is generated. A restart after that step may
    // find an HSM object under the planned label that the state never recorded (killed
    // between the generation and its record): it was never used, so it is destroyed.
    let planned = RotateStep::KeyPlanned { key: name.clone() };
    if store.journal(id).await?.contains(&planned.clone().into()) {
        let destroyed = store.destroy_unrecorded(&group.name, &name).await?;
        if destroyed > 0 {
            store.note(
                id,
                format!("Destroyed {destroyed} HSM key(s) labelled for {name} that were generated before the restart but never recorded"),
                None,
            )
            .await?;
        }
    }
    if store.key_syncs(id).await?.is_empty() {
        // A restart after the key was recorded finds it by its name instead of making another.
        if store.key(&group.name, &name).await.is_err() {
            // Refused before the key is generated (after the clean-up above, so a resumed
            // rotation leaves no unrecorded key): a key no strategy wraps conformingly would
            // be made only to fail at its sync; the reason names the failed encoding class.
            // Once a key exists, the sync refuses instead, after settling the cloud (a KEK or
            // an import from before a restart).
            hsm.strategy_for(group.key_type)?;
            store
                .record(
                    id,
                    planned.into(),
                    format!("Generating key {name} in the HSM ({})", group.key_type),
                    Some(10),
                )
                .await?;
            store.generate(&group.name, &name, by).await?;
        }
        let check = store.key(&group.name, &name).await?.check_digits;
        let message = format!("Key {name} generated in the HSM (check digits {check})");
        store.record_rotation_key(id, &name, message).await?;
        tracing::info!(event = Event::RotationKeyGenerated.as_str(), job = id.get(), group = %group.name, key = %name, identity = by,
            "Rotation key {name} generated in the HSM (check digits {check})");
    }
    // A rotation always sets `exp` from "keep key valid for N months", also a forced one on a
    // group whose schedule is off.
    let validity = Validity::Months(group.rotation.keep_valid_months);
    if let Flow::Cancelled(by) = push(validity).await? {
        return Err(JobError::Cancelled(by));
    }
    let version = store
        .key(&group.name, &name)
        .await?
        .azure_version
        .ok_or_else(|| JobError::NoVersionAfterSync {
            key: name.to_string(),
        })?;
    let now = clock.now_unix();
    let grace_days = i64::from(r.grace_days);
    let grace = (grace_days > 0 && !previous.is_empty()).then(|| PendingGrace {
        versions: previous.clone(),
        due: now + grace_days * 86_400,
        new_version: version.clone(),
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
    store
        .finish_rotation(id, &group.name, now, grace, message.clone())
        .await?;
    tracing::info!(
        event = Event::RotationSucceeded.as_str(),
        job = id.get(),
        group = %group.name,
        vault = %group.target.name(),
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
    use crate::clock::ManualClock;
    use crate::jobs::fakes::{FakeHsm, FakeStore, group, local_key};
    use crate::model::{KeySync, KeySyncState};
    use std::sync::Mutex;

    const ID: JobId = JobId::new(7);
    /// 2026-02-28T00:00:00Z.
    const CREATED: i64 = 1_772_236_800;

    fn planned_key() -> KeyName {
        key_name("payments", CREATED, ID).unwrap()
    }

    fn rotation(group: &KeyGroup, grace_days: u32) -> Rotation<'_> {
        Rotation {
            id: ID,
            group,
            by: "admin",
            created: CREATED,
            grace_days,
        }
    }

    /// Runs the rotation with a push that records the new key as version `v2` (as the sync
    /// would) and remembers the validity it was asked for.
    async fn rotate_with_push(
        store: &FakeStore,
        group: &KeyGroup,
        clock: &ManualClock,
        grace_days: u32,
    ) -> (Result<(), JobError>, Vec<Validity>) {
        let asked = Mutex::new(Vec::new());
        let push = async |validity| {
            asked.lock().unwrap().push(validity);
            let version = AzureVersion::new("v2");
            let key = planned_key();
            let pushed = vec!["pushed".to_owned()];
            store
                .record_sync(ID, &group.name, &key, &version, pushed, None)
                .await?;
            Ok(Flow::Done)
        };
        let r = rotation(group, grace_days);
        let outcome = rotate(&r, store, &FakeHsm::default(), clock, push).await;
        (outcome, asked.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_rotation_resumed_after_planning_its_key_generates_that_key_once() {
        // Killed between the planned step and the key's record: one unrecorded HSM object.
        let store = FakeStore::after([RotateStep::KeyPlanned { key: planned_key() }.into()])
            .with_local([local_key("old", 1, Some("v1"))])
            .with_unrecorded(1);
        let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH);
        let (outcome, pushes) = rotate_with_push(&store, &group(), &clock, 0).await;
        outcome.unwrap();
        assert_eq!(store.generated(), [planned_key()]);
        assert_eq!(pushes.len(), 1);
        assert!(
            store
                .notes()
                .iter()
                .any(|n| n.starts_with("Destroyed 1 HSM key(s)")),
            "{:?}",
            store.notes()
        );
        let generated = RotateStep::KeyGenerated { key: planned_key() }.into();
        assert!(store.steps().contains(&generated));
        assert!(store.rotated().is_some());
    }

    #[tokio::test]
    async fn a_rotation_resumed_after_generating_its_key_makes_no_second_key() {
        let name = planned_key();
        let store = FakeStore::after([
            RotateStep::KeyPlanned { key: name.clone() }.into(),
            RotateStep::KeyGenerated { key: name.clone() }.into(),
        ])
        .with_keys([KeySync {
            key: name.clone(),
            state: KeySyncState::NotStarted,
        }])
        .with_local([local_key(name.as_str(), 9, None)]);
        let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH);
        let (outcome, pushes) = rotate_with_push(&store, &group(), &clock, 0).await;
        outcome.unwrap();
        assert!(store.generated().is_empty());
        assert_eq!(pushes.len(), 1);
        // Nothing journalled again: the push recorded the version, that is all.
        assert_eq!(store.steps().len(), 3);
    }

    #[tokio::test]
    async fn a_rotation_asks_for_exp_from_its_policy_even_with_the_schedule_off() {
        let mut g = group();
        g.rotation.enabled = false;
        g.rotation.keep_valid_months = 6;
        let store = FakeStore::default();
        let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH);
        let (outcome, pushes) = rotate_with_push(&store, &g, &clock, 0).await;
        outcome.unwrap();
        assert_eq!(pushes, [Validity::Months(6)]);
        let (at, message) = store.rotated().unwrap();
        assert_eq!(at, 0);
        assert_eq!(message, "Rotation finished: version v2 is current");
    }

    #[tokio::test]
    async fn a_rotation_puts_the_previous_versions_on_the_grace_list() {
        let store = FakeStore::default().with_local([local_key("old", 1, Some("v1"))]);
        let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH);
        let (outcome, _) = rotate_with_push(&store, &group(), &clock, 7).await;
        outcome.unwrap();
        let grace = store.grace().unwrap();
        assert_eq!(grace.versions, [AzureVersion::new("v1")]);
        assert_eq!(grace.new_version, AzureVersion::new("v2"));
        assert_eq!(grace.due, 7 * 86_400);
    }

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
