//! Replay the spec's own examples (a copy of keyvault-spec/keyvault-7.5/examples in spec/examples) against the emulator and
//! check that responses have the same shape: every member of the example response exists in ours
//! with the same JSON type.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use byokd_emulator::{AppConfig, Emulator, VaultConfig, VaultOptions};
use serde_json::{Value, json};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/examples");

fn shape_matches(example: &Value, ours: &Value, at: &str) -> Result<(), String> {
    match (example, ours) {
        (Value::Object(e), Value::Object(o)) => {
            for (k, ev) in e {
                if k == "tags" {
                    // Tags are free-form data: only their presence and type are shape.
                    let ov = o
                        .get(k)
                        .ok_or_else(|| format!("{at}.tags missing in emulator response"))?;
                    if !ov.is_object() {
                        return Err(format!("{at}.tags is not an object"));
                    }
                    continue;
                }
                let ov = o
                    .get(k)
                    .ok_or_else(|| format!("{at}.{k} missing in emulator response"))?;
                shape_matches(ev, ov, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(o)) => match (e.first(), o.first()) {
            (Some(ev), Some(ov)) => shape_matches(ev, ov, &format!("{at}[0]")),
            _ => Ok(()),
        },
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_)) => Ok(()),
        (Value::Null, _) | (_, Value::Null) => Ok(()),
        (e, o) => Err(format!("{at}: example {e} vs emulator {o}")),
    }
}

#[tokio::test]
async fn spec_examples_replay_with_matching_shapes() {
    let mut cfg = test_config();
    cfg.delete_pending_ms = 0;
    cfg.apps = vec![AppConfig::with_secret(TENANT, APP, SECRET)];
    cfg.vaults = vec![VaultConfig {
        name: "myvault".into(),
        options: VaultOptions::default(),
    }];
    let emu = Emulator::start(cfg).await.unwrap();
    let c = Client::new(emu.addr(), emu.ca_pem());
    let t = c.token().await;

    // Order matters: create, import, get, versions, update, delete, get deleted, recover, delete, purge.
    let order = [
        ("CreateKey-example.json", "POST", "/keys/{key-name}/create"),
        ("ImportKey-example.json", "PUT", "/keys/{key-name}"),
        (
            "GetKey-example.json",
            "GET",
            "/keys/{key-name}/{key-version}",
        ),
        (
            "GetKeyVersions-example.json",
            "GET",
            "/keys/{key-name}/versions",
        ),
        (
            "UpdateKey-example.json",
            "PATCH",
            "/keys/{key-name}/{key-version}",
        ),
        ("DeleteKey-example.json", "DELETE", "/keys/{key-name}"),
        (
            "GetDeletedKey-example.json",
            "GET",
            "/deletedkeys/{key-name}",
        ),
        (
            "RecoverDeletedKey-example.json",
            "POST",
            "/deletedkeys/{key-name}/recover",
        ),
        (
            "PurgeDeletedKey-example.json",
            "DELETE",
            "/deletedkeys/{key-name}",
        ),
    ];
    let mut last_version: std::collections::HashMap<String, String> = Default::default();
    let mut replayed = 0;
    for (file, method, template) in order {
        let ex: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{EXAMPLES}/{file}")).unwrap())
                .unwrap();
        let p = &ex["parameters"];
        let name = p["key-name"].as_str().unwrap().to_owned();
        // Purge needs a deleted key of that name first.
        if file.starts_with("Purge")
            || file.starts_with("GetDeleted")
            || file.starts_with("Recover")
        {
            if emu.key_versions("myvault", &name).is_empty()
                && emu.deleted_keys("myvault").iter().all(|d| d.name != name)
            {
                c.kv(
                    "POST",
                    "myvault",
                    &format!("/keys/{name}/create?api-version=7.5"),
                    Some(&t),
                    Some(json!({"kty":"RSA","tags":{"purpose":"unit test"}})),
                )
                .await;
            }
            if !emu.key_versions("myvault", &name).is_empty() {
                c.kv(
                    "DELETE",
                    "myvault",
                    &format!("/keys/{name}?api-version=7.5"),
                    Some(&t),
                    None,
                )
                .await;
            }
        }
        if ((file.starts_with("Get") && !file.starts_with("GetDeleted"))
            || file.starts_with("Update"))
            && emu.key_versions("myvault", &name).is_empty()
        {
            for _ in 0..2 {
                let r = c
                    .kv(
                        "POST",
                        "myvault",
                        &format!("/keys/{name}/create?api-version=7.5"),
                        Some(&t),
                        Some(json!({"kty":"RSA","tags":{"purpose":"unit test"}})),
                    )
                    .await;
                assert_eq!(r.status, 200);
            }
        }
        if file.starts_with("Delete") && emu.key_versions("myvault", &name).is_empty() {
            c.kv(
                "POST",
                "myvault",
                &format!("/keys/{name}/create?api-version=7.5"),
                Some(&t),
                Some(json!({"kty":"RSA","tags":{"purpose":"unit test"}})),
            )
            .await;
        }
        let version = emu
            .key_versions("myvault", &name)
            .last()
            .map(|v| v.version.clone())
            .unwrap_or_default();
        last_version.insert(name.clone(), version.clone());
        let mut path = template
            .replace("{key-name}", &name)
            .replace("{key-version}", &version);
        path.push_str("?api-version=7.5");
        if let Some(m) = p.get("maxresults") {
            path.push_str(&format!("&maxresults={m}"));
        }
        let body = p.get("parameters").cloned();
        let r = c.kv(method, "myvault", &path, Some(&t), body).await;
        let (code, expected) = ex["responses"].as_object().unwrap().iter().next().unwrap();
        assert_eq!(r.status.to_string(), *code, "{file}: {:?}", r.body);
        if let Some(eb) = expected.get("body") {
            shape_matches(eb, &r.body, "$").unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        replayed += 1;
    }
    assert_eq!(replayed, 9);
    assert!(
        emu.schema_violations().is_empty(),
        "{:?}",
        emu.schema_violations()
    );
}
