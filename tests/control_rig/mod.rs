//! The control API test rig: a throw-away PKI (console CA, server, admin/admin2/operator/
//! auditor, an unmapped certificate from the same CA, and one from another CA), a fresh SoftHSM
//! token, and the real `byokd` binary started on a free loopback port. Drives it with `curl`
//! and with the real `byokctl` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

/// Who a client certificate belongs to.
pub const ADMIN: &str = "admin";
pub const ADMIN2: &str = "admin2";
pub const OPERATOR: &str = "operator";
pub const AUDITOR: &str = "auditor";
/// Issued by the console CA but not in `control.identities`.
pub const STRANGER: &str = "stranger";
/// Issued by another CA, with the CN of a mapped admin.
pub const FOREIGN: &str = "foreign";

/// Settings a test may change.
#[derive(Debug, Clone)]
pub struct Options {
    pub approval_window_secs: u64,
    pub max_connections: usize,
    /// `limits.max_connections_per_peer`; `None` writes `max_connections - 1`, since the rig's
    /// tests run all their clients from 127.0.0.1.
    pub max_connections_per_peer: Option<usize>,
    /// `limits.max_long_polls_per_identity`; `None` writes `max_connections - 1`, so tests
    /// that wait on many jobs at once are held by the connection limit only.
    pub max_long_polls_per_identity: Option<usize>,
    /// `limits.handshake_timeout_ms`, when set.
    pub handshake_timeout_ms: Option<u64>,
    /// `limits.auth_failure_window_secs`, when set.
    pub auth_failure_window_secs: Option<u64>,
    pub read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_body_bytes: usize,
    /// Called with the (empty) state directory before the daemon starts, to seed state.
    pub seed_state: Option<fn(&Path)>,
    /// Extra lines inside `[hsm]`.
    pub hsm_extra: String,
    /// Extra whole sections appended to the config (e.g. `[azure]`).
    pub sections: String,
    /// The token's user PIN.
    pub pin: String,
    /// Another PKCS#11 token instead of the rig's SoftHSM one (its environment, e.g.
    /// `KRYOPTIC_CONF`, is inherited from the test process).
    pub token: Option<ExternalToken>,
}

/// An initialised token the daemon should use instead of the rig's SoftHSM token.
#[derive(Debug, Clone)]
pub struct ExternalToken {
    pub module: PathBuf,
    pub label: String,
    pub user_pin: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            approval_window_secs: 120,
            max_connections: 16,
            max_connections_per_peer: None,
            max_long_polls_per_identity: None,
            handshake_timeout_ms: None,
            auth_failure_window_secs: None,
            read_timeout_ms: 2000,
            idle_timeout_ms: 5000,
            max_body_bytes: 8192,
            seed_state: None,
            hsm_extra: String::new(),
            sections: String::new(),
            token: None,
            pin: "1234".into(),
        }
    }
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub unix_socket: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
}

fn module() -> String {
    std::env::var("BYOKD_PKCS11_MODULE").unwrap_or_else(|_| MODULE.to_owned())
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn leaf(cn: &str, issuer: &Issuer<'_, KeyPair>) -> (String, String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn ca(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(p, key))
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with(Options::default())
    }

    pub fn start_with(o: Options) -> Daemon {
        let mut daemon = Self::prepare(o);
        daemon.launch(Path::new(env!("CARGO_BIN_EXE_byokd")));
        daemon
    }

    /// Everything but the process: PKI, token, config, seeded state. Start it with
    /// [`Daemon::launch`].
    pub fn prepare(o: Options) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // PKI.
        let (ca_pem, console) = ca("byokd test console CA");
        write(&d.join("ca.pem"), &ca_pem);
        let server_key = KeyPair::generate().unwrap();
        let mut sp =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        sp.distinguished_name.push(DnType::CommonName, "byokd");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&server_key, &console).unwrap();
        write(&d.join("server.pem"), &server.pem());
        write(&d.join("server.key"), &server_key.serialize_pem());
        let mut admin_fp = String::new();
        for who in [ADMIN, ADMIN2, OPERATOR, AUDITOR, STRANGER] {
            let (cert, key, der) = leaf(who, &console);
            if who == ADMIN {
                admin_fp = sha256_hex(&der);
            }
            write(&d.join(format!("{who}.pem")), &cert);
            write(&d.join(format!("{who}.key")), &key);
        }
        let (_, other) = ca("some other CA");
        let (cert, key, _) = leaf(ADMIN2, &other);
        write(&d.join(format!("{FOREIGN}.pem")), &cert);
        write(&d.join(format!("{FOREIGN}.key")), &key);
        // SoftHSM token.
        std::fs::create_dir_all(d.join("tokens")).unwrap();
        write(
            &d.join("softhsm2.conf"),
            &format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                d.join("tokens").display()
            ),
        );
        let init = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", d.join("softhsm2.conf"))
            .args([
                "--init-token",
                "--free",
                "--label",
                "ctl-test",
                "--pin",
                &o.pin,
                "--so-pin",
                "5678",
            ])
            .output()
            .expect("softhsm2-util (apt-get install softhsm2)");
        assert!(
            init.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let (module, token_label, user_pin) = match &o.token {
            Some(t) => (
                t.module.display().to_string(),
                t.label.clone(),
                t.user_pin.clone(),
            ),
            None => (module(), "ctl-test".to_owned(), o.pin.clone()),
        };
        let pin = d.join("pin");
        write(&pin, &format!("{user_pin}\n"));
        std::fs::set_permissions(&pin, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        // Config.
        let port = free_port();
        let unix_socket = d.join("control.sock");
        let config = d.join("byokd.toml");
        write(
            &config,
            &format!(
                r#"state_dir = "{state}"
designated = true
allow_root = true

[hsm]
module = "{module}"
token_label = "{token_label}"
pin_file = "{pin}"
{hsm_extra}

[control]
listen = "127.0.0.1:{port}"
unix_socket = "{sock}"
server_cert = "{d}/server.pem"
server_key = "{d}/server.key"
client_ca = "{d}/ca.pem"
approval_window_secs = {window}

[[control.identities]]
name = "admin"
role = "admin"
fingerprint = "{admin_fp}"

[[control.identities]]
name = "admin2"
role = "admin"
cn = "admin2"

[[control.identities]]
name = "operator"
role = "operator"
cn = "operator"

[[control.identities]]
name = "auditor"
role = "auditor"
cn = "auditor"

[limits]
max_connections = {maxc}
max_connections_per_peer = {per_peer}
{more_limits}read_timeout_ms = {read}
idle_timeout_ms = {idle}
max_body_bytes = {body}
{sections}
"#,
                state = d.join("state").display(),
                pin = pin.display(),
                sock = unix_socket.display(),
                d = d.display(),
                window = o.approval_window_secs,
                maxc = o.max_connections,
                per_peer = o
                    .max_connections_per_peer
                    .unwrap_or(o.max_connections.saturating_sub(1).max(1)),
                more_limits = {
                    let mut m = String::new();
                    let polls = o
                        .max_long_polls_per_identity
                        .unwrap_or(o.max_connections.saturating_sub(1).max(1));
                    m.push_str(&format!("max_long_polls_per_identity = {polls}\n"));
                    if let Some(n) = o.handshake_timeout_ms {
                        m.push_str(&format!("handshake_timeout_ms = {n}\n"));
                    }
                    if let Some(n) = o.auth_failure_window_secs {
                        m.push_str(&format!("auth_failure_window_secs = {n}\n"));
                    }
                    m
                },
                read = o.read_timeout_ms,
                idle = o.idle_timeout_ms,
                body = o.max_body_bytes,
                hsm_extra = o.hsm_extra,
                sections = o.sections,
            ),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        // byokd refuses a configuration file that others can read (src/system/hardening.rs).
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        if let Some(seed) = o.seed_state {
            std::fs::create_dir_all(d.join("state")).unwrap();
            std::fs::set_permissions(
                d.join("state"),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .unwrap();
            seed(&d.join("state"));
        }
        std::fs::File::create(d.join("byokd.log")).unwrap();
        Daemon {
            dir,
            port,
            unix_socket,
            config,
            child: None,
        }
    }

    /// Starts `binary` as the daemon (its output appended to `byokd.log`) and waits until it
    /// listens.
    pub fn launch(&mut self, binary: &Path) {
        assert!(self.child.is_none(), "the daemon is already running");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path("byokd.log"))
            .unwrap();
        let child = Command::new(binary)
            .args(["--config", self.config.to_str().unwrap(), "run"])
            .env("SOFTHSM2_CONF", self.path("softhsm2.conf"))
            .env("BYOKD_LOG", "info")
            .env("NO_COLOR", "1")
            // As the shipped unit sets it.
            .env("MALLOC_ARENA_MAX", "2")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    /// Starts this build's daemon again on the rig's directory (after [`Daemon::kill9`]).
    pub fn spawn(&mut self) {
        self.launch(Path::new(env!("CARGO_BIN_EXE_byokd")));
    }

    /// Kills the daemon with SIGKILL (no clean-up of any kind) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("byokd exited ({status}) during start-up:\n{}", self.log());
            }
            // The unix socket is bound right after the TCP listener: wait for both.
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.unix_socket.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("byokd did not listen within 30 s:\n{}", self.log());
    }

    /// The daemon's process id, while it runs.
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The PKCS#11 module the daemon loads.
    #[allow(dead_code)]
    pub fn module() -> String {
        module()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("byokd.log")).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// `curl` as `who` (None: no client certificate). Returns (HTTP status, JSON body); status 0
    /// means curl failed before an HTTP answer (e.g. the TLS handshake was refused).
    pub fn curl(
        &self,
        who: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (code, text) = self.curl_raw(who, method, path, body, &[]);
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn curl_raw(
        &self,
        who: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
        extra: &[&str],
    ) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--tlsv1.3", "-X", method])
            .arg("--resolve")
            .arg(format!("localhost:{}:127.0.0.1", self.port))
            .arg("--cacert")
            .arg(self.path("ca.pem"))
            .args(["-w", "\n%{http_code}"]);
        if let Some(who) = who {
            cmd.arg("--cert")
                .arg(self.path(&format!("{who}.pem")))
                .arg("--key")
                .arg(self.path(&format!("{who}.key")));
        }
        // byokd needs a JSON type on every state-changing request, as byokctl sends it; a test
        // that sends another passes its own header.
        let own_type = extra
            .iter()
            .any(|a| a.to_ascii_lowercase().starts_with("content-type:"));
        let changes_state = matches!(method, "POST" | "PUT" | "PATCH" | "DELETE");
        if (body.is_some() || changes_state) && !own_type {
            cmd.args(["-H", "content-type: application/json"]);
        }
        if body.is_some() {
            cmd.args(["--data-binary", "@-"]);
        }
        cmd.args(extra)
            .arg(self.url(path))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("curl");
        if let Some(b) = body {
            child.stdin.take().unwrap().write_all(b.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let (text, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
        (code.trim().parse().unwrap_or(0), text.to_owned())
    }

    /// `byokctl` as `who`, with settings from BYOKCTL_* variables.
    pub fn ctl(&self, who: &str, args: &[&str]) -> Output {
        self.ctl_stdin(who, args, None)
    }

    /// A `byokctl` command as `who`, with settings from BYOKCTL_* variables; the caller sets
    /// its stdio.
    pub fn ctl_command(&self, who: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_byokctl"));
        cmd.args(args)
            .env("BYOKCTL_SERVER", format!("https://localhost:{}", self.port))
            .env("BYOKCTL_CERT", self.path(&format!("{who}.pem")))
            .env("BYOKCTL_KEY", self.path(&format!("{who}.key")))
            .env("BYOKCTL_CA", self.path("ca.pem"))
            .env("BYOKCTL_CONFIG", self.path("no-such-byokctl.toml"))
            .env_remove("BYOKCTL_OUTPUT");
        // An explicit BYOKCTL_CONFIG that does not exist is an error, so point it at an empty file.
        write(&self.path("no-such-byokctl.toml"), "");
        cmd
    }

    pub fn ctl_stdin(&self, who: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.ctl_command(who, args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// `byokctl --output json` as `who`: (exit code, parsed stdout).
    pub fn ctl_json(&self, who: &str, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.ctl(who, &all);
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v)
    }

    /// Adds credential `c1` and group `g1` (EC-P256) as admin.
    pub fn seed(&self) {
        let (s, b) = self.curl(
            Some(ADMIN),
            "POST",
            "/v1/credentials",
            Some(&format!(r#"{{"name":"c1","tenant_id":"{TENANT}","client_id":"{CLIENT}","secret":"s3cr3t-value"}}"#)),
        );
        assert_eq!(s, 201, "{b}");
        let (s, b) = self.curl(
            Some(ADMIN),
            "POST",
            "/v1/groups",
            Some(r#"{"name":"g1","credential":"c1","vault":"contoso-kv","key_type":"EC-P256"}"#),
        );
        assert_eq!(s, 201, "{b}");
    }

    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The error code of an error answer.
pub fn code(v: &Value) -> &str {
    v.pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The field named by an error answer.
pub fn field(v: &Value) -> &str {
    v.pointer("/error/field")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Seeds credential `c1`, group `g1` (EC-P256) and key `g1/pushed`, which has an Azure version,
/// straight into the state (there is no HSM object behind it).
pub fn seed_pushed_key(dir: &Path) {
    use byokd::model::*;
    let (mut store, mut state, _) = byokd::store::Store::open(dir).unwrap();
    let cred = CredentialName::try_from("c1".to_owned()).unwrap();
    state.credentials.insert(
        cred.clone(),
        Credential {
            name: cred.clone(),
            tenant_id: Guid::parse(TENANT).unwrap(),
            client_id: Guid::parse(CLIENT).unwrap(),
            auth: CredentialAuth::Secret {
                sealed: vec![0; 48],
            },
            fingerprint: "00000000".into(),
            created: 1_800_000_000,
            expires: None,
        },
    );
    let group = GroupName::try_from("g1".to_owned()).unwrap();
    let key_type = KeyType::parse("EC-P256", RsaExponent::F4).unwrap();
    state.groups.insert(
        group.clone(),
        KeyGroup {
            name: group.clone(),
            credential: cred,
            target: byokd::model::Target::KeyVault(
                VaultName::try_from("contoso-kv".to_owned()).unwrap(),
            ),
            key_type,
            key_ops: key_type.default_ops(),
            rotation: RotationPolicy::default(),
            last_rotated: None,
            created: 1_800_000_000,
        },
    );
    let name = KeyName::try_from("pushed".to_owned()).unwrap();
    state.keys.insert(
        (group.clone(), name.clone()),
        Key {
            name,
            group,
            hsm_id: HsmKeyId([7; 16]),
            check_digits: "ABCD".into(),
            key_type,
            storage: Storage::Protected,
            created: 1_800_000_000,
            azure_version: Some("0123456789abcdef0123456789abcdef".into()),
        },
    );
    store.commit(&mut state).unwrap();
}

/// The Azure emulator (started on `rt`) with one client-secret app and one vault, for a daemon
/// on the rig's host-wrap SoftHSM token: returns the emulator and the rig options that point
/// byokd at it (its CA written to `ca`).
pub fn emulator_and_options(
    rt: &tokio::runtime::Runtime,
    ca: &Path,
    (tenant, client, secret): (&str, &str, &str),
    vault: &str,
) -> (byokd_emulator::EmulatorHandle, Options) {
    use byokd_emulator::{AppConfig, Emulator, EmulatorConfig, KeyPoolConfig, VaultOptions};
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig {
            ca_out: Some(ca.to_owned()),
            key_pool: KeyPoolConfig {
                rsa2048: 2,
                rsa3072: 0,
                rsa4096: 0,
            },
            delete_pending_ms: 300,
            ..EmulatorConfig::default()
        }))
        .unwrap();
    emu.add_app(AppConfig::with_secret(tenant, client, secret))
        .unwrap();
    emu.add_vault(vault, VaultOptions::default()).unwrap();
    let addr = emu.addr();
    let options = Options {
        hsm_extra: "allow_host_wrap = true\n".into(),
        sections: format!(
            "\n[azure]\ncloud = \"public\"\nextra_ca = [\"{}\"]\nkek_size = 2048\nretry_base_ms = 20\n\n[azure.resolve]\n\"login.microsoftonline.com\" = \"{addr}\"\n\"{vault}.vault.azure.net\" = \"{addr}\"\n",
            ca.display()
        ),
        ..Options::default()
    };
    (emu, options)
}
