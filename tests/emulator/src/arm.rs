//! ARM (management plane), only what byokd may use: the vault lookup
//! `GET /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{v}`,
//! to confirm `sku.name`, `enableSoftDelete` and `enablePurgeProtection`.

use http::{Method, StatusCode};
use serde_json::json;

use crate::config::{Cloud, RecoveryLevel};
use crate::state::{Audience, Shared};
use crate::util::{Resp, json_response, parse_form, set_header};

const API_VERSIONS: [&str; 4] = ["2022-07-01", "2023-02-01", "2023-07-01", "2024-11-01"];

fn arm_error(status: StatusCode, code: &str, message: &str) -> Resp {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn unauthorized(cloud: Cloud, code: &str, message: &str) -> Resp {
    let mut resp = arm_error(StatusCode::UNAUTHORIZED, code, message);
    set_header(
        &mut resp,
        "www-authenticate",
        &format!(
            "Bearer authorization_uri=\"https://{}/\", error=\"invalid_token\", error_description=\"{message}\"",
            cloud.login_host()
        ),
    );
    resp
}

/// Serve one ARM request; returns the response and the caller's client id.
pub(crate) fn handle(
    shared: &Shared,
    cloud: Cloud,
    method: &Method,
    path: &str,
    query: Option<&str>,
    auth: Option<&str>,
) -> (Resp, Option<String>) {
    let q = query.and_then(parse_form).unwrap_or_default();
    match q.get("api-version") {
        None => {
            return (
                arm_error(
                    StatusCode::BAD_REQUEST,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                ),
                None,
            );
        }
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => {
            return (
                arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidApiVersionParameter",
                    &format!(
                        "The api-version '{v}' is invalid. The supported versions are '{}'.",
                        API_VERSIONS.join(",")
                    ),
                ),
                None,
            );
        }
        Some(_) => {}
    }
    let st = shared.lock();
    let token = auth.and_then(|a| a.strip_prefix("Bearer ")).map(str::trim);
    let Some(token) = token else {
        return (
            unauthorized(
                cloud,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ),
            None,
        );
    };
    let Some(info) = st.tokens.get(token).cloned() else {
        return (
            unauthorized(
                cloud,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            ),
            None,
        );
    };
    let cid = Some(info.client_id.clone());
    if info.expires <= std::time::Instant::now() {
        return (
            unauthorized(
                cloud,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is in the past.",
            ),
            cid,
        );
    }
    if info.audience != Audience::Arm || info.cloud != cloud {
        return (
            unauthorized(
                cloud,
                "InvalidAuthenticationTokenAudience",
                &format!(
                    "The access token has been obtained for wrong audience or resource. It should exactly match with one of the allowed audiences 'https://{}/'.",
                    cloud.arm_host()
                ),
            ),
            cid,
        );
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (sub, rg, name) = match segs.as_slice() {
        [s, sub, r, rg, p, ns, vs, name]
            if s.eq_ignore_ascii_case("subscriptions")
                && r.eq_ignore_ascii_case("resourceGroups")
                && p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.KeyVault")
                && vs.eq_ignore_ascii_case("vaults")
                && method == Method::GET =>
        {
            (*sub, *rg, *name)
        }
        _ => {
            return (
                arm_error(
                    StatusCode::NOT_FOUND,
                    "InvalidResourceType",
                    "The resource type could not be found in the namespace for the api version.",
                ),
                cid,
            );
        }
    };
    let vault = st.vaults.get(&name.to_ascii_lowercase()).filter(|v| {
        v.opts.cloud == cloud
            && v.opts.subscription.eq_ignore_ascii_case(sub)
            && v.opts.resource_group.eq_ignore_ascii_case(rg)
    });
    let Some(v) = vault else {
        return (
            arm_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                &format!(
                    "The Resource 'Microsoft.KeyVault/vaults/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
                ),
            ),
            cid,
        );
    };
    let soft = v.opts.recovery_level.soft_delete();
    let protection = matches!(
        v.opts.recovery_level,
        RecoveryLevel::Recoverable | RecoveryLevel::CustomizedRecoverable
    );
    let tenant = v.opts.tenant.clone().unwrap_or_else(|| info.tenant.clone());
    let mut props = json!({
        "sku": {"family": "A", "name": match v.opts.sku { crate::config::Sku::Premium => "premium", crate::config::Sku::Standard => "standard" }},
        "tenantId": tenant,
        "accessPolicies": [],
        "enabledForDeployment": false,
        "enableRbacAuthorization": true,
        "enableSoftDelete": soft,
        "vaultUri": format!("https://{}/", v.host()),
        "provisioningState": "Succeeded",
        "publicNetworkAccess": "Enabled",
    });
    if soft {
        props["softDeleteRetentionInDays"] = json!(v.opts.recoverable_days);
    }
    if protection {
        props["enablePurgeProtection"] = json!(true);
    }
    let body = json!({
        "id": format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}", v.opts.subscription, v.opts.resource_group, v.name),
        "name": v.name,
        "type": "Microsoft.KeyVault/vaults",
        "location": v.opts.location,
        "tags": {},
        "properties": props,
    });
    (json_response(StatusCode::OK, &body), cid)
}
