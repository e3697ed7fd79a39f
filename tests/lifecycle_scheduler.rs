//! The rotation scheduler driven by an injected clock, in process, on a real SoftHSM token and
//! against the Azure emulator over real TLS: a scheduled rotation fires at its calendar instant
//! (not before), the previous version is disabled when the grace period ends (not before), a
//! non-designated appliance skips its schedule, and rotations missed for months run once; the
//! scheduled drift check runs every `drift_check_hours` and reports what changed in Azure. Every
//! service-log record the scheduled rotation and the grace period cause names `scheduler` as
//! the identity. Dual control reads the same clock: an approval expires, and its waiting job
//! ends, when the clock passes its expiry; approvals do not survive a restart; and a
//! non-designated appliance starts no cloud job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::azure::{Allowlist, Azure, AzureMetrics};
use byokd::clock::SharedClock;
use byokd::config::check_text;
use byokd::dual_control::{APPROVAL_LOST, DualControl, DualControlError, Status};
use byokd::hsm::{Hsm, HsmConfig};
use byokd::jobs::{Clock, Jobs, ManualClock, Scheduler};
use byokd::model::{
    CredentialName, GroupName, Guid, JobState, KeyName, KeyType, RotationPolicy, RsaExponent,
    VaultName, add_months,
};
use byokd::secret::{Pin, SecretBytes};
use byokd::service::{NewCredential, NewGroup, Service};
use byokd_emulator::{
    AppConfig, Emulator, EmulatorConfig, EmulatorHandle, KeyPoolConfig, RecoveryLevel, VaultOptions,
};
use common::softhsm::{self, SoftHsmToken};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b";
const SECRET: &str = "Qv8~sched.KnownSecret-For_Grep-0042";
const VAULT: &str = "sched-vault";
/// A vault no group names until a test creates one there.
const OTHER_VAULT: &str = "other-vault";

struct World {
    emu: EmulatorHandle,
    logs: std::path::PathBuf,
    service: Service,
    jobs: Jobs,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

async fn world(token: &SoftHsmToken) -> World {
    world_with(token, 0).await
}

/// A world whose scheduler runs a drift check every `drift_check_hours` (0: never).
async fn world_with(token: &SoftHsmToken, drift_check_hours: u32) -> World {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("emulator-ca.pem");
    let emu = Emulator::start(EmulatorConfig {
        ca_out: Some(ca_path.clone()),
        key_pool: KeyPoolConfig {
            rsa2048: 2,
            rsa3072: 0,
            rsa4096: 0,
        },
        delete_pending_ms: 200,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    emu.add_app(AppConfig::with_secret(TENANT, CLIENT, SECRET))
        .unwrap();
    emu.add_vault(
        VAULT,
        VaultOptions {
            recovery_level: RecoveryLevel::RecoverablePurgeable,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    emu.add_vault(OTHER_VAULT, VaultOptions::default()).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let text = format!(
        r#"state_dir = {state:?}
designated = true
[hsm]
module = {module:?}
token_label = {label:?}
pin_file = "/unused"
allow_host_wrap = true
[azure]
cloud = "public"
extra_ca = [{ca:?}]
kek_size = 2048
retry_base_ms = 20
[azure.resolve]
"login.microsoftonline.com" = "{addr}"
"{VAULT}.vault.azure.net" = "{addr}"
"{OTHER_VAULT}.vault.azure.net" = "{addr}"
[lifecycle]
grace_days = 7
drift_check_hours = {drift_check_hours}
"#,
        module = token.module.display().to_string(),
        label = token.label,
        ca = ca_path.display().to_string(),
        addr = emu.addr(),
    );
    let cfg = check_text(&text).unwrap_or_else(|p| panic!("{p:?}"));
    let hsm_cfg = HsmConfig {
        module: token.module.clone(),
        token_label: token.label.clone(),
        request_timeout: Duration::from_secs(120),
        allow_host_wrap: true,
        sessions: 0,
    };
    let (hsm, _) = Hsm::start(&hsm_cfg, Pin::new(token.user_pin.clone())).unwrap();
    // One manual clock for the service, the Azure client, the jobs and the log.
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let (service, _) = Service::open(cfg.clone(), hsm, shared.clone()).unwrap();
    let allowlist = Allowlist::new(cfg.azure.cloud, [VAULT]).unwrap();
    let azure = Azure::new(
        &cfg.azure,
        Arc::new(allowlist),
        AzureMetrics::new(),
        shared.clone(),
    )
    .unwrap();
    // The service log, fed from `tracing` as in the daemon.
    let logs = dir.path().join("logs");
    byokd::logs::install(
        byokd::logs::Logs::open(
            &byokd::logs::Settings {
                dir: logs.clone(),
                limits: byokd::logs::store::Limits {
                    max_segment_bytes: 1 << 20,
                    max_total_bytes: 8 << 20,
                },
                fsync_interval: Duration::from_millis(50),
                syslog: Vec::new(),
                journald: false,
            },
            shared,
        )
        .unwrap(),
    );
    {
        use tracing_subscriber::prelude::*;
        // A test that needs its own subscriber installs one with the capture layer first.
        let _ = tracing_subscriber::registry()
            .with(byokd::logs::capture::CaptureLayer)
            .try_init();
    }
    let jobs = Jobs::new(service.clone(), Arc::new(azure));
    World {
        emu,
        logs,
        service,
        jobs,
        clock,
        _dir: dir,
    }
}

fn n<T: TryFrom<&'static str>>(s: &'static str) -> T
where
    T::Error: std::fmt::Debug,
{
    T::try_from(s).unwrap()
}

async fn finished(service: &Service, id: byokd::model::JobId) -> byokd::model::Job {
    let mut changes = service.job_changes();
    loop {
        let job = service.job(id).await.unwrap();
        if job.state.is_final() {
            return job;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), changes.changed()).await;
    }
}

async fn add_credential(w: &World) {
    w.service
        .add_credential(
            NewCredential {
                name: n::<CredentialName>("app"),
                tenant_id: Guid::parse(TENANT).unwrap(),
                client_id: Guid::parse(CLIENT).unwrap(),
                secret: SecretBytes::new(SECRET.as_bytes().to_vec()),
                expires: None,
            },
            "test",
        )
        .await
        .unwrap();
}

/// Creates an EC-P256 group of credential `app` through the service.
async fn create_group(w: &World, name: &GroupName, vault: &'static str, rotation: RotationPolicy) {
    w.service
        .create_group(
            NewGroup {
                name: name.clone(),
                credential: n("app"),
                target: byokd::model::Target::KeyVault(n::<VaultName>(vault)),
                key_type: KeyType::parse("EC-P256", RsaExponent::F4).unwrap(),
                key_ops: None,
                rotation,
            },
            "test",
        )
        .await
        .unwrap();
}

fn every(months: u32) -> RotationPolicy {
    RotationPolicy {
        enabled: true,
        rotate_every_months: months,
        keep_valid_months: months + 1,
    }
}

async fn setup_group(w: &World) -> GroupName {
    add_credential(w).await;
    let group: GroupName = n("sched");
    create_group(w, &group, VAULT, every(1)).await;
    let k1: KeyName = n("k1");
    w.service.create_key(&group, &k1, "test").await.unwrap();
    let designated = w.service.designated_device().await.unwrap();
    let id = w
        .jobs
        .submit_sync(designated, &group, &[k1], "test")
        .await
        .unwrap();
    assert_eq!(finished(&w.service, id).await.state, JobState::Succeeded);
    group
}

/// The stored service-log records.
fn records(w: &World) -> Vec<byokd::logs::Record> {
    let mut out = Vec::new();
    byokd::logs::store::scan(&w.logs, |r| {
        out.push(r);
        true
    })
    .unwrap();
    out
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

#[test]
fn scheduled_rotation_and_grace_period_follow_the_injected_clock() {
    softhsm::isolated(
        "scheduled_rotation_and_grace_period_follow_the_injected_clock",
        |token| async move {
            let w = world(&token).await;
            let group = setup_group(&w).await;
            let created = w.service.group(&group).await.unwrap().created;
            let due = add_months(at(created), 1).unix_timestamp();
            let scheduler = Scheduler::new(w.jobs.clone()).await;
            assert_eq!(scheduler.next_due().await, Some(due));

            // One second early: nothing.
            w.clock.set(at(due - 1));
            let fired = scheduler.tick().await;
            assert!(fired.rotations.is_empty(), "{fired:?}");
            // At the calendar instant: one rotation job.
            w.clock.set(at(due));
            let fired = scheduler.tick().await;
            assert_eq!(fired.rotations.len(), 1, "{fired:?}");
            let job = finished(&w.service, fired.rotations[0].1).await;
            assert_eq!(job.state, JobState::Succeeded, "{job:?}");
            assert_eq!(job.started_by, "scheduler");
            // Every record of the scheduled rotation (its cloud steps included) says who.
            let rotation: Vec<_> = records(&w)
                .into_iter()
                .filter(|r| r.job == Some(job.id.get()))
                .collect();
            let events: Vec<&str> = rotation.iter().map(|r| r.event.as_str()).collect();
            for want in [
                "azure.kek.created",
                "azure.key.imported",
                "rotation.succeeded",
            ] {
                assert!(events.contains(&want), "{events:?}");
            }
            for r in &rotation {
                assert_eq!(r.identity.as_deref(), Some("scheduler"), "{r:?}");
            }
            let g = w.service.group(&group).await.unwrap();
            assert_eq!(
                g.last_rotated,
                Some(due),
                "last_rotated is the clock's time"
            );
            let versions = w.emu.key_versions(VAULT, "sched");
            assert_eq!(versions.len(), 2);
            let (old, new) = (&versions[0], &versions[1]);
            // nbf is when the version was pushed by byokd's clock (moved to `due`), exp "keep
            // valid for 2 months" after it.
            let nbf = new.nbf.expect("nbf set");
            assert_eq!(nbf, due, "nbf is the push time by the injected clock");
            assert_eq!(
                new.exp,
                Some(add_months(at(nbf), 2).unix_timestamp()),
                "exp must be keep-valid months after nbf"
            );
            // The job re-planned the group: next month, from the new last_rotated.
            scheduler.tick().await;
            assert_eq!(
                scheduler.next_due().await,
                Some(add_months(at(due), 1).unix_timestamp()).min(Some(due + 7 * 86_400))
            );

            // Grace period: the previous version stays enabled until day 7, then is disabled.
            let grace_end = due + 7 * 86_400;
            assert_eq!(g.pending_grace.as_ref().unwrap().due, grace_end);
            w.clock.set(at(grace_end - 1));
            assert!(scheduler.tick().await.grace.is_empty());
            assert!(w.emu.key_versions(VAULT, "sched")[0].enabled);
            w.clock.set(at(grace_end));
            let fired = scheduler.tick().await;
            assert_eq!(fired.grace, vec![group.clone()], "{fired:?}");
            let versions = w.emu.key_versions(VAULT, "sched");
            let find = |v: &str| versions.iter().find(|x| x.version == v).unwrap().enabled;
            assert!(!find(&old.version), "the previous version must be disabled");
            assert!(find(&new.version), "the new version stays enabled");
            assert!(w.service.pending_grace_of(&group).await.is_none());
            let disabled: Vec<_> = records(&w)
                .into_iter()
                .filter(|r| r.event == "azure.key.version_disabled")
                .collect();
            assert_eq!(disabled.len(), 1, "{disabled:?}");
            assert_eq!(disabled[0].identity.as_deref(), Some("scheduler"));
            // The grace record survives only until done: a restart would not repeat it.
            assert!(scheduler.tick().await.grace.is_empty());

            // Not designated: the next due rotation is skipped, no job, no new version.
            w.service.set_designated(false, "test-admin").await.unwrap();
            let next = add_months(at(due), 1).unix_timestamp();
            w.clock.set(at(next));
            let jobs_before = w.service.jobs().await.len();
            let fired = scheduler.tick().await;
            assert_eq!(fired.skipped, vec![group.clone()], "{fired:?}");
            assert!(fired.rotations.is_empty());
            assert_eq!(
                w.service.jobs().await.len(),
                jobs_before,
                "no job on a non-designated appliance"
            );
            assert_eq!(w.emu.key_versions(VAULT, "sched").len(), 2);

            // Designated again, five months later: the missed rotations run once, not five times.
            w.service.set_designated(true, "test-admin").await.unwrap();
            let later = add_months(at(next), 5);
            w.clock.set(later);
            let fired = scheduler.tick().await;
            assert_eq!(fired.rotations.len(), 1, "{fired:?}");
            assert_eq!(
                finished(&w.service, fired.rotations[0].1).await.state,
                JobState::Succeeded
            );
            let fired = scheduler.tick().await;
            assert!(
                fired.rotations.is_empty(),
                "missed rotations must run once: {fired:?}"
            );
            assert_eq!(w.emu.key_versions(VAULT, "sched").len(), 3);
            assert_eq!(
                w.service.group(&group).await.unwrap().last_rotated,
                Some(later.unix_timestamp())
            );
            assert_eq!(
                scheduler.next_due().await,
                Some(later.unix_timestamp() + 7 * 86_400),
                "the next wake-up is the new grace deadline"
            );
            assert!(w.emu.live_keks(VAULT).is_empty());
        },
    );
}

/// Group changes reach the outbound allowlist and the scheduler's plan through the service
/// alone: nothing in this test tells either of them. A vault is allowed the moment the group
/// naming it is committed (a job for it right away is not refused), and refused again once no
/// group names it.
#[test]
fn group_changes_reach_the_allowlist_and_the_plan_without_being_told() {
    softhsm::isolated(
        "group_changes_reach_the_allowlist_and_the_plan_without_being_told",
        |token| async move {
            let w = world(&token).await;
            add_credential(&w).await;
            let scheduler = Scheduler::new(w.jobs.clone()).await;
            assert_eq!(scheduler.planned().await, 0);
            let allowlist = w.jobs.azure().allowlist().clone();
            let url = format!("https://{OTHER_VAULT}.vault.azure.net/keys");
            assert!(allowlist.check_str(&url).is_err(), "no group names it yet");

            // Created: allowed before anything else runs, and a job for it is not refused.
            let group: GroupName = n("moved");
            create_group(&w, &group, OTHER_VAULT, every(3)).await;
            assert!(allowlist.check_str(&url).is_ok(), "allowed on commit");
            let id = w.jobs.submit_check(&group, "test").await.unwrap();
            let job = finished(&w.service, id).await;
            assert_eq!(job.state, JobState::Succeeded, "{job:?}");
            let created = w.service.group(&group).await.unwrap().created;
            scheduler.tick().await;
            assert_eq!(scheduler.planned().await, 1);
            assert_eq!(
                scheduler.next_due().await,
                Some(add_months(at(created), 3).unix_timestamp())
            );

            // Edited: the planned time follows the new policy.
            w.service
                .update_rotation(&group, |_| every(1), "test")
                .await
                .unwrap();
            scheduler.tick().await;
            assert_eq!(
                scheduler.next_due().await,
                Some(add_months(at(created), 1).unix_timestamp())
            );

            // Deleted: nothing planned, and its vault is refused again.
            w.service.delete_group(&group, "test").await.unwrap();
            assert!(allowlist.check_str(&url).is_err(), "refused once deleted");
            scheduler.tick().await;
            assert_eq!(scheduler.planned().await, 0);
            assert_eq!(scheduler.next_due().await, None);
        },
    );
}

/// More changes than the change channel holds, before the scheduler looks: the early change of
/// another group is not lost (the scheduler re-plans everything when it falls behind).
#[test]
fn a_burst_of_changes_beyond_the_channel_capacity_ends_with_the_right_plan() {
    softhsm::isolated(
        "a_burst_of_changes_beyond_the_channel_capacity_ends_with_the_right_plan",
        |token| async move {
            let w = world(&token).await;
            add_credential(&w).await;
            let off = RotationPolicy::default();
            let (early, busy): (GroupName, GroupName) = (n("early"), n("busy"));
            create_group(&w, &early, VAULT, off).await;
            create_group(&w, &busy, VAULT, off).await;
            let scheduler = Scheduler::new(w.jobs.clone()).await;
            assert_eq!(scheduler.planned().await, 0);

            w.service
                .update_rotation(&early, |_| every(12), "test")
                .await
                .unwrap();
            let burst = byokd::service::CHANGE_CAPACITY + 8;
            for i in 0..burst {
                let months = 1 + (i % 60) as u32;
                w.service
                    .update_rotation(
                        &busy,
                        |_| RotationPolicy {
                            enabled: false,
                            ..every(months)
                        },
                        "test",
                    )
                    .await
                    .unwrap();
            }
            w.service
                .update_rotation(&busy, |_| every(2), "test")
                .await
                .unwrap();

            scheduler.tick().await;
            assert_eq!(scheduler.planned().await, 2, "both groups planned");
            let due = |g: &GroupName, months| {
                let w = &w;
                let g = g.clone();
                async move {
                    let created = w.service.group(&g).await.unwrap().created;
                    add_months(at(created), months).unix_timestamp()
                }
            };
            let (early_due, busy_due) = (due(&early, 12).await, due(&busy, 2).await);
            assert_eq!(scheduler.next_due().await, Some(busy_due));
            // The early group is planned too: once the busy one is off, it is next.
            w.service
                .update_rotation(&busy, |_| off, "test")
                .await
                .unwrap();
            scheduler.tick().await;
            assert_eq!(scheduler.next_due().await, Some(early_due));
        },
    );
}

/// Log lines captured in the test's child process.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_scheduled_drift_check_runs_every_drift_check_hours_and_reports_findings() {
    softhsm::isolated(
        "the_scheduled_drift_check_runs_every_drift_check_hours_and_reports_findings",
        |token| async move {
            let log = Captured::default();
            let writer = log.clone();
            {
                use tracing_subscriber::prelude::*;
                tracing_subscriber::registry()
                    .with(byokd::logs::capture::CaptureLayer)
                    .with(
                        tracing_subscriber::fmt::layer()
                            .with_ansi(false)
                            .with_writer(move || writer.clone()),
                    )
                    .init();
            }
            let w = world_with(&token, 6).await;
            let group = setup_group(&w).await;
            let t0 = w.clock.now_unix();
            let scheduler = Scheduler::new(w.jobs.clone()).await;
            assert_eq!(scheduler.next_due().await, Some(t0 + 6 * 3600));
            let version = w.emu.key_versions(VAULT, "sched")[0].version.clone();
            // Behind byokd's back: the version is disabled.
            w.emu
                .set_version_enabled(VAULT, "sched", &version, false)
                .unwrap();

            w.clock.set(at(t0 + 6 * 3600 - 1));
            assert_eq!(scheduler.tick().await.drift_checks, 0);
            assert!(w.service.group(&group).await.unwrap().drift.is_none());
            w.clock.set(at(t0 + 6 * 3600));
            let fired = scheduler.tick().await;
            assert_eq!(fired.drift_checks, 1, "{fired:?}");
            assert!(fired.rotations.is_empty(), "{fired:?}");
            let check = w
                .service
                .jobs()
                .await
                .into_iter()
                .filter(|j| j.kind == byokd::model::JobKind::CheckCloud)
                .max_by_key(|j| j.id)
                .expect("a check job");
            let check = finished(&w.service, check.id).await;
            assert_eq!(check.state, JobState::Succeeded, "{check:?}");
            assert_eq!(check.started_by, "scheduler");
            // What `group show` and GET /v1/groups/{group} serialize.
            let drift = w
                .service
                .group(&group)
                .await
                .unwrap()
                .drift
                .expect("a drift report");
            assert_eq!(drift.job, check.id);
            assert_eq!(drift.checked, t0 + 6 * 3600, "checked at the clock's time");
            let codes: Vec<(&str, Option<&str>)> = drift
                .findings
                .iter()
                .map(|f| (f.code, f.version.as_deref()))
                .collect();
            assert_eq!(codes, vec![("disabled-version", Some(version.as_str()))]);
            let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
            assert!(
                text.lines().any(|l| l.contains("WARN")
                    && l.contains("drift.found")
                    && l.contains("disabled-version")),
                "no WARN drift.found in the log:\n{text}"
            );
            // The next check is planned drift_check_hours later, not earlier.
            assert_eq!(scheduler.next_due().await, Some(t0 + 12 * 3600));
            w.clock.set(at(t0 + 12 * 3600 - 1));
            assert_eq!(scheduler.tick().await.drift_checks, 0);
        },
    );
}

/// Dual control over the world's service and jobs, as the daemon builds it at start-up.
async fn dual_control(w: &World, window_secs: u64) -> DualControl {
    let dual = DualControl::new(w.service.clone(), Some(w.jobs.clone()), window_secs);
    dual.end_lost_waits().await;
    dual
}

#[test]
fn an_expired_approval_cancels_its_waiting_job_when_the_clock_passes_expiry() {
    softhsm::isolated(
        "an_expired_approval_cancels_its_waiting_job_when_the_clock_passes_expiry",
        |token| async move {
            let w = world(&token).await;
            let group = setup_group(&w).await;
            let dual = dual_control(&w, 60).await;
            let (approval, job) = dual.request_delete_cloud(&group, "alice").await.unwrap();
            assert_eq!(job.state, JobState::WaitingApproval);
            assert_eq!(approval.expires_at, w.clock.now_unix() + 60);

            // One second early: the job still waits (no wall-clock time passes in this test).
            w.clock.advance(time::Duration::seconds(59));
            dual.sweep().await;
            let still = w.service.job(job.id).await.unwrap();
            assert_eq!(still.state, JobState::WaitingApproval, "{still:?}");
            assert_eq!(
                dual.get(&approval.id).await.unwrap().status,
                Status::Pending
            );

            // At expiry by the injected clock: the approval expires and its job ends cancelled.
            w.clock.advance(time::Duration::seconds(1));
            dual.sweep().await;
            let ended = w.service.job(job.id).await.unwrap();
            assert_eq!(ended.state, JobState::Cancelled, "{ended:?}");
            let why = ended.error.unwrap_or_default();
            assert!(
                why.contains(&approval.id.to_string()) && why.contains("expired"),
                "{why}"
            );
            assert_eq!(
                dual.get(&approval.id).await.unwrap().status,
                Status::Expired
            );
            let late = dual.approve(&approval.id, "bob").await.unwrap_err();
            assert!(matches!(late, DualControlError::Expired { .. }), "{late}");
            assert_eq!(
                w.emu.key_versions(VAULT, "sched").len(),
                1,
                "nothing was deleted on the cloud"
            );
        },
    );
}

#[test]
fn an_approval_does_not_survive_a_restart_and_its_waiting_job_ends() {
    softhsm::isolated(
        "an_approval_does_not_survive_a_restart_and_its_waiting_job_ends",
        |token| async move {
            let w = world(&token).await;
            let group = setup_group(&w).await;
            let before = dual_control(&w, 3600).await;
            let (approval, job) = before.request_delete_cloud(&group, "alice").await.unwrap();
            assert_eq!(job.state, JobState::WaitingApproval);

            // The daemon starts again: a fresh table, and the jobs that waited end.
            let after = dual_control(&w, 3600).await;
            let ended = w.service.job(job.id).await.unwrap();
            assert_eq!(ended.state, JobState::Cancelled, "{ended:?}");
            assert_eq!(ended.error.as_deref(), Some(APPROVAL_LOST));
            let refused = after.approve(&approval.id, "bob").await.unwrap_err();
            assert!(
                matches!(refused, DualControlError::NotFound(_)),
                "{refused}"
            );
            assert_eq!(w.emu.key_versions(VAULT, "sched").len(), 1);

            // A fresh request after the restart is approved and runs.
            let (approval, job) = after.request_delete_cloud(&group, "alice").await.unwrap();
            let decision = after.approve(&approval.id, "bob").await.unwrap();
            assert_eq!(decision.approval.status, Status::Approved);
            assert_eq!(decision.job.as_ref().map(|j| j.id), Some(job.id));
            let done = finished(&w.service, job.id).await;
            assert_eq!(done.state, JobState::Succeeded, "{done:?}");
            assert_eq!(done.started_by, "alice (approved by bob)");
        },
    );
}

#[test]
fn a_non_designated_appliance_cannot_start_any_cloud_job() {
    softhsm::isolated(
        "a_non_designated_appliance_cannot_start_any_cloud_job",
        |token| async move {
            let w = world(&token).await;
            let group = setup_group(&w).await;
            let dual = dual_control(&w, 3600).await;
            // Requested while designated, then the setting flips before the approval.
            let (approval, job) = dual.request_delete_cloud(&group, "alice").await.unwrap();
            w.service.set_designated(false, "test").await.unwrap();
            let jobs_before = w.service.jobs().await.len();

            // Sync, rotate, recover, grace and the approved cloud jobs take a `Designated`
            // proof (a compile-time rule: see the doctest in service::designated), and the
            // proof is refused here.
            assert!(w.service.designated_device().await.is_err());
            // Delete on cloud and purge are refused at the request...
            for refused in [
                dual.request_delete_cloud(&group, "carol")
                    .await
                    .unwrap_err(),
                dual.request_purge(&group, "carol").await.unwrap_err(),
            ] {
                assert!(
                    matches!(refused, DualControlError::NotDesignated { .. }),
                    "{refused}"
                );
            }
            // ... and at the approval, which ends the waiting job unrun.
            let refused = dual.approve(&approval.id, "bob").await.unwrap_err();
            assert!(
                matches!(
                    refused,
                    DualControlError::Job {
                        source: byokd::jobs::JobError::NotDesignated,
                        ..
                    }
                ),
                "{refused}"
            );
            let ended = w.service.job(job.id).await.unwrap();
            assert_eq!(ended.state, JobState::Cancelled, "{ended:?}");
            assert!(ended.error.unwrap_or_default().starts_with("Not run:"));
            assert_eq!(dual.get(&approval.id).await.unwrap().status, Status::Failed);
            assert_eq!(
                w.service.jobs().await.len(),
                jobs_before,
                "no job was created"
            );
            // The scheduler's rotations and grace ends are skipped (see the rotation test).
            assert_eq!(w.emu.key_versions(VAULT, "sched").len(), 1);

            // A cloud job left unfinished from before the switch (a restart, or waiting for its
            // vault) takes the proof again when it runs: without it the job fails, unrun.
            let left = w
                .service
                .create_job(byokd::model::JobKind::Rotate, &group, &[], "alice")
                .await
                .unwrap();
            w.jobs.resume_unfinished().await;
            let ended = finished(&w.service, left).await;
            assert_eq!(ended.state, JobState::Failed, "{ended:?}");
            assert_eq!(
                ended.error.as_deref(),
                Some(byokd::jobs::JobError::NotDesignated.to_string().as_str())
            );
            assert_eq!(w.emu.key_versions(VAULT, "sched").len(), 1);
        },
    );
}
