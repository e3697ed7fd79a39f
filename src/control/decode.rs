//! Request decoding: JSON bodies into request types (400 naming the field on any fault), path
//! parameters into validated domain names, and query strings.
//!
//! It owns the translation of bytes into typed requests and nothing else: no I/O, no state, no
//! authorization. It must never echo a secret field's value in an error.

use super::errors::ApiError;
use crate::model::ModelError;
use serde::de::DeserializeOwned;

/// Decodes a JSON body into `T` (which denies unknown fields), naming the field at fault.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError {
            field: Some("body".into()),
            ..ApiError::bad_request("missing_body", "this request needs a JSON body")
        });
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError {
            field: Some("body".into()),
            ..ApiError::bad_request("invalid_body", "the body must be a JSON object")
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(from_path_error)?;
    de.end().map_err(|e| ApiError {
        field: Some("body".into()),
        ..ApiError::bad_request("malformed_json", format!("malformed JSON: {e}"))
    })?;
    Ok(value)
}

/// The body of a route that takes none: empty, or an empty JSON object (`{}`, which generic
/// JSON clients send). Anything else is refused, whitespace alone included (it is not JSON), so
/// nothing a client sends is silently ignored.
pub fn no_body(body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    json::<Empty>(body).map(drop).map_err(|e| ApiError {
        field: Some("body".into()),
        ..ApiError::bad_request(
            "unexpected_body",
            format!(
                "this request takes no body (send none, or {{}}): {}",
                e.message
            ),
        )
    })
}

fn from_path_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.inner();
    let text = inner.to_string();
    let named = backticked(&text)
        .filter(|_| text.starts_with("unknown field") || text.starts_with("missing field"));
    let field = match (named, path.as_str()) {
        (Some(name), "." | "") => name.to_owned(),
        (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => p.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "." | "") => "body".to_owned(),
        (None, p) => p.to_owned(),
    };
    if inner.is_syntax() || inner.is_eof() {
        return ApiError {
            field: Some(field),
            ..ApiError::bad_request("malformed_json", format!("malformed JSON: {text}"))
        };
    }
    // A secret's value must never come back in an error, even the caller's own.
    let reason = if field == "secret" {
        "must be a non-empty string".to_owned()
    } else {
        text
    };
    ApiError::invalid(field, reason)
}

fn backticked(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}

/// Re-labels a domain validation error with the request field it came from.
pub fn field<T>(name: &str, r: Result<T, ModelError>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::invalid(name, e.reason))
}

/// A path parameter parsed into a validated name type, named after the parameter.
pub fn param<T: TryFrom<String, Error = ModelError>>(name: &str, raw: &str) -> Result<T, ApiError> {
    field(name, T::try_from(raw.to_owned()))
}

/// One query parameter's value, if present. Parameters are `k=v` pairs joined by `&`; values
/// are taken literally (byokd's query values are numbers and plain words).
pub fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Refuses query parameters a route does not know, naming the first.
pub fn only_query(query: &str, known: &[&str]) -> Result<(), ApiError> {
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let k = kv.split_once('=').map_or(kv, |(k, _)| k);
        if !known.contains(&k) {
            return Err(ApiError::invalid(k.to_owned(), "unknown query parameter"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_without_a_body_takes_nothing_or_an_empty_object_and_refuses_whitespace() {
        assert!(no_body(b"").is_ok());
        assert!(no_body(b"{}").is_ok());
        assert!(no_body(b" { } ").is_ok());
        for bad in [&b" "[..], b"\n", b"[]", b"{\"a\":1}", b"null"] {
            let err = no_body(bad).unwrap_err();
            assert_eq!(
                err.code,
                "unexpected_body",
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        months: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
        secret: Option<String>,
    }

    fn field_of(body: &str) -> (String, &'static str) {
        let e = json::<Body>(body.as_bytes()).unwrap_err();
        (e.field.unwrap(), e.code)
    }

    #[test]
    fn every_decoding_fault_names_the_field() {
        assert_eq!(field_of(r#"{"name": 5}"#), ("name".into(), "invalid_field"));
        assert_eq!(
            field_of(r#"{"name": "a", "bogus": 1}"#),
            ("bogus".into(), "invalid_field")
        );
        assert_eq!(
            field_of(r#"{"name": "a", "inner": {"months": "x"}}"#),
            ("inner.months".into(), "invalid_field")
        );
        assert_eq!(
            field_of(r#"{"name": "a", "inner": {"months": 1, "x": 2}}"#),
            ("inner.x".into(), "invalid_field")
        );
        assert_eq!(
            field_of(r#"{"inner": null}"#),
            ("name".into(), "invalid_field")
        );
        assert_eq!(field_of(r#"{"name": "a""#).1, "malformed_json");
        assert_eq!(
            field_of(r#"{"name": "a"} trailing"#),
            ("body".into(), "malformed_json")
        );
        assert_eq!(field_of(""), ("body".into(), "missing_body"));
        assert_eq!(field_of("[1, 2]"), ("body".into(), "invalid_body"));
    }

    #[test]
    fn a_secret_value_is_never_echoed() {
        let e = json::<Body>(br#"{"name": "a", "secret": 123456789}"#).unwrap_err();
        assert!(!e.message.contains("123456789"), "{}", e.message);
    }

    #[test]
    fn query_values_are_found_and_unknown_keys_refused() {
        assert_eq!(query_value("wait=5&x=1", "wait"), Some("5"));
        assert_eq!(query_value("", "wait"), None);
        assert!(only_query("wait=5", &["wait"]).is_ok());
        assert_eq!(
            only_query("wait=5&bad=1", &["wait"])
                .unwrap_err()
                .field
                .as_deref(),
            Some("bad")
        );
    }
}
