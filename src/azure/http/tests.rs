//! Unit tests of the retry hints, the commit rule and the back-off.

use super::*;
use http::header::{HeaderMap, HeaderValue};
use std::time::SystemTime;

#[test]
fn retry_hints_are_honoured_in_order() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut h = HeaderMap::new();
    h.insert("retry-after", HeaderValue::from_static("7"));
    assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
    h.insert("retry-after-ms", HeaderValue::from_static("1500"));
    assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
    h.insert("x-ms-retry-after-ms", HeaderValue::from_static("20"));
    assert_eq!(retry_after(&h, now), Some(Duration::from_millis(20)));

    let mut d = HeaderMap::new();
    let later = httpdate::fmt_http_date(now + Duration::from_secs(3));
    d.insert("retry-after", HeaderValue::from_str(&later).unwrap());
    assert_eq!(retry_after(&d, now), Some(Duration::from_secs(3)));
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
}

#[test]
fn only_gateway_and_server_errors_leave_a_commit_open() {
    for s in [500, 502, 503, 504] {
        assert!(
            status_may_have_committed(StatusCode::from_u16(s).unwrap()),
            "{s}"
        );
    }
    for s in [200, 400, 404, 408, 409, 429, 501] {
        assert!(
            !status_may_have_committed(StatusCode::from_u16(s).unwrap()),
            "{s}"
        );
    }
    // Every status that may have committed is one idempotent requests retry.
    assert!(
        [500u16, 502, 503, 504]
            .iter()
            .all(|s| RETRY_STATUSES.contains(s))
    );
}

#[test]
fn backoff_doubles_from_the_base_with_bounded_jitter() {
    let base = Duration::from_millis(1000);
    for (attempt, nominal) in [
        (1, 1000),
        (2, 2000),
        (3, 4000),
        (4, 8000),
        (5, 16000),
        (9, 16000),
    ] {
        let d = backoff(base, attempt).as_millis() as u64;
        assert!(
            d >= nominal * 3 / 4 && d <= nominal * 5 / 4,
            "attempt {attempt}: {d}"
        );
    }
}

#[test]
fn a_name_that_does_not_exist_is_permanent_and_a_dns_outage_is_not() {
    use super::connector::{ConnectError, dns_error};
    // The texts std gives for getaddrinfo's codes (glibc, then musl).
    for text in [
        "failed to lookup address information: Name or service not known",
        "failed to lookup address information: No address associated with hostname",
        "failed to lookup address information: Name does not resolve",
    ] {
        let e = dns_error("kv.vault.azure.net", std::io::Error::other(text));
        assert!(
            matches!(e, ConnectError::NoSuchName { .. }),
            "{text}: {e:?}"
        );
    }
    for text in [
        "failed to lookup address information: Temporary failure in name resolution",
        "failed to lookup address information: Try again",
    ] {
        let e = dns_error("kv.vault.azure.net", std::io::Error::other(text));
        assert!(matches!(e, ConnectError::Dns { .. }), "{text}: {e:?}");
    }
}
