//! `hardening/THREAT-MODEL.md` names, for each mitigation, the test that proves it. Every named
//! test must exist as a `fn` in the file named with it, so the model cannot point at nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

/// Every `` `tests/FILE.rs::name` `` or `` `src/PATH.rs::name` `` reference in the text.
fn references(text: &str) -> Vec<(String, String)> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| {
            let (file, name) = code.split_once("::")?;
            let is_rust_file =
                (file.starts_with("tests/") || file.starts_with("src/")) && file.ends_with(".rs");
            let is_ident =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            (is_rust_file && is_ident).then(|| (file.to_owned(), name.to_owned()))
        })
        .collect()
}

fn defines_fn(source: &str, name: &str) -> bool {
    source.lines().any(|l| {
        let l = l.trim_start();
        let l = l.strip_prefix("async ").unwrap_or(l);
        l.strip_prefix("fn ").is_some_and(|rest| {
            rest.strip_prefix(name)
                .is_some_and(|after| after.starts_with('(') || after.starts_with('<'))
        })
    })
}

#[test]
fn every_test_named_in_the_threat_model_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("hardening/THREAT-MODEL.md")).unwrap();
    let refs = references(&text);
    assert!(
        refs.len() >= 30,
        "only {} test references found",
        refs.len()
    );
    let missing: Vec<String> = refs
        .iter()
        .filter(|(file, name)| {
            let source = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            !defines_fn(&source, name)
        })
        .map(|(file, name)| format!("{file}::{name}"))
        .collect();
    assert!(
        missing.is_empty(),
        "THREAT-MODEL.md names tests that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_reference_reader_finds_names_and_rejects_lookalikes() {
    let refs = references(
        "a `tests/x.rs::good_one` b `src/y.rs::other` c `IPAddressDeny=any` d `tests/x.rs::bad name`",
    );
    assert_eq!(
        refs,
        [
            ("tests/x.rs".to_owned(), "good_one".to_owned()),
            ("src/y.rs".to_owned(), "other".to_owned())
        ]
    );
    assert!(defines_fn("    async fn good_one() {}", "good_one"));
    assert!(!defines_fn("fn good_one_two() {}", "good_one"));
}
