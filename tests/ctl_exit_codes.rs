//! byokctl's exit codes agree with `byokctl --help`: each documented code is produced by its
//! situation against the real daemon and the Azure emulator, and no code is documented that
//! this test does not produce. A self-approval exits with the conflict code and the service log
//! says the admin cannot approve their own request (not that they "may not call" approve).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ctl_support;
#[path = "control_rig/mod.rs"]
mod rig;

use ctl_support::*;
use rig::*;
use std::collections::BTreeSet;

/// The codes `byokctl --help` documents.
fn documented() -> BTreeSet<i32> {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_byokctl"))
        .arg("--help")
        .output()
        .unwrap();
    let help = ok(&help);
    help.lines()
        .skip_while(|l| !l.starts_with("Exit codes:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let t = l.trim_start();
            (l.len() - t.len() == 2).then(|| t.split_whitespace().next()?.parse().ok())?
        })
        .collect()
}

#[test]
fn each_documented_exit_code_is_what_its_situation_gives() {
    let r = rig();
    r.sync();
    let mut seen = BTreeSet::new();
    let mut expect = |code: i32, who: &str, args: &[&str], why: &str| -> String {
        let out = r.d.ctl(who, args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{why}: byokctl {args:?}: {stderr}"
        );
        seen.insert(code);
        stderr
    };
    expect(0, AUDITOR, &["status"], "success");
    expect(
        1,
        AUDITOR,
        &["--server", "https://127.0.0.1:1", "status"],
        "cannot connect",
    );
    expect(
        2,
        OPERATOR,
        &group_create("x", "RSA-1024"),
        "a key type that is not one",
    );
    expect(
        2,
        ADMIN,
        &["credential", "add", "x", "--secret", "plain"],
        "a secret as an argument",
    );
    expect(
        3,
        OPERATOR,
        &["designated", "set", "on"],
        "the role may not",
    );
    expect(3, FOREIGN, &["status"], "a certificate from another CA");
    expect(4, AUDITOR, &["group", "show", "nope"], "no such group");
    expect(4, AUDITOR, &["key", "public", "g1", "nope"], "no such key");
    expect(
        5,
        OPERATOR,
        &group_create("g1", "EC-P256"),
        "the name is taken",
    );
    // Dual control: a pushed key's delete waits for a second admin; its requester cannot
    // approve it.
    let pending = r.json(ADMIN, &["key", "delete", "g1", "k1"]);
    let id = pending["approval"]["id"].as_str().unwrap().to_owned();
    let said = expect(5, ADMIN, &["approval", "approve", &id], "self-approval");
    assert!(said.contains("cannot approve their own request"), "{said}");
    let export = r.d.path("export.jsonl");
    std::fs::write(&export, "").unwrap();
    expect(
        5,
        AUDITOR,
        &["log", "export", export.to_str().unwrap()],
        "the file exists",
    );
    expect(
        6,
        OPERATOR,
        &["group", "recover", "g1"],
        "nothing to recover: the job fails",
    );
    // A chain with one record changed.
    expect(
        0,
        AUDITOR,
        &["log", "export", "--force", export.to_str().unwrap()],
        "export",
    );
    let text = std::fs::read_to_string(&export).unwrap();
    let tampered = text.replacen("succeeded", "succeedeX", 1);
    assert_ne!(text, tampered);
    std::fs::write(&export, tampered).unwrap();
    expect(
        8,
        AUDITOR,
        &["log", "verify", export.to_str().unwrap()],
        "a broken chain",
    );
    // The audit trail of the self-approval: a refused decision, in dual control's words.
    let refused = r.json(AUDITOR, &["log", "show", "--text", "their own request"]);
    let records = refused["records"].as_array().unwrap();
    assert!(
        records.iter().any(|x| x["event"] == "approval.refused"),
        "{refused}"
    );
    let denied = r.json(AUDITOR, &["log", "show", "--text", "may not call"]);
    let by_admin: Vec<_> = denied["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["identity"] == ADMIN)
        .collect();
    assert!(by_admin.is_empty(), "{by_admin:?}");
    // The HSM's token is gone from under the daemon: it cannot make a key (503).
    for f in std::fs::read_dir(r.d.path("tokens")).unwrap() {
        let _ = std::fs::remove_dir_all(f.unwrap().path());
    }
    expect(
        7,
        OPERATOR,
        &["key", "create", "g1", "k9"],
        "the HSM cannot",
    );
    assert_eq!(seen, documented(), "every documented code, and only those");
}
