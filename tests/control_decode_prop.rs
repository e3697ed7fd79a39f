//! Property test: every route's request decoding (path parameters, query, body) accepts any
//! bytes without panicking, and always answers a 4xx when it refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use byokd::control::handlers::{Input, decode_only};
use byokd::control::routes::{self, Matched, Params, ROUTES};
use proptest::prelude::*;

fn input_for(path: &'static str, segs: &[String], query: String, body: Vec<u8>) -> Input {
    let names: Vec<&'static str> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect();
    let params = names
        .iter()
        .zip(segs.iter().cycle())
        .map(|(n, v)| (*n, v.clone()))
        .collect();
    Input {
        params: Params::new(params),
        query,
        body: zeroize::Zeroizing::new(body),
    }
}

/// JSON-ish bodies: objects with the API's field names and values of any JSON type, so decoding
/// gets past the syntax check into the typed fields.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let names = prop::sample::select(vec![
        "name",
        "tenant_id",
        "client_id",
        "secret",
        "expires",
        "credential",
        "vault",
        "key_type",
        "exponent",
        "key_ops",
        "rotation",
        "enabled",
        "rotate_every_months",
        "keep_valid_months",
        "designated",
        "bogus",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(names, value, 0..8).prop_map(|m| {
        serde_json::to_vec(&serde_json::Value::Object(
            m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        ))
        .unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_any_route_decoder(
        segs in prop::collection::vec(".{0,80}", 1..3),
        query in ".{0,60}",
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        for route in ROUTES {
            if let Err(e) = decode_only(route.op, &input_for(route.path, &segs, query.clone(), body.clone())) {
                prop_assert!(e.status.is_client_error(), "{} {}: {:?}", route.method, route.path, e);
            }
        }
    }

    #[test]
    fn json_shaped_bodies_never_panic_any_route_decoder(body in jsonish(), seg in "[a-z0-9-]{1,10}") {
        for route in ROUTES {
            if let Err(e) = decode_only(route.op, &input_for(route.path, std::slice::from_ref(&seg), String::new(), body.clone())) {
                prop_assert!(e.status.is_client_error(), "{} {}: {:?}", route.method, route.path, e);
            }
        }
    }

    #[test]
    fn time_bounds_at_the_ends_of_the_calendar_never_panic_any_route_decoder(
        year in prop_oneof![Just(0u32), Just(9999u32), 0u32..=9999],
        (month, day, hour) in (prop_oneof![Just(1u32), Just(12u32)], prop_oneof![Just(1u32), Just(31u32)], 0u32..=23),
        (sign, oh, om) in ("[+-]", 0u32..=23, 0u32..=59),
        field in "since|until",
        seg in "[a-z0-9-]{1,10}",
    ) {
        // An offset can push a valid local time past year 9999 (or before year 0) in UTC.
        let query = format!(
            "{field}={year:04}-{month:02}-{day:02}T{hour:02}:59:59{}{oh:02}:{om:02}",
            if sign == "+" { "%2B" } else { "-" }
        );
        for route in ROUTES {
            if let Err(e) = decode_only(route.op, &input_for(route.path, std::slice::from_ref(&seg), query.clone(), Vec::new())) {
                prop_assert!(e.status.is_client_error(), "{} {}: {:?}", route.method, route.path, e);
            }
        }
    }

    #[test]
    fn arbitrary_paths_never_panic_the_router(path in "/?[a-z0-9{}/%._-]{0,60}") {
        let _ = matches!(routes::matching(&http::Method::GET, &path), Matched::Found(..));
    }
}
