//! Crash safety of the state store: damaged generations, kills between the temporary file and
//! the rename, and migration of an older format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use byokd::model::{
    Credential, CredentialAuth, CredentialName, GroupName, Guid, JobId, KeyGroup, KeyType,
    RotationPolicy, RsaExponent, VaultName,
};
use byokd::store::{State, Store, StoreError};
use std::path::Path;
use std::process::{Command, Stdio};

fn state_with(n: usize) -> State {
    let mut s = State::default();
    for i in 0..n {
        let name = CredentialName::try_from(format!("cred{i}")).unwrap();
        s.credentials.insert(
            name.clone(),
            Credential {
                name: name.clone(),
                tenant_id: Guid::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap(),
                client_id: Guid::parse("00000000-0000-0000-0000-00000000000a").unwrap(),
                auth: CredentialAuth::Secret {
                    sealed: vec![i as u8; 40],
                },
                fingerprint: format!("{i:08x}"),
                created: 1_700_000_000 + i as i64,
                expires: None,
            },
        );
        let group = GroupName::try_from(format!("group-{i}")).unwrap();
        s.groups.insert(
            group.clone(),
            KeyGroup {
                name: group,
                credential: name,
                vault: VaultName::try_from("contoso-vault").unwrap(),
                key_type: KeyType::rsa(2048, RsaExponent::F4).unwrap(),
                key_ops: KeyType::rsa(2048, RsaExponent::F4).unwrap().default_ops(),
                rotation: RotationPolicy::default(),
                last_rotated: None,
                created: 1_700_000_000,
            },
        );
    }
    s
}

/// Returns the slot file holding the newest generation.
fn newest_slot(dir: &Path) -> std::path::PathBuf {
    let a = dir.join("state.a");
    let b = dir.join("state.b");
    let gen_of = |p: &Path| {
        std::fs::read(p)
            .ok()
            .map(|b| u64::from_le_bytes(b[10..18].try_into().unwrap()))
    };
    match (gen_of(&a), gen_of(&b)) {
        (Some(x), Some(y)) if y > x => b,
        (Some(_), _) => a,
        _ => b,
    }
}

#[test]
fn a_fresh_directory_starts_empty_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, state, report) = Store::open(dir.path()).unwrap();
    assert!(report.fresh);
    assert_eq!(state, State::default());
}

#[test]
fn committed_state_survives_reopen_and_keeps_the_previous_generation() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _, _) = Store::open(dir.path()).unwrap();
        store.commit(&state_with(1)).unwrap();
        store.commit(&state_with(2)).unwrap();
        assert_eq!(store.generation(), 2);
    }
    let (_s, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!(state, state_with(2));
    assert_eq!(report.generation, 2);
    assert!(report.fell_back.is_none());
    assert!(dir.path().join("state.a").exists() && dir.path().join("state.b").exists());
}

#[test]
fn a_second_opener_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, _, _) = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path())
        .err()
        .expect("second open must fail");
    assert!(err.to_string().contains("another byokd"), "{err}");
}

/// Truncating the newest generation at every offset, or flipping any byte, either loads the
/// previous generation (with the damage reported) or refuses: never a silently wrong state.
#[test]
fn damaged_newest_generation_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _, _) = Store::open(dir.path()).unwrap();
        store.commit(&state_with(3)).unwrap();
        store.commit(&state_with(4)).unwrap();
    }
    let newest = newest_slot(dir.path());
    let good = std::fs::read(&newest).unwrap();
    let mut cases: Vec<Vec<u8>> = (0..good.len())
        .step_by(3)
        .map(|cut| good[..cut].to_vec())
        .collect();
    for i in (0..good.len()).step_by(5) {
        let mut b = good.clone();
        b[i] ^= 0x20;
        cases.push(b);
    }
    let mut longer = good.clone();
    longer.extend_from_slice(&[0, 0, 0]);
    cases.push(longer);
    for (n, damaged) in cases.iter().enumerate() {
        std::fs::write(&newest, damaged).unwrap();
        let (_s, state, report) =
            Store::open(dir.path()).unwrap_or_else(|e| panic!("case {n}: {e}"));
        assert_eq!(state, state_with(3), "case {n} loaded the wrong state");
        assert_eq!(report.generation, 1, "case {n}");
        assert!(
            report.fell_back.is_some(),
            "case {n}: damage must be reported"
        );
    }
    std::fs::write(&newest, &good).unwrap();
    let (_s, state, _) = Store::open(dir.path()).unwrap();
    assert_eq!(state, state_with(4));
}

#[test]
fn both_generations_damaged_refuses_to_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _, _) = Store::open(dir.path()).unwrap();
        store.commit(&state_with(1)).unwrap();
        store.commit(&state_with(2)).unwrap();
    }
    for slot in ["state.a", "state.b"] {
        let p = dir.path().join(slot);
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    }
    let err = Store::open(dir.path()).err().expect("must refuse");
    assert!(
        matches!(err, StoreError::NoValidGeneration { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("refuses to start empty")
            && msg.contains("state.a")
            && msg.contains("state.b"),
        "{msg}"
    );
}

#[test]
fn a_single_damaged_generation_with_no_previous_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _, _) = Store::open(dir.path()).unwrap();
        store.commit(&state_with(1)).unwrap();
    }
    let p = dir.path().join("state.a");
    std::fs::write(&p, b"BYOKDST\0garbage").unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::NoValidGeneration { .. })
    ));
}

#[test]
fn a_newer_format_is_refused_not_downgraded() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _, _) = Store::open(dir.path()).unwrap();
        store.commit(&state_with(1)).unwrap();
    }
    // Re-encode the slot as format 99 with a valid checksum.
    let p = dir.path().join("state.a");
    let b = std::fs::read(&p).unwrap();
    let payload = &b[22..b.len() - 32];
    let mut out = b[..8].to_vec();
    out.extend_from_slice(&99u16.to_le_bytes());
    out.extend_from_slice(&b[10..22]);
    out.extend_from_slice(payload);
    use sha2::Digest;
    let sum = sha2::Sha256::digest(&out);
    out.extend_from_slice(&sum);
    std::fs::write(&p, out).unwrap();
    let err = Store::open(dir.path()).err().expect("must refuse");
    assert!(
        matches!(err, StoreError::TooNew { found: 99, .. }),
        "{err:?}"
    );
}

/// Rewrites the generation in a slot's header and recomputes its checksum, as a forger would.
fn set_generation(path: &Path, generation: u64) {
    use sha2::Digest;
    let b = std::fs::read(path).unwrap();
    let mut out = b[..b.len() - 32].to_vec();
    out[10..18].copy_from_slice(&generation.to_le_bytes());
    let sum = sha2::Sha256::digest(&out);
    out.extend_from_slice(&sum);
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_slot_at_generation_u64_max_is_refused_and_the_other_slot_loads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _, _) = Store::open(dir.path()).unwrap();
        store.commit(&state_with(1)).unwrap();
        store.commit(&state_with(2)).unwrap();
    }
    let newest = newest_slot(dir.path());
    set_generation(&newest, u64::MAX);
    let (mut store, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!(
        state,
        state_with(1),
        "the other slot's generation is loaded"
    );
    assert_eq!(report.generation, 1);
    let reason = report.fell_back.expect("the forged slot is reported");
    assert!(
        reason.contains(&newest.display().to_string()) && reason.contains("damaged or forged"),
        "{reason}"
    );
    // And byokd goes on committing from the generation it trusts.
    store.commit(&state_with(3)).unwrap();
    assert_eq!(store.generation(), 2);
    drop(store);
    let (_, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!((state, report.generation), (state_with(3), 2));
}

#[test]
fn both_slots_past_the_highest_generation_stop_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _, _) = Store::open(dir.path()).unwrap();
        store.commit(&state_with(1)).unwrap();
        store.commit(&state_with(2)).unwrap();
    }
    set_generation(&dir.path().join("state.a"), u64::MAX);
    set_generation(&dir.path().join("state.b"), u64::MAX - 1);
    let err = Store::open(dir.path()).err().expect("must refuse");
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::NoValidGeneration { .. })
            && text.contains("damaged or forged")
            && text.contains("restore the state directory"),
        "{text}"
    );
}

/// Opens a store on the committed fixture `tests/fixtures/FILE`, which must be of `format`.
fn open_fixture(dir: &Path, file: &str, format: u16) -> (Store, State, byokd::store::LoadReport) {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let fixture = std::fs::read(path).unwrap();
    assert_eq!(
        u16::from_le_bytes([fixture[8], fixture[9]]),
        format,
        "fixture {file} must be format {format}"
    );
    Store::write_raw_slot(dir, 0, &fixture).unwrap();
    Store::open(dir).unwrap()
}

/// The committed fixture `tests/fixtures/state-v1.bin` is format 1 (credentials without an
/// expiry field, no designated setting). Loading it migrates to the current format.
#[test]
fn an_older_format_fixture_is_migrated_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, state, report) = open_fixture(dir.path(), "state-v1.bin", 1);
    assert_eq!(report.migrated_from, Some(1));
    let cred = &state.credentials[&CredentialName::try_from("legacy-app").unwrap()];
    assert_eq!(
        cred.tenant_id.as_str(),
        "72f988bf-86f1-41af-91ab-2d7cd011db47"
    );
    assert_eq!(cred.expires, None);
    assert_eq!(state.designated, None);
    assert!(
        state
            .groups
            .contains_key(&GroupName::try_from("legacy-group").unwrap())
    );
    // The next commit writes the current format, keeping the old generation as the previous one.
    store.commit(&state).unwrap();
    drop(store);
    let (_s, again, report) = Store::open(dir.path()).unwrap();
    assert_eq!(again, state);
    assert_eq!(report.migrated_from, None);
}

/// The committed fixture `tests/fixtures/state-v3.bin` is format 3, whose rotation and
/// delete-on-cloud jobs journalled their intents as step messages only. Loading it migrates each
/// job's journal to typed steps (read from the known message prefixes once, in the migration),
/// which is what a resumed job then decides by; the messages stay as display text.
#[test]
fn a_format_3_fixture_gets_typed_journals_from_its_step_messages() {
    use byokd::model::{CheckCloudStep, DeleteCloudStep, JobStep, KeyName, RotateStep, SyncStep};
    let dir = tempfile::tempdir().unwrap();
    let (mut store, state, report) = open_fixture(dir.path(), "state-v3.bin", 3);
    assert_eq!(report.migrated_from, Some(3));
    let key = |k: &str| KeyName::try_from(k).unwrap();
    let planned = key("legacy-group-20251206T055320Z-1");
    let journal = |id: u64| state.jobs[&JobId::new(id)].journal.clone();
    // A rotation killed with its import in flight: the planned key (so a resumed rotation
    // destroys an unrecorded HSM object of that name), the generated key, its KEK and import.
    assert_eq!(
        journal(1),
        vec![
            JobStep::Rotate(RotateStep::KeyPlanned {
                key: planned.clone()
            }),
            JobStep::Rotate(RotateStep::KeyGenerated {
                key: planned.clone()
            }),
            JobStep::Sync(SyncStep::KekPlanned),
            JobStep::Sync(SyncStep::KekCreated),
            JobStep::Sync(SyncStep::ImportSent { key: planned }),
        ]
    );
    // A delete on cloud killed with its purge in flight: the resumed job knows both requests
    // may have gone through.
    assert_eq!(
        journal(2),
        vec![
            JobStep::DeleteCloud(DeleteCloudStep::DeleteSent),
            JobStep::DeleteCloud(DeleteCloudStep::Deleted),
            JobStep::DeleteCloud(DeleteCloudStep::PurgeSent),
        ]
    );
    // On a vault without soft-delete: a key found absent after the restart is gone for good.
    assert_eq!(
        journal(3),
        vec![
            JobStep::DeleteCloud(DeleteCloudStep::NoSoftDelete),
            JobStep::DeleteCloud(DeleteCloudStep::DeleteSent),
        ]
    );
    // A sync's push steps follow from its typed KEK and key states.
    assert_eq!(
        journal(4),
        vec![
            JobStep::Sync(SyncStep::KekPlanned),
            JobStep::Sync(SyncStep::KekCreated),
            JobStep::Sync(SyncStep::ImportSent { key: key("k0") }),
            JobStep::Sync(SyncStep::Imported {
                key: key("k0"),
                version: "v0".into()
            }),
            JobStep::Sync(SyncStep::ImportSent { key: key("k1") }),
            JobStep::Sync(SyncStep::KekDeleted),
            JobStep::Sync(SyncStep::KekPurgeSent),
        ]
    );
    assert_eq!(
        journal(5),
        vec![JobStep::CheckCloud(CheckCloudStep::Listed { versions: 2 })]
    );
    // Everything else is carried over: the messages (now display text only), states, KEKs.
    let rotate = &state.jobs[&JobId::new(1)];
    assert_eq!(rotate.steps.len(), 6);
    assert!(rotate.steps[1].message.starts_with("Generating key"));
    assert_eq!(rotate.state, byokd::model::JobState::Running);
    assert!(rotate.kek.as_ref().unwrap().kid.is_some());
    assert_eq!(state.next_job_id, JobId::new(6));
    assert_eq!(state.designated, Some(true));
    // The next commit writes the current format; it loads back unchanged, with no migration.
    store.commit(&state).unwrap();
    drop(store);
    let (_s, again, report) = Store::open(dir.path()).unwrap();
    assert_eq!(again, state);
    assert_eq!(report.migrated_from, None);
}

/// Child process used by the kill tests: commits generations until killed.
#[test]
#[ignore = "helper process for the kill tests"]
fn child_writer() {
    let Ok(dir) = std::env::var("BYOKD_TEST_STORE_DIR") else {
        return;
    };
    let mode = std::env::var("BYOKD_TEST_STORE_MODE").unwrap_or_default();
    let (mut store, _, _) = Store::open(Path::new(&dir)).unwrap();
    if mode == "stage-then-wait" {
        store.commit(&state_with(1)).unwrap();
        let staged = store.stage(&state_with(2)).unwrap();
        println!("STAGED");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
        staged.publish().unwrap();
    } else {
        let mut n = 1;
        loop {
            store.commit(&state_with(n % 7 + 1)).unwrap();
            n += 1;
        }
    }
}

fn spawn_child(dir: &Path, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BYOKD_TEST_STORE_DIR", dir)
        .env("BYOKD_TEST_STORE_MODE", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn killing_the_writer_between_temp_file_and_rename_leaves_valid_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path(), "stage-then-wait");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "child ended early"
        );
        if line.contains("STAGED") {
            break;
        }
    }
    assert!(
        dir.path().join("state.tmp").exists(),
        "the temporary file must exist at the kill point"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let (_s, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!(
        state,
        state_with(1),
        "the staged, unpublished generation must not be visible"
    );
    assert_eq!(report.generation, 1);
    assert!(
        !dir.path().join("state.tmp").exists(),
        "the stale temporary file is cleaned up"
    );
}

#[test]
fn killing_the_writer_at_random_moments_always_leaves_a_loadable_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut last_generation = 0;
    for round in 0..12u64 {
        let mut child = spawn_child(dir.path(), "loop");
        std::thread::sleep(std::time::Duration::from_millis(30 + (round * 37) % 90));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();
        let (_s, state, report) =
            Store::open(dir.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            report.generation >= last_generation,
            "round {round}: generation went backwards"
        );
        last_generation = report.generation;
        if !report.fresh {
            let n = state.credentials.len();
            assert!(
                (1..=7).contains(&n) && state == state_with(n),
                "round {round}: loaded a state no writer wrote"
            );
        }
    }
}

#[test]
fn a_fifo_or_a_huge_file_as_the_newest_slot_is_skipped_without_blocking_or_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _, _) = Store::open(dir.path()).unwrap();
        store.commit(&state_with(1)).unwrap();
        store.commit(&state_with(2)).unwrap();
    }
    let newest = newest_slot(dir.path());
    // A FIFO nobody writes to: a blocking read would hang start-up for ever.
    std::fs::remove_file(&newest).unwrap();
    nix::unistd::mkfifo(&newest, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (store, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!((state, report.generation), (state_with(1), 1));
    let reason = report.fell_back.expect("the FIFO is reported");
    assert!(reason.contains("a FIFO, not a regular file"), "{reason}");
    drop(store);
    // A sparse file longer than any envelope: refused from its size, never read into memory.
    std::fs::remove_file(&newest).unwrap();
    std::fs::File::create(&newest)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let (store, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!((state, report.generation), (state_with(1), 1));
    let reason = report.fell_back.expect("the huge file is reported");
    assert!(reason.contains("1099511627776 bytes"), "{reason}");
    drop(store);
    // A directory in the slot's place: the same.
    std::fs::remove_file(&newest).unwrap();
    std::fs::create_dir(&newest).unwrap();
    let (_, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!(state, state_with(1));
    assert!(report.fell_back.unwrap().contains("a directory"));
}

#[test]
fn a_fifo_or_a_link_at_the_lock_path_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("state.lock");
    nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = Store::open(dir.path())
        .err()
        .expect("a FIFO lock is refused");
    assert!(err.to_string().contains("state.lock"), "{err}");
    std::fs::remove_file(&lock).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
    let err = Store::open(dir.path())
        .err()
        .expect("a linked lock is refused");
    assert!(err.to_string().contains("state.lock"), "{err}");
    assert!(!elsewhere.exists(), "nothing is created through the link");
}

#[test]
fn a_slot_whose_job_counter_is_at_u64_max_is_refused_and_the_other_slot_loads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _, _) = Store::open(dir.path()).unwrap();
        store.commit(&state_with(1)).unwrap();
        // A valid checksum over a forged counter: the next job would overflow it.
        let mut forged = state_with(2);
        forged.next_job_id = JobId::new(u64::MAX);
        store.commit(&forged).unwrap();
    }
    let (_, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!((state, report.generation), (state_with(1), 1));
    let reason = report.fell_back.expect("the forged slot is reported");
    assert!(
        reason.contains("next job id 18446744073709551615"),
        "{reason}"
    );
}

#[test]
fn a_state_directory_others_can_write_in_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o777, 0o775, 0o1777] {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(
            err.to_string().contains("other users can write in it"),
            "{mode:o}: {err}"
        );
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(Store::open(dir.path()).is_ok());
}
