//! No decision reads a step message. Step messages are display text only: crash recovery and
//! every control decision read the typed journal (`Job::journal`, `kek`, `keys`). This test
//! scans the sources, so rewording a message can never change what a restarted daemon does.
//! The one place allowed to read messages is the format-3 migration (`src/store/legacy.rs`),
//! which converts the old string journals once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// Where job recovery and decisions live: no `.message` field is read here at all.
const STRICT: &[&str] = &[
    "src/jobs",
    "src/dual_control",
    "src/service",
    "src/store",
    "src/daemon",
    "src/model",
];
/// Where messages are shown: reading one for display is fine, comparing it is not.
const DISPLAY: &[&str] = &["src/control", "src/ctl"];
/// The migration that reads the old string journals once.
const ALLOWED: &str = "src/store/legacy.rs";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file before its unit tests, without comment lines.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| !l.trim_start().starts_with("#[cfg(test)]"))
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(n, l)| (n + 1, l))
}

/// Whether a line reads a `message` field at all.
fn reads_message(line: &str) -> bool {
    line.contains(".message")
}

/// Whether a line decides by a `message` field's text.
fn compares_message(line: &str) -> bool {
    const TESTS: &[&str] = &[
        "message.starts_with",
        "message.ends_with",
        "message.contains",
        "message.strip_prefix",
        "message.strip_suffix",
        "message.find",
        "message.split",
        "message.matches",
        "message.eq",
        "message ==",
        "message !=",
        "== s.message",
        "message.as_str() ==",
    ];
    TESTS.iter().any(|t| line.contains(t))
}

fn offenders(dirs: &[&str], rule: fn(&str) -> bool) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&root.join(dir), &mut files);
    }
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == ALLOWED {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in code_lines(&text) {
            if rule(line) {
                found.push(format!("{rel}:{n}: {}", line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_job_or_service_code_reads_a_step_message() {
    let found = offenders(STRICT, reads_message);
    assert!(
        found.is_empty(),
        "step messages are display text only; decide by the typed journal instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_api_and_cli_show_step_messages_but_never_compare_them() {
    let found = offenders(DISPLAY, compares_message);
    assert!(
        found.is_empty(),
        "step messages are display text only; decide by the typed journal instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_catches_the_string_matching_it_replaced() {
    // The lines that recovered rotation and delete on cloud before the typed journal.
    for old in [
        "let sent = |prefix: &str| journal.iter().any(|s| s.message.starts_with(prefix));",
        "if job.steps.iter().any(|s| s.message.starts_with(&intent)) {",
    ] {
        assert!(reads_message(old) && compares_message(old), "{old}");
    }
    // Display is allowed where messages are shown.
    assert!(!compares_message(
        r#""step": job.steps.last().map(|s| s.message.clone()).unwrap_or_default(),"#
    ));
    // Comment and unit-test lines are not code paths of the daemon.
    let text = "// s.message.starts_with(x)\nfn a() {}\n#[cfg(test)]\nmod t { s.message == x }\n";
    assert_eq!(code_lines(text).count(), 1);
    // And the migration that converts the old journals exists where it is allowed.
    let legacy =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(ALLOWED)).unwrap();
    assert!(legacy.contains("fn step_of_message"));
}
