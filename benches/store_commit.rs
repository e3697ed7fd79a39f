//! The state store at scale: one durable key record (a push's Azure version on one key) at 1k,
//! 10k, 50k, 200k and 1,000,000 keys (five keys a group, so 200,000 groups at 1M); bytes per
//! key on disk; a group commit of 100 key records from concurrent tasks; one key read from the
//! store (keys are not held in memory); the raw `fdatasync` of a 4 KiB write on the same file
//! system, side by side with the commit it bounds (a commit is one `fdatasync`); in a fresh
//! process, the time to open the store and the RSS after it. Then one journal step of a sync
//! job of 1k, 10k and 100k keys (a key's import sent: its key row, a journal row, a step row
//! and the job's header), with the bytes the store writes for it.
//!
//! `cargo bench --bench store_commit` (set `BYOKD_STORE_BENCH_MAX` to stop at fewer keys;
//! `BYOKD_STORE_BENCH_ONLY=job-steps` runs the job steps alone and updates their part of the
//! results file).
//! Prints a table and writes `bench/results-store.json`. No timed assertion anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/machine.rs"]
mod machine;
#[path = "support/seed.rs"]
#[allow(dead_code)]
mod seed;

use machine::machine;

use byokd::model::KeyName;
use byokd::store::Store;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Instant;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b";
const SIZES: [usize; 5] = [1_000, 10_000, 50_000, 200_000, 1_000_000];
const SAMPLES: usize = 41;

fn main() {
    if let Ok(dir) = std::env::var("BYOKD_STORE_BENCH_OPEN") {
        return open_child(Path::new(&dir));
    }
    // Seeds one state of BYOKD_STORE_BENCH_MAX keys into an empty directory and exits (for
    // profiling the open of a state of that size on its own).
    if let Ok(dir) = std::env::var("BYOKD_STORE_BENCH_SEED") {
        return seed_only(Path::new(&dir));
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let max: usize = std::env::var("BYOKD_STORE_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if std::env::var("BYOKD_STORE_BENCH_ONLY").as_deref() == Ok("job-steps") {
        return job_steps_only(max);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    println!(
        "{:>9} {:>8} {:>11} {:>11} {:>11} {:>9} {:>15} {:>11} {:>13} {:>9} {:>9} {:>11} {:>11}",
        "keys",
        "groups",
        "record p50",
        "record p90",
        "fdatasync",
        "read p50",
        "B/key seeded/now",
        "group x100",
        "fsyncs/100",
        "open s",
        "RSS MiB",
        "tmpfs p50",
        "tmpfs p90"
    );
    for &keys in SIZES.iter().filter(|k| **k <= max) {
        let dir = tempfile::tempdir_in(
            std::env::var("BYOKD_STORE_BENCH_DIR")
                .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
        )
        .unwrap();
        let groups = keys / 5;
        seed::seed(dir.path(), TENANT, CLIENT, seed::Seed::five_a_group(keys));
        let file = dir.path().join("state.redb");
        let seeded_bytes = std::fs::metadata(&file).unwrap().len();
        // The same commits on a copy of the seeded state in memory (tmpfs), where `fdatasync`
        // costs next to nothing: what byokd's commit costs apart from the disk, side by side.
        let memory = memory_copy(dir.path()).map(|m| one_record(m.path()));
        let (p50, p90, read_us) = one_record(dir.path());
        let (sync_p50, sync_p90) = raw_fdatasync(dir.path());
        let (group_ms, txns) = rt.block_on(group_commit(dir.path(), 100));
        let bytes = std::fs::metadata(&file).unwrap().len();
        let (open_s, rss) = open_in_child(dir.path());
        let (mem_p50, mem_p90) = memory.map_or((f64::NAN, f64::NAN), |(a, b, _)| (a, b));
        println!(
            "{keys:>9} {groups:>8} {p50:>8.3} ms {p90:>8.3} ms {sync_p50:>8.3} ms {read_us:>6.1} us {:>7.0} / {:>5.0} {group_ms:>8.2} ms {txns:>13} {open_s:>9.2} {rss:>9.1} {mem_p50:>8.3} ms {mem_p90:>8.3} ms",
            seeded_bytes as f64 / keys as f64,
            bytes as f64 / keys as f64
        );
        rows.push(json!({
            "keys": keys, "groups": groups,
            "record_ms_p50": p50, "record_ms_p90": p90,
            "raw_fdatasync_4k_ms_p50": sync_p50, "raw_fdatasync_4k_ms_p90": sync_p90,
            "key_read_us_p50": read_us,
            "file_bytes_seeded": seeded_bytes, "bytes_per_key_seeded": seeded_bytes as f64 / keys as f64,
            "file_bytes": bytes, "bytes_per_key": bytes as f64 / keys as f64,
            "group_commit_100_records_ms": group_ms, "group_commit_100_records_transactions": txns,
            "open_s": open_s, "rss_after_open_mib": rss,
            "tmpfs_record_ms_p50": mem_p50, "tmpfs_record_ms_p90": mem_p90,
        }));
    }
    let flat = match (rows.first(), rows.last()) {
        (Some(a), Some(b)) => {
            b["record_ms_p50"].as_f64().unwrap() / a["record_ms_p50"].as_f64().unwrap()
        }
        _ => f64::NAN,
    };
    println!("largest / smallest median: {flat:.2}x");
    let (steps, steps_flat) = job_steps(max);
    let out = json!({
        "bench": "store_commit",
        "machine": machine(),
        "samples": SAMPLES,
        "rows": rows,
        "largest_over_smallest_median": flat,
        "job_step_rows": steps,
        "job_step_largest_over_smallest_median": steps_flat,
    });
    let path = results_path();
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap() + "\n").unwrap();
    println!("written to {}", path.display());
}

fn seed_only(dir: &Path) {
    let keys: usize = std::env::var("BYOKD_STORE_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    seed::seed(dir, TENANT, CLIENT, seed::Seed::five_a_group(keys));
}

/// One durable key record (a key's Azure version, as a push records it), `SAMPLES` times on
/// keys spread over the state: (median, 90th percentile) ms; and, before, the median of 1,000
/// reads of keys spread over the state, each the first read of its group since the open, µs.
fn one_record(dir: &Path) -> (f64, f64, f64) {
    let (mut store, mut state, _) = Store::open(dir).unwrap();
    let first = KeyName::try_from("key-00000").unwrap();
    let mut reads: Vec<f64> = state
        .groups
        .keys()
        .step_by((state.groups.len() / 1000).max(1))
        .map(|g| {
            let id = (g.clone(), first.clone());
            let t = Instant::now();
            std::hint::black_box(state.keys.get(&id).unwrap());
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    reads.sort_by(f64::total_cmp);
    let read_us = reads.get(reads.len() / 2).copied().unwrap_or(f64::NAN);
    let ids = spread_ids(&state, SAMPLES);
    let mut times: Vec<f64> = ids
        .iter()
        .cycle()
        .take(SAMPLES)
        .enumerate()
        .map(|(i, id)| {
            let t = Instant::now();
            if let Some(k) = state.keys.get_mut(id).unwrap() {
                k.azure_version = Some(format!("{:032x}", i + 1).into());
            }
            store.commit(&mut state).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 9 / 10], read_us)
}

/// A copy of the state files in `dir` in a new directory under `BYOKD_STORE_BENCH_MEMDIR`
/// (default `/dev/shm`, a tmpfs), or `None` when that directory is missing.
fn memory_copy(dir: &Path) -> Option<tempfile::TempDir> {
    let under = std::env::var("BYOKD_STORE_BENCH_MEMDIR").unwrap_or_else(|_| "/dev/shm".into());
    if !Path::new(&under).is_dir() {
        return None;
    }
    let copy = tempfile::tempdir_in(under).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    Some(copy)
}

/// What one commit's `fdatasync` costs on this file system on its own: a 4 KiB write into a
/// file in `dir` and `fdatasync`, `SAMPLES` times: (median, 90th percentile) ms.
fn raw_fdatasync(dir: &Path) -> (f64, f64) {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fdatasync.probe");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    file.set_len(4 << 20).unwrap();
    file.sync_all().unwrap();
    let page = [0x5au8; 4096];
    let mut times: Vec<f64> = (0..SAMPLES as u64)
        .map(|i| {
            let t = Instant::now();
            file.write_all_at(&page, (i * 7 % 1024) * 4096).unwrap();
            file.sync_data().unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    drop(file);
    std::fs::remove_file(&path).unwrap();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 9 / 10])
}

/// The first key of `n` groups spread over the state.
fn spread_ids(state: &byokd::store::State, n: usize) -> Vec<byokd::store::KeyId> {
    state
        .groups
        .keys()
        .step_by((state.groups.len() / n).max(1))
        .filter_map(|g| {
            let k = state.keys_in(g).unwrap().into_iter().next()?;
            Some((k.group, k.name))
        })
        .take(n)
        .collect()
}

/// `n` key records staged one after another and awaited by concurrent tasks, as `n` jobs
/// pushing at once do: (total ms, transactions = fsyncs it took).
async fn group_commit(dir: &Path, n: usize) -> (f64, u64) {
    let (mut store, mut state, _) = Store::open(dir).unwrap();
    let before = store.generation();
    let ids = spread_ids(&state, n);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for id in &ids {
        if let Some(k) = state.keys.get_mut(id).unwrap() {
            k.azure_version = Some("ffffffffffffffffffffffffffffffff".to_owned().into());
        }
        let pending = store.stage(&mut state).unwrap();
        tasks.push(tokio::spawn(pending.durable()));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    (ms, store.generation() - before)
}

/// Opens the store in a fresh process (as the daemon does at start): (seconds, RSS MiB after).
fn open_in_child(dir: &Path) -> (f64, f64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("BYOKD_STORE_BENCH_OPEN", dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "open child: {e}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        v["open_s"].as_f64().unwrap(),
        v["rss_mib"].as_f64().unwrap(),
    )
}

fn open_child(dir: &Path) {
    let t = Instant::now();
    let (store, state, _) = Store::open(dir).unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let rss = status_kib("VmRSS:") / 1024.0;
    println!(
        "{}",
        json!({"open_s": open_s, "rss_mib": rss, "keys": state.keys.len()})
    );
    drop(store);
}

fn status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn results_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results-store.json")
}

/// Runs the job steps alone and replaces their part of the results file.
fn job_steps_only(max: usize) {
    let (steps, flat) = job_steps(max);
    let path = results_path();
    let mut out: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({"bench": "store_commit", "machine": machine()}));
    out["job_step_rows"] = json!(steps);
    out["job_step_largest_over_smallest_median"] = json!(flat);
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap() + "\n").unwrap();
    println!("written to {}", path.display());
}

/// Keys of the sync job whose journal steps are timed.
const JOB_SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// One journal step of a sync of 1k, 10k and 100k keys, `SAMPLES` times each: the table rows
/// and the largest over the smallest median.
fn job_steps(max: usize) -> (Vec<Value>, f64) {
    println!(
        "\n{:>9} {:>11} {:>11} {:>14} {:>16}",
        "job keys", "step p50", "step p90", "written/step", "format 5 record"
    );
    let mut rows = Vec::new();
    for &keys in JOB_SIZES.iter().filter(|k| **k <= max) {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
        let id = byokd::model::JobId::new(1);
        state.jobs.insert(id, sync_job(id, keys));
        store.commit(&mut state).unwrap();
        let mut times = Vec::new();
        let mut written = Vec::new();
        for i in 0..SAMPLES {
            let before = wchar();
            let t = Instant::now();
            if let Some(job) = state.jobs.get_mut(&id) {
                import_sent(job, i * (keys / SAMPLES));
            }
            store.commit(&mut state).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
            written.push(wchar() - before);
        }
        times.sort_by(f64::total_cmp);
        written.sort_unstable();
        let (p50, p90) = (times[SAMPLES / 2], times[SAMPLES * 9 / 10]);
        let bytes = written[SAMPLES / 2];
        // What format 5 wrote for the same step: the whole job, re-encoded.
        let whole = postcard::to_allocvec(&state.jobs[&id]).unwrap().len();
        println!("{keys:>9} {p50:>8.3} ms {p90:>8.3} ms {bytes:>14} {whole:>16}");
        rows.push(json!({
            "job_keys": keys, "step_ms_p50": p50, "step_ms_p90": p90,
            "step_bytes_written_p50": bytes, "format5_job_record_bytes": whole,
        }));
    }
    let flat = match (rows.first(), rows.last()) {
        (Some(a), Some(b)) => {
            b["step_ms_p50"].as_f64().unwrap() / a["step_ms_p50"].as_f64().unwrap()
        }
        _ => f64::NAN,
    };
    println!("job step, largest / smallest median: {flat:.2}x");
    (rows, flat)
}

fn sync_job(id: byokd::model::JobId, keys: usize) -> byokd::model::Job {
    use byokd::model::{Job, JobKind, JobState, KeyName, KeySync, KeySyncState, StepMessage};
    Job {
        id,
        kind: JobKind::Sync,
        group: byokd::model::GroupName::try_from("bench").unwrap(),
        keys: (0..keys)
            .map(|i| KeySync {
                key: KeyName::try_from(format!("bench-key-{i:07}")).unwrap(),
                state: KeySyncState::NotStarted,
            })
            .collect(),
        started_by: "bench".into(),
        created: 1_700_000_000,
        started: Some(1_700_000_000),
        ended: None,
        state: JobState::Running,
        progress: 0,
        steps: vec![StepMessage {
            at: 1_700_000_000,
            message: "queued".into(),
        }]
        .into(),
        journal: Default::default(),
        kek: None,
        error: None,
        cancel_requested: None,
    }
}

/// The step a push journals before each import: the key's state, the typed step, its message.
fn import_sent(job: &mut byokd::model::Job, key: usize) {
    use byokd::model::{KeySyncState, StepMessage, SyncStep};
    let Some(k) = job.keys.get_mut(key) else {
        return;
    };
    k.state = KeySyncState::ImportSent {
        fingerprint: format!("{key:064x}"),
    };
    let name = k.key.clone();
    job.journal
        .push(SyncStep::ImportSent { key: name.clone() }.into());
    job.steps.push(StepMessage {
        at: 1_700_000_001,
        message: format!("Importing key {name}"),
    });
    job.progress = job.progress.saturating_add(1);
}

/// Bytes this process passed to write(2) and friends so far (`wchar` of /proc/self/io).
fn wchar() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
