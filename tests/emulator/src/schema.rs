//! Request-body validation against the Key Vault 7.5 OpenAPI spec (`spec/keys.json`).
//!
//! `$ref`s are resolved against `definitions`; required fields, JSON types and enums are checked,
//! and properties the schema does not declare are rejected, so a client that drifts from the spec
//! fails loudly.

use std::sync::OnceLock;

use serde_json::Value;

static SPEC_TEXT: &str = include_str!("../spec/keys.json");
static SPEC: OnceLock<Value> = OnceLock::new();

fn spec() -> &'static Value {
    SPEC.get_or_init(|| serde_json::from_str(SPEC_TEXT).unwrap_or(Value::Null))
}

/// The body parameter schema of an operation, and whether the body is required.
fn body_schema(operation_id: &str) -> Option<(&'static Value, bool)> {
    let paths = spec().get("paths")?.as_object()?;
    for item in paths.values() {
        for (method, op) in item.as_object()? {
            if method == "parameters" {
                continue;
            }
            if op.get("operationId").and_then(Value::as_str) != Some(operation_id) {
                continue;
            }
            for p in op.get("parameters")?.as_array()? {
                if p.get("in").and_then(Value::as_str) == Some("body") {
                    let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
                    return Some((p.get("schema")?, required));
                }
            }
            return None;
        }
    }
    None
}

/// Validate `body` (raw bytes) for an operation. `Ok(None)` when the operation takes no body.
pub(crate) fn validate_body(operation_id: &str, body: &[u8]) -> Result<Option<Value>, String> {
    let Some((schema, required)) = body_schema(operation_id) else {
        return Ok(None);
    };
    if body.is_empty() {
        return if required {
            Err(format!("{operation_id}: the request body is required"))
        } else {
            Ok(None)
        };
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("{operation_id}: the request body is not valid JSON: {e}"))?;
    validate(&value, schema, "$")?;
    Ok(Some(value))
}

fn resolve(schema: &Value) -> Result<&Value, String> {
    let mut s = schema;
    let mut depth = 0;
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/definitions/")
            .ok_or_else(|| format!("unsupported $ref {r}"))?;
        s = spec()
            .get("definitions")
            .and_then(|d| d.get(name))
            .ok_or_else(|| format!("unresolved $ref {r}"))?;
        depth += 1;
        if depth > 32 {
            return Err("$ref loop".into());
        }
    }
    Ok(s)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Validate a value against a (draft-4 subset) schema.
pub(crate) fn validate(v: &Value, schema: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(schema)?;
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate_no_extra_check(v, s, at)?;
        }
    }
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .or_else(|| schema.get("properties").map(|_| "object"));
    if let Some(ty) = ty {
        let actual = type_name(v);
        let ok = actual == ty || (ty == "number" && actual == "integer");
        if !ok {
            return Err(format!("{at}: expected {ty}, found {actual}"));
        }
    }
    if let Some(en) = schema.get("enum").and_then(Value::as_array)
        && !en.contains(v)
    {
        return Err(format!(
            "{at}: value {v} is not one of {}",
            Value::Array(en.clone())
        ));
    }
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(req) = schema.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        return Err(format!("{at}: required property '{r}' is missing"));
                    }
                }
            }
            let additional = schema.get("additionalProperties");
            for (k, val) in map {
                let sub_at = format!("{at}.{k}");
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    validate(val, ps, &sub_at)?;
                } else {
                    match additional {
                        Some(Value::Bool(true)) => {}
                        Some(s @ Value::Object(_)) => validate(val, s, &sub_at)?,
                        _ => {
                            return Err(format!(
                                "{at}: property '{k}' is not defined by the schema"
                            ));
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item, is, &format!("{at}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn validate_no_extra_check(v: &Value, schema: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(schema)?;
    if let (Some(props), Value::Object(map)) =
        (schema.get("properties").and_then(Value::as_object), v)
    {
        for (k, ps) in props {
            if let Some(val) = map.get(k) {
                validate(val, ps, &format!("{at}.{k}"))?;
            }
        }
    }
    Ok(())
}
