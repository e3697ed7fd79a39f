//! The API document (`api/openapi.json`) and the route table agree exactly: no route exists
//! that is not documented, and the document describes no route that does not exist.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use byokd::control::openapi::{DOCUMENT, documented_routes};
use byokd::control::routes::ROUTES;
use std::collections::BTreeSet;

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let code: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    assert_eq!(code.len(), ROUTES.len(), "duplicate route in the table");
    let doc: BTreeSet<(String, String)> = documented_routes().unwrap().into_iter().collect();
    let undocumented: Vec<_> = code.difference(&doc).collect();
    let phantom: Vec<_> = doc.difference(&code).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from api/openapi.json: {undocumented:?}"
    );
    assert!(
        phantom.is_empty(),
        "api/openapi.json documents routes that do not exist: {phantom:?}"
    );
}

#[test]
fn the_document_is_openapi_3_and_every_operation_names_its_role_and_responses() {
    let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let role = op["x-byokd-role"].as_str().unwrap_or_default();
            assert!(
                ["any", "operator", "admin"].contains(&role),
                "{method} {path}: x-byokd-role {role:?}"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {path}: no success response"
            );
            assert!(responses.contains_key("403"), "{method} {path}: no 403");
            for p in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            {
                let params = op["parameters"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let param = params
                    .iter()
                    .map(|x| resolve(&doc, x))
                    .find(|x| x["name"] == p && x["in"] == "path")
                    .unwrap_or_else(|| panic!("{method} {path}: parameter {p} undocumented"));
                let schema = &param["schema"];
                assert!(
                    schema.get("pattern").is_some()
                        || schema["type"] == "integer" && schema.get("minimum").is_some(),
                    "{method} {path}: parameter {p} has no pattern or range: {schema}"
                );
            }
            // Every error status byokd may answer on this route is documented.
            let mut expected = vec!["400", "403", "408", "413", "429", "431"];
            if path.contains('{') {
                expected.push("404");
            }
            if method != "get" {
                expected.extend(["409", "415", "503"]);
            }
            for status in expected {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: status {status} undocumented"
                );
            }
        }
    }
    // OpenAPI 3.0 has no type arrays (nullable instead) and no empty required lists.
    let text = DOCUMENT;
    assert!(!text.contains("\"required\": []"), "an empty required list");
    assert!(
        !text.contains("\"type\": ["),
        "a type array (OpenAPI 3.1 only)"
    );
    // Every $ref resolves.
    for piece in text.split("\"$ref\": \"").skip(1) {
        let target = piece.split('"').next().unwrap();
        assert!(
            !resolve(&doc, &serde_json::json!({ "$ref": target })).is_null(),
            "dangling $ref {target}"
        );
    }
}

/// Follows a local `$ref` (`#/components/...`); other values are returned as they are.
fn resolve<'a>(doc: &'a serde_json::Value, v: &'a serde_json::Value) -> &'a serde_json::Value {
    match v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => doc.pointer(pointer).unwrap_or(&serde_json::Value::Null),
        None => v,
    }
}

#[test]
fn patch_bodies_have_no_required_fields() {
    // PATCH semantics: an absent field is unchanged, so `{}` is a valid (no-op) body.
    let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if let Some(op) = item.get("patch") {
            let schema = resolve(
                &doc,
                &op["requestBody"]["content"]["application/json"]["schema"],
            );
            assert!(
                schema.get("required").is_none(),
                "PATCH {path}: required fields {}",
                schema["required"]
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The document against the contract (`byokd::contract`), field by field.
//
// Every request and answer type of the contract is serialized from samples (one with every
// optional field set and every list filled, and one with them empty) and each value is checked
// against the schema the document gives for it: types, nullability, enums, required fields,
// RFC 3339 times (`format: date-time`, UTC). Every schema object a sample reaches must name
// exactly the properties the type writes (no field the type lacks, none the schema lacks), and
// every value reads back into the type unchanged.

use byokd::contract as c;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What a walk found: errors, and for each schema object reached, the keys the values had.
#[derive(Default)]
struct Walk {
    errors: Vec<String>,
    seen: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
}

fn resolve_ref<'a>(doc: &'a Value, schema: &'a Value, at: &str) -> (&'a Value, String) {
    match schema["$ref"].as_str() {
        Some(r) => (
            doc.pointer(r.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
            r.to_owned(),
        ),
        None => (schema, at.to_owned()),
    }
}

fn walk(doc: &Value, schema: &Value, at: &str, v: &Value, path: &str, w: &mut Walk) {
    let (schema, at) = resolve_ref(doc, schema, at);
    if v.is_null() {
        let nullable = schema["nullable"] == true
            || schema["allOf"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|s| resolve_ref(doc, s, "").0["nullable"] == true)
            });
        if !nullable {
            w.errors
                .push(format!("{path}: null, but {at} is not nullable"));
        }
        return;
    }
    if let Some(all) = schema["allOf"].as_array() {
        for (i, s) in all.iter().enumerate() {
            walk(doc, s, &format!("{at}/allOf/{i}"), v, path, w);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema[key].as_array() {
            let mut matched = None;
            // The branches count as one schema: together they must name what the type writes.
            for s in any {
                let (branch, _) = resolve_ref(doc, s, "");
                let mut trial = Walk::default();
                walk(doc, branch, &at, v, path, &mut trial);
                if trial.errors.is_empty() {
                    matched = Some(trial);
                    break;
                }
            }
            match matched {
                Some(trial) => merge(w, trial),
                None => w
                    .errors
                    .push(format!("{path}: {v} matches no branch of {at}/{key}")),
            }
        }
    }
    if let Some(choices) = schema["enum"].as_array()
        && !choices.contains(v)
    {
        w.errors
            .push(format!("{path}: {v} is not one of {at}'s {choices:?}"));
    }
    let ty = schema["type"].as_str();
    let ok = match ty {
        None => true,
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some("array") => v.is_array(),
        Some("object") => v.is_object(),
        Some(other) => {
            w.errors.push(format!("{at}: unknown type {other}"));
            true
        }
    };
    if !ok {
        w.errors.push(format!(
            "{path}: {v} is not of {at}'s type {}",
            ty.unwrap_or("")
        ));
        return;
    }
    if schema["format"] == "date-time" {
        let t = v.as_str().unwrap_or_default();
        if c::Timestamp::parse(t).is_none() || !t.ends_with('Z') {
            w.errors
                .push(format!("{path}: {t:?} is not an RFC 3339 UTC time"));
        }
    }
    if let Some(items) = schema.get("items") {
        for (i, x) in v.as_array().into_iter().flatten().enumerate() {
            walk(
                doc,
                items,
                &format!("{at}/items"),
                x,
                &format!("{path}[{i}]"),
                w,
            );
        }
    }
    let Some(obj) = v.as_object() else { return };
    if ty.is_none() && (schema.get("allOf").is_some() || schema.get("oneOf").is_some()) {
        return; // described by its branches
    }
    // A branch that only names required fields (`{"required": ["vault"]}` of "vault or
    // managed_hsm") constrains the object its parent describes.
    if let Some(only) = schema.as_object().filter(|o| o.len() == 1)
        && let Some(required) = only.get("required").and_then(Value::as_array)
    {
        for r in required {
            let r = r.as_str().unwrap_or_default();
            if !obj.contains_key(r) {
                w.errors.push(format!("{path}: required {r} missing"));
            }
        }
        return;
    }
    let Some(props) = schema["properties"].as_object() else {
        w.errors.push(format!(
            "{path}: {at} does not describe the object's fields"
        ));
        return;
    };
    for r in schema["required"].as_array().into_iter().flatten() {
        let r = r.as_str().unwrap_or_default();
        if !obj.contains_key(r) {
            w.errors.push(format!("{path}: required {r} missing"));
        }
    }
    let entry = w.seen.entry(at.clone()).or_default();
    entry.0.extend(props.keys().cloned());
    entry.1.extend(obj.keys().cloned());
    for (k, x) in obj {
        match props.get(k) {
            Some(s) => walk(
                doc,
                s,
                &format!("{at}/properties/{k}"),
                x,
                &format!("{path}.{k}"),
                w,
            ),
            None => w.errors.push(format!("{path}: field {k} is not in {at}")),
        }
    }
}

fn merge(w: &mut Walk, other: Walk) {
    w.errors.extend(other.errors);
    for (at, (props, keys)) in other.seen {
        let e = w.seen.entry(at).or_default();
        e.0.extend(props);
        e.1.extend(keys);
    }
}

/// Checks samples of `T` (given as JSON, read into `T` and written back) against `schema`.
fn check<T: Serialize + DeserializeOwned>(
    doc: &Value,
    schema: &Value,
    name: &str,
    samples: &[Value],
    w: &mut Walk,
) {
    for (i, sample) in samples.iter().enumerate() {
        let typed: T = serde_json::from_value(sample.clone())
            .unwrap_or_else(|e| panic!("{name} sample {i} does not read: {e}"));
        let written = serde_json::to_value(&typed).unwrap();
        let again: T = serde_json::from_value(written.clone())
            .unwrap_or_else(|e| panic!("{name}: what it writes does not read back: {e}"));
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            written,
            "{name}: a round trip changes it"
        );
        walk(doc, schema, name, &written, &format!("{name}#{i}"), w);
    }
}

/// The schema of `method path`'s answer with `status` (JSON).
fn answer<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    let s = &op["responses"][status]["content"]["application/json"]["schema"];
    assert!(!s.is_null(), "{method} {path} {status}: no JSON schema");
    s
}

/// The schema of `method path`'s request body.
fn request<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let s = &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
    assert!(!s.is_null(), "{method} {path}: no request body schema");
    s
}

fn job(full: bool) -> Value {
    if full {
        json!({"id": "7", "kind": "sync", "title": "Synchronize HSM protected key(s)", "group": "g",
            "keys": [{"key": "k1", "state": "imported", "version": "0123456789abcdef0123456789abcdef"}],
            "started_by": "operator", "created": "2026-01-01T00:00:00Z", "started": "2026-01-01T00:00:01Z",
            "ended": "2026-01-01T00:00:09Z", "state": "failed",
            "progress": {"done": 500, "total": 1000, "fraction": 0.5}, "step": "Import refused",
            "steps": [{"at": "2026-01-01T00:00:01Z", "message": "Started"}],
            "journal": [{"step": "push.kek-planned", "key": "k1"}], "error": "Import refused",
            "cancel_requested": "admin", "approval": "3f0c1b9e-0d6a-4f51-9a55-4d7c1f0f2b11"})
    } else {
        json!({"id": "8", "kind": "delete-cloud", "title": "Delete on cloud service", "group": "g",
            "keys": [], "started_by": "scheduler", "created": "2026-01-01T00:00:00Z", "started": null,
            "ended": null, "state": "waiting-approval", "progress": {"done": 0, "total": 1000, "fraction": 0.0},
            "step": "", "steps": [], "journal": [], "error": null, "cancel_requested": null, "approval": null})
    }
}

fn approval(full: bool) -> Value {
    let mut a = json!({"id": "3f0c1b9e-0d6a-4f51-9a55-4d7c1f0f2b11",
        "action": {"kind": "delete_key", "group": "g", "key": "k1"},
        "summary": "delete pushed key g/k1 locally", "status": "pending", "requested_by": "admin",
        "requested_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T01:00:00Z",
        "decided_by": null, "decided_at": null, "outcome": null, "job_id": null});
    if full {
        a["action"] = json!({"kind": "delete_credential", "credential": "app"});
        a["status"] = json!("approved");
        a["decided_by"] = json!("admin2");
        a["decided_at"] = json!("2026-01-01T00:10:00Z");
        a["outcome"] = json!("job 8 started");
        a["job_id"] = json!("8");
        a["job"] = job(true);
    }
    a
}

fn health(full: bool) -> Value {
    let logs = if full {
        json!({"degraded": true, "dir": "/var/lib/byokd/logs", "next_seq": 42, "segments": 2, "bytes": 4096,
            "write": {"error": "disk full", "lost": 3},
            "unattributed": {"bytes": 10, "reserve": 100, "refusing": true, "refused": 1},
            "forwarders": [{"transport": "tls", "address": "siem:6514", "connected": false, "sent": 9,
                "dropped": 1, "queued": 2, "last_error": "refused"}],
            "journald": true})
    } else {
        Value::Null
    };
    json!({"live": true, "ready": full, "degraded": full, "logs": logs, "version": "0.1.0", "designated": true, "designated_source": if full { "api" } else { "file" }, "designated_file": !full,
        "hsm": {"ready": true, "detail": "ok", "token": "byokd", "model": "SoftHSM v2", "serial": "1234",
            "wrap_strategy": if full { json!("two-step") } else { Value::Null },
            "wrap_summary": "two-step",
            "wrap_report": {"chosen": if full { json!("two-step") } else { Value::Null }, "allow_host_wrap": false,
                "checks": [{"strategy": "native", "usable": false, "detail": "CKM_RSA_AES_KEY_WRAP missing"}],
                "key_types": [{"key_type": "RSA", "can_generate": true, "generation": "ok",
                    "strategy": if full { json!("two-step") } else { Value::Null },
                    "encodings": [{"strategy": "two-step", "conforming": full,
                        "failed_class": if full { Value::Null } else { json!("a P-521 scalar with a leading zero") },
                        "detail": "every class conforms"}]}]}},
        "state": {"ready": true, "generation": 12}})
}

#[test]
fn every_answer_and_request_of_the_contract_matches_the_document_field_by_field() {
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let d = &doc;
    let mut w = Walk::default();
    let credential = |full: bool| {
        json!({"name": "app", "tenant_id": "11111111-2222-3333-4444-555555555555",
            "client_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "kind": "secret", "verified": full, "fingerprint": "ab12",
            "created": "2026-01-01T00:00:00Z",
            "expires": if full { json!("2030-01-31T00:00:00Z") } else { Value::Null },
            "groups": if full { json!(["g"]) } else { json!([]) }})
    };
    let group = |full: bool| {
        let mut g = json!({"name": "g", "credential": "app", "target": "key_vault", "vault": "vault1",
            "managed_hsm": null, "key_type": "EC-P256",
            "algorithm": "EC-P256", "exponent": null, "key_ops": ["sign", "verify"],
            "rotation": {"enabled": false, "rotate_every_months": 12, "keep_valid_months": 24},
            "last_rotated": null, "created": "2026-01-01T00:00:00Z", "keys": 0, "next_rotation": null,
            "pending_grace": null, "drift": null});
        if full {
            g["target"] = json!("managed_hsm");
            g["vault"] = Value::Null;
            g["managed_hsm"] = json!("pool1");
            g["key_type"] = json!("RSA-3072");
            g["exponent"] = json!(65537);
            g["last_rotated"] = json!("2026-02-01T00:00:00Z");
            g["next_rotation"] = json!("2026-03-01T00:00:00Z");
            g["pending_grace"] =
                json!({"versions": ["v1"], "due": "2026-02-08T00:00:00Z", "new_version": "v2"});
            g["drift"] = json!({"checked": "2026-02-02T00:00:00Z", "job": 9, "azure_versions": 2,
                "findings": [{"code": "unknown-version", "key": "k1", "version": "v3", "message": "made elsewhere"},
                    {"code": "key-missing", "key": null, "version": null, "message": "gone"}]});
        }
        g
    };
    let key = |full: bool| {
        json!({"name": "k1", "group": "g", "version": if full { json!("v1") } else { Value::Null },
            "storage": "Protected", "key_type": "RSA", "algorithm": "RSA-3072", "check_digits": "AB12",
            "created": "2026-01-01T00:00:00Z", "hsm_id": "00112233445566778899aabbccddeeff"})
    };
    let pending = |full: bool| {
        let mut p = json!({"approval": approval(false), "message": "needs a second admin"});
        if full {
            p["job"] = job(false);
        }
        p
    };
    let record = |full: bool| {
        let mut r = json!({"seq": 1, "ts": "2026-01-01T00:00:00.123Z", "service": "control", "level": "INFO",
            "event": "control.group.created", "message": "Key group g created", "prev": "00", "hash": "ff"});
        if full {
            for (k, v) in [
                ("identity", json!("admin")),
                ("job", json!(7)),
                ("group", json!("g")),
                ("key", json!("k1")),
                ("vault", json!("vault1")),
                ("kid", json!("https://v/keys/g/v1")),
                ("version", json!("v1")),
                ("credential", json!("app")),
                ("approval", json!("3f0c")),
            ] {
                r[k] = v;
            }
        }
        r
    };
    let verdict = |full: bool| {
        json!({"ok": !full, "verdict": {"checked": 2, "full": 2,
            "first_seq": if full { json!(1) } else { Value::Null },
            "last_seq": if full { json!(2) } else { Value::Null },
            "broken": if full { json!({"position": 2, "seq": 2, "reason": "hash mismatch"}) } else { Value::Null }}})
    };
    let both = |f: &dyn Fn(bool) -> Value| vec![f(true), f(false)];

    // Answers.
    check::<c::Health>(
        d,
        answer(d, "get", "/v1/health", "200"),
        "Health",
        &both(&health),
        &mut w,
    );
    let me = json!({"identity": "admin", "role": "admin", "fingerprint": "ab", "cn": "admin"});
    let anon = json!({"identity": "admin", "role": "auditor", "fingerprint": "ab", "cn": null});
    check::<c::Whoami>(
        d,
        answer(d, "get", "/v1/whoami", "200"),
        "Whoami",
        &[me, anon],
        &mut w,
    );
    let creds = json!({"credentials": both(&credential)});
    check::<c::CredentialList>(
        d,
        answer(d, "get", "/v1/credentials", "200"),
        "CredentialList",
        &[creds],
        &mut w,
    );
    for (m, p, s) in [
        ("post", "/v1/credentials", "201"),
        ("patch", "/v1/credentials/{credential}", "200"),
    ] {
        check::<c::Credential>(
            d,
            answer(d, m, p, s),
            "Credential",
            &both(&credential),
            &mut w,
        );
    }
    check::<c::Credential>(
        d,
        answer(d, "get", "/v1/credentials/{credential}", "200"),
        "Credential",
        &both(&credential),
        &mut w,
    );
    let cert = "/v1/credentials/{credential}/certificate";
    let export = |full: bool| {
        json!({"name": "app", "certificate_pem": "-----BEGIN CERTIFICATE-----", "thumbprint": "AB",
        "x5t_s256": "q83v", "not_after": if full { json!("2027-01-01T00:00:00Z") } else { Value::Null }})
    };
    check::<c::CertificateExport>(
        d,
        answer(d, "get", cert, "200"),
        "CertificateExport",
        &both(&export),
        &mut w,
    );
    let csr = json!({"name": "app", "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----"});
    check::<c::CredentialCsr>(
        d,
        answer(d, "get", cert, "200"),
        "CredentialCsr",
        &[csr],
        &mut w,
    );
    check::<c::Pending>(
        d,
        answer(d, "delete", "/v1/credentials/{credential}", "202"),
        "Pending",
        &both(&pending),
        &mut w,
    );
    let groups = json!({"groups": both(&group)});
    check::<c::GroupList>(
        d,
        answer(d, "get", "/v1/groups", "200"),
        "GroupList",
        &[groups],
        &mut w,
    );
    check::<c::Group>(
        d,
        answer(d, "post", "/v1/groups", "201"),
        "Group",
        &both(&group),
        &mut w,
    );
    for m in ["get", "patch"] {
        check::<c::Group>(
            d,
            answer(d, m, "/v1/groups/{group}", "200"),
            "Group",
            &both(&group),
            &mut w,
        );
    }
    let deleted = json!({"deleted": "g"});
    check::<c::Deleted>(
        d,
        answer(d, "delete", "/v1/groups/{group}", "200"),
        "Deleted",
        &[deleted],
        &mut w,
    );
    for (m, p) in [
        ("post", "/v1/groups/{group}/sync"),
        ("post", "/v1/groups/{group}/keys/{key}/sync"),
        ("post", "/v1/jobs/{job}/cancel"),
    ] {
        let s = if p.ends_with("cancel") { "200" } else { "202" };
        check::<c::JobAnswer>(
            d,
            answer(d, m, p, s),
            "JobAnswer",
            &[json!({"job": job(true)}), json!({"job": job(false)})],
            &mut w,
        );
    }
    for p in ["rotate", "recover", "check"] {
        let started = [
            json!({"job": job(true)}),
            json!({"job": job(false), "approval": approval(true), "message": "m"}),
        ];
        check::<c::JobStarted>(
            d,
            answer(d, "post", &format!("/v1/groups/{{group}}/{p}"), "202"),
            "JobStarted",
            &started,
            &mut w,
        );
    }
    for p in ["delete-cloud", "purge"] {
        check::<c::Pending>(
            d,
            answer(d, "post", &format!("/v1/groups/{{group}}/{p}"), "202"),
            "Pending",
            &both(&pending),
            &mut w,
        );
        // byokctl reads every job-starting answer as `JobStarted`.
        check::<c::JobStarted>(
            d,
            answer(d, "post", &format!("/v1/groups/{{group}}/{p}"), "202"),
            "JobStarted",
            &[pending(true)],
            &mut w,
        );
    }
    let keys = json!({"keys": both(&key)});
    check::<c::KeyList>(
        d,
        answer(d, "get", "/v1/groups/{group}/keys", "200"),
        "KeyList",
        &[keys],
        &mut w,
    );
    check::<c::Key>(
        d,
        answer(d, "post", "/v1/groups/{group}/keys", "201"),
        "Key",
        &both(&key),
        &mut w,
    );
    check::<c::Key>(
        d,
        answer(d, "get", "/v1/groups/{group}/keys/{key}", "200"),
        "Key",
        &both(&key),
        &mut w,
    );
    let k = "/v1/groups/{group}/keys/{key}";
    check::<c::Deleted>(
        d,
        answer(d, "delete", k, "200"),
        "Deleted",
        &[json!({"deleted": "g/k1"})],
        &mut w,
    );
    check::<c::Pending>(
        d,
        answer(d, "delete", k, "202"),
        "Pending",
        &[pending(false)],
        &mut w,
    );
    let public = json!({"group": "g", "key": "k1", "spki_der_base64": "MII", "pem": "-----BEGIN PUBLIC KEY-----"});
    check::<c::PublicKey>(
        d,
        answer(d, "get", "/v1/groups/{group}/keys/{key}/public", "200"),
        "PublicKey",
        &[public],
        &mut w,
    );
    let approvals = json!({"approvals": both(&approval)});
    check::<c::ApprovalList>(
        d,
        answer(d, "get", "/v1/approvals", "200"),
        "ApprovalList",
        &[approvals],
        &mut w,
    );
    let more_actions = [
        json!({"kind": "delete_group_cloud", "group": "g"}),
        json!({"kind": "purge_group_cloud", "group": "g"}),
    ];
    let mut approval_samples = both(&approval);
    for a in more_actions {
        let mut x = approval(false);
        x["action"] = a;
        approval_samples.push(x);
    }
    for (m, p) in [("get", ""), ("post", "/approve"), ("post", "/reject")] {
        check::<c::Approval>(
            d,
            answer(d, m, &format!("/v1/approvals/{{approval}}{p}"), "200"),
            "Approval",
            &approval_samples,
            &mut w,
        );
    }
    check::<c::JobList>(
        d,
        answer(d, "get", "/v1/jobs", "200"),
        "JobList",
        &[json!({"jobs": [job(true), job(false)]})],
        &mut w,
    );
    check::<c::Job>(
        d,
        answer(d, "get", "/v1/jobs/{job}", "200"),
        "Job",
        &[job(true), job(false)],
        &mut w,
    );
    let page = json!({"records": both(&record), "next_after": 2, "more": false});
    check::<c::LogPage>(
        d,
        answer(d, "get", "/v1/logs", "200"),
        "LogPage",
        &[page],
        &mut w,
    );
    check::<c::LogVerdict>(
        d,
        answer(d, "get", "/v1/logs/verify", "200"),
        "LogVerdict",
        &both(&verdict),
        &mut w,
    );
    for m in ["get", "put"] {
        check::<c::Designated>(
            d,
            answer(d, m, "/v1/config/designated", "200"),
            "Designated",
            &[json!({"designated": true})],
            &mut w,
        );
    }
    let error = [
        json!({"error": {"code": "invalid_field", "message": "invalid name", "field": "name", "job": "7"}}),
        json!({"error": {"code": "forbidden", "message": "no"}}),
    ];
    check::<c::ErrorAnswer>(
        d,
        &json!({"$ref": "#/components/schemas/Error"}),
        "ErrorAnswer",
        &error,
        &mut w,
    );

    // Requests.
    let new_secret = json!({"name": "app", "tenant_id": "t", "client_id": "c", "secret": "s3cret",
        "expires": "2030-01-31T00:00:00Z", "verify": true});
    let new_cert = json!({"name": "app", "tenant_id": "t", "client_id": "c", "certificate": true, "validity_days": 365});
    check::<c::NewCredential>(
        d,
        request(d, "post", "/v1/credentials"),
        "NewCredential",
        &[new_secret, new_cert],
        &mut w,
    );
    let updates = [
        json!({"expires": "2030-01-31T00:00:00Z"}),
        json!({"expires": null}),
        json!({}),
    ];
    check::<c::CredentialUpdate>(
        d,
        request(d, "patch", "/v1/credentials/{credential}"),
        "CredentialUpdate",
        &updates,
        &mut w,
    );
    let rsa = json!({"name": "g", "credential": "app", "vault": "vault1", "key_type": "RSA-3072", "exponent": 65537,
        "key_ops": ["wrapKey", "unwrapKey"], "rotation": {"enabled": true, "rotate_every_months": 6, "keep_valid_months": 12}, "verify": true});
    let ec = json!({"name": "g", "credential": "app", "vault": "vault1", "key_type": "EC-P256", "key_ops": ["sign"], "rotation": {}});
    let hsm =
        json!({"name": "g", "credential": "app", "managed_hsm": "pool1", "key_type": "EC-P384"});
    check::<c::NewGroup>(
        d,
        request(d, "post", "/v1/groups"),
        "NewGroup",
        &[rsa, ec, hsm],
        &mut w,
    );
    let group_updates = [json!({"rotation": {"enabled": false}}), json!({})];
    check::<c::GroupUpdate>(
        d,
        request(d, "patch", "/v1/groups/{group}"),
        "GroupUpdate",
        &group_updates,
        &mut w,
    );
    check::<c::NewKey>(
        d,
        request(d, "post", "/v1/groups/{group}/keys"),
        "NewKey",
        &[json!({"name": "k1"})],
        &mut w,
    );
    // Offline transfer: the export request (an approval of kind export_byok), the file, and a
    // recorded manual import.
    check::<c::ByokExport>(
        d,
        request(d, "post", "/v1/groups/{group}/keys/{key}/export-byok"),
        "ByokExport",
        &[
            json!({"kek_pem": "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
            "kek_kid": "https://v.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef"}),
        ],
        &mut w,
    );
    let mut export = approval(false);
    export["action"] = json!({"kind": "export_byok", "group": "g", "key": "k1",
        "kek_kid": "https://v.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef"});
    check::<c::Pending>(
        d,
        answer(
            d,
            "post",
            "/v1/groups/{group}/keys/{key}/export-byok",
            "202",
        ),
        "Pending",
        &[json!({"approval": export, "message": "m"})],
        &mut w,
    );
    check::<c::ByokFile>(
        d,
        answer(d, "get", "/v1/approvals/{approval}/byok-file", "200"),
        "ByokFile",
        &[
            json!({"approval": "3f0c1b9e-0d6a-4f51-9a55-4d7c1f0f2b11", "group": "g", "key": "k1",
            "kek_kid": "https://v.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef",
            "byok": "{\"schema_version\":\"1.0.0\"}"}),
        ],
        &mut w,
    );
    check::<c::RecordImport>(
        d,
        request(d, "post", "/v1/groups/{group}/keys/{key}/record-import"),
        "RecordImport",
        &[json!({"version": "0123456789abcdef0123456789abcdef"})],
        &mut w,
    );
    let recorded_key = json!({"name": "k1", "group": "g", "version": "0123456789abcdef0123456789abcdef",
        "storage": "Protected", "key_type": "EC", "algorithm": "EC-P256", "check_digits": "AB12",
        "created": "2026-01-01T00:00:00Z", "hsm_id": "00112233445566778899aabbccddeeff"});
    check::<c::ImportRecorded>(
        d,
        answer(
            d,
            "post",
            "/v1/groups/{group}/keys/{key}/record-import",
            "200",
        ),
        "ImportRecorded",
        &[
            json!({"key": recorded_key, "previous_version": null}),
            json!({"key": recorded_key, "previous_version": "fedcba9876543210fedcba9876543210"}),
        ],
        &mut w,
    );
    check::<c::Designated>(
        d,
        request(d, "put", "/v1/config/designated"),
        "Designated",
        &[json!({"designated": false})],
        &mut w,
    );

    let mut problems = w.errors;
    for (at, (props, keys)) in &w.seen {
        let missing: Vec<_> = props.difference(keys).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{at}: the document has {missing:?}, which no contract type writes"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "api/openapi.json and the contract differ:\n{}",
        problems.join("\n")
    );
}
