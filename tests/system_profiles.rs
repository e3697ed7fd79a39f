//! The AppArmor profile and the sysctl drop-in that ship in the firmware bundle
//! (`hardening/apparmor/`, `hardening/sysctl/`): the profile compiles with `apparmor_parser`
//! and confines the binaries in both A/B slots; the drop-in is well formed and sets the
//! settings the threat model relies on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn parse(profile: &Path) -> std::process::Output {
    // -Q: compile only, load nothing into the kernel; -K: no cache.
    Command::new("apparmor_parser")
        .args(["-Q", "-K"])
        .arg(profile)
        .output()
        .expect("apparmor_parser (apt-get install apparmor)")
}

#[test]
fn the_apparmor_profile_compiles_and_confines_both_slots() {
    let path = file("hardening/apparmor/opt.byokd.bin.byokd");
    let out = parse(&path);
    assert!(
        out.status.success(),
        "apparmor_parser: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("profile byokd /opt/byokd/{a,b}/bin/byokd flags=(enforce)"));
    for rule in ["deny ptrace,", "deny capability,", "deny network raw,"] {
        assert!(text.contains(rule), "profile lacks {rule}");
    }
    // The parser does reject a broken profile, so the check above can fail.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken");
    std::fs::write(&broken, text.replace("deny ptrace,", "deny ptrace")).unwrap();
    assert!(
        !parse(&broken).status.success(),
        "a broken profile compiled"
    );
}

#[test]
fn the_sysctl_drop_in_is_well_formed_and_keeps_the_settings_the_threat_model_names() {
    let text = std::fs::read_to_string(file("hardening/sysctl/90-byokd.conf")).unwrap();
    let mut keys = std::collections::BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("line {}: not `key = value`: {line}", n + 1));
        assert!(
            key.split('.').count() >= 2
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_'),
            "line {}: bad key {key}",
            n + 1
        );
        assert!(!value.is_empty());
        assert!(keys.insert(key, value).is_none(), "{key} set twice");
    }
    for (key, value) in [
        ("kernel.yama.ptrace_scope", "3"),
        ("fs.suid_dumpable", "0"),
        ("kernel.kptr_restrict", "2"),
        ("kernel.randomize_va_space", "2"),
    ] {
        assert_eq!(keys.get(key), Some(&value), "{key}");
    }
}
