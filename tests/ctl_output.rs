//! byokctl's output against the real daemon and the Azure emulator: every `-o` format keeps
//! the API's field names, `show` is describe-style, times are RFC 3339 UTC, tables fit a real
//! terminal, progress counts keys, `job list` filters and watches, `log show --tail/--reverse`,
//! `key list --all-groups`, `key public` as openssl reads it, and a closed pipe is no panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ctl_support;
#[path = "control_rig/mod.rs"]
mod rig;

use base64::Engine;
use ctl_support::*;
use rig::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[test]
fn every_output_format_keeps_the_api_field_names_and_rfc3339_times() {
    let r = rig();
    let v = r.json(AUDITOR, &["key", "list", "g1"]);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{v}");
    for k in keys {
        assert!(
            k["check_digits"].is_string() && k["hsm_id"].is_string(),
            "{k}"
        );
        assert!(is_rfc3339_utc(k["created"].as_str().unwrap()), "{k}");
    }
    // YAML: the same document.
    let yaml = r.ok(AUDITOR, &["-o", "yaml", "key", "list", "g1"]);
    let from_yaml: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(from_yaml, v, "{yaml}");
    // TSV: the API's field names as the header, one row per key, every column.
    let tsv = r.ok(AUDITOR, &["-o", "tsv", "key", "list", "g1"]);
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(
        lines[0],
        "name\tgroup\tversion\tstorage\tkey_type\talgorithm\tcheck_digits\tcreated\thsm_id"
    );
    assert_eq!(lines.len(), 3, "{tsv}");
    let row: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(row.len(), 9, "{tsv}");
    assert!(is_rfc3339_utc(row[7]), "{tsv}");
    // none: nothing at all, success.
    let none = r.d.ctl(AUDITOR, &["-o", "none", "key", "list", "g1"]);
    assert_eq!((ok(&none).as_str(), none.status.code()), ("", Some(0)));
    // table and wide: wide has more columns; times as RFC 3339.
    let table = r.ok(AUDITOR, &["key", "list", "g1"]);
    let wide = r.ok(AUDITOR, &["-o", "wide", "key", "list", "g1"]);
    assert!(
        table.starts_with("NAME") && !table.contains("HSM ID"),
        "{table}"
    );
    assert!(wide.contains("HSM ID"), "{wide}");
    let created = keys[0]["created"].as_str().unwrap();
    assert!(table.contains(created), "{table}");
    // show: a describe-style record with sections, in the API's field order.
    let show = r.ok(AUDITOR, &["group", "show", "g1"]);
    let lines: Vec<&str> = show.lines().collect();
    assert!(
        lines[0].starts_with("name:") && lines[0].ends_with("g1"),
        "{show}"
    );
    let at = lines.iter().position(|l| *l == "rotation:").unwrap();
    assert!(lines[at + 1].starts_with("  enabled:"), "{show}");
    assert!(!show.contains('{'), "no inline JSON: {show}");
    // A record in TSV: one field per line, nested ones by path.
    let tsv = r.ok(AUDITOR, &["-o", "tsv", "group", "show", "g1"]);
    assert!(tsv.lines().any(|l| l == "rotation.enabled\tfalse"), "{tsv}");
    // Every group's keys at once.
    r.ok(OPERATOR, &group_create("g2", "EC-P384"));
    r.ok(OPERATOR, &["key", "create", "g2", "k3"]);
    let all = r.json(AUDITOR, &["key", "list", "--all-groups"]);
    let names: Vec<(&str, &str)> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["group"].as_str().unwrap(), k["name"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("g1", "k1"), ("g1", "k2"), ("g2", "k3")]);
}

#[test]
fn tables_fit_a_real_terminal_and_are_whole_lines_in_a_pipe() {
    let r = rig();
    r.sync();
    let ctl = env!("CARGO_BIN_EXE_byokctl");
    let piped = r.ok(AUDITOR, &["-o", "wide", "key", "list", "g1"]);
    let longest = piped.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest > 70, "wide rows are long in a pipe: {piped}");
    assert!(
        piped.lines().count() == 3,
        "no wrapped lines in a pipe: {piped}"
    );
    // Under a pseudo-terminal 70 columns wide (util-linux `script`).
    let mut script = r.with_env(AUDITOR, "script");
    script
        .arg("-qec")
        .arg(format!("stty cols 70; {ctl} -o wide key list g1"))
        .arg("/dev/null");
    let out = script.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("HSM ID"), "{text}");
    for line in text.lines() {
        assert!(
            line.chars().count() <= 70,
            "{line:?} is wider than the terminal:\n{text}"
        );
    }
}

#[test]
fn jobs_filter_watch_and_show_progress_in_keys() {
    let r = rig();
    // A sync, followed in a pipe: one plain progress line per change, counted in keys.
    let out = r.d.ctl(OPERATOR, &["group", "sync", "g1"]);
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/2 keys"), "{stderr}");
    assert!(stderr.contains("2/2 keys"), "{stderr}");
    assert!(
        stdout.contains("state:") && stdout.contains("succeeded"),
        "{stdout}"
    );
    assert!(stdout.contains("steps:"), "describe-style job: {stdout}");
    r.ok(OPERATOR, &["group", "check", "g1"]);
    // Nothing was deleted: the recover job fails (exit 6).
    assert_eq!(
        r.d.ctl(OPERATOR, &["group", "recover", "g1"]).status.code(),
        Some(6)
    );
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["job", "list"];
        all.extend_from_slice(args);
        r.json(AUDITOR, &all)["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                format!(
                    "{}:{}",
                    j["kind"].as_str().unwrap(),
                    j["state"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        ids(&[]),
        ["recover:failed", "check-cloud:succeeded", "sync:succeeded"],
        "newest first"
    );
    assert_eq!(ids(&["--kind", "sync"]), ["sync:succeeded"]);
    assert_eq!(ids(&["--state", "failed"]), ["recover:failed"]);
    assert_eq!(
        ids(&[
            "--state",
            "succeeded",
            "--kind",
            "check-cloud",
            "--group",
            "g1"
        ]),
        ["check-cloud:succeeded"]
    );
    assert!(ids(&["--group", "nope"]).is_empty());
    let refused = r.d.ctl(AUDITOR, &["job", "list", "--state", "done"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a value enum refuses other states"
    );
    let table = r.ok(AUDITOR, &["job", "list", "--kind", "sync"]);
    assert!(
        table.contains("PROGRESS") && table.contains("2/2 keys"),
        "{table}"
    );

    // --watch: the list, then each job that starts or changes, as JSON lines.
    let mut watch = r
        .command(
            AUDITOR,
            &["-o", "json", "job", "list", "--watch", "--group", "g1"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        seen.push(v["id"].as_str().unwrap().to_owned());
    }
    let started = r.json(OPERATOR, &["group", "check", "g1", "--no-wait"]);
    let new_id = started["job"]["id"].as_str().unwrap().to_owned();
    assert!(!seen.contains(&new_id));
    loop {
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if v["id"] == new_id.as_str() && v["state"] == "succeeded" {
            break;
        }
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
}

/// The sequence numbers `log show --job JOB ARGS` shows.
fn job_seqs(r: &Rig, job: &str, args: &[&str]) -> Vec<u64> {
    let mut all = vec!["log", "show", "--job", job];
    all.extend_from_slice(args);
    r.json(AUDITOR, &all)["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn log_show_tails_and_reverses() {
    let r = rig();
    let job = r.sync();
    let seqs = |args: &[&str]| job_seqs(&r, &job, args);
    let all = seqs(&["--limit", "1000"]);
    assert!(all.len() > 3 && all.is_sorted(), "{all:?}");
    let last3 = all[all.len() - 3..].to_vec();
    assert_eq!(seqs(&["--tail", "3"]), last3);
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(seqs(&["--reverse", "--limit", "1000"]), reversed);
    assert_eq!(
        seqs(&["--tail", "3", "--reverse"]),
        last3.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(seqs(&["--tail", "1000"]), all, "a tail longer than the log");
    let table = r.ok(AUDITOR, &["log", "show", "--job", &job, "--tail", "1"]);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.starts_with("SEQ"), "{table}");
    let ts = table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();
    assert!(is_rfc3339_utc(ts), "{table}");
}

/// The hex bytes of an `openssl pkey -text` block (`pub:` or `Modulus:`).
fn openssl_hex(text: &str, heading: &str) -> Vec<u8> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(heading)).skip(1);
    let mut hex = String::new();
    for l in lines.by_ref() {
        if !l.starts_with(' ') {
            break;
        }
        hex.push_str(&l.trim().replace(':', ""));
    }
    hex::decode(hex).unwrap()
}

fn openssl(args: &[&str], input: &std::path::Path) -> std::process::Output {
    let out = std::process::Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn key_public_writes_pem_der_and_jwk_that_openssl_reads() {
    let r = rig();
    r.ok(OPERATOR, &group_create("r1", "RSA-2048"));
    r.ok(OPERATOR, &["key", "create", "r1", "rk"]);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for (group, key) in [("g1", "k1"), ("r1", "rk")] {
        let pem = r.d.path(&format!("{key}.pem"));
        std::fs::write(&pem, r.ok(AUDITOR, &["key", "public", group, key])).unwrap();
        let text = openssl(&["pkey", "-pubin", "-noout", "-text"], &pem).stdout;
        let text = String::from_utf8_lossy(&text).to_string();
        // DER on stdout is the same key, byte for byte.
        let der =
            r.d.ctl(AUDITOR, &["key", "public", group, key, "--format", "der"]);
        let der_bytes = der.stdout.clone();
        ok(&der);
        let from_pem = openssl(&["pkey", "-pubin", "-outform", "DER"], &pem).stdout;
        assert_eq!(der_bytes, from_pem, "{group}/{key}");
        let der_file = r.d.path(&format!("{key}.der"));
        r.ok(
            AUDITOR,
            &[
                "key",
                "public",
                group,
                key,
                "--format",
                "der",
                "--file",
                der_file.to_str().unwrap(),
            ],
        );
        openssl(&["pkey", "-pubin", "-inform", "DER", "-noout"], &der_file);
        assert_eq!(std::fs::read(&der_file).unwrap(), from_pem);
        // The API's answer carries the same SPKI.
        let api = r.json(AUDITOR, &["key", "public", group, key]);
        let spki = base64::engine::general_purpose::STANDARD
            .decode(api["spki_der_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(spki, from_pem);
        // The JWK's numbers are the ones openssl reads from the PEM.
        let jwk: Value =
            serde_json::from_str(&r.ok(AUDITOR, &["key", "public", group, key, "--format", "jwk"]))
                .unwrap();
        if group == "g1" {
            assert_eq!(
                (jwk["kty"].as_str(), jwk["crv"].as_str()),
                (Some("EC"), Some("P-256"))
            );
            let mut point = vec![4u8];
            point.extend(b64.decode(jwk["x"].as_str().unwrap()).unwrap());
            point.extend(b64.decode(jwk["y"].as_str().unwrap()).unwrap());
            assert_eq!(point, openssl_hex(&text, "pub:"), "{text}");
        } else {
            assert_eq!(jwk["kty"], "RSA");
            assert_eq!(jwk["e"], "AQAB", "65537");
            let modulus: Vec<u8> = openssl_hex(&text, "Modulus:")
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            assert_eq!(b64.decode(jwk["n"].as_str().unwrap()).unwrap(), modulus);
        }
    }
    let missing = r.d.ctl(AUDITOR, &["key", "public", "g1", "nope"]);
    assert_eq!(missing.status.code(), Some(4));
}

#[test]
fn a_closed_pipe_ends_byokctl_quietly() {
    let r = rig();
    // A reader that is gone before byokctl writes: every write fails with EPIPE.
    for args in [
        &["job", "list"][..],
        &["log", "show"],
        &["key", "public", "g1", "k1"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = r
            .command(AUDITOR, args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // The shell's own pipe into `head -1`.
    let ctl = env!("CARGO_BIN_EXE_byokctl");
    let out = r
        .with_env(AUDITOR, "bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; for i in 1 2 3; do {ctl} -o wide log show --limit 1000 | head -1; done"
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
}

#[test]
fn approval_approve_wait_follows_the_job_it_starts() {
    let r = rig();
    r.sync();
    let pending = r.json(ADMIN, &["group", "delete-cloud", "g1"]);
    let id = pending["approval"]["id"].as_str().unwrap().to_owned();
    let job = pending["job"]["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["job"]["state"], "waiting-approval", "{pending}");
    let out = r.d.ctl(ADMIN2, &["approval", "approve", &id, "--wait"]);
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("following job {job}")), "{stderr}");
    // The finished job, describe-style, not the approval.
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("id:") && l.ends_with(job.as_str())),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("kind:") && l.ends_with("delete-cloud")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("state:") && l.ends_with("succeeded")),
        "{stdout}"
    );
    let v = r.json(AUDITOR, &["job", "show", &job]);
    assert_eq!(v["state"], "succeeded", "{v}");
    // The designated flag takes on/off like rotation, and true/false too.
    for (value, want) in [
        ("off", false),
        ("on", true),
        ("false", false),
        ("true", true),
    ] {
        r.ok(ADMIN, &["designated", "set", value]);
        assert_eq!(
            r.json(AUDITOR, &["designated", "get"])["designated"],
            want,
            "{value}"
        );
    }
    assert_eq!(
        r.d.ctl(ADMIN, &["designated", "set", "maybe"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn log_show_tail_reaches_back_past_its_first_window() {
    let r = rig();
    let job = r.sync();
    let last_of_job = |args: &[&str]| job_seqs(&r, &job, args);
    let all = last_of_job(&["--limit", "1000"]);
    let end_of_job = *all.last().unwrap();
    // More than the first window (100 records) after the job's last record: new keys.
    let next_seq = || {
        r.json(AUDITOR, &["status"])["health"]["logs"]["next_seq"]
            .as_u64()
            .unwrap()
    };
    let mut rounds = 0;
    while next_seq() < end_of_job + 150 {
        for i in 0..25 {
            r.ok(
                OPERATOR,
                &["key", "create", "g1", &format!("n{rounds}x{i}")],
            );
        }
        rounds += 1;
        assert!(rounds < 40, "the log does not grow: {}", next_seq());
    }
    assert_eq!(last_of_job(&["--tail", "2"]), all[all.len() - 2..].to_vec());
}
