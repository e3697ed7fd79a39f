//! The admin host and the `byokd-emulator` binary (config file, CA file, SIGTERM).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use std::io::BufRead as _;

use byokd_emulator::{ADMIN_HOST, EmulatorConfig};
use serde_json::json;

#[tokio::test]
async fn admin_host_lists_keys_and_injects_faults() {
    let (emu, c) = start().await;
    let t = c.token().await;
    c.create_kek(&t, VAULT, "kek").await;
    let r = c
        .send(
            "GET",
            &format!("https://{ADMIN_HOST}/_emulator/vaults/{VAULT}/keys"),
            &[],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0]["name"], "kek");
    assert_eq!(r.body[0]["is_kek"], true);

    let rule = json!({"op":"get_key","times":1,"action":{"kind":"status","status":502}});
    let r = c
        .send(
            "POST",
            &format!("https://{ADMIN_HOST}/_emulator/faults"),
            &[],
            rule.to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        c.kv("GET", VAULT, "/keys/kek?api-version=7.5", Some(&t), None)
            .await
            .status,
        502
    );
    assert_eq!(
        c.kv("GET", VAULT, "/keys/kek?api-version=7.5", Some(&t), None)
            .await
            .status,
        200
    );

    let r = c
        .send(
            "GET",
            &format!("https://{ADMIN_HOST}/_emulator/requests"),
            &[],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.body.as_array().unwrap().len(), emu.requests().len());
}

#[tokio::test]
async fn request_log_file_gets_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let cfg = EmulatorConfig {
        request_log_file: Some(path.clone()),
        ..test_config()
    };
    let (_emu, c) = start_with(cfg).await;
    c.token().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["op"], "token");
    assert_eq!(line["body"]["client_secret"], "<redacted>");
    assert!(!text.contains("s3cr3t"));
}

#[tokio::test]
async fn ca_dir_is_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || EmulatorConfig {
        ca_dir: Some(dir.path().to_owned()),
        ..test_config()
    };
    let (first, _) = start_with(cfg()).await;
    let ca = first.ca_pem().to_owned();
    first.shutdown().await;
    let (second, c) = start_with(cfg()).await;
    assert_eq!(second.ca_pem(), ca);
    // A client trusting the first run's CA still trusts the new server certificate.
    let c1 = Client::new(second.addr(), &ca);
    c1.token().await;
    c.token().await;
}

#[tokio::test]
async fn binary_runs_from_a_config_file_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("emu.toml");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(
        &cfg_path,
        format!(
            "delete_pending_ms = 100\n[key_pool]\nrsa2048 = 1\nrsa4096 = 0\n[[apps]]\ntenant = \"{TENANT}\"\nclient_id = \"{APP}\"\nsecret = \"{SECRET}\"\n[[vaults]]\nname = \"{VAULT}\"\nrecovery_level = \"Recoverable\"\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_byokd-emulator"))
        .args(["--listen", "127.0.0.1:0", "--ca-out"])
        .arg(&ca_path)
        .arg("--config")
        .arg(&cfg_path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let c = Client::new(addr, &std::fs::read_to_string(&ca_path).unwrap());
    let t = c.token().await;
    let r = c.create_kek(&t, VAULT, "kek").await;
    assert_eq!(r.body["attributes"]["recoveryLevel"], "Recoverable");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn example_config_parses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/emulator.example.toml"
    ))
    .unwrap();
    let cfg: EmulatorConfig = toml::from_str(&text).unwrap();
    assert_eq!(cfg.vaults[0].name, "byokd-demo");
    assert_eq!(cfg.apps.len(), 1);
}
