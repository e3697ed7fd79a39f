//! byokctl's reference material: the man pages in `docs/man/` are exactly the generated ones
//! (byokctl(1) and its subcommands', byokd(8) and its subcommands', byokd.toml(5) from
//! `docs/configuration.md`), and `byokctl completion SHELL` is listed in `--help` and completes
//! subcommands and value enums. `BYOKD_BLESS=1` rewrites `docs/man/` from the build.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ctl(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_byokctl"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "byokctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pages(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn the_checked_in_man_pages_are_the_generated_ones() {
    let fresh = tempfile::tempdir().unwrap();
    let reference = repo().join("docs/configuration.md");
    ctl(&[
        "generate-man",
        fresh.path().to_str().unwrap(),
        "--config-reference",
        reference.to_str().unwrap(),
    ]);
    let generated = pages(fresh.path());
    for page in [
        "byokctl.1",
        "byokctl-key-public.1",
        "byokd.8",
        "byokd-upgrade.8",
        "byokd.toml.5",
    ] {
        assert!(generated.contains_key(page), "{page} is generated");
    }
    let checked_in = repo().join("docs/man");
    if std::env::var_os("BYOKD_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&checked_in);
        std::fs::create_dir_all(&checked_in).unwrap();
        for (name, text) in &generated {
            std::fs::write(checked_in.join(name), text).unwrap();
        }
    }
    let stored = pages(&checked_in);
    let stale: Vec<&String> = generated
        .keys()
        .chain(stored.keys())
        .filter(|n| generated.get(*n) != stored.get(*n))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/man differs from the generated pages in {stale:?}; regenerate them with \
         `BYOKD_BLESS=1 cargo test --test ctl_docs` and commit docs/man"
    );
    // The pages say what the code does.
    let top = &generated["byokctl.1"];
    assert!(top.contains(".SH \"EXIT STATUS\""), "{top}");
    assert!(top.contains("their own request"), "{top}");
    let toml = &generated["byokd.toml.5"];
    assert!(
        toml.contains("state_dir") && toml.contains(".SH NAME"),
        "{toml}"
    );
}

#[test]
fn completion_is_a_listed_command_that_completes_value_enums() {
    let help = ctl(&["--help"]);
    assert!(
        help.lines()
            .any(|l| l.trim_start().starts_with("completion")),
        "{help}"
    );
    let bash = ctl(&["completion", "bash"]);
    for word in [
        "delete-cloud",
        "--all-groups",
        "RSA-2048",
        "EC-P256K",
        "wrapKey",
        "waiting-approval",
        "jwk",
        "yaml",
    ] {
        assert!(bash.contains(word), "bash completion offers {word}");
    }
    let fish = ctl(&["completion", "fish"]);
    assert!(fish.contains("RSA-3072") && fish.contains("tsv"), "{fish}");
    let zsh = ctl(&["completion", "zsh"]);
    assert!(zsh.contains("#compdef byokctl"), "{zsh}");
    // Bash loads it and completes a key type for `group create --key-type`.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &bash).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(byokctl group create g --key-type EC-P3); COMP_CWORD=5; \
             _byokctl byokctl EC-P3 --key-type; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.path().display()
        ))
        .output()
        .unwrap();
    let offered = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        offered.trim(),
        "EC-P384",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
