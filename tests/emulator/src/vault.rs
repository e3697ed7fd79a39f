//! Key Vault keys data plane (api-version 7.5) for one request.
//!
//! Order of checks: route, api-version, bearer token, names, body schema, RBAC, throttle, then
//! the operation. Private key bytes never leave `keys`/`byok`; tags and public keys are stored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::byok;
use crate::config::{Cloud, Permission, RetryHeader, Sku};
use crate::faults::Op;
use crate::keys::{self, Curve, Declared, Material, PublicKey};
use crate::schema;
use crate::state::{DeletedEntry, KeyEntry, KeyVersion, Origin, Shared, State, Vault};
use crate::throttle::Budget;
use crate::util::{
    Resp, b64std, bad_parameter, empty_response, json_response, kv_error, new_version_id, now_secs,
    parse_form, query_encode, set_header,
};

/// What the vault handler learned, for the request log.
#[derive(Debug, Default)]
pub(crate) struct VaultMeta {
    pub client_id: Option<String>,
    pub tenant: Option<String>,
    pub schema_violation: Option<String>,
}

/// A parsed data-plane route.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub op: Op,
    pub name: Option<String>,
    pub version: Option<String>,
}

/// Map method + path to an operation.
pub(crate) fn route(method: &Method, path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let r = |op, name: Option<&str>, version: Option<&str>| {
        Some(Route {
            op,
            name: name.map(str::to_owned),
            version: version.map(str::to_owned),
        })
    };
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["keys"]) => r(Op::GetKeys, None, None),
        ("POST", ["keys", n, "create"]) => r(Op::CreateKey, Some(n), None),
        ("PUT", ["keys", n]) => r(Op::ImportKey, Some(n), None),
        ("DELETE", ["keys", n]) => r(Op::DeleteKey, Some(n), None),
        ("GET", ["keys", n, "versions"]) => r(Op::GetKeyVersions, Some(n), None),
        ("GET", ["keys", n]) => r(Op::GetKey, Some(n), Some("")),
        ("GET", ["keys", n, v]) => r(Op::GetKey, Some(n), Some(v)),
        ("PATCH", ["keys", n]) => r(Op::UpdateKey, Some(n), Some("")),
        ("PATCH", ["keys", n, v]) => r(Op::UpdateKey, Some(n), Some(v)),
        ("GET", ["deletedkeys"]) => r(Op::GetDeletedKeys, None, None),
        ("GET", ["deletedkeys", n]) => r(Op::GetDeletedKey, Some(n), None),
        ("DELETE", ["deletedkeys", n]) => r(Op::PurgeDeletedKey, Some(n), None),
        ("POST", ["deletedkeys", n, "recover"]) => r(Op::RecoverDeletedKey, Some(n), None),
        _ => None,
    }
}

fn permission(op: Op) -> Permission {
    match op {
        Op::CreateKey => Permission::Create,
        Op::ImportKey => Permission::Import,
        Op::DeleteKey => Permission::Delete,
        Op::PurgeDeletedKey => Permission::Purge,
        Op::RecoverDeletedKey => Permission::Recover,
        Op::UpdateKey => Permission::Update,
        Op::GetKeys | Op::GetKeyVersions | Op::GetDeletedKeys => Permission::List,
        _ => Permission::Get,
    }
}

fn action_name(p: Permission) -> &'static str {
    match p {
        Permission::Create => "Microsoft.KeyVault/vaults/keys/create/action",
        Permission::Import => "Microsoft.KeyVault/vaults/keys/import/action",
        Permission::Delete => "Microsoft.KeyVault/vaults/keys/delete",
        Permission::Purge => "Microsoft.KeyVault/vaults/deletedkeys/delete",
        Permission::Get => "Microsoft.KeyVault/vaults/keys/read",
        Permission::List => "Microsoft.KeyVault/vaults/keys/read",
        Permission::Update => "Microsoft.KeyVault/vaults/keys/write",
        Permission::Recover => "Microsoft.KeyVault/vaults/deletedkeys/recover/action",
    }
}

/// The Managed HSM local RBAC data action of a permission.
fn hsm_action_name(p: Permission) -> &'static str {
    match p {
        Permission::Create => "Microsoft.KeyVault/managedHsm/keys/create",
        Permission::Import => "Microsoft.KeyVault/managedHsm/keys/import/action",
        Permission::Delete => "Microsoft.KeyVault/managedHsm/keys/delete",
        Permission::Purge => "Microsoft.KeyVault/managedHsm/keys/deletedKeys/delete",
        Permission::Get | Permission::List => "Microsoft.KeyVault/managedHsm/keys/read/action",
        Permission::Update => "Microsoft.KeyVault/managedHsm/keys/write/action",
        Permission::Recover => "Microsoft.KeyVault/managedHsm/keys/deletedKeys/recover/action",
    }
}

fn valid_key_name(n: &str) -> bool {
    (1..=127).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub(crate) fn key_not_found(name: &str) -> Resp {
    kv_error(
        StatusCode::NOT_FOUND,
        "KeyNotFound",
        &format!(
            "A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None,
    )
}

fn deleted_not_found(name: &str) -> Resp {
    kv_error(
        StatusCode::NOT_FOUND,
        "KeyNotFound",
        &format!("Deleted Key not found: {name}"),
        None,
    )
}

fn being_deleted(name: &str) -> Resp {
    kv_error(
        StatusCode::CONFLICT,
        "Conflict",
        &format!("Key {name} is currently being deleted."),
        Some("ObjectIsBeingDeleted"),
    )
}

fn deleted_but_recoverable(name: &str) -> Resp {
    kv_error(
        StatusCode::CONFLICT,
        "Conflict",
        &format!(
            "Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."
        ),
        Some("ObjectIsDeletedButRecoverable"),
    )
}

/// A 429 with the configured hint.
pub(crate) fn throttled(header: RetryHeader, wait: std::time::Duration) -> Resp {
    let mut resp = kv_error(
        StatusCode::TOO_MANY_REQUESTS,
        "Throttled",
        "Request was not processed because too many requests were received. Reason: A very high volume of requests for keys in this vault. For more information, see https://aka.ms/kvthrottling",
        None,
    );
    match header {
        RetryHeader::RetryAfterSeconds => {
            let secs = wait.as_secs_f64().ceil().max(1.0);
            set_header(&mut resp, "retry-after", &format!("{secs:.0}"));
        }
        RetryHeader::RetryAfterMs => {
            // Rounded up: a client that waits exactly this long finds room.
            let ms = wait.as_nanos().div_ceil(1_000_000).max(1);
            set_header(&mut resp, "x-ms-retry-after-ms", &ms.to_string());
        }
        RetryHeader::None => {}
    }
    resp
}

/// `(tenant, cloud)` of a 401 challenge: Key Vault names the cloud's authority (the public
/// cloud still says `login.windows.net`) and the vault's tenant.
fn unauthorized((tenant, cloud): (&str, Cloud), resource: &str, message: &str) -> Resp {
    let authority = match cloud {
        Cloud::Public => "login.windows.net",
        other => other.login_host(),
    };
    let mut resp = kv_error(StatusCode::UNAUTHORIZED, "Unauthorized", message, None);
    set_header(
        &mut resp,
        "www-authenticate",
        &format!("Bearer authorization=\"https://{authority}/{tenant}\", resource=\"{resource}\""),
    );
    resp
}

fn budget_for(vault: &Vault, name: Option<&str>) -> Budget {
    let latest = name
        .and_then(|n| vault.keys.get(&n.to_ascii_lowercase()))
        .and_then(KeyEntry::latest);
    match latest.map(|v| v.material.public.rsa_bits()) {
        Some(3072) => Budget::OtherRsa3072,
        Some(4096) => Budget::OtherRsa4096,
        _ => Budget::OtherRsa2048Ec,
    }
}

/// Pre-flight checks under one lock. `Err` is the response to send.
fn preflight(
    state: &mut State,
    vault_name: &str,
    route: &Route,
    query: &BTreeMap<String, String>,
    auth: Option<&str>,
    meta: &mut VaultMeta,
) -> Result<(), Resp> {
    let now = Instant::now();
    let default_tenant = state
        .apps
        .first()
        .map(|a| a.tenant.clone())
        .unwrap_or_else(|| "72f988bf-86f1-41af-91ab-2d7cd011db47".into());
    let vault = state.vaults.get(vault_name).ok_or_else(|| {
        kv_error(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            "The vault was not found.",
            None,
        )
    })?;
    let challenge_tenant = vault.opts.tenant.clone().unwrap_or(default_tenant);
    let resource = vault.resource();

    match query.get("api-version").map(String::as_str) {
        Some("7.5") => {}
        Some(v) => {
            return Err(bad_parameter(&format!(
                "The specified version ({v}) is not recognized. Consider using the latest supported version (7.5)."
            )));
        }
        None => {
            return Err(bad_parameter(
                "The 'api-version' query parameter is missing.",
            ));
        }
    }

    let token = auth
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(unauthorized(
            (&challenge_tenant, vault.opts.cloud),
            &resource,
            "AKV10000: Request is missing a Bearer or PoP token.",
        ));
    };
    let Some(info) = state.tokens.get(token).cloned() else {
        return Err(unauthorized(
            (&challenge_tenant, vault.opts.cloud),
            &resource,
            "AKV10022: Invalid token: the token is not recognized.",
        ));
    };
    meta.client_id = Some(info.client_id.clone());
    meta.tenant = Some(info.tenant.clone());
    if info.expires <= now {
        return Err(unauthorized(
            (&challenge_tenant, vault.opts.cloud),
            &resource,
            "AKV10032: Invalid token: the token is expired.",
        ));
    }
    if info.cloud != vault.opts.cloud || info.audience != vault.audience() {
        return Err(unauthorized(
            (&challenge_tenant, vault.opts.cloud),
            &resource,
            &format!("AKV10022: Invalid audience. Expected {resource}."),
        ));
    }
    if vault
        .opts
        .tenant
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case(&info.tenant))
    {
        return Err(unauthorized(
            (&challenge_tenant, vault.opts.cloud),
            &resource,
            &format!(
                "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{challenge_tenant}/."
            ),
        ));
    }

    if let Some(name) = &route.name
        && !valid_key_name(name)
    {
        return Err(bad_parameter(&format!(
            "The request URI contains an invalid name: {name}"
        )));
    }
    if let Some(v) = route.version.as_deref().filter(|v| !v.is_empty())
        && (v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(key_not_found(&format!(
            "{}/{v}",
            route.name.as_deref().unwrap_or("")
        )));
    }

    let perm = permission(route.op);
    if let Some(access) = &vault.opts.access {
        let allowed = access
            .iter()
            .find(|(cid, _)| cid.eq_ignore_ascii_case(&info.client_id))
            .is_some_and(|(_, perms)| perms.contains(&perm));
        if !allowed && vault.opts.managed_hsm {
            // Managed HSM's local RBAC: 403 AccessDenied naming the data action and scope.
            return Err(kv_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                &format!(
                    "Not authorized to access {} on /keys{} (Activity ID: 00000000-0000-0000-0000-000000000000)",
                    hsm_action_name(perm),
                    route
                        .name
                        .as_deref()
                        .map(|n| format!("/{n}"))
                        .unwrap_or_default()
                ),
                None,
            ));
        }
        if !allowed {
            return Err(kv_error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid={};iss=https://sts.windows.net/{}/\r\nAction: '{}'\r\nResource: '/vaults/{}'\r\nAssignment: (not found)\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: {};location=westeurope\r\n",
                    info.client_id,
                    info.tenant,
                    action_name(perm),
                    vault.name,
                    vault.name
                ),
                Some("ForbiddenByRbac"),
            ));
        }
    }
    Ok(())
}

fn throttle(state: &mut State, vault_name: &str, route: &Route) -> Result<(), Resp> {
    let cfg = state.throttle.clone();
    let Some(vault) = state.vaults.get_mut(vault_name) else {
        return Ok(());
    };
    let budget = match route.op {
        Op::CreateKey | Op::ImportKey => Budget::Create,
        _ => budget_for(vault, route.name.as_deref()),
    };
    if let Err(wait) = vault.windows.take(&cfg, budget, Instant::now()) {
        vault.counters.throttled += 1;
        return Err(throttled(cfg.header, wait));
    }
    Ok(())
}

/// Handle one data-plane request for `vault_name` (lower case).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    vault_name: &str,
    route: &Route,
    query_str: Option<&str>,
    auth: Option<&str>,
    body: &[u8],
    meta: &mut VaultMeta,
) -> Resp {
    let query = query_str.and_then(parse_form).unwrap_or_default();
    {
        let mut state = shared.lock();
        if let Err(resp) = preflight(&mut state, vault_name, route, &query, auth, meta) {
            return resp;
        }
    }
    let parsed = match schema::validate_body(route.op.operation_id(), body) {
        Ok(v) => v,
        Err(why) => {
            meta.schema_violation = Some(why.clone());
            return bad_parameter(&format!("Invalid request body: {why}"));
        }
    };
    {
        let mut state = shared.lock();
        if let Err(resp) = throttle(&mut state, vault_name, route) {
            return resp;
        }
    }
    let name = route.name.clone().unwrap_or_default();
    let body = parsed.unwrap_or(Value::Null);
    match route.op {
        Op::CreateKey => create(shared, vault_name, &name, &body).await,
        Op::ImportKey => import(shared, vault_name, &name, &body).await,
        Op::GetKey => get_key(
            shared,
            vault_name,
            &name,
            route.version.as_deref().unwrap_or(""),
        ),
        Op::GetKeyVersions => list(shared, vault_name, Some(&name), &query),
        Op::GetKeys => list(shared, vault_name, None, &query),
        Op::UpdateKey => update(
            shared,
            vault_name,
            &name,
            route.version.as_deref().unwrap_or(""),
            &body,
        ),
        Op::DeleteKey => delete(shared, vault_name, &name),
        Op::GetDeletedKey => get_deleted(shared, vault_name, &name),
        Op::GetDeletedKeys => list_deleted(shared, vault_name, &query),
        Op::PurgeDeletedKey => purge(shared, vault_name, &name),
        Op::RecoverDeletedKey => recover(shared, vault_name, &name),
        Op::Token | Op::ArmGetVault | Op::Other => bad_parameter("Unsupported operation."),
    }
}

/// Refuse names that are soft-deleted (or being deleted).
pub(crate) fn name_blocked(vault: &Vault, name: &str) -> Option<Resp> {
    let d = vault.deleted.get(&name.to_ascii_lowercase())?;
    if d.visible_at > Instant::now() {
        Some(being_deleted(name))
    } else {
        Some(deleted_but_recoverable(name))
    }
}

pub(crate) struct CommonAttrs {
    pub(crate) enabled: bool,
    pub(crate) nbf: Option<i64>,
    pub(crate) exp: Option<i64>,
    pub(crate) tags: BTreeMap<String, String>,
}

fn common_attrs(body: &Value) -> Result<CommonAttrs, Resp> {
    let attrs = body.get("attributes");
    let get_i = |k: &str| attrs.and_then(|a| a.get(k)).and_then(Value::as_i64);
    if attrs
        .and_then(|a| a.get("exportable"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(bad_parameter(
            "Exportable keys require a release policy; this vault does not support key release.",
        ));
    }
    let tags = tags_of(body)?;
    let c = CommonAttrs {
        enabled: attrs
            .and_then(|a| a.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(true),
        nbf: get_i("nbf"),
        exp: get_i("exp"),
        tags: tags.unwrap_or_default(),
    };
    if let (Some(n), Some(e)) = (c.nbf, c.exp)
        && e <= n
    {
        return Err(bad_parameter(
            "The key's expiry (exp) must be after its activation (nbf).",
        ));
    }
    Ok(c)
}

fn tags_of(body: &Value) -> Result<Option<BTreeMap<String, String>>, Resp> {
    let Some(tags) = body.get("tags") else {
        return Ok(None);
    };
    let map: BTreeMap<String, String> = serde_json::from_value(tags.clone())
        .map_err(|_| bad_parameter("Tags must be a map of strings."))?;
    if map.len() > 15 {
        return Err(bad_parameter("A maximum of 15 tags is allowed."));
    }
    if map.iter().any(|(k, v)| k.len() > 512 || v.len() > 256) {
        return Err(bad_parameter(
            "Tag names are limited to 512 and values to 256 characters.",
        ));
    }
    Ok(Some(map))
}

const ALL_OPS: [&str; 8] = [
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
    "import",
    "export",
];

fn key_ops_of(v: Option<&Value>) -> Result<Option<Vec<String>>, Resp> {
    let Some(v) = v else { return Ok(None) };
    let ops: Vec<String> = serde_json::from_value(v.clone())
        .map_err(|_| bad_parameter("key_ops must be an array of strings."))?;
    for op in &ops {
        if !ALL_OPS.contains(&op.as_str()) {
            return Err(bad_parameter(&format!("Invalid key operation: {op}")));
        }
    }
    if ops.iter().any(|o| o == "import") && ops.len() != 1 {
        return Err(bad_parameter(
            "Key operation 'import' cannot be combined with other operations.",
        ));
    }
    if ops.iter().any(|o| o == "export") {
        return Err(bad_parameter(
            "Key operation 'export' requires an exportable key with a release policy.",
        ));
    }
    Ok(Some(ops))
}

fn default_ops(kty: &str) -> Vec<String> {
    let ops: &[&str] = if kty.starts_with("EC") {
        &["sign", "verify"]
    } else {
        &[
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
        ]
    };
    ops.iter().map(|s| (*s).to_owned()).collect()
}

fn check_ec_ops(ops: &[String]) -> Result<(), Resp> {
    if let Some(bad) = ops.iter().find(|o| *o != "sign" && *o != "verify") {
        return Err(bad_parameter(&format!(
            "Key operation '{bad}' is not supported for EC keys; only 'sign' and 'verify' are allowed."
        )));
    }
    Ok(())
}

fn hsm_requires_premium(vault: &Vault, kty: &str) -> Result<(), Resp> {
    if kty.ends_with("-HSM") && vault.opts.sku == Sku::Standard && !vault.opts.managed_hsm {
        return Err(bad_parameter(&format!(
            "The key type '{kty}' is not supported by this vault: HSM-protected keys require a Premium SKU vault."
        )));
    }
    Ok(())
}

async fn create(shared: &Arc<Shared>, vault_name: &str, name: &str, body: &Value) -> Resp {
    let kty = body.get("kty").and_then(Value::as_str).unwrap_or("");
    let ops = match key_ops_of(body.get("key_ops")) {
        Ok(o) => o.unwrap_or_else(|| default_ops(kty)),
        Err(r) => return r,
    };
    let attrs = match common_attrs(body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    {
        let state = shared.lock();
        let Some(vault) = state.vaults.get(vault_name) else {
            return key_not_found(name);
        };
        if let Err(r) = hsm_requires_premium(vault, kty) {
            return r;
        }
        if let Some(r) = name_blocked(vault, name) {
            return r;
        }
    }
    let material = match kty {
        "RSA" | "RSA-HSM" => {
            if ops.iter().any(|o| o == "import") && kty != "RSA-HSM" {
                return bad_parameter(
                    "A key exchange key (key_ops 'import') must have kty 'RSA-HSM'.",
                );
            }
            if body.get("crv").is_some() {
                return bad_parameter("crv is not valid for RSA keys.");
            }
            if body
                .get("public_exponent")
                .and_then(Value::as_i64)
                .is_some_and(|e| e != 65537)
            {
                return bad_parameter("Only public exponent 65537 is supported.");
            }
            let size = body.get("key_size").and_then(Value::as_i64).unwrap_or(2048);
            let bits = match size {
                2048 => 2048usize,
                3072 => 3072,
                4096 => 4096,
                other => {
                    return bad_parameter(&format!(
                        "Invalid key size {other}. RSA keys must be 2048, 3072 or 4096 bits."
                    ));
                }
            };
            match keys::rsa_key(bits).await {
                Ok(k) => Material::from_rsa(k),
                Err(e) => {
                    return kv_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        &format!("Key generation failed: {e}"),
                        None,
                    );
                }
            }
        }
        "EC" | "EC-HSM" => {
            if ops.iter().any(|o| o == "import") {
                return bad_parameter(
                    "A key exchange key (key_ops 'import') must have kty 'RSA-HSM'.",
                );
            }
            if let Err(r) = check_ec_ops(&ops) {
                return r;
            }
            if body.get("key_size").is_some() {
                return bad_parameter("key_size is not valid for EC keys.");
            }
            let crv = body
                .get("crv")
                .and_then(Value::as_str)
                .map_or(Some(Curve::P256), Curve::from_name);
            let Some(crv) = crv else {
                return bad_parameter("Invalid curve name.");
            };
            match keys::generate_ec_public(crv) {
                Ok(public) => Material {
                    public,
                    private: None,
                },
                Err(e) => return bad_parameter(&e),
            }
        }
        other => {
            return bad_parameter(&format!(
                "The key type '{other}' is not supported by this vault; use RSA, RSA-HSM, EC or EC-HSM."
            ));
        }
    };
    let now = now_secs();
    let version = KeyVersion {
        version: new_version_id(),
        kty: kty.to_owned(),
        key_ops: ops,
        material,
        enabled: attrs.enabled,
        nbf: attrs.nbf,
        exp: attrs.exp,
        created: now,
        updated: now,
        tags: attrs.tags,
        origin: Origin::Created,
    };
    let mut state = shared.lock();
    let Some(vault) = state.vaults.get_mut(vault_name) else {
        return key_not_found(name);
    };
    if let Some(r) = name_blocked(vault, name) {
        return r;
    }
    vault.counters.creates += 1;
    let resp_name = insert_version(vault, name, version);
    json_response(StatusCode::OK, &resp_name)
}

/// Add a version, returning the bundle.
fn insert_version(vault: &mut Vault, name: &str, version: KeyVersion) -> Value {
    let entry = vault
        .keys
        .entry(name.to_ascii_lowercase())
        .or_insert_with(|| KeyEntry {
            name: name.to_owned(),
            versions: Vec::new(),
        });
    entry.versions.push(version);
    let stored_name = entry.name.clone();
    let latest = entry.versions.last().cloned();
    match latest {
        Some(v) => vault.bundle(&stored_name, &v),
        None => Value::Null,
    }
}

async fn import(shared: &Arc<Shared>, vault_name: &str, name: &str, body: &Value) -> Resp {
    let Some(key) = body.get("key") else {
        return bad_parameter("The key to import is missing.");
    };
    let kty = key.get("kty").and_then(Value::as_str).unwrap_or("");
    let attrs = match common_attrs(body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let ops = match key_ops_of(key.get("key_ops")) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if ops.iter().flatten().any(|o| o == "import") {
        return bad_parameter(
            "Key operation 'import' is only valid for key exchange keys created in the vault.",
        );
    }
    if kty.starts_with("oct") {
        return crate::oct::import(shared, (vault_name, name), key, kty, attrs, ops).await;
    }
    let ops = ops.unwrap_or_else(|| default_ops(kty));
    let declared = match kty {
        "RSA" | "RSA-HSM" => {
            if key.get("crv").is_some() {
                return bad_parameter("crv is not valid for RSA keys.");
            }
            Declared::Rsa
        }
        "EC" | "EC-HSM" => {
            if let Err(r) = check_ec_ops(&ops) {
                return r;
            }
            let Some(crv) = key.get("crv").and_then(Value::as_str) else {
                return bad_parameter("The curve name (crv) is required for EC keys.");
            };
            let Some(crv) = Curve::from_name(crv) else {
                return bad_parameter(&format!("Invalid curve name '{crv}'."));
            };
            Declared::Ec(crv)
        }
        other => {
            return bad_parameter(&format!(
                "The key type '{other}' cannot be imported; use RSA-HSM or EC-HSM with key_hsm."
            ));
        }
    };

    let kek = {
        let state = shared.lock();
        let Some(vault) = state.vaults.get(vault_name) else {
            return key_not_found(name);
        };
        if let Err(r) = hsm_requires_premium(vault, kty) {
            return r;
        }
        if let Some(r) = name_blocked(vault, name) {
            return r;
        }

        match key.get("key_hsm").and_then(Value::as_str) {
            Some(key_hsm) => {
                if !kty.ends_with("-HSM") {
                    return bad_parameter("key_hsm (BYOK) requires kty 'RSA-HSM' or 'EC-HSM'.");
                }
                for member in ["n", "e", "d", "dp", "dq", "qi", "p", "q", "x", "y", "k"] {
                    if key.get(member).is_some() {
                        return bad_parameter(&format!(
                            "The JWK member '{member}' must not be sent together with key_hsm."
                        ));
                    }
                }
                match find_kek(vault, key_hsm) {
                    Ok(k) => Some(k),
                    Err(r) => return r,
                }
            }
            None => None,
        }
    };

    let mut learned_pkcs8 = None;
    let public = match kek {
        Some((kek_key, ciphertext)) => {
            let result = tokio::task::spawn_blocking(move || {
                byok::unwrap_blob(&kek_key, &ciphertext, declared)
            })
            .await;
            match unwrapped(result) {
                Ok((p, pkcs8)) => {
                    learned_pkcs8 = Some(pkcs8);
                    p
                }
                Err(r) => return r,
            }
        }
        None => match plain_jwk_public(key, declared) {
            Ok(p) => p,
            Err(r) => return r,
        },
    };
    let version = imported_version(kty, ops, public, attrs);
    let version_id = version.version.clone();
    let mut state = shared.lock();
    let bundle = match commit_import(&mut state, (vault_name, name), version) {
        Ok(bundle) => bundle,
        Err(r) => return r,
    };
    if let Some(mut pkcs8) = learned_pkcs8 {
        if state.retain_imported_pkcs8 {
            state.imported_pkcs8.push(crate::state::ImportedPrivateKey {
                vault: vault_name.to_owned(),
                name: name.to_owned(),
                version: version_id,
                pkcs8,
            });
        } else {
            pkcs8.iter_mut().for_each(|b| *b = 0);
        }
    }
    json_response(StatusCode::OK, &bundle)
}

/// The answer of an unwrap run on a blocking thread: its result, or the 400 (or 500) to send.
pub(crate) fn unwrapped<T>(
    result: Result<Result<T, String>, tokio::task::JoinError>,
) -> Result<T, Resp> {
    match result {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(why)) => Err(bad_parameter(&format!(
            "The specified key_hsm could not be unwrapped: {why}"
        ))),
        Err(e) => Err(kv_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &e.to_string(),
            None,
        )),
    }
}

/// A new imported version holding only `public` (never the private half).
pub(crate) fn imported_version(
    kty: &str,
    ops: Vec<String>,
    public: PublicKey,
    attrs: CommonAttrs,
) -> KeyVersion {
    let now = now_secs();
    KeyVersion {
        version: new_version_id(),
        kty: kty.to_owned(),
        key_ops: ops,
        material: Material {
            public,
            private: None,
        },
        enabled: attrs.enabled,
        nbf: attrs.nbf,
        exp: attrs.exp,
        created: now,
        updated: now,
        tags: attrs.tags,
        origin: Origin::Imported,
    }
}

/// Stores an imported version unless the name was deleted meanwhile; returns its bundle.
pub(crate) fn commit_import(
    state: &mut State,
    (vault_name, name): (&str, &str),
    version: KeyVersion,
) -> Result<Value, Resp> {
    let Some(vault) = state.vaults.get_mut(vault_name) else {
        return Err(key_not_found(name));
    };
    if let Some(r) = name_blocked(vault, name) {
        return Err(r);
    }
    vault.counters.imports += 1;
    Ok(insert_version(vault, name, version))
}

/// Resolve the blob's KEK: it must be a live, enabled, unexpired import-only key in this vault.
pub(crate) fn find_kek(
    vault: &Vault,
    key_hsm: &str,
) -> Result<(Arc<rsa::PrivateKey>, Vec<u8>), Resp> {
    let blob = byok::parse_key_hsm(key_hsm)
        .map_err(|w| bad_parameter(&format!("The BYOK key_hsm is invalid: {w}")))?;
    let kid = byok::parse_kid(&blob.kid)
        .map_err(|w| bad_parameter(&format!("The BYOK key_hsm is invalid: {w}")))?;
    if kid.host != vault.host() {
        return Err(bad_parameter(&format!(
            "The key exchange key '{}' is not in this vault; the KEK must be in the same vault as the imported key.",
            blob.kid
        )));
    }
    let not_found = || {
        bad_parameter(&format!(
            "The key exchange key '{}' was not found in this vault.",
            blob.kid
        ))
    };
    let entry = vault
        .keys
        .get(&kid.name.to_ascii_lowercase())
        .ok_or_else(not_found)?;
    let v = entry
        .versions
        .iter()
        .find(|v| v.version == kid.version)
        .ok_or_else(not_found)?;
    if !v.is_kek() || v.kty != "RSA-HSM" {
        return Err(bad_parameter(&format!(
            "The key '{}' is not a key exchange key (kty RSA-HSM with key_ops ['import']).",
            blob.kid
        )));
    }
    if !v.usable(now_secs()) {
        return Err(bad_parameter(&format!(
            "The key exchange key '{}' is disabled, expired or not yet valid.",
            blob.kid
        )));
    }
    let private = v.material.private.clone().ok_or_else(not_found)?;
    Ok((private, blob.ciphertext))
}

/// A plain (non-BYOK) JWK import: only the public half is kept.
fn plain_jwk_public(key: &Value, declared: Declared) -> Result<PublicKey, Resp> {
    let get = |k: &str| {
        key.get(k)
            .and_then(Value::as_str)
            .and_then(crate::util::b64url_decode)
    };
    match declared {
        Declared::Rsa => {
            let (Some(n), Some(e), Some(_d)) = (get("n"), get("e"), get("d")) else {
                return Err(bad_parameter(
                    "An RSA key import requires n, e and d (or key_hsm).",
                ));
            };
            let strip = |v: Vec<u8>| {
                let i = v.iter().position(|b| *b != 0).unwrap_or(v.len());
                v[i..].to_vec()
            };
            Ok(PublicKey::Rsa {
                n: strip(n),
                e: strip(e),
            })
        }
        Declared::Ec(crv) => {
            let (Some(x), Some(y), Some(_d)) = (get("x"), get("y"), get("d")) else {
                return Err(bad_parameter(
                    "An EC key import requires x, y and d (or key_hsm).",
                ));
            };
            if x.len() != crv.field_len() || y.len() != crv.field_len() {
                return Err(bad_parameter(
                    "EC coordinates have the wrong length for the curve.",
                ));
            }
            Ok(PublicKey::Ec { crv, x, y })
        }
    }
}

fn find_version<'a>(entry: &'a KeyEntry, version: &str) -> Option<&'a KeyVersion> {
    if version.is_empty() {
        entry.latest()
    } else {
        let v = version.to_ascii_lowercase();
        entry.versions.iter().find(|x| x.version == v)
    }
}

fn get_key(shared: &Arc<Shared>, vault_name: &str, name: &str, version: &str) -> Resp {
    let state = shared.lock();
    let Some(vault) = state.vaults.get(vault_name) else {
        return key_not_found(name);
    };
    let Some(entry) = vault.keys.get(&name.to_ascii_lowercase()) else {
        return key_not_found(name);
    };
    match find_version(entry, version) {
        Some(v) => json_response(StatusCode::OK, &vault.bundle(&entry.name, v)),
        None => key_not_found(&format!("{name}/{version}")),
    }
}

fn page_params(query: &BTreeMap<String, String>) -> Result<(usize, usize), Resp> {
    let max = match query.get("maxresults") {
        None => 25,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=25).contains(&n) => n,
            _ => {
                return Err(bad_parameter(
                    "Invalid value for maxresults: it must be between 1 and 25.",
                ));
            }
        },
    };
    let skip = match query.get("$skiptoken") {
        None => 0,
        Some(t) => {
            decode_skiptoken(t).ok_or_else(|| bad_parameter("The $skiptoken is invalid."))?
        }
    };
    Ok((max, skip))
}

fn encode_skiptoken(offset: usize) -> String {
    b64std(
        json!({"NextMarker": format!("emu!{offset}"), "TargetLocation": 0})
            .to_string()
            .as_bytes(),
    )
    .trim_end_matches('=')
    .to_owned()
}

fn decode_skiptoken(t: &str) -> Option<usize> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(t.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v.get("NextMarker")?
        .as_str()?
        .strip_prefix("emu!")?
        .parse()
        .ok()
}

fn page(items: Vec<Value>, skip: usize, max: usize, next_base: &str) -> Value {
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(skip).take(max).collect();
    let next = if skip + max < total {
        json!(format!(
            "{next_base}?api-version=7.5&$skiptoken={}&maxresults={max}",
            query_encode(&encode_skiptoken(skip + max))
        ))
    } else {
        Value::Null
    };
    json!({"value": value, "nextLink": next})
}

fn list(
    shared: &Arc<Shared>,
    vault_name: &str,
    name: Option<&str>,
    query: &BTreeMap<String, String>,
) -> Resp {
    let (max, skip) = match page_params(query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let state = shared.lock();
    let Some(vault) = state.vaults.get(vault_name) else {
        return key_not_found(name.unwrap_or(""));
    };
    let base = format!("https://{}:443", vault.host());
    match name {
        Some(name) => {
            let items: Vec<Value> = vault
                .keys
                .get(&name.to_ascii_lowercase())
                .map(|e| {
                    e.versions
                        .iter()
                        .map(|v| vault.item(&e.name, v, true))
                        .collect()
                })
                .unwrap_or_default();
            json_response(
                StatusCode::OK,
                &page(items, skip, max, &format!("{base}/keys/{name}/versions")),
            )
        }
        None => {
            let items: Vec<Value> = vault
                .keys
                .values()
                .filter_map(|e| e.latest().map(|v| vault.item(&e.name, v, false)))
                .collect();
            json_response(
                StatusCode::OK,
                &page(items, skip, max, &format!("{base}/keys")),
            )
        }
    }
}

fn list_deleted(shared: &Arc<Shared>, vault_name: &str, query: &BTreeMap<String, String>) -> Resp {
    let (max, skip) = match page_params(query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let state = shared.lock();
    let Some(vault) = state.vaults.get(vault_name) else {
        return key_not_found("");
    };
    let now = Instant::now();
    let items: Vec<Value> = vault
        .deleted
        .values()
        .filter(|d| d.visible_at <= now)
        .filter_map(|d| {
            let v = d.entry.latest()?;
            let mut item = vault.item(&d.entry.name, v, false);
            item["recoveryId"] =
                json!(format!("{}/deletedkeys/{}", vault.base_url(), d.entry.name));
            item["deletedDate"] = json!(d.deleted_date);
            item["scheduledPurgeDate"] = json!(d.scheduled_purge);
            Some(item)
        })
        .collect();
    let base = format!("https://{}:443/deletedkeys", vault.host());
    json_response(StatusCode::OK, &page(items, skip, max, &base))
}

fn update(shared: &Arc<Shared>, vault_name: &str, name: &str, version: &str, body: &Value) -> Resp {
    let ops = match key_ops_of(body.get("key_ops")) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let tags = match tags_of(body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let attrs = body.get("attributes");
    if attrs
        .and_then(|a| a.get("exportable"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return bad_parameter("Exportable keys require a release policy.");
    }
    let mut state = shared.lock();
    let Some(vault) = state.vaults.get_mut(vault_name) else {
        return key_not_found(name);
    };
    let Some(entry) = vault.keys.get_mut(&name.to_ascii_lowercase()) else {
        return key_not_found(name);
    };
    let idx = if version.is_empty() {
        entry.versions.len().checked_sub(1)
    } else {
        let v = version.to_ascii_lowercase();
        entry.versions.iter().position(|x| x.version == v)
    };
    let Some(idx) = idx else {
        return key_not_found(&format!("{name}/{version}"));
    };
    let stored_name = entry.name.clone();
    let Some(v) = entry.versions.get_mut(idx) else {
        return key_not_found(name);
    };
    if let Some(ops) = ops {
        if v.kty.starts_with("EC")
            && let Err(r) = check_ec_ops(&ops)
        {
            return r;
        }
        let was_kek = v.is_kek();
        let is_kek = ops == ["import"];
        if was_kek != is_kek {
            return bad_parameter(
                "Key operation 'import' cannot be added to or removed from an existing key.",
            );
        }
        v.key_ops = ops;
    }
    if let Some(a) = attrs {
        if let Some(e) = a.get("enabled").and_then(Value::as_bool) {
            v.enabled = e;
        }
        if let Some(n) = a.get("nbf") {
            v.nbf = n.as_i64();
        }
        if let Some(e) = a.get("exp") {
            v.exp = e.as_i64();
        }
    }
    if let (Some(n), Some(e)) = (v.nbf, v.exp)
        && e <= n
    {
        return bad_parameter("The key's expiry (exp) must be after its activation (nbf).");
    }
    if let Some(t) = tags {
        v.tags = t;
    }
    v.updated = now_secs();
    let v = v.clone();
    json_response(StatusCode::OK, &vault.bundle(&stored_name, &v))
}

/// Delete every version of a key (shared with the handle's `delete_key_now`).
pub(crate) fn delete_entry(
    vault: &mut Vault,
    name: &str,
    pending: std::time::Duration,
) -> Option<Value> {
    let entry = vault.keys.remove(&name.to_ascii_lowercase())?;
    let latest = entry.latest()?.clone();
    if !vault.opts.recovery_level.soft_delete() {
        return Some(vault.bundle(&entry.name, &latest));
    }
    let now = now_secs();
    let d = DeletedEntry {
        deleted_date: now,
        scheduled_purge: now + i64::from(vault.opts.recoverable_days) * 86_400,
        visible_at: Instant::now() + pending,
        entry,
    };
    let bundle = vault.deleted_bundle(&d);
    vault.deleted.insert(name.to_ascii_lowercase(), d);
    Some(bundle)
}

fn delete(shared: &Arc<Shared>, vault_name: &str, name: &str) -> Resp {
    let mut state = shared.lock();
    let pending = state.delete_pending;
    let Some(vault) = state.vaults.get_mut(vault_name) else {
        return key_not_found(name);
    };
    match delete_entry(vault, name, pending) {
        Some(bundle) => json_response(StatusCode::OK, &bundle),
        None => key_not_found(name),
    }
}

fn get_deleted(shared: &Arc<Shared>, vault_name: &str, name: &str) -> Resp {
    let state = shared.lock();
    let Some(vault) = state.vaults.get(vault_name) else {
        return deleted_not_found(name);
    };
    match vault.deleted.get(&name.to_ascii_lowercase()) {
        Some(d) if d.visible_at <= Instant::now() => {
            json_response(StatusCode::OK, &vault.deleted_bundle(d))
        }
        _ => deleted_not_found(name),
    }
}

fn purge(shared: &Arc<Shared>, vault_name: &str, name: &str) -> Resp {
    let mut state = shared.lock();
    let Some(vault) = state.vaults.get_mut(vault_name) else {
        return deleted_not_found(name);
    };
    let key = name.to_ascii_lowercase();
    let Some(d) = vault.deleted.get(&key) else {
        return deleted_not_found(name);
    };
    if !vault.opts.recovery_level.purge_allowed() {
        return kv_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed.",
            None,
        );
    }
    if d.visible_at > Instant::now() {
        return being_deleted(name);
    }
    vault.deleted.remove(&key);
    empty_response(StatusCode::NO_CONTENT)
}

fn recover(shared: &Arc<Shared>, vault_name: &str, name: &str) -> Resp {
    let mut state = shared.lock();
    let Some(vault) = state.vaults.get_mut(vault_name) else {
        return deleted_not_found(name);
    };
    let key = name.to_ascii_lowercase();
    let Some(d) = vault.deleted.get(&key) else {
        return deleted_not_found(name);
    };
    if d.visible_at > Instant::now() {
        return being_deleted(name);
    }
    let Some(d) = vault.deleted.remove(&key) else {
        return deleted_not_found(name);
    };
    let entry = d.entry;
    let bundle = entry
        .latest()
        .map(|v| vault.bundle(&entry.name, v))
        .unwrap_or(Value::Null);
    vault.keys.insert(key, entry);
    json_response(StatusCode::OK, &bundle)
}
