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
