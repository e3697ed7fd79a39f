//! Test client for the emulator: real TLS (trusting the generated CA), SNI = the real Azure host
//! name, TCP to the emulator's loopback address — the same idea as curl --resolve.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aes_kw::KwpAes256;
use aes_kw::cipher::KeyInit as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use byokd_emulator::{
    AppConfig, Emulator, EmulatorConfig, EmulatorHandle, KeyPoolConfig, ThrottleConfig,
    VaultConfig, VaultOptions,
};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;

pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
pub const SECRET: &str = "s3cr3t~with+special&chars=";
pub const VAULT: &str = "byokd-test";
pub const LOGIN: &str = "login.microsoftonline.com";

pub fn b64(d: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(d)
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// A fast config: small pool, 200 ms delete window, throttling off.
pub fn test_config() -> EmulatorConfig {
    EmulatorConfig {
        key_pool: KeyPoolConfig {
            rsa2048: 3,
            rsa3072: 0,
            rsa4096: 0,
        },
        delete_pending_ms: 200,
        throttling: ThrottleConfig {
            enabled: false,
            ..ThrottleConfig::default()
        },
        apps: vec![AppConfig::with_secret(TENANT, APP, SECRET)],
        vaults: vec![VaultConfig {
            name: VAULT.into(),
            options: VaultOptions::default(),
        }],
        ..EmulatorConfig::default()
    }
}

pub async fn start() -> (EmulatorHandle, Client) {
    start_with(test_config()).await
}

pub async fn start_with(cfg: EmulatorConfig) -> (EmulatorHandle, Client) {
    let emu = Emulator::start(cfg).await.unwrap();
    let client = Client::new(emu.addr(), emu.ca_pem());
    (emu, client)
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
    pub raw: Bytes,
    pub version: http::Version,
}

impl Resp {
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
    pub fn inner(&self) -> Option<&str> {
        self.body["error"]["innererror"]["code"].as_str()
    }
}

#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    tls: TlsConnector,
    h2: TlsConnector,
}

impl Client {
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mk = |alpn: Vec<Vec<u8>>| {
            let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            cfg.alpn_protocols = alpn;
            TlsConnector::from(Arc::new(cfg))
        };
        Client {
            addr,
            tls: mk(vec![b"http/1.1".to_vec()]),
            h2: mk(vec![b"h2".to_vec()]),
        }
    }

    /// One request on a fresh connection. Err on connection reset / TLS failure.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Resp, String> {
        self.send_on(false, method, url, headers, body).await
    }

    pub async fn send_on(
        &self,
        h2: bool,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Resp, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
        let host = uri.host().unwrap().to_owned();
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(host.clone()).unwrap();
        let connector = if h2 { &self.h2 } else { &self.tls };
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(tls);
        let mut builder = http::Request::builder().method(method);
        let req_uri = if h2 {
            uri.to_string()
        } else {
            uri.path_and_query()
                .map(|p| p.to_string())
                .unwrap_or("/".into())
        };
        builder = builder.uri(req_uri);
        if !h2 {
            builder = builder.header("host", host.as_str());
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder.body(Full::new(Bytes::from(body))).unwrap();
        let resp = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("send: {e}"))?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("send: {e}"))?
        };
        let status = resp.status().as_u16();
        let version = resp.version();
        let headers = resp.headers().clone();
        let raw = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            headers,
            body,
            raw,
            version,
        })
    }

    pub async fn token_form(&self, tenant: &str, form: &str) -> Resp {
        self.send(
            "POST",
            &format!("https://{LOGIN}/{tenant}/oauth2/v2.0/token"),
            &[("content-type", "application/x-www-form-urlencoded")],
            form.as_bytes().to_vec(),
        )
        .await
        .unwrap()
    }

    pub async fn token(&self) -> String {
        self.token_for("https://vault.azure.net/.default").await
    }

    /// A client-credentials token for `scope` (e.g. `https://managedhsm.azure.net/.default`).
    pub async fn token_for(&self, scope: &str) -> String {
        let form = format!(
            "grant_type=client_credentials&client_id={APP}&client_secret={}&scope={}",
            enc(SECRET),
            enc(scope)
        );
        let r = self.token_form(TENANT, &form).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["access_token"].as_str().unwrap().to_owned()
    }

    /// A Key Vault call; `path` includes the query.
    pub async fn kv(
        &self,
        method: &str,
        vault: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.kv_try(method, vault, path, token, body).await.unwrap()
    }

    pub async fn kv_try(
        &self,
        method: &str,
        vault: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Resp, String> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.send(
            method,
            &format!("https://{vault}.vault.azure.net{path}"),
            &headers,
            body,
        )
        .await
    }

    pub async fn create_kek(&self, token: &str, vault: &str, name: &str) -> Resp {
        let r = self
            .kv(
                "POST",
                vault,
                &format!("/keys/{name}/create?api-version=7.5"),
                Some(token),
                Some(json!({"kty":"RSA-HSM","key_size":2048,"key_ops":["import"],"attributes":{"exp": now() + 3600}})),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r
    }
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Build key_hsm: RSA-OAEP-SHA1(KEK, aes) || AES-KWP(aes, plaintext), wrapped in the blob JSON.
pub fn key_hsm(kek_kid: &str, kek_n: &[u8], kek_e: &[u8], plaintext: &[u8]) -> String {
    let n = rsa::BoxedUint::from_be_slice_vartime(kek_n);
    let e = rsa::BoxedUint::from_be_slice_vartime(kek_e);
    let kek = rsa::PublicKey::new(n, e).unwrap();
    let aes: [u8; 32] = rand::random();
    let mut ct = kek.oaep_encrypt::<sha1::Sha1>(&aes).unwrap();
    let kwp = KwpAes256::new_from_slice(&aes).unwrap();
    let mut buf = vec![0u8; plaintext.len().div_ceil(8) * 8 + 8];
    let wrapped = kwp.wrap_key(plaintext, &mut buf).unwrap();
    ct.extend_from_slice(wrapped);
    let blob = json!({
        "schema_version": "1.0.0",
        "header": {"kid": kek_kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
        "ciphertext": b64(&ct),
        "generator": "byokd-emulator tests",
    });
    b64(blob.to_string().as_bytes())
}

/// KEK (kid, n, e) from a create response; strips the leading zeros of e ("AAEAAQ").
pub fn kek_parts(r: &Resp) -> (String, Vec<u8>, Vec<u8>) {
    let kid = r.body["key"]["kid"].as_str().unwrap().to_owned();
    let n = unb64(r.body["key"]["n"].as_str().unwrap());
    let mut e = unb64(r.body["key"]["e"].as_str().unwrap());
    while e.first() == Some(&0) {
        e.remove(0);
    }
    (kid, n, e)
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
