//! Crash safety of the state store: commits that survive reopening, a damaged or truncated
//! store refused at start (never started empty), kill -9 during group commits, and the
//! first-start migration of the A/B state files of formats 1-4 (damaged generations, committed
//! fixtures, a migration interrupted or rolled back).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use byokd::model::{
    Credential, CredentialAuth, CredentialName, GroupName, Guid, JobId, KeyGroup, KeyType,
    RotationPolicy, RsaExponent, VaultName,
};
use byokd::store::{State, Store, StoreError};
use std::path::Path;
use std::process::{Command, Stdio};

fn credential(i: usize) -> Credential {
    let name = CredentialName::try_from(format!("cred{i}")).unwrap();
    Credential {
        name,
        tenant_id: Guid::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap(),
        client_id: Guid::parse("00000000-0000-0000-0000-00000000000a").unwrap(),
        auth: CredentialAuth::Secret {
            sealed: vec![i as u8; 40],
        },
        fingerprint: format!("{i:08x}"),
        created: 1_700_000_000 + i as i64,
        expires: None,
    }
}

fn state_with(n: usize) -> State {
    let mut s = State::default();
    for i in 0..n {
        let c = credential(i);
        let name = c.name.clone();
        s.credentials.insert(name.clone(), c);
        let group = GroupName::try_from(format!("group-{i}")).unwrap();
        s.groups.insert(
            group.clone(),
            KeyGroup {
                name: group,
                credential: name,
                target: byokd::model::Target::KeyVault(
                    VaultName::try_from("contoso-vault").unwrap(),
                ),
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

/// Lays down A/B state files (format 4, as byokd before the redb store wrote them): `a` in
/// `state.a` at generation 1, `b` (if any) in `state.b` at generation 2.
fn lay_ab(dir: &Path, a: &State, b: Option<&State>) {
    Store::write_raw_slot(dir, 0, &byokd::store::ab_slot_bytes(a, 1).unwrap()).unwrap();
    if let Some(b) = b {
        Store::write_raw_slot(dir, 1, &byokd::store::ab_slot_bytes(b, 2).unwrap()).unwrap();
    }
}

fn private_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn a_fresh_directory_starts_empty_and_reports_it() {
    let dir = private_dir();
    {
        let (_s, state, report) = Store::open(dir.path()).unwrap();
        assert!(report.fresh);
        assert_eq!(state, State::default());
    }
    let (_s, state, report) = Store::open(dir.path()).unwrap();
    assert!(!report.fresh, "the store exists from the first start on");
    assert_eq!(state, State::default());
}

#[test]
fn inserted_changed_and_removed_records_survive_reopen() {
    let dir = private_dir();
    let mut expected;
    {
        let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
        state.credentials.extend(state_with(3).credentials);
        state.groups.extend(state_with(3).groups);
        store.commit(&mut state).unwrap();
        let first = store.generation();
        let c1 = CredentialName::try_from("cred1").unwrap();
        state.credentials.get_mut(&c1).unwrap().fingerprint = "changed".into();
        state
            .groups
            .remove(&GroupName::try_from("group-2").unwrap());
        state.designated = Some(false);
        state.next_job_id = JobId::new(42);
        store.commit(&mut state).unwrap();
        assert_eq!(store.generation(), first + 1);
        // A commit with no change still commits (and writes nothing that grows).
        store.commit(&mut state).unwrap();
        expected = state;
    }
    let (_s, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!(state, expected);
    assert!(!report.fresh && report.fell_back.is_none() && report.migrated_from.is_none());
    expected
        .groups
        .remove(&GroupName::try_from("group-1").unwrap());
    assert_ne!(state, expected, "the comparison sees a missing group");
}

#[test]
fn a_second_opener_of_the_same_directory_is_refused() {
    let dir = private_dir();
    let (_held, _, _) = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path())
        .err()
        .expect("second open must fail");
    assert!(err.to_string().contains("another byokd"), "{err}");
}

/// A store with a few commits in it, closed; returns its bytes.
fn committed_store(dir: &Path) -> Vec<u8> {
    {
        let (mut store, mut state, _) = Store::open(dir).unwrap();
        for i in 0..4 {
            let c = credential(i);
            state.credentials.insert(c.name.clone(), c);
            store.commit(&mut state).unwrap();
        }
    }
    std::fs::read(dir.join("state.redb")).unwrap()
}

fn assert_refused(dir: &Path, case: &str) {
    match Store::open(dir) {
        Err(err @ StoreError::Corrupt { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains("state.redb")
                    && text.contains("refuses to start")
                    && text.contains("restore the state directory"),
                "{case}: {text}"
            );
        }
        Err(other) => panic!("{case}: refused, but not as damage: {other}"),
        Ok((_, state, report)) => panic!(
            "{case}: a damaged store was opened (fresh: {}, {} credentials)",
            report.fresh,
            state.credentials.len()
        ),
    }
}

/// Flipped bytes anywhere in the pages a commit wrote, or a store cut short, are refused at
/// start with an error naming the file and what to do: never a silently wrong or empty state.
#[test]
fn a_corrupted_or_truncated_store_is_refused_with_a_clear_error() {
    let dir = private_dir();
    let good = committed_store(dir.path());
    let path = dir.path().join("state.redb");
    // Truncations: to nothing, mid-header, mid-file and one page short.
    for cut in [0, 100, 4096, good.len() / 2, good.len() - 4096] {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert_refused(dir.path(), &format!("cut at {cut}"));
    }
    // Bit flips in the records themselves: every copy of the newest credential's fingerprint
    // (the live leaf page and freed older copies). The live one must be detected; a flip in a
    // freed page changes nothing byokd reads.
    let needle = b"00000003";
    let hits: Vec<usize> = good
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w == needle)
        .map(|(i, _)| i)
        .collect();
    assert!(!hits.is_empty());
    let mut flipped = 0;
    for i in hits {
        let mut b = good.clone();
        b[i + 7] ^= 0x01;
        std::fs::write(&path, &b).unwrap();
        match Store::open(dir.path()) {
            Err(StoreError::Corrupt { .. }) => flipped += 1,
            Err(other) => panic!("byte {i}: {other}"),
            Ok((_, state, _)) => {
                let c3 = CredentialName::try_from("cred3").unwrap();
                assert_eq!(
                    state.credentials[&c3],
                    credential(3),
                    "byte {i}: wrong state loaded"
                );
            }
        }
    }
    // And a flip in the file header (the commit slots).
    for i in [0usize, 40, 100, 300] {
        let mut b = good.clone();
        b[i] ^= 0x01;
        std::fs::write(&path, &b).unwrap();
        if let Ok((_, state, _)) = Store::open(dir.path()) {
            assert_eq!(
                state.credentials.len(),
                4,
                "header byte {i}: wrong state loaded"
            );
        } else {
            flipped += 1;
        }
    }
    assert!(flipped > 0, "no flip was detected at all");
    std::fs::write(&path, &good).unwrap();
    let (_s, state, _) = Store::open(dir.path()).unwrap();
    assert_eq!(state.credentials.len(), 4);
}

#[test]
fn a_store_replaced_by_garbage_or_a_directory_is_refused() {
    let dir = private_dir();
    committed_store(dir.path());
    let path = dir.path().join("state.redb");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    assert_refused(dir.path(), "garbage");
}

/// Truncating the newest A/B generation, or flipping bytes in it, migrates the previous one
/// (with the damage reported) or refuses: never a silently wrong state.
#[test]
fn a_damaged_newest_ab_generation_migrates_the_previous_one() {
    let good = byokd::store::ab_slot_bytes(&state_with(4), 2).unwrap();
    let mut cases: Vec<Vec<u8>> = (0..good.len())
        .step_by(97)
        .map(|cut| good[..cut].to_vec())
        .collect();
    for i in (0..good.len()).step_by(89) {
        let mut b = good.clone();
        b[i] ^= 0x20;
        cases.push(b);
    }
    for (n, damaged) in cases.iter().enumerate() {
        let dir = private_dir();
        lay_ab(dir.path(), &state_with(3), None);
        Store::write_raw_slot(dir.path(), 1, damaged).unwrap();
        let (_s, state, report) =
            Store::open(dir.path()).unwrap_or_else(|e| panic!("case {n}: {e}"));
        assert_eq!(state, state_with(3), "case {n} loaded the wrong state");
        assert_eq!(report.migrated_from, Some(4), "case {n}");
        assert!(
            report.fell_back.is_some(),
            "case {n}: damage must be reported"
        );
    }
}

#[test]
fn both_ab_generations_damaged_refuses_to_start_with_a_clear_error() {
    let dir = private_dir();
    lay_ab(dir.path(), &state_with(1), Some(&state_with(2)));
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
    assert!(!dir.path().join("state.redb").exists());
}

#[test]
fn a_newer_ab_format_is_refused_not_downgraded() {
    let dir = private_dir();
    lay_ab(dir.path(), &state_with(1), None);
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

/// The migration commits the whole A/B state into the store before it renames the A/B files
/// aside; A/B files found beside a store (a migration killed before the rename, or an older
/// firmware's installer that put them back on rollback) are migrated again, replacing it.
#[test]
fn ab_files_are_migrated_once_and_again_when_they_come_back() {
    let dir = private_dir();
    lay_ab(dir.path(), &state_with(1), Some(&state_with(2)));
    // A migration killed half-way left a partial new store: ignored.
    std::fs::write(dir.path().join("state.redb.new"), b"partial").unwrap();
    {
        let (mut store, mut state, report) = Store::open(dir.path()).unwrap();
        assert_eq!((report.migrated_from, &state), (Some(4), &state_with(2)));
        assert!(!dir.path().join("state.a").exists() && !dir.path().join("state.b").exists());
        assert!(dir.path().join("state.b.migrated").exists());
        let c = credential(9);
        state.credentials.insert(c.name.clone(), c);
        store.commit(&mut state).unwrap();
    }
    let (store, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report.migrated_from, None);
    assert_eq!(state.credentials.len(), 3);
    drop(store);
    // An older firmware's rollback restored A/B files (and went on with them): they win.
    lay_ab(dir.path(), &state_with(5), None);
    let (_s, state, report) = Store::open(dir.path()).unwrap();
    assert_eq!((report.migrated_from, state), (Some(4), state_with(5)));
}

/// Child process of the kill test: stages one new credential after another and, from
/// concurrent tasks, prints `ACK n` once the group commit holding credential `n` is durable.
#[test]
#[ignore = "helper process for the kill test"]
fn child_group_committer() {
    let Ok(dir) = std::env::var("BYOKD_TEST_STORE_DIR") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut store, mut state, _) = Store::open(Path::new(&dir)).unwrap();
    let mut n = state.credentials.len();
    rt.block_on(async move {
        loop {
            let c = credential(n);
            state.credentials.insert(c.name.clone(), c);
            let pending = store.stage(&mut state).unwrap();
            tokio::spawn(async move {
                pending.durable().await.unwrap();
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(out, "ACK {n}").unwrap();
                out.flush().unwrap();
            });
            n += 1;
            if n % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
}

/// kill -9 at random moments while many changes are in flight in group commits: every change
/// acknowledged before the kill is there after restart, and what is there is a prefix of what
/// was staged (a group is committed whole or not at all, in order).
#[test]
fn kill_9_during_group_commits_loses_nothing_acknowledged() {
    let dir = private_dir();
    let mut acked_total = 0;
    for round in 0..8u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_group_committer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BYOKD_TEST_STORE_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut max = None;
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("ACK ") {
                    let n: usize = n.trim().parse().unwrap();
                    max = max.max(Some(n));
                }
            }
            max
        });
        std::thread::sleep(std::time::Duration::from_millis(150 + (round * 53) % 200));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();
        let max_acked = reader.join().unwrap();
        let (_s, state, _) =
            Store::open(dir.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let n = state.credentials.len();
        for i in 0..n {
            let name = CredentialName::try_from(format!("cred{i}")).unwrap();
            assert_eq!(
                state.credentials.get(&name),
                Some(&credential(i)),
                "round {round}: the state is not a prefix of what was staged"
            );
        }
        if let Some(m) = max_acked {
            assert!(
                m < n,
                "round {round}: credential {m} was acknowledged but only {n} are durable"
            );
            acked_total += 1;
        }
    }
    assert!(
        acked_total > 0,
        "no round acknowledged anything before the kill"
    );
    // The installer reads the format of a store left by a killed daemon (it verifies it first).
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_group_committer",
            "--ignored",
            "--test-threads=1",
        ])
        .env("BYOKD_TEST_STORE_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        Store::newest_format(dir.path()).unwrap(),
        Some(byokd::store::FORMAT_VERSION)
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
    let opened = Store::open(dir).unwrap();
    assert!(
        !dir.join("state.a").exists() && dir.join("state.a.migrated").exists(),
        "the A/B file is renamed aside once the migration is committed"
    );
    opened
}

/// The committed fixture `tests/fixtures/state-v1.bin` is format 1 (credentials without an
/// expiry field, no designated setting). Loading it migrates to the current format.
#[test]
fn an_older_format_fixture_is_migrated_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let (store, state, report) = open_fixture(dir.path(), "state-v1.bin", 1);
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
    // The migration was committed at open: it loads back unchanged, with no migration.
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
    let (store, state, report) = open_fixture(dir.path(), "state-v3.bin", 3);
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
    // The migration was committed at open: it loads back unchanged, with no migration.
    drop(store);
    let (_s, again, report) = Store::open(dir.path()).unwrap();
    assert_eq!(again, state);
    assert_eq!(report.migrated_from, None);
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
