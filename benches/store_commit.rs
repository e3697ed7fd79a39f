//! The state store at scale: one durable key record (a push's Azure version on one key) at 1k,
//! 10k, 50k, 200k and 1,000,000 keys (five keys a group, so 200,000 groups at 1M); bytes per
//! key on disk; a group commit of 100 key records from concurrent tasks; one key read from the
//! store (keys are not held in memory); the raw `fdatasync` of a 4 KiB write on the same file
//! system, side by side with the commit it bounds (a commit is one `fdatasync`); and, in a fresh
//! process, the time to open the store and the RSS after it.
//!
//! `cargo bench --bench store_commit` (set `BYOKD_STORE_BENCH_MAX` to stop at fewer keys).
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    println!(
        "{:>9} {:>8} {:>11} {:>11} {:>11} {:>9} {:>15} {:>11} {:>13} {:>9} {:>9}",
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
        "RSS MiB"
    );
    for &keys in SIZES.iter().filter(|k| **k <= max) {
        let dir = tempfile::tempdir_in(
            std::env::var("BYOKD_STORE_BENCH_DIR")
                .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
        )
        .unwrap();
        let groups = keys / 5;
        seed::seed(
            dir.path(),
            TENANT,
            CLIENT,
            seed::Seed {
                big_group_keys: 0,
                small_groups: groups,
                keys_per_group: 5,
                rotation: false,
            },
        );
        let file = dir.path().join("state.redb");
        let seeded_bytes = std::fs::metadata(&file).unwrap().len();
        let (p50, p90, read_us) = one_record(dir.path());
        let (sync_p50, sync_p90) = raw_fdatasync(dir.path());
        let (group_ms, txns) = rt.block_on(group_commit(dir.path(), 100));
        let bytes = std::fs::metadata(&file).unwrap().len();
        let (open_s, rss) = open_in_child(dir.path());
        println!(
            "{keys:>9} {groups:>8} {p50:>8.3} ms {p90:>8.3} ms {sync_p50:>8.3} ms {read_us:>6.1} us {:>7.0} / {:>5.0} {group_ms:>8.2} ms {txns:>13} {open_s:>9.2} {rss:>9.1}",
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
        }));
    }
    let flat = match (rows.first(), rows.last()) {
        (Some(a), Some(b)) => {
            b["record_ms_p50"].as_f64().unwrap() / a["record_ms_p50"].as_f64().unwrap()
        }
        _ => f64::NAN,
    };
    println!("largest / smallest median: {flat:.2}x");
    let out = json!({
        "bench": "store_commit",
        "machine": machine(),
        "samples": SAMPLES,
        "rows": rows,
        "largest_over_smallest_median": flat,
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results-store.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap() + "\n").unwrap();
    println!("written to {}", path.display());
}

fn seed_only(dir: &Path) {
    let keys: usize = std::env::var("BYOKD_STORE_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    seed::seed(
        dir,
        TENANT,
        CLIENT,
        seed::Seed {
            big_group_keys: 0,
            small_groups: keys / 5,
            keys_per_group: 5,
            rotation: false,
        },
    );
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
