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
                assert!(
                    params.iter().any(|x| x["name"] == p && x["in"] == "path"),
                    "{method} {path}: parameter {p} undocumented"
                );
            }
        }
    }
    // Every $ref resolves.
    let text = DOCUMENT;
    for piece in text.split("\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
}
