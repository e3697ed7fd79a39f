//! The TLS listener, HTTP/1.1 + HTTP/2 (ALPN) serving, host routing, faults and request logging.
//!
//! Routing is by the Host header (HTTP/1.1) or `:authority` (HTTP/2), falling back to SNI.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::config::Cloud;
use crate::entra;
use crate::faults::{self, FaultAction, Op};
use crate::reqlog::{RequestRecord, redact};
use crate::state::Shared;
use crate::tls::ADMIN_HOST;
use crate::util::{Resp, kv_error, now_millis, parse_form};
use crate::vault;

const MAX_BODY: usize = 1 << 20;

/// Accept connections until `shutdown` flips.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((tcp, _peer)) = accepted else {
            continue;
        };
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // Keep a duplicate of the socket so a fault can RST the connection (SO_LINGER 0).
            let Ok(std_tcp) = tcp.into_std() else { return };
            let dup = std_tcp.try_clone().ok();
            let Ok(tcp) = tokio::net::TcpStream::from_std(std_tcp) else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            serve_conn(tcp, dup, acceptor, shared, shutdown).await;
        });
    }
}

async fn serve_conn(
    tcp: tokio::net::TcpStream,
    dup: Option<std::net::TcpStream>,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
    else {
        return;
    };
    let sni = tls.get_ref().1.server_name().map(str::to_ascii_lowercase);
    let kill = Arc::new(Notify::new());
    let svc_kill = Arc::clone(&kill);
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let kill = Arc::clone(&svc_kill);
        let sni = sni.clone();
        async move { Ok::<_, Infallible>(handle(shared, kill, sni, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {
            if let Some(d) = &dup {
                let _ = socket2::SockRef::from(d).set_linger(Some(Duration::ZERO));
            }
        }
        _ = shutdown.changed() => {}
    }
    drop(dup);
}

fn host_of(req: &Request<Incoming>, sni: Option<&str>) -> String {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h).to_owned())
        })
        .or_else(|| sni.map(str::to_owned))
        .unwrap_or_default();
    raw.to_ascii_lowercase()
}

/// Which service a host belongs to.
enum Service {
    Login(Cloud),
    Arm(Cloud),
    Vault(String),
    Admin,
    Unknown,
}

fn service_of(host: &str) -> Service {
    if host == ADMIN_HOST {
        return Service::Admin;
    }
    if let Some(c) = Cloud::from_login_host(host) {
        return Service::Login(c);
    }
    if let Some(c) = Cloud::from_arm_host(host) {
        return Service::Arm(c);
    }
    for c in Cloud::ALL {
        for suffix in [c.vault_suffix(), c.managed_hsm_suffix()] {
            if let Some(name) = host.strip_suffix(&format!(".{suffix}"))
                && !name.contains('.')
            {
                return Service::Vault(host.to_owned());
            }
        }
    }
    Service::Unknown
}

async fn handle(
    shared: Arc<Shared>,
    kill: Arc<Notify>,
    sni: Option<String>,
    req: Request<Incoming>,
) -> Resp {
    let host = host_of(&req, sni.as_deref());
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return kv_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BadParameter",
                "The request body is too large.",
                None,
            );
        }
    };
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let service = service_of(&host);

    if let Service::Admin = service {
        return admin::handle(&shared, &method, &path, query.as_deref(), &body);
    }

    let (op, vroute) = match &service {
        Service::Login(_) => (Op::Token, None),
        Service::Arm(_) => (Op::ArmGetVault, None),
        Service::Vault(_) => match vault::route(&method, &path) {
            Some(r) => (r.op, Some(r)),
            None => (Op::Other, None),
        },
        _ => (Op::Other, None),
    };

    let (rtt, fault) = {
        let mut st = shared.lock();
        let fault = faults::pick(&mut st.faults, op, method.as_str(), &host, &path);
        (st.rtt_delay, fault)
    };
    if !rtt.is_zero() {
        tokio::time::sleep(rtt).await;
    }

    let mut record = RequestRecord {
        seq: 0,
        time_ms: u64::try_from(now_millis()).unwrap_or(u64::MAX),
        method: method.to_string(),
        host: host.clone(),
        path: path.clone(),
        query: query.clone(),
        http_version: format!("{:?}", parts.version),
        op,
        status: 0,
        error_code: None,
        client_id: None,
        tenant: None,
        body: redacted_body(op, &body),
        schema_violation: None,
        client_auth: None,
        fault: fault.as_ref().map(|f| format!("{f:?}")),
    };

    let mut commit_then_reset = false;
    let mut commit_then_hold = None;
    match fault {
        Some(FaultAction::Delay { ms }) => {
            shared.lock().holds += 1;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Some(FaultAction::CommitThenHold { ms }) => commit_then_hold = Some(ms),
        Some(FaultAction::Status { status }) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let resp = kv_error(
                code,
                &code.canonical_reason().unwrap_or("Error").replace(' ', ""),
                "Injected fault.",
                None,
            );
            return finish(&shared, record, resp);
        }
        Some(FaultAction::Throttle) => {
            let header = {
                let mut st = shared.lock();
                st.fault_429s += 1;
                st.throttle.header
            };
            let resp = vault::throttled(header, Duration::from_secs(1));
            return finish(&shared, record, resp);
        }
        Some(FaultAction::Reset) => {
            log(&shared, record);
            kill.notify_one();
            return std::future::pending().await;
        }
        Some(FaultAction::CommitThenReset) => commit_then_reset = true,
        None => {}
    }

    let resp = match service {
        Service::Login(cloud) => {
            let mut meta = entra::TokenMeta::default();
            let ct = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let resp = entra::handle(&shared, cloud, &method, &path, ct, &body, &mut meta);
            record.client_id = meta.client_id;
            record.tenant = meta.tenant;
            record.client_auth = meta.client_auth;
            resp
        }
        Service::Arm(cloud) => {
            let auth = parts
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let (resp, client_id) =
                crate::arm::handle(&shared, cloud, &method, &path, query.as_deref(), auth);
            record.client_id = client_id;
            resp
        }
        Service::Vault(vhost) => {
            let vault_name = vhost.split('.').next().unwrap_or("").to_owned();
            let known = shared
                .lock()
                .vaults
                .get(&vault_name)
                .is_some_and(|v| v.host() == vhost);
            match (vroute, known) {
                (_, false) => kv_error(
                    StatusCode::NOT_FOUND,
                    "VaultNotFound",
                    &format!("The vault {vhost} does not exist."),
                    None,
                ),
                (None, true) => kv_error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    &format!("The operation {method} {path} is not supported by the emulator."),
                    None,
                ),
                (Some(route), true) => {
                    let mut meta = vault::VaultMeta::default();
                    let auth = parts
                        .headers
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    let resp = vault::handle(
                        &shared,
                        &vault_name,
                        &route,
                        query.as_deref(),
                        auth,
                        &body,
                        &mut meta,
                    )
                    .await;
                    record.client_id = meta.client_id;
                    record.tenant = meta.tenant;
                    record.schema_violation = meta.schema_violation;
                    resp
                }
            }
        }
        Service::Admin | Service::Unknown => kv_error(
            StatusCode::MISDIRECTED_REQUEST,
            "MisdirectedRequest",
            &format!("The emulator does not serve host '{host}'."),
            None,
        ),
    };

    if let Some(ms) = commit_then_hold {
        shared.lock().holds += 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if commit_then_reset {
        record.status = resp.status().as_u16();
        log(&shared, record);
        kill.notify_one();
        return std::future::pending().await;
    }
    let mut resp = finish(&shared, record, resp);
    let rid = uuid::Uuid::new_v4().to_string();
    crate::util::set_header(&mut resp, "x-ms-request-id", &rid);
    if let Some(c) = parts
        .headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
    {
        crate::util::set_header(&mut resp, "x-ms-client-request-id", c);
    }
    resp
}

fn redacted_body(op: Op, body: &Bytes) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    if op == Op::Token {
        // Form bodies: keep parameter names and harmless values only.
        let form = std::str::from_utf8(body).ok().and_then(parse_form)?;
        let mut map = serde_json::Map::new();
        for (k, v) in form {
            let v = if ["client_secret", "client_assertion"].contains(&k.as_str()) {
                "<redacted>".to_owned()
            } else {
                v
            };
            map.insert(k, Value::String(v));
        }
        return Some(Value::Object(map));
    }
    let mut v: Value = serde_json::from_slice(body).ok()?;
    redact(&mut v);
    Some(v)
}

fn error_code_of(resp: &Resp) -> Option<String> {
    let bytes = http_body_util::BodyExt::collect(resp.body().clone());
    // Full<Bytes> is immediately ready; poll it synchronously.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut fut = std::pin::pin!(bytes);
    let std::task::Poll::Ready(Ok(c)) = fut.as_mut().poll(&mut cx) else {
        return None;
    };
    let v: Value = serde_json::from_slice(&c.to_bytes()).ok()?;
    match v.get("error")? {
        Value::String(s) => Some(s.clone()),
        e => e.get("code").and_then(Value::as_str).map(str::to_owned),
    }
}

fn finish(shared: &Shared, mut record: RequestRecord, resp: Resp) -> Resp {
    record.status = resp.status().as_u16();
    if !resp.status().is_success() {
        record.error_code = error_code_of(&resp);
    }
    log(shared, record);
    resp
}

use std::future::Future as _;

fn log(shared: &Shared, mut record: RequestRecord) {
    let line = {
        let mut st = shared.lock();
        st.seq += 1;
        record.seq = st.seq;
        let line = serde_json::to_string(&record).ok();
        if st.requests.len() >= st.request_log_cap {
            st.requests.pop_front();
        }
        st.requests.push_back(record);
        line
    };
    if let (Some(file), Some(line)) = (&shared.log_file, line) {
        use std::io::Write as _;
        let mut f = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(f, "{line}");
    }
}
