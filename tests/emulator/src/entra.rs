//! Entra ID token endpoint: `POST /{tenant}/oauth2/v2.0/token`, client credentials, and the
//! tenant's OpenID discovery document (`GET /{tenant}/v2.0/.well-known/openid-configuration`),
//! which MSAL-based clients such as the Python `azure-identity` fetch before the token.
//!
//! Secrets and assertions are checked and then forgotten; only the opaque token is remembered.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};
use sha1::Digest as _;

use crate::config::{AppConfig, Cloud};
use crate::state::{Audience, Shared, TokenInfo};
use crate::util::{Resp, b64url, b64url_decode, json_response, now_secs, parse_form};

/// What the token handler learned, for the request log.
#[derive(Debug, Default)]
pub(crate) struct TokenMeta {
    pub client_id: Option<String>,
    pub tenant: Option<String>,
    pub client_auth: Option<String>,
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn entra_error(status: StatusCode, error: &str, code: u32, description: &str) -> Resp {
    let trace = uuid::Uuid::new_v4();
    let corr = uuid::Uuid::new_v4();
    let ts = now_secs();
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}"
            ),
            "error_codes": [code],
            "timestamp": ts.to_string(),
            "trace_id": trace.to_string(),
            "correlation_id": corr.to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

fn missing(param: &str) -> Resp {
    entra_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{param}'."),
    )
}

/// The v2.0 discovery document of a known tenant (90002 for an unknown one, as Entra answers).
fn openid_configuration(shared: &Shared, cloud: Cloud, tenant: &str) -> Resp {
    let known = shared
        .lock()
        .apps
        .iter()
        .any(|a| a.tenant.eq_ignore_ascii_case(tenant));
    if !known {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let base = format!("https://{}/{tenant}", cloud.login_host());
    json_response(
        StatusCode::OK,
        &json!({
            "token_endpoint": format!("{base}/oauth2/v2.0/token"),
            "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
            "issuer": format!("https://{}/{tenant}/v2.0", cloud.login_host()),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
        }),
    )
}

/// Handle a request on a sign-in host.
pub(crate) fn handle(
    shared: &Shared,
    cloud: Cloud,
    method: &http::Method,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    meta: &mut TokenMeta,
) -> Resp {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let [tenant, "v2.0", ".well-known", "openid-configuration"] = segs.as_slice()
        && method == http::Method::GET
    {
        return openid_configuration(shared, cloud, tenant);
    }
    let tenant = match segs.as_slice() {
        [tenant, "oauth2", "v2.0", "token"] if !tenant.is_empty() => tenant.to_ascii_lowercase(),
        _ => {
            return entra_error(
                StatusCode::NOT_FOUND,
                "invalid_request",
                900561,
                "The endpoint only accepts POST requests to /{tenant}/oauth2/v2.0/token.",
            );
        }
    };
    if method != http::Method::POST {
        return entra_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            900561,
            "The endpoint only accepts POST, OPTIONS requests. Received a GET request.",
        );
    }
    meta.tenant = Some(tenant.clone());
    if !content_type.is_some_and(|c| {
        c.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    }) {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    let Some(form) = std::str::from_utf8(body).ok().and_then(parse_form) else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90014,
            "The request body is not a valid form-encoded body.",
        );
    };

    let mut state = shared.lock();
    let tenant_known = state
        .apps
        .iter()
        .any(|a| a.tenant.eq_ignore_ascii_case(&tenant));
    if !tenant_known {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    }
    let Some(grant) = form.get("grant_type") else {
        return missing("grant_type");
    };
    if grant != "client_credentials" {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    let Some(client_id) = form.get("client_id") else {
        return missing("client_id");
    };
    meta.client_id = Some(client_id.clone());
    let Some(scope) = form.get("scope") else {
        return missing("scope");
    };
    let app: Option<AppConfig> = state
        .apps
        .iter()
        .find(|a| {
            a.tenant.eq_ignore_ascii_case(&tenant) && a.client_id.eq_ignore_ascii_case(client_id)
        })
        .cloned();
    let Some(app) = app else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    };
    let audience = if *scope == cloud.vault_scope() {
        Audience::Vault
    } else if *scope == cloud.managed_hsm_scope() {
        Audience::ManagedHsm
    } else {
        Audience::Arm
    };
    if *scope != cloud.vault_scope()
        && *scope != cloud.managed_hsm_scope()
        && *scope != cloud.arm_scope()
    {
        let code = if scope.ends_with("/.default") {
            500011
        } else {
            1002012
        };
        let msg = if code == 500011 {
            format!(
                "The resource principal named {scope} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            )
        } else {
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            )
        };
        return entra_error(StatusCode::BAD_REQUEST, "invalid_scope", code, &msg);
    }

    let token_url = format!(
        "https://{}/{}/oauth2/v2.0/token",
        cloud.login_host(),
        segs[0]
    );
    match (form.get("client_secret"), form.get("client_assertion")) {
        (Some(_), Some(_)) => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                7000219,
                "Only one of 'client_secret' and 'client_assertion' may be sent.",
            );
        }
        (None, None) => {
            return entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        }
        (Some(secret), None) => {
            meta.client_auth = Some("client_secret".into());
            let ok = app
                .secret
                .as_deref()
                .is_some_and(|s| constant_time_eq(s.as_bytes(), secret.as_bytes()));
            if !ok {
                return entra_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                        app.client_id
                    ),
                );
            }
            if app.secret_expired {
                return entra_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000222,
                    &format!(
                        "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                        app.client_id
                    ),
                );
            }
        }
        (None, Some(assertion)) => {
            let alg = assertion
                .split('.')
                .next()
                .and_then(b64url_decode)
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            meta.client_auth = Some(format!("client_assertion:{alg}"));
            if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
                return entra_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    50027,
                    "The client_assertion_type must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
                );
            }
            if let Err((code, why)) =
                verify_assertion(assertion, &app, &token_url, &mut state.seen_jtis)
            {
                return entra_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    code,
                    &format!("Client assertion failed validation: {why}"),
                );
            }
        }
    }

    let token = b64url(&rand::random::<[u8; 48]>());
    let lifetime = state.token_lifetime_secs;
    state.tokens.insert(
        token.clone(),
        TokenInfo {
            tenant: app.tenant.to_ascii_lowercase(),
            client_id: app.client_id.clone(),
            cloud,
            audience,
            expires: Instant::now() + Duration::from_secs(lifetime),
        },
    );
    json_response(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Verify a client-assertion JWT against the app's registered certificate.
fn verify_assertion(
    jwt: &str,
    app: &AppConfig,
    token_url: &str,
    seen_jtis: &mut std::collections::HashMap<String, i64>,
) -> Result<(), (u32, String)> {
    verify_assertion_inner(jwt, app, token_url, seen_jtis)
        .map_err(|why| (assertion_code(&why), why))
}

/// The AADSTS code Entra gives for each way an assertion fails (the reason names it where Entra
/// has a specific one; 50012 otherwise).
fn assertion_code(why: &str) -> u32 {
    if why.contains("AADSTS700027") {
        700_027
    } else if why.contains("AADSTS700024") {
        700_024
    } else if why.contains("AADSTS700023") {
        700_023
    } else if why.contains("AADSTS700021") {
        700_021
    } else {
        50_012
    }
}

fn verify_assertion_inner(
    jwt: &str,
    app: &AppConfig,
    token_url: &str,
    seen_jtis: &mut std::collections::HashMap<String, i64>,
) -> Result<(), String> {
    let cert_der = app
        .certificate_der
        .as_deref()
        .ok_or("no certificate credential is registered for this application")?;
    let mut parts = jwt.split('.');
    let (Some(h64), Some(c64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the assertion is not a compact JWS with three parts".into());
    };
    let header: Value = b64url_decode(h64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the JWT header is not base64url JSON")?;
    let claims: Value = b64url_decode(c64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the JWT claims are not base64url JSON")?;
    let sig = b64url_decode(s64).ok_or("the JWT signature is not base64url")?;

    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let sha256 = b64url(&sha2::Sha256::digest(cert_der));
    let sha1 = b64url(&sha1::Sha1::digest(cert_der));
    let thumb_ok = match alg {
        "PS256" => header.get("x5t#S256").and_then(Value::as_str) == Some(sha256.as_str()),
        "RS256" => {
            header.get("x5t").and_then(Value::as_str) == Some(sha1.as_str())
                || header.get("x5t#S256").and_then(Value::as_str) == Some(sha256.as_str())
        }
        _ => return Err(format!("unsupported JWT alg '{alg}'; use PS256 (or RS256)")),
    };
    if !thumb_ok {
        return Err("the certificate thumbprint in the JWT header does not match a registered certificate (AADSTS700027: key was not found)".into());
    }

    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|_| "the registered certificate cannot be parsed")?;
    let spki_der = cert.tbs_certificate.subject_pki.raw;
    let public = <rsa::PublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(spki_der)
        .map_err(|_| "the registered certificate does not hold an RSA public key")?;
    let signed = format!("{h64}.{c64}");
    let verified = match alg {
        "PS256" => public.pss_verify::<sha2::Sha256>(signed.as_bytes(), &sig),
        _ => public.pkcs1v15_verify::<sha2::Sha256>(signed.as_bytes(), &sig),
    };
    verified.map_err(|_| "the JWT signature is invalid (AADSTS700027)")?;

    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    if s("aud") != Some(token_url) {
        return Err(format!(
            "the JWT aud must be '{token_url}' (AADSTS700023: audience does not match)"
        ));
    }
    if !s("iss").is_some_and(|i| i.eq_ignore_ascii_case(&app.client_id))
        || !s("sub").is_some_and(|i| i.eq_ignore_ascii_case(&app.client_id))
    {
        return Err(
            "the JWT iss and sub must both be the client id (AADSTS700021: issuer mismatch)".into(),
        );
    }
    let jti = s("jti")
        .filter(|j| !j.is_empty())
        .ok_or("the JWT has no jti")?
        .to_string();
    let now = now_secs();
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or("the JWT has no exp")?;
    // Entra allows five minutes of clock skew.
    if exp <= now - 300 {
        return Err("the JWT is expired (AADSTS700024)".into());
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
        if nbf > now + 300 {
            return Err(
                "the JWT is not yet valid (AADSTS700024: not within its time range)".into(),
            );
        }
        if exp - nbf > 86_400 {
            return Err("the JWT lifetime is too long".into());
        }
    }
    seen_jtis.retain(|_, e| *e > now - 300);
    if seen_jtis.contains_key(&jti) {
        return Err("the JWT's jti was already used (AADSTS700025: replayed assertion)".into());
    }
    seen_jtis.insert(jti, exp);
    Ok(())
}
