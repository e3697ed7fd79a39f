//! Entra token endpoint: success and each documented error code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use byokd_emulator::AppConfig;
use rsa::pkcs8::EncodePrivateKey as _;
use serde_json::json;
use sha2::Digest as _;

const SCOPE: &str = "https%3A%2F%2Fvault.azure.net%2F.default";

fn secret_form(client: &str, secret: &str) -> String {
    format!(
        "grant_type=client_credentials&client_id={client}&client_secret={}&scope={SCOPE}",
        enc(secret)
    )
}

fn codes(r: &Resp) -> (String, i64) {
    (
        r.body["error"].as_str().unwrap_or("").to_owned(),
        r.body["error_codes"][0].as_i64().unwrap_or(0),
    )
}

#[tokio::test]
async fn client_secret_yields_bearer_token_with_expiry() {
    let (_emu, c) = start().await;
    let r = c.token_form(TENANT, &secret_form(APP, SECRET)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3599);
    assert_eq!(r.body["ext_expires_in"], 3599);
    assert!(r.body["access_token"].as_str().unwrap().len() > 20);
}

#[tokio::test]
async fn each_entra_error_has_its_code() {
    let (emu, c) = start().await;
    emu.add_app(AppConfig {
        secret_expired: true,
        ..AppConfig::with_secret(TENANT, "expired-app", "old")
    })
    .unwrap();

    let r = c.token_form(TENANT, &secret_form(APP, "wrong")).await;
    assert_eq!(
        (r.status, codes(&r)),
        (401, ("invalid_client".into(), 7000215))
    );
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215:")
    );

    let r = c
        .token_form(TENANT, &secret_form("expired-app", "old"))
        .await;
    assert_eq!(
        (r.status, codes(&r)),
        (401, ("invalid_client".into(), 7000222))
    );

    let r = c
        .token_form(TENANT, &secret_form("unknown-app", SECRET))
        .await;
    assert_eq!(
        (r.status, codes(&r)),
        (400, ("unauthorized_client".into(), 700016))
    );

    let r = c
        .token_form("no-such-tenant", &secret_form(APP, SECRET))
        .await;
    assert_eq!(
        (r.status, codes(&r)),
        (400, ("invalid_request".into(), 90002))
    );

    let r = c
        .token_form(TENANT, &format!("grant_type=client_credentials&client_id={APP}&client_secret={}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default", enc(SECRET)))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_scope");

    let r = c
        .token_form(TENANT, &format!("client_id={APP}&scope={SCOPE}"))
        .await;
    assert_eq!(
        (r.status, codes(&r)),
        (400, ("invalid_request".into(), 900144))
    );

    // Secrets never reach the request log.
    for rec in emu.requests() {
        let s = serde_json::to_string(&rec).unwrap();
        assert!(
            !s.contains(SECRET) && !s.contains(&enc(SECRET)) && !s.contains("\"old\""),
            "{s}"
        );
    }
}

struct CertApp {
    key: rsa::PrivateKey,
    der: Vec<u8>,
}

fn cert_app() -> CertApp {
    let key = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
    let pkcs8 = key.to_pkcs8_der().unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let cert = rcgen::CertificateParams::new(vec!["byokd".to_string()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    CertApp {
        key,
        der: cert.der().to_vec(),
    }
}

fn jwt(app: &CertApp, alg: &str, claims: serde_json::Value) -> String {
    let header = if alg == "PS256" {
        json!({"alg":"PS256","typ":"JWT","x5t#S256": b64(&sha2::Sha256::digest(&app.der))})
    } else {
        json!({"alg":"RS256","typ":"JWT","x5t": b64(&sha1::Sha1::digest(&app.der))})
    };
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = if alg == "PS256" {
        app.key
            .pss_sign::<sha2::Sha256>(signing_input.as_bytes())
            .unwrap()
    } else {
        app.key
            .pkcs1v15_sign::<sha2::Sha256>(signing_input.as_bytes())
            .unwrap()
    };
    format!("{signing_input}.{}", b64(&sig))
}

fn assertion_form(client: &str, jwt: &str) -> String {
    format!(
        "grant_type=client_credentials&client_id={client}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={jwt}&scope={SCOPE}"
    )
}

#[tokio::test]
async fn certificate_assertion_is_verified() {
    let (emu, c) = start().await;
    let app = cert_app();
    emu.add_app(AppConfig::with_certificate(
        TENANT,
        "cert-app",
        app.der.clone(),
    ))
    .unwrap();
    let aud = format!("https://{LOGIN}/{TENANT}/oauth2/v2.0/token");
    let good = |extra: serde_json::Value| {
        let jti = uuid::Uuid::new_v4().to_string();
        let mut claims = json!({"aud": aud, "iss": "cert-app", "sub": "cert-app", "jti": jti, "nbf": now(), "exp": now() + 600});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };

    for alg in ["PS256", "RS256"] {
        let r = c
            .token_form(
                TENANT,
                &assertion_form("cert-app", &jwt(&app, alg, good(json!({})))),
            )
            .await;
        assert_eq!(r.status, 200, "{alg}: {:?}", r.body);
    }

    // Each fault gets the code Entra gives for it: audience 700023, issuer 700021, time range
    // 700024, anything else 50012.
    let bad_cases = [
        (
            good(json!({"aud": "https://login.microsoftonline.com/other/oauth2/v2.0/token"})),
            700023,
        ),
        (good(json!({"iss": "someone-else"})), 700021),
        (
            good(json!({"exp": now() - 3600, "nbf": now() - 4000})),
            700024,
        ),
        (
            good(json!({"nbf": now() + 3600, "exp": now() + 4000})),
            700024,
        ),
        (good(json!({"jti": ""})), 50012),
    ];
    for (claims, code) in bad_cases {
        let r = c
            .token_form(
                TENANT,
                &assertion_form("cert-app", &jwt(&app, "PS256", claims.clone())),
            )
            .await;
        assert_eq!(
            (r.status, codes(&r)),
            (401, ("invalid_client".into(), code)),
            "{claims}"
        );
    }

    // A replayed assertion (same jti) is refused.
    let once = jwt(&app, "PS256", good(json!({})));
    let first = c
        .token_form(TENANT, &assertion_form("cert-app", &once))
        .await;
    assert_eq!(first.status, 200);
    let again = c
        .token_form(TENANT, &assertion_form("cert-app", &once))
        .await;
    assert_eq!(
        (again.status, codes(&again)),
        (401, ("invalid_client".into(), 50012)),
        "a replayed jti"
    );

    // Thumbprints: PS256 needs x5t#S256 of the registered certificate; RS256 takes x5t.
    let with_header = |header: serde_json::Value, pss: bool| {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(good(json!({})).to_string().as_bytes())
        );
        let sig = if pss {
            app.key.pss_sign::<sha2::Sha256>(input.as_bytes()).unwrap()
        } else {
            app.key
                .pkcs1v15_sign::<sha2::Sha256>(input.as_bytes())
                .unwrap()
        };
        format!("{input}.{}", b64(&sig))
    };
    let s256 = b64(&sha2::Sha256::digest(&app.der));
    let s1 = b64(&sha1::Sha1::digest(&app.der));
    let other_s256 = b64(&sha2::Sha256::digest(b"another certificate"));
    // Unknown certificate or bad signature: 700027.
    for (what, token, code) in [
        (
            "PS256 with only x5t",
            with_header(json!({"alg":"PS256","typ":"JWT","x5t": s1}), true),
            700027,
        ),
        (
            "PS256 with a foreign thumbprint",
            with_header(
                json!({"alg":"PS256","typ":"JWT","x5t#S256": other_s256}),
                true,
            ),
            700027,
        ),
        (
            "RS256 header over a PSS signature",
            with_header(json!({"alg":"RS256","typ":"JWT","x5t": s1}), true),
            700027,
        ),
        (
            "PS256 header over a PKCS#1 v1.5 signature",
            with_header(json!({"alg":"PS256","typ":"JWT","x5t#S256": s256}), false),
            700027,
        ),
        (
            "alg none",
            with_header(json!({"alg":"none","typ":"JWT","x5t#S256": s256}), true),
            50012,
        ),
    ] {
        let r = c
            .token_form(TENANT, &assertion_form("cert-app", &token))
            .await;
        assert_eq!(
            (r.status, codes(&r)),
            (401, ("invalid_client".into(), code)),
            "{what}"
        );
    }

    // A signature by another key is refused.
    let other = cert_app();
    let forged = CertApp {
        key: other.key,
        der: app.der.clone(),
    };
    let r = c
        .token_form(
            TENANT,
            &assertion_form("cert-app", &jwt(&forged, "PS256", good(json!({})))),
        )
        .await;
    assert_eq!(
        (r.status, codes(&r)),
        (401, ("invalid_client".into(), 700027))
    );
}
