//! The manual cannot rot: every relative link and anchor in README.md and docs/ resolves; the
//! configuration reference documents every setting the checker knows, and nothing else; and the
//! console PKI commands of the operator guide, run as written, make files that `openssl verify`
//! and `byokd check-config` (with the shipped configuration) accept. No network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every markdown file under docs/.
fn manual() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// The text outside fenced code blocks and inline code.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut code = false;
        for c in line.chars() {
            if c == '`' {
                code = !code;
            } else if !code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#').replace('`', "").as_str()));
        }
    }
    out
}

/// The targets of `[text](target)` links.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        if let Some(end) = after.find(')') {
            out.push(after[..end].trim().to_owned());
        }
        rest = after;
    }
    out
}

#[test]
fn every_relative_link_and_anchor_in_the_manual_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in manual() {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in links(&prose(&text)) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let name = file.strip_prefix(root()).unwrap().display().to_string();
            if !dest.exists() {
                broken.push(format!("{name}: {target}: no such file"));
                continue;
            }
            if let Some(a) = anchor
                && dest.extension().is_some_and(|x| x == "md")
                && !anchors(&std::fs::read_to_string(&dest).unwrap()).contains(a)
            {
                broken.push(format!("{name}: {target}: no heading with that anchor"));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_configuration_reference_documents_every_setting_and_no_other() {
    let doc = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let settings: BTreeSet<String> = byokd::config::setting_names().into_iter().collect();
    assert!(settings.contains("azure.kek_size") && settings.contains("control.identities.cn"));
    // The first cell of each table row names settings in backticks.
    let mut documented = BTreeSet::new();
    for line in doc
        .lines()
        .filter(|l| l.starts_with("| `") || l.starts_with("| ["))
    {
        let cell = line.split('|').nth(1).unwrap_or("");
        for (i, part) in cell.split('`').enumerate() {
            if i % 2 == 1 && !part.starts_with('[') {
                documented.insert(part.to_owned());
            }
        }
    }
    let missing: Vec<_> = settings.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&settings).collect();
    assert!(
        missing.is_empty(),
        "settings docs/configuration.md does not document: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents settings that do not exist: {unknown:?}"
    );
}

/// The shell block after `<!-- test: console-pki -->` in the operator guide.
fn pki_commands() -> String {
    let guide = std::fs::read_to_string(root().join("docs/operator-guide.md")).unwrap();
    let (_, after) = guide
        .split_once("<!-- test: console-pki -->")
        .expect("the operator guide marks its console PKI commands");
    let start = after
        .find("```sh\n")
        .expect("a sh block follows the marker")
        + 6;
    let end = after[start..].find("```").unwrap() + start;
    after[start..end].to_owned()
}

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (apt-get install openssl)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_console_pki_commands_of_the_operator_guide_make_files_byokd_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = d.join("pki.sh");
    std::fs::write(&script, format!("set -euo pipefail\n{}", pki_commands())).unwrap();
    run(d, "bash", &[script.to_str().unwrap()]);
    // The chain: the server and every officer certificate verify against the console CA, for
    // the purposes byokd checks.
    run(
        d,
        "openssl",
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslserver",
            "server.pem",
        ],
    );
    for who in ["alice", "bob", "olivia"] {
        let pem = format!("{who}.pem");
        run(
            d,
            "openssl",
            &["verify", "-CAfile", "ca.pem", "-purpose", "sslclient", &pem],
        );
        let subject = run(d, "openssl", &["x509", "-in", &pem, "-noout", "-subject"]);
        assert!(subject.contains(&format!("CN = {who}")), "{subject}");
    }
    // The shipped configuration with these files, as the guide installs them, passes
    // check-config: byokd loads the certificate, key and CA itself.
    let shipped = std::fs::read_to_string(root().join("systemd/byokd.toml")).unwrap();
    let module = std::env::var("BYOKD_PKCS11_MODULE")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    let config = shipped
        .replace("/usr/lib/softhsm/libsofthsm2.so", &module)
        .replace("/etc/byokd/console", &d.display().to_string())
        .replace("/run/byokd", &d.display().to_string());
    let path = d.join("byokd.toml");
    std::fs::write(&path, config).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_byokd"))
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
