//! The checksec-style check (`hardening/checksec.sh`): the built byokd has the properties
//! recorded in `hardening/checksec.golden` (PIE, full RELRO, NX, no RPATH/RUNPATH/TEXTREL), and
//! the script does tell a weak binary apart. CI checks the binary the tests use (the dev profile
//! links with the same flags as the release profile); `image/build.sh` runs the same comparison
//! on the release binary before it packages it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn checksec(binary: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("hardening/checksec.sh"))
        .arg(binary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "checksec.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_byokd_binary_matches_the_checksec_golden_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden = std::fs::read_to_string(root.join("hardening/checksec.golden")).unwrap();
    for line in [
        "pie: yes",
        "relro: full",
        "nx: yes",
        "rpath: none",
        "runpath: none",
    ] {
        assert!(golden.lines().any(|l| l == line), "golden lacks {line:?}");
    }
    assert_eq!(
        checksec(Path::new(env!("CARGO_BIN_EXE_byokd"))),
        golden,
        "byokd differs from hardening/checksec.golden"
    );
    assert_eq!(checksec(Path::new(env!("CARGO_BIN_EXE_byokctl"))), golden);
}

#[test]
fn the_check_reports_a_weak_binary_as_weak() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("weak.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let weak = dir.path().join("weak");
    let cc = Command::new("cc")
        .arg(&src)
        .arg("-o")
        .arg(&weak)
        .args([
            "-no-pie",
            "-fno-stack-protector",
            "-Wl,-z,norelro",
            "-Wl,-z,execstack",
            "-Wl,-rpath,/tmp/evil",
            "-Wl,--disable-new-dtags",
        ])
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    assert_eq!(
        checksec(&weak),
        "pie: no\nrelro: none\nnx: no\nstack-canary: no\nrpath: present\nrunpath: none\ntextrel: none\n"
    );
}
