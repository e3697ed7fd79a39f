//! The admin interface on `admin.emulator.test` (same TLS listener), for shell scripts and the
//! Python benchmark comparator. It needs no token: it exists only on a loopback test listener.
//!
//! Routes:
//! - `GET /_emulator/requests` → request log (JSON array)
//! - `DELETE /_emulator/requests` → clear it
//! - `GET /_emulator/schema-violations`
//! - `GET /_emulator/vaults` → vault names
//! - `POST /_emulator/vaults/{v}` (body: VaultOptions JSON) → add/replace vault
//! - `GET /_emulator/vaults/{v}/keys` → keys (KeyView)
//! - `GET /_emulator/vaults/{v}/keys/{name}` → versions (VersionView)
//! - `GET /_emulator/vaults/{v}/deleted` → deleted keys
//! - `DELETE /_emulator/vaults/{v}/keys/{name}` → delete behind the back
//! - `GET /_emulator/vaults/{v}/counters`
//! - `POST /_emulator/faults` (body: FaultRule JSON), `DELETE /_emulator/faults`
//! - `POST /_emulator/throttling` (body: ThrottleConfig JSON)
//! - `POST /_emulator/apps` (body: AppConfig JSON)
//! - `POST /_emulator/rtt` (body: {"ms": N})

use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{AppConfig, ThrottleConfig, VaultOptions};
use crate::faults::{ActiveRule, FaultRule};
use crate::state::Shared;
use crate::util::{Resp, empty_response, json_response};

fn ok<T: Serialize>(v: &T) -> Resp {
    match serde_json::to_value(v) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn err(status: StatusCode, msg: &str) -> Resp {
    json_response(status, &json!({"error": msg}))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Resp> {
    serde_json::from_slice(body).map_err(|e| err(StatusCode::BAD_REQUEST, &e.to_string()))
}

/// Serve one admin request.
pub(crate) fn handle(
    shared: &Shared,
    method: &Method,
    path: &str,
    _query: Option<&str>,
    body: &[u8],
) -> Resp {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result: Result<Resp, Resp> = (|| {
        Ok(match (method.as_str(), segs.as_slice()) {
            ("GET", ["_emulator", "requests"]) => ok(&shared.lock().requests),
            ("DELETE", ["_emulator", "requests"]) => {
                shared.lock().requests.clear();
                empty_response(StatusCode::NO_CONTENT)
            }
            ("GET", ["_emulator", "schema-violations"]) => {
                let v: Vec<_> = shared
                    .lock()
                    .requests
                    .iter()
                    .filter(|r| r.schema_violation.is_some())
                    .cloned()
                    .collect();
                ok(&v)
            }
            ("GET", ["_emulator", "vaults"]) => {
                let names: Vec<String> = shared.lock().vaults.keys().cloned().collect();
                ok(&names)
            }
            ("POST", ["_emulator", "vaults", v]) => {
                let opts: VaultOptions = if body.is_empty() {
                    VaultOptions::default()
                } else {
                    parse(body)?
                };
                shared
                    .add_vault(v, opts)
                    .map_err(|e| err(StatusCode::BAD_REQUEST, &e.to_string()))?;
                empty_response(StatusCode::NO_CONTENT)
            }
            ("GET", ["_emulator", "vaults", v, "keys"]) => ok(&shared.all_keys(v)),
            ("GET", ["_emulator", "vaults", v, "keys", name]) => ok(&shared.key_versions(v, name)),
            ("DELETE", ["_emulator", "vaults", v, "keys", name]) => {
                shared
                    .delete_key_now(v, name)
                    .map_err(|e| err(StatusCode::NOT_FOUND, &e.to_string()))?;
                empty_response(StatusCode::NO_CONTENT)
            }
            ("GET", ["_emulator", "vaults", v, "deleted"]) => ok(&shared.deleted_keys(v)),
            ("GET", ["_emulator", "vaults", v, "counters"]) => {
                let c = shared
                    .lock()
                    .vaults
                    .get(&v.to_ascii_lowercase())
                    .map(|x| x.counters)
                    .unwrap_or_default();
                ok(&c)
            }
            ("POST", ["_emulator", "faults"]) => {
                let rule: FaultRule = parse(body)?;
                shared.lock().faults.push(ActiveRule::new(rule));
                empty_response(StatusCode::NO_CONTENT)
            }
            ("DELETE", ["_emulator", "faults"]) => {
                shared.lock().faults.clear();
                empty_response(StatusCode::NO_CONTENT)
            }
            ("POST", ["_emulator", "throttling"]) => {
                let cfg: ThrottleConfig = parse(body)?;
                shared.lock().throttle = cfg;
                empty_response(StatusCode::NO_CONTENT)
            }
            ("POST", ["_emulator", "apps"]) => {
                let app: AppConfig = parse(body)?;
                shared.lock().apps.push(app);
                empty_response(StatusCode::NO_CONTENT)
            }
            ("POST", ["_emulator", "rtt"]) => {
                let v: Value = parse(body)?;
                let ms = v.get("ms").and_then(Value::as_u64).unwrap_or(0);
                shared.lock().rtt_delay = std::time::Duration::from_millis(ms);
                empty_response(StatusCode::NO_CONTENT)
            }
            _ => err(StatusCode::NOT_FOUND, "no such admin route"),
        })
    })();
    result.unwrap_or_else(|e| e)
}
