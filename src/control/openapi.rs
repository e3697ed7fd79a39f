//! The API document, `api/openapi.json` (OpenAPI 3), compiled in, and the list of the routes it
//! documents, which a test compares with [`routes::ROUTES`](super::routes::ROUTES).

/// The OpenAPI 3 document of the control API.
pub const DOCUMENT: &str = include_str!("../../api/openapi.json");

/// Every (METHOD, path) the document describes, sorted.
pub fn documented_routes() -> Result<Vec<(String, String)>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(DOCUMENT).map_err(|e| format!("api/openapi.json: {e}"))?;
    let paths = doc
        .get("paths")
        .and_then(|p| p.as_object())
        .ok_or("api/openapi.json has no paths object")?;
    let methods = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item
            .as_object()
            .ok_or_else(|| format!("{path}: not an object"))?;
        for m in item.keys().filter(|k| methods.contains(&k.as_str())) {
            out.push((m.to_ascii_uppercase(), path.clone()));
        }
    }
    out.sort();
    Ok(out)
}
