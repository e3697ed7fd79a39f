//! Throttling (429 with and without hints), fault injection, schema-violation detection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use std::time::{Duration, Instant};

use byokd_emulator::{FaultAction, FaultRule, Op, RetryHeader, ThrottleConfig};
use serde_json::json;

fn ec_create() -> serde_json::Value {
    json!({"kty":"EC-HSM","crv":"P-256"})
}

#[tokio::test]
async fn create_budget_throttles_with_configured_hint() {
    let (emu, c) = start().await;
    let t = c.token().await;
    for (vault, header, expect) in [
        (
            "thr-secs",
            RetryHeader::RetryAfterSeconds,
            Some("retry-after"),
        ),
        (
            "thr-ms",
            RetryHeader::RetryAfterMs,
            Some("x-ms-retry-after-ms"),
        ),
        ("thr-none", RetryHeader::None, None),
    ] {
        emu.add_vault(vault, Default::default()).unwrap();
        // 10 CREATEs per 3 s window.
        emu.set_throttling(ThrottleConfig {
            enabled: true,
            time_factor: 0.3,
            header,
            ..ThrottleConfig::default()
        });
        let create = || {
            c.kv(
                "POST",
                vault,
                "/keys/t/create?api-version=7.5",
                Some(&t),
                Some(ec_create()),
            )
        };
        let window = Duration::from_secs(3);
        let burst = Instant::now();
        let mut ok = 0;
        let mut throttled = None;
        for _ in 0..40 {
            let r = create().await;
            if r.status == 429 {
                throttled = Some(r);
                break;
            }
            assert_eq!(r.status, 200);
            ok += 1;
        }
        let r = throttled.expect("a 429 within 40 creates");
        // A burst of 11 within the window: the 11th is refused (a token bucket of 10 per 3 s
        // refills one every 300 ms, so it would take more from any burst that long).
        assert!(
            ok == 10 || burst.elapsed() >= window,
            "{ok} CREATEs accepted in one window"
        );
        assert_eq!(r.code(), Some("Throttled"));
        for h in ["retry-after", "x-ms-retry-after-ms"] {
            assert_eq!(
                r.headers.contains_key(h),
                Some(h) == expect,
                "{header:?} {h}"
            );
        }
        // Room comes back once the window has slid past the first CREATE of the burst, as the
        // hint says (a whole window when there is none).
        let hint = match expect {
            Some("retry-after") => {
                Duration::from_secs(r.headers["retry-after"].to_str().unwrap().parse().unwrap())
            }
            Some(_) => Duration::from_millis(
                r.headers["x-ms-retry-after-ms"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            ),
            None => window,
        };
        assert!(hint <= window, "{hint:?}");
        tokio::time::sleep(hint).await;
        let r = create().await;
        assert_eq!(r.status, 200);
        assert_eq!(emu.counters(vault).throttled, 1);
    }
    assert_eq!(emu.throttled_total(), 3);
}

#[tokio::test]
async fn injected_faults_behave_as_specified() {
    let (emu, c) = start().await;
    let t = c.token().await;

    emu.inject_fault(FaultRule::next(
        Op::CreateKey,
        1,
        FaultAction::Status { status: 503 },
    ));
    emu.inject_fault(FaultRule::next(
        Op::CreateKey,
        1,
        FaultAction::Status { status: 408 },
    ));
    emu.inject_fault(FaultRule::next(Op::CreateKey, 1, FaultAction::Throttle));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            c.kv(
                "POST",
                VAULT,
                "/keys/f/create?api-version=7.5",
                Some(&t),
                Some(ec_create()),
            )
            .await
            .status,
        );
    }
    assert_eq!(statuses, vec![503, 408, 429, 200]);
    assert_eq!(
        emu.key_versions(VAULT, "f").len(),
        1,
        "failed calls changed nothing"
    );

    emu.inject_fault(FaultRule::next(
        Op::GetKey,
        1,
        FaultAction::Delay { ms: 300 },
    ));
    let start = Instant::now();
    let r = c
        .kv("GET", VAULT, "/keys/f?api-version=7.5", Some(&t), None)
        .await;
    assert_eq!(r.status, 200);
    assert!(start.elapsed().as_millis() >= 300);

    emu.inject_fault(FaultRule::next(Op::CreateKey, 1, FaultAction::Reset));
    let r = c
        .kv_try(
            "POST",
            VAULT,
            "/keys/f/create?api-version=7.5",
            Some(&t),
            Some(ec_create()),
        )
        .await;
    assert!(r.is_err(), "connection reset expected, got {r:?}");
    assert_eq!(emu.key_versions(VAULT, "f").len(), 1, "reset before commit");

    emu.inject_fault(FaultRule::next(
        Op::CreateKey,
        1,
        FaultAction::CommitThenReset,
    ));
    let r = c
        .kv_try(
            "POST",
            VAULT,
            "/keys/f/create?api-version=7.5",
            Some(&t),
            Some(ec_create()),
        )
        .await;
    assert!(r.is_err(), "connection reset expected, got {r:?}");
    assert_eq!(
        emu.key_versions(VAULT, "f").len(),
        2,
        "committed before the reset"
    );

    // Every call to X, until cleared.
    emu.inject_fault(FaultRule::every(
        Op::GetKeyVersions,
        FaultAction::Status { status: 500 },
    ));
    for _ in 0..2 {
        assert_eq!(
            c.kv(
                "GET",
                VAULT,
                "/keys/f/versions?api-version=7.5",
                Some(&t),
                None
            )
            .await
            .status,
            500
        );
    }
    emu.clear_faults();
    assert_eq!(
        c.kv(
            "GET",
            VAULT,
            "/keys/f/versions?api-version=7.5",
            Some(&t),
            None
        )
        .await
        .status,
        200
    );
    let faults: Vec<_> = emu.requests().into_iter().filter_map(|r| r.fault).collect();
    assert_eq!(faults.len(), 8);
}

#[tokio::test]
async fn schema_violations_fail_loudly_and_are_recorded() {
    let (emu, c) = start().await;
    let t = c.token().await;
    let r = c
        .kv(
            "POST",
            VAULT,
            "/keys/s/create?api-version=7.5",
            Some(&t),
            Some(json!({"kty":"RSA-HSM","keysize":2048})),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, Some("BadParameter")));
    let r = c
        .kv(
            "POST",
            VAULT,
            "/keys/s/create?api-version=7.5",
            Some(&t),
            Some(json!({"kty":"RSA-HSM","key_size":"2048"})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .kv(
            "POST",
            VAULT,
            "/keys/s/create?api-version=7.5",
            Some(&t),
            Some(json!({"kty":"RSA-HSM","key_ops":["importt"]})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .kv(
            "PUT",
            VAULT,
            "/keys/s?api-version=7.5",
            Some(&t),
            Some(json!({"attributes":{"enabled":true}})),
        )
        .await;
    assert_eq!(r.status, 400, "key is required");
    let v = emu.schema_violations();
    assert_eq!(v.len(), 4, "{v:?}");
    assert!(v[0].schema_violation.as_ref().unwrap().contains("keysize"));
}

#[tokio::test]
async fn request_log_records_app_and_status() {
    let (emu, c) = start().await;
    let t = c.token().await;
    c.kv("GET", VAULT, "/keys/none?api-version=7.5", Some(&t), None)
        .await;
    let log = emu.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].op, Op::Token);
    assert_eq!(log[0].status, 200);
    assert_eq!(log[1].client_id.as_deref(), Some(APP));
    assert_eq!(log[1].status, 404);
    assert_eq!(log[1].error_code.as_deref(), Some("KeyNotFound"));
    assert!(!serde_json::to_string(&log).unwrap().contains(&t));
}
