//! The service log end to end: the real daemon on SoftHSM pushes a key into the Azure
//! emulator while a real `rsyslog` (started here on loopback with UDP, TCP and TLS inputs)
//! receives every record as RFC 5424 with structured data; rsyslog is stopped mid-run and
//! restarted, and the queued records arrive with the drop count right. The same run checks
//! `byokctl log show/export/verify`, the auditor's access, that nothing secret reaches any log
//! output, and renders the documented sample "Azure Service" sequence (docs/service-log.md): push one key, then delete
//! it on the cloud (dual control: one admin asks, a second approves).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod control_rig;

use byokd_emulator::{
    AppConfig, Emulator, EmulatorConfig, KeyPoolConfig, RecoveryLevel, VaultOptions,
};
use control_rig::{ADMIN, ADMIN2, AUDITOR, Daemon, OPERATOR, Options};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b";
const SECRET: &str = "Zx7~logs.KnownSecret-For_Grep-7731";
const PIN: &str = "PinForLogGrep-58213";
const VAULT: &str = "byokd-logs";
const QUEUE: usize = 6;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real rsyslogd with three inputs, each written raw to its own file.
struct Rsyslog {
    dir: PathBuf,
    ports: (u16, u16, u16),
    child: Option<Child>,
}

impl Rsyslog {
    fn start(dir: &Path) -> Rsyslog {
        let dir = dir.to_owned();
        // A test CA and the collector's certificate.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut cap = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        cap.distinguished_name
            .push(rcgen::DnType::CommonName, "syslog test CA");
        cap.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        cap.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = cap.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(cap, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut sp = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        sp.distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = sp.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("syslog-ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("syslog.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("syslog.key"), key.serialize_pem()).unwrap();
        let ports = (free_udp_port(), free_port(), free_port());
        let d = dir.display();
        std::fs::write(
            dir.join("rsyslog.conf"),
            format!(
                r#"global(workDirectory="{d}" DefaultNetstreamDriverCAFile="{d}/syslog-ca.pem" DefaultNetstreamDriverCertFile="{d}/syslog.pem" DefaultNetstreamDriverKeyFile="{d}/syslog.key")
module(load="imudp")
module(load="imptcp")
module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="udp") {{ action(type="omfile" file="{d}/udp.log" template="raw") }}
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.log" template="raw") }}
ruleset(name="tls") {{ action(type="omfile" file="{d}/tls.log" template="raw") }}
input(type="imudp" address="127.0.0.1" port="{}" ruleset="udp")
input(type="imptcp" address="127.0.0.1" port="{}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{}" ruleset="tls")
"#,
                ports.0, ports.1, ports.2
            ),
        )
        .unwrap();
        let mut r = Rsyslog {
            dir,
            ports,
            child: None,
        };
        r.run();
        r
    }

    fn run(&mut self) {
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslog.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslog.err")).unwrap())
            .spawn()
            .expect("rsyslogd (apt-get install rsyslog rsyslog-openssl)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.ports.1)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.ports.2)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "rsyslogd did not listen: {}",
            std::fs::read_to_string(self.dir.join("rsyslog.err")).unwrap_or_default()
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("rsyslog.pid"));
    }

    /// The structured data of every message received on one input, in arrival order.
    fn received(&self, input: &str) -> Vec<Sd> {
        std::fs::read_to_string(self.dir.join(format!("{input}.log")))
            .unwrap_or_default()
            .lines()
            .filter_map(parse_5424)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One received message: its PRI, MSGID and `byokd@32473` parameters.
#[derive(Debug, Clone)]
struct Sd {
    pri: u8,
    msgid: String,
    params: std::collections::BTreeMap<String, String>,
    msg: String,
}

impl Sd {
    fn get(&self, k: &str) -> &str {
        self.params.get(k).map_or("", String::as_str)
    }
    fn seq(&self) -> u64 {
        self.get("seq").parse().unwrap()
    }
}

/// Parses `<PRI>1 TS HOST APP PROCID MSGID [byokd@32473 k="v" ...] MSG`.
fn parse_5424(line: &str) -> Option<Sd> {
    let rest = line.strip_prefix('<')?;
    let (pri, rest) = rest.split_once(">1 ")?;
    let mut parts = rest.splitn(5, ' ');
    let (_ts, _host, app, _pid, msgid) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    assert_eq!(app, "byokd");
    let (msgid, rest) = msgid.split_once(' ')?;
    let rest = rest.strip_prefix("[byokd@32473")?;
    let mut params = std::collections::BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        match chars.next()? {
            ' ' => {}
            ']' => break,
            c => {
                let mut name = c.to_string();
                for c in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    name.push(c);
                }
                assert_eq!(chars.next()?, '"');
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        '\\' => value.push(chars.next()?),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                params.insert(name, value);
            }
        }
    }
    let msg: String = chars.collect();
    Some(Sd {
        pri: pri.parse().ok()?,
        msgid: msgid.to_owned(),
        params,
        msg: msg.trim_start().to_owned(),
    })
}

struct Rig {
    _rt: tokio::runtime::Runtime,
    daemon: Daemon,
    syslog: Rsyslog,
    _dir: tempfile::TempDir,
}

fn start() -> Rig {
    start_with_logs("")
}

/// The rig with extra `[logs]` lines (e.g. `dir = ...`).
fn start_with_logs(extra: &str) -> Rig {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let syslog = Rsyslog::start(dir.path());
    let ca_path = dir.path().join("emulator-ca.pem");
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig {
            ca_out: Some(ca_path.clone()),
            key_pool: KeyPoolConfig {
                rsa2048: 1,
                rsa3072: 0,
                rsa4096: 0,
            },
            delete_pending_ms: 300,
            ..EmulatorConfig::default()
        }))
        .unwrap();
    emu.add_app(AppConfig::with_secret(TENANT, CLIENT, SECRET))
        .unwrap();
    emu.add_vault(
        VAULT,
        VaultOptions {
            recovery_level: RecoveryLevel::RecoverablePurgeable,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let addr = emu.addr();
    let (udp, tcp, tls) = syslog.ports;
    let sections = format!(
        r#"
[azure]
cloud = "public"
extra_ca = ["{ca}"]
kek_size = 2048
retry_base_ms = 20

[azure.resolve]
"login.microsoftonline.com" = "{addr}"
"{VAULT}.vault.azure.net" = "{addr}"

[logs]
fsync_interval_ms = 50
journald = false
{extra}

[[logs.syslog]]
transport = "udp"
address = "127.0.0.1:{udp}"

[[logs.syslog]]
transport = "tcp"
address = "127.0.0.1:{tcp}"
queue = {QUEUE}

[[logs.syslog]]
transport = "tls"
address = "127.0.0.1:{tls}"
server_name = "localhost"
ca_file = "{sca}"
queue = {QUEUE}
"#,
        ca = ca_path.display(),
        sca = dir.path().join("syslog-ca.pem").display(),
    );
    let daemon = Daemon::start_with(Options {
        hsm_extra: "allow_host_wrap = true\n".into(),
        sections,
        pin: PIN.into(),
        ..Options::default()
    });
    std::mem::forget(emu); // the emulator lives as long as the runtime
    Rig {
        _rt: rt,
        daemon,
        syslog,
        _dir: dir,
    }
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn push_one_key(d: &Daemon) {
    let secret_file = d.path("client-secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    ok(
        &d.ctl(
            ADMIN,
            &[
                "credential",
                "add",
                "azure-app",
                "--tenant-id",
                TENANT,
                "--client-id",
                CLIENT,
                "--secret-file",
                secret_file.to_str().unwrap(),
            ],
        ),
        "credential add",
    );
    std::fs::remove_file(&secret_file).unwrap();
    ok(
        &d.ctl(
            ADMIN,
            &[
                "group",
                "create",
                "payments",
                "--credential",
                "azure-app",
                "--vault",
                VAULT,
                "--key-type",
                "EC-P256",
                "--key-ops",
                "sign,verify",
            ],
        ),
        "group create",
    );
    ok(
        &d.ctl(OPERATOR, &["key", "create", "payments", "k1"]),
        "key create",
    );
    ok(
        &d.ctl(OPERATOR, &["key", "sync", "payments", "k1"]),
        "key sync",
    );
}

/// "Delete key material on cloud" for the group, asked by ADMIN and approved by ADMIN2; returns
/// the finished job.
fn delete_on_cloud(d: &Daemon, group: &str) -> Value {
    let (code, pending) = d.ctl_json(ADMIN, &["group", "delete-cloud", group]);
    assert_eq!(code, 0, "delete-cloud: {pending}");
    let approval = pending["approval"]["id"].as_str().unwrap().to_owned();
    let (status, approved) = d.curl(
        Some(ADMIN2),
        "POST",
        &format!("/v1/approvals/{approval}/approve"),
        None,
    );
    assert_eq!(status, 200, "approve: {approved}\n{}", d.log());
    let id = approved["job"]["id"]
        .as_str()
        .expect("approve starts a job");
    let watch = d.ctl(AUDITOR, &["job", "watch", id]);
    let (_, job) = d.ctl_json(AUDITOR, &["job", "show", id]);
    assert_eq!(watch.status.code(), Some(0), "{job}\n{}", d.log());
    assert_eq!(job["state"], "succeeded", "{job}");
    job
}

/// The records `byokctl log show` returns for a query (as the auditor).
fn show(d: &Daemon, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["log", "show", "--limit", "1000"];
    all.extend_from_slice(args);
    let (code, v) = d.ctl_json(AUDITOR, &all);
    assert_eq!(code, 0, "log show {args:?}: {v}");
    v["records"].as_array().unwrap().clone()
}

fn events(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// The Azure Service sequence of one job, as the README shows it: level, event, fields, and
/// the message, with Azure's random version ids replaced by `<version>`.
fn render_sample(records: &[Value]) -> String {
    let mut out = String::new();
    for r in records {
        let mut fields = Vec::new();
        for k in ["job", "group", "key", "vault", "kid", "version", "identity"] {
            if let Some(v) = r.get(k).filter(|v| !v.is_null()) {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                fields.push(format!("{k}={v}"));
            }
        }
        out.push_str(&format!(
            "{:<5} {:<21} {}\n      {}\n",
            r["level"].as_str().unwrap(),
            r["event"].as_str().unwrap(),
            fields.join(" "),
            r["message"].as_str().unwrap()
        ));
    }
    hide_versions(&out)
}

fn hide_versions(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            .count();
        if run == 32 {
            out.push_str("<version>");
            i += run;
        } else if run > 0 {
            out.push_str(&s[i..i + run]);
            i += run;
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn documented_sample() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/service-log.md"))
            .unwrap();
    let begin = "<!-- azure-log-sample:begin -->\n```text\n";
    let end = "```\n<!-- azure-log-sample:end -->";
    let a = readme.find(begin).map(|i| i + begin.len()).unwrap_or(0);
    let b = readme.find(end).unwrap_or(0);
    if a == 0 || b < a {
        return String::new();
    }
    readme[a..b].to_owned()
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if std::fs::read(&p)
            .unwrap_or_default()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            hits.push(p.display().to_string());
        }
    }
    hits
}

/// Makes byokd write one record: an admin sets the designated setting (to what it is). A
/// denial would not do: repeated denials of one identity are counted in a summary.
fn one_record(d: &Daemon) {
    let (status, v) = d.curl(
        Some(ADMIN),
        "PUT",
        "/v1/config/designated",
        Some(r#"{"designated": true}"#),
    );
    assert_eq!(status, 200, "byokd must keep answering: {v}");
}

#[test]
fn a_push_and_a_delete_on_cloud_are_logged_forwarded_to_rsyslog_exported_and_verified_without_secrets()
 {
    let mut rig = start();
    let d = &rig.daemon;
    push_one_key(d);
    let deletion = delete_on_cloud(d, "payments");

    // The Azure Service log of the push, then of the delete on cloud, in order, with its fields.
    let azure = show(d, &["--service", "azure"]);
    let ev = events(&azure);
    let expected = [
        "azure.token.acquired",
        "azure.kek.created",
        "azure.key.imported",
        "azure.kek.deleted",
        "azure.kek.purged",
    ];
    let expected_delete = [
        "azure.token.reused",
        "azure.key.deleted",
        "azure.key.purged",
    ];
    assert_eq!(
        ev,
        [&expected[..], &expected_delete[..]].concat(),
        "{azure:#?}\n{}",
        d.log()
    );
    let (push_records, delete_records) = azure.split_at(expected.len());
    let imported = &azure[2];
    assert_eq!(imported["level"], "INFO");
    assert_eq!(imported["group"], "payments");
    assert_eq!(imported["key"], "k1");
    assert_eq!(imported["vault"], VAULT);
    assert!(
        imported["version"].as_str().unwrap().len() == 32,
        "{imported}"
    );
    assert!(
        imported["kid"]
            .as_str()
            .unwrap()
            .ends_with(imported["version"].as_str().unwrap())
    );
    let job = imported["job"].as_u64().unwrap();
    assert!(push_records.iter().all(|r| r["job"] == job));
    // Every record the push caused, whatever its service, names the officer who started it.
    let push_all = show(d, &["--job", &job.to_string()]);
    assert!(
        events(&push_all).contains(&"hsm.wrap.host".to_owned())
            && events(&push_all).contains(&"jobs.succeeded".to_owned()),
        "{push_all:#?}"
    );
    for r in &push_all {
        assert_eq!(r["identity"], OPERATOR, "{r}");
    }
    // The delete's records: its own job, the group and vault, and both admins as the identity.
    let delete_job: u64 = deletion["id"].as_str().unwrap().parse().unwrap();
    assert_ne!(delete_job, job);
    for r in delete_records {
        assert_eq!(r["job"], delete_job, "{r}");
        assert_eq!(r["group"], "payments", "{r}");
        assert_eq!(r["vault"], VAULT, "{r}");
    }
    // Recorded when the first admin asked (waiting for approval), then run by both.
    for r in show(d, &["--job", &delete_job.to_string()]) {
        let who = if r["event"] == "job.created" {
            "admin"
        } else {
            "admin (approved by admin2)"
        };
        assert_eq!(r["identity"], who, "{r}");
    }
    for r in &delete_records[1..] {
        assert_eq!(r["level"], "INFO", "{r}");
        assert_eq!(r["identity"], "admin (approved by admin2)", "{r}");
        assert!(
            r["kid"]
                .as_str()
                .unwrap()
                .starts_with(&format!("https://{VAULT}.vault.azure.net/keys/payments/")),
            "{r}"
        );
    }
    // Host wrap was used on SoftHSM: a WARN record of the hsm service.
    let hsm = show(d, &["--service", "hsm", "--level", "warn"]);
    assert!(
        events(&hsm).contains(&"hsm.wrap.host".to_owned()),
        "{hsm:#?}"
    );
    // Filters through the CLI: job, text, time.
    assert_eq!(
        events(&show(d, &["--job", &job.to_string(), "--service", "azure"])),
        expected
    );
    assert_eq!(
        events(&show(
            d,
            &["--job", &delete_job.to_string(), "--service", "azure"]
        )),
        expected_delete
    );
    assert_eq!(
        events(&show(d, &["--text", "IMPORTED INTO"])),
        ["azure.key.imported"]
    );
    assert!(show(d, &["--until", "2000-01-01T00:00:00Z"]).is_empty());

    // The documented sample (docs/service-log.md): produced here, compared with the page.
    let sample = render_sample(&azure);
    assert_eq!(
        documented_sample(),
        sample,
        "the Azure Service sample in docs/service-log.md differs; the fresh block is:\n<!-- azure-log-sample:begin -->\n```text\n{sample}```\n<!-- azure-log-sample:end -->"
    );

    // An authorization denial and an authentication failure are recorded (control service).
    let denied = d.ctl(AUDITOR, &["key", "create", "payments", "nope"]);
    assert_eq!(denied.status.code(), Some(3));
    let refused = d.ctl(control_rig::FOREIGN, &["status"]);
    assert_eq!(refused.status.code(), Some(3));
    wait_for("control records", || {
        let c = events(&show(d, &["--service", "control", "--level", "warn"]));
        c.contains(&"control.authz.denied".to_owned())
            && c.contains(&"control.auth.failed".to_owned())
    });
    let denial = show(d, &["--service", "control", "--text", "denied"]);
    assert_eq!(denial[0]["identity"], "auditor", "{denial:#?}");

    // Every record so far reached rsyslog on all three transports, in order, with its data.
    let stored = show(d, &[]);
    let last = stored.last().unwrap()["seq"].as_u64().unwrap();
    for input in ["udp", "tcp", "tls"] {
        wait_for(&format!("{input} delivery"), || {
            rig.syslog
                .received(input)
                .last()
                .is_some_and(|m| m.seq() >= last)
        });
        let got = rig.syslog.received(input);
        let seqs: Vec<u64> = got.iter().map(Sd::seq).collect();
        let want: Vec<u64> = stored.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            &seqs[..want.len()],
            &want[..],
            "{input}: order or completeness"
        );
        for (m, r) in got.iter().zip(&stored) {
            assert_eq!(m.get("event"), r["event"]);
            assert_eq!(m.get("hash"), r["hash"]);
            assert_eq!(m.get("service"), r["service"]);
            assert_eq!(m.msgid, r["seq"].to_string());
            let pri = match r["level"].as_str().unwrap() {
                "INFO" => 3 * 8 + 6,
                "WARN" => 3 * 8 + 4,
                _ => 3 * 8 + 3,
            };
            assert_eq!(m.pri, pri, "{m:?}");
            assert_eq!(m.msg, r["message"].as_str().unwrap().replace('\n', " "));
        }
        let imp = got
            .iter()
            .find(|m| m.get("event") == "azure.key.imported")
            .unwrap();
        assert_eq!(imp.get("key"), "k1");
        assert_eq!(imp.get("vault"), VAULT);
        assert_eq!(imp.get("version"), imported["version"].as_str().unwrap());
        // The delete on cloud's records arrived after the push's, in order, with the identity.
        let cloud: Vec<&Sd> = got
            .iter()
            .filter(|m| m.get("event").starts_with("azure.key."))
            .collect();
        let cloud_events: Vec<&str> = cloud.iter().map(|m| m.get("event")).collect();
        assert_eq!(
            cloud_events,
            [
                "azure.key.imported",
                "azure.key.deleted",
                "azure.key.purged"
            ],
            "{input}"
        );
        for m in &cloud[1..] {
            assert_eq!(m.get("job"), delete_job.to_string(), "{input}: {m:?}");
            assert_eq!(m.get("identity"), "admin (approved by admin2)", "{input}");
        }
    }

    // The collector goes away: byokd goes on, queues QUEUE records per stream collector, and
    // counts the rest as dropped.
    rig.syslog.stop();
    let burst = 20;
    for _ in 0..burst {
        one_record(d);
    }
    let (_, status) = d.ctl_json(AUDITOR, &["status"]);
    let fwd = status["health"]["logs"]["forwarders"]
        .as_array()
        .unwrap()
        .clone();
    for f in &fwd[1..] {
        assert!(f["dropped"].as_u64().unwrap() > 0, "{f}");
        assert_eq!(f["queued"].as_u64().unwrap() as usize, QUEUE, "{f}");
    }
    let status_text = String::from_utf8_lossy(&d.ctl(AUDITOR, &["status"]).stdout).into_owned();
    assert!(status_text.contains("dropped"), "{status_text}");
    rig.syslog.run();
    // One more record after the restart wakes any collector still waiting on back-off.
    one_record(d);
    let stored = show(d, &[]);
    let last = stored.last().unwrap()["seq"].as_u64().unwrap();
    for (i, input) in ["tcp", "tls"].into_iter().enumerate() {
        wait_for(&format!("{input} catch-up"), || {
            rig.syslog.received(input).iter().any(|m| m.seq() >= last)
                && rig
                    .syslog
                    .received(input)
                    .iter()
                    .any(|m| m.get("event") == "log.forward.dropped")
        });
        let (_, status) = d.ctl_json(AUDITOR, &["status"]);
        let f = &status["health"]["logs"]["forwarders"][i + 1];
        let dropped = f["dropped"].as_u64().unwrap();
        let got: std::collections::BTreeSet<u64> =
            rig.syslog.received(input).iter().map(Sd::seq).collect();
        let newest = *got.last().unwrap();
        // Everything stored up to the newest delivered record was either delivered or dropped.
        let missing: Vec<u64> = show(d, &[])
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .filter(|s| *s <= newest && !got.contains(s))
            .collect();
        assert_eq!(
            missing.len() as u64,
            dropped,
            "{input}: {f} missing {missing:?}"
        );
        assert!(dropped >= (burst - QUEUE - 1) as u64, "{input}: {f}");
        // The drops are reported once the backlog is through, by a record of their own.
        let addr = format!("127.0.0.1:{}", [rig.syslog.ports.1, rig.syslog.ports.2][i]);
        let notes: Vec<Sd> = rig
            .syslog
            .received(input)
            .into_iter()
            .filter(|m| m.get("event") == "log.forward.dropped" && m.msg.contains(&addr))
            .collect();
        let reported: u64 = notes
            .iter()
            .map(|n| {
                let (_, tail) = n.msg.split_once("resumed; ").unwrap();
                tail.split(' ').next().unwrap().parse::<u64>().unwrap()
            })
            .sum();
        assert_eq!(reported, dropped, "{input}: {notes:?}");
        let note = &notes[0];
        assert_eq!(note.get("level"), "WARN");
    }

    // Export (CSV and JSONL) as the auditor: atomic, verified, refuses to overwrite.
    let csv = d.path("azure.csv");
    let out = d.ctl(
        AUDITOR,
        &[
            "log",
            "export",
            "--service",
            "azure",
            "--format",
            "csv",
            csv.to_str().unwrap(),
        ],
    );
    ok(&out, "log export");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{} record(s) written", azure.len())),
        "{out:?}"
    );
    let again = d.ctl(
        AUDITOR,
        &[
            "log",
            "export",
            "--service",
            "azure",
            "--format",
            "csv",
            csv.to_str().unwrap(),
        ],
    );
    assert_eq!(again.status.code(), Some(5), "{again:?}");
    ok(
        &d.ctl(
            AUDITOR,
            &[
                "log",
                "export",
                "--format",
                "csv",
                "--force",
                csv.to_str().unwrap(),
            ],
        ),
        "export --force",
    );
    ok(
        &d.ctl(AUDITOR, &["log", "verify", csv.to_str().unwrap()]),
        "verify csv",
    );
    let jsonl = d.path("all.jsonl");
    ok(
        &d.ctl(AUDITOR, &["log", "export", jsonl.to_str().unwrap()]),
        "export jsonl",
    );
    ok(
        &d.ctl(AUDITOR, &["log", "verify", jsonl.to_str().unwrap()]),
        "verify jsonl",
    );
    ok(&d.ctl(AUDITOR, &["log", "verify"]), "verify stored");
    // A tampered export fails with exit 8 and names the record.
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let tampered = text.replacen("azure.kek.purged", "azure.kek.kept", 1);
    let bad = d.path("bad.jsonl");
    std::fs::write(&bad, tampered).unwrap();
    let v = d.ctl(AUDITOR, &["log", "verify", bad.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(8));
    let purged_seq = azure[4]["seq"].as_u64().unwrap();
    assert!(
        String::from_utf8_lossy(&v.stderr).contains(&format!("record {purged_seq}")),
        "{v:?}"
    );

    // Nothing secret anywhere: stored segments, exports, rsyslog's files, byokd's stderr.
    let log_dir = d.path("state/logs");
    assert!(log_dir.is_dir());
    for needle in [SECRET, PIN] {
        for dir in [log_dir.as_path(), rig.syslog.dir.as_path()] {
            let hits = files_containing(dir, needle.as_bytes())
                .into_iter()
                .filter(|h| {
                    !h.ends_with("client-secret.txt")
                        && !h.ends_with("/pin")
                        && !h.ends_with("byokd.toml")
                })
                .collect::<Vec<_>>();
            assert!(hits.is_empty(), "{needle} found in {hits:?}");
        }
        for f in [&csv, &jsonl] {
            assert!(!std::fs::read_to_string(f).unwrap().contains(needle));
        }
        assert!(!d.log().contains(needle), "{needle} in byokd's stderr");
    }

    // Restart: the stored chain still verifies and numbering continues.
    let before = show(d, &[]).last().unwrap()["seq"].as_u64().unwrap();
    let mut d = rig.daemon;
    d.stop();
    let v = byokd::logs::store::verify(&d.path("state/logs")).unwrap();
    assert!(v.ok(), "{v:?}");
    assert!(v.last_seq.unwrap() >= before);
}

/// Unmounts a tmpfs when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "this test mounts a tmpfs and needs root");
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_log_disk_degrades_health_is_reported_by_the_push_and_recovers() {
    let mnt = tempfile::tempdir().unwrap();
    let tiny = mnt.path().join("tiny");
    let _fs = Tmpfs::mount(&tiny, "256k");
    let logs_dir = tiny.join("logs");
    let rig = start_with_logs(&format!("dir = \"{}\"", logs_dir.display()));
    let d = &rig.daemon;
    let (_, health) = d.curl(Some(AUDITOR), "GET", "/v1/health", None);
    assert_eq!(health["degraded"], false, "{health}");
    // Fill the filesystem; byokd's next records cannot be stored.
    let _ = std::fs::write(tiny.join("filler"), vec![0u8; 1024 * 1024]);
    // The segment's last page may still have room for a few records; denials use it up.
    for _ in 0..40 {
        one_record(d);
        if d.curl(Some(AUDITOR), "GET", "/v1/health", None).1["degraded"] == true {
            break;
        }
    }
    push_one_key(d);
    let (_, jobs) = d.ctl_json(OPERATOR, &["job", "list"]);
    let job = &jobs["jobs"][0];
    assert_eq!(
        job["state"], "succeeded",
        "the key operation itself goes on: {job}"
    );
    let steps = job["steps"].to_string();
    assert!(
        steps.contains("the service log could not record this job") && steps.contains("No space"),
        "the push must report the log failure: {steps}"
    );
    let (_, health) = d.curl(Some(AUDITOR), "GET", "/v1/health", None);
    assert_eq!(health["degraded"], true, "{health}");
    let lost = health["logs"]["write"]["lost"].as_u64().unwrap();
    assert!(lost > 0, "{health}");
    let status = String::from_utf8_lossy(&d.ctl(AUDITOR, &["status"]).stdout).into_owned();
    assert!(status.contains("DEGRADED"), "{status}");
    // Space again: the next record is preceded by a record of the loss; health recovers.
    std::fs::remove_file(tiny.join("filler")).unwrap();
    one_record(d);
    let (_, health) = d.curl(Some(AUDITOR), "GET", "/v1/health", None);
    assert_eq!(health["degraded"], false, "{health}");
    let recovered = show(d, &["--service", "system", "--text", "could not be stored"]);
    // A short note may fit where a record did not, so the loss can be told in several notes;
    // together they count every lost record.
    let told: u64 = recovered
        .iter()
        .map(|r| {
            assert_eq!(r["event"], "log.write.recovered");
            let m = r["message"].as_str().unwrap();
            let (_, tail) = m.split_once("again; ").unwrap();
            tail.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(told, lost, "{recovered:#?}");
    ok(
        &d.ctl(AUDITOR, &["log", "verify"]),
        "the chain survives the failure",
    );
}

/// The service log directory of a rig's daemon.
fn log_dir(d: &Daemon) -> PathBuf {
    d.path("state/logs")
}

/// `GET /v1/logs/export` with curl as the auditor into `out`; curl's exit code.
fn curl_export(d: &Daemon, out: &Path) -> i32 {
    Command::new("curl")
        .args(["-sS", "--max-time", "30", "--tlsv1.3"])
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", d.port))
        .arg("--cacert")
        .arg(d.path("ca.pem"))
        .arg("--cert")
        .arg(d.path(&format!("{AUDITOR}.pem")))
        .arg("--key")
        .arg(d.path(&format!("{AUDITOR}.key")))
        .arg("-o")
        .arg(out)
        .arg(d.url("/v1/logs/export"))
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

#[test]
fn an_export_that_fails_part_way_is_cut_off_on_the_wire_and_leaves_no_file() {
    let mut d = Daemon::start_with(Options {
        sections: "[logs]\nmax_segment_bytes = 65536\nmax_total_bytes = 16777216\nfsync_interval_ms = 50\njournald = false\n".into(),
        ..Options::default()
    });
    // A whole export first: complete on the wire, and it verifies.
    let whole = d.path("whole.jsonl");
    assert_eq!(curl_export(&d, &whole), 0);
    ok(
        &d.ctl(AUDITOR, &["log", "verify", whole.to_str().unwrap()]),
        "a whole export verifies",
    );
    // Several segments' worth of records (written while the daemon is stopped, through the
    // store it uses), so the export streams well past its first 64 KiB chunk.
    d.stop();
    let settings = byokd::logs::Settings {
        dir: log_dir(&d),
        limits: byokd::logs::store::Limits {
            max_segment_bytes: 65536,
            max_total_bytes: 16 << 20,
        },
        fsync_interval: Duration::from_millis(50),
        syslog: Vec::new(),
        journald: false,
    };
    let logs = byokd::logs::Logs::open(&settings, byokd::clock::SystemClock::shared()).unwrap();
    for n in 0..900 {
        logs.append(
            byokd::logs::Entry::new(
                byokd::logs::Service::Azure,
                byokd::logs::Level::Info,
                "test.filler",
                format!("filler record {n}: {}", "x".repeat(300)),
            )
            .group("payments"),
        )
        .unwrap();
    }
    logs.sync().unwrap();
    drop(logs);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(log_dir(&d))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 4, "{segments:?}");
    // A read error in a later segment: bytes that are not UTF-8 near its end.
    let victim = &segments[segments.len() - 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() - 20;
    bytes[at] = 0xff;
    std::fs::write(victim, bytes).unwrap();
    d.spawn();

    // On the wire: the answer began (200, records streamed) but does not end cleanly.
    let partial = d.path("partial.jsonl");
    let code = curl_export(&d, &partial);
    assert_ne!(code, 0, "curl must see the download cut off");
    let got = std::fs::read_to_string(&partial).unwrap_or_default();
    assert!(got.len() > 64 * 1024, "only {} bytes arrived", got.len());
    // Kept anyway (as curl does), the partial file is recognised offline as cut off.
    let v = d.ctl(AUDITOR, &["log", "verify", partial.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(8), "{v:?}");
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("cut off"),
        "{v:?}"
    );

    // byokctl: a clear error, and neither the file nor a partial file is left behind.
    let file = d.path("exports/azure.jsonl");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let out = d.ctl(AUDITOR, &["log", "export", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broke off before its end") && err.contains("was not written"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(file.parent().unwrap()).unwrap().count(),
        0,
        "byokctl left a file behind"
    );
    // Reading the log fails openly too (not a shorter list) while the segment is damaged.
    let (code, _) = d.ctl_json(AUDITOR, &["log", "show", "--text", "no record says this"]);
    assert_eq!(code, 7);
    // The daemon recorded why, with who asked (read from the newest segment, which is intact).
    d.stop();
    let newest = std::fs::read_to_string(segments.last().unwrap()).unwrap();
    let failed: Vec<byokd::logs::Record> = newest
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &byokd::logs::Record| r.event == "log.export.failed")
        .collect();
    assert!(!failed.is_empty(), "{}", d.log());
    assert_eq!(failed[0].level, byokd::logs::Level::Error);
    assert_eq!(failed[0].identity.as_deref(), Some(AUDITOR));
    assert!(failed[0].message.contains("aborted part-way"), "{failed:?}");
}

/// Runs byokd the way systemd runs a service whose journal is its own (`LogNamespace=`): in a
/// private mount namespace where the journal's socket sits at its usual path,
/// `/run/systemd/journal/socket`, served by a real `systemd-journald` started here, with
/// `INVOCATION_ID` set. The journal's files land in `dir`.
fn journald_launcher(dir: &Path) -> PathBuf {
    for sub in ["run-systemd", "run-log", "var-journal"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let script = format!(
        r#"#!/bin/sh
exec unshare --mount --propagation private /bin/sh -ec '
mount --bind "$0/run-systemd" /run/systemd
[ -d /run/log ] || mkdir -p /run/log
mount --bind "$0/run-log" /run/log
mount --bind "$0/var-journal" /var/log/journal
/lib/systemd/systemd-journald >"$0/journald.out" 2>&1 &
echo $! >"$0/journald.pid"
n=0
while [ ! -S /run/systemd/journal/socket ]; do
  n=$((n+1)); [ $n -lt 400 ] || {{ echo "systemd-journald did not start" >&2; exit 70; }}
  sleep 0.05
done
export INVOCATION_ID=5f2b9a0c8e0d4f4ba3c1d2e3f4a5b6c7
exec "{byokd}" "$@"
' "{dir}" "$@"
"#,
        byokd = env!("CARGO_BIN_EXE_byokd"),
        dir = dir.display()
    );
    let path = dir.join("byokd-under-journald");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// Every journal file under `dir`.
fn journal_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            journal_files(&p, out);
        } else if p.is_file() && p.extension().is_some_and(|x| x == "journal") {
            out.push(p);
        }
    }
}

/// A journal field as `journalctl -o json` gives it: a string, or an array of bytes for values
/// that are not printable text (a line break, for one).
fn jfield(entry: &Value, name: &str) -> Option<String> {
    match entry.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(bytes) => Some(
            String::from_utf8(
                bytes
                    .iter()
                    .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
                    .collect(),
            )
            .unwrap(),
        ),
        other => panic!("{name}: {other}"),
    }
}

#[test]
fn under_systemd_records_reach_a_real_journald_with_their_fields() {
    let jdir = tempfile::tempdir().unwrap();
    let launcher = journald_launcher(jdir.path());
    let mut d = Daemon::prepare(Options {
        sections: "[logs]\nfsync_interval_ms = 50\njournald = true\n".into(),
        ..Options::default()
    });
    d.launch(&launcher);
    let journald_pid: u32 = std::fs::read_to_string(jdir.path().join("journald.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    struct StopJournald(u32);
    impl Drop for StopJournald {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg(self.0.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{}", self.0)).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let stop_journald = StopJournald(journald_pid);
    let (_, status) = d.ctl_json(AUDITOR, &["status"]);
    assert_eq!(status["health"]["logs"]["journald"], true, "{status}");
    // A denial (WARN, with the identity) and a refused certificate (control.auth.failed).
    let denied = d.ctl(AUDITOR, &["key", "create", "payments", "nope"]);
    assert_eq!(denied.status.code(), Some(3));
    let refused = d.ctl(control_rig::FOREIGN, &["status"]);
    assert_eq!(refused.status.code(), Some(3));
    // A certificate of the console CA that no identity maps (refused, counted with the
    // failed handshakes of its address), and no certificate at all (refused in the
    // handshake): each leaves a record too.
    let stranger = d.ctl(control_rig::STRANGER, &["status"]);
    assert_eq!(stranger.status.code(), Some(3), "{stranger:?}");
    let (no_cert, _) = d.curl_raw(None, "GET", "/v1/health", None, &[]);
    assert_eq!(no_cert, 0, "a client without a certificate gets no answer");
    wait_for("the control records", || {
        let c = show(&d, &["--service", "control"]);
        let count = |ev: &str| c.iter().filter(|r| r["event"] == ev).count();
        count("control.authz.denied") >= 1 && count("control.auth.failed") >= 3
    });
    let control = show(&d, &["--service", "control"]);
    assert!(
        control.iter().any(|r| r["event"] == "control.auth.failed"
            && r["identity"].is_null()
            && r["message"].as_str().unwrap().contains("is not mapped")),
        "{control:#?}"
    );
    wait_for("the control records", || {
        let c = events(&show(&d, &["--service", "control"]));
        c.contains(&"control.authz.denied".to_owned())
            && c.contains(&"control.auth.failed".to_owned())
    });
    let stored = show(&d, &[]);
    // A record with a multi-line message and every optional field, sent by the same code to
    // the same socket (from outside the namespace, through the bind mount): the native
    // protocol's length-prefixed form must reach the journal byte for byte.
    let multi = byokd::logs::Record::seal(
        999_999,
        "2026-01-01T00:00:00.000Z".into(),
        byokd::logs::chain::GENESIS.into(),
        byokd::logs::Entry::new(
            byokd::logs::Service::Azure,
            byokd::logs::Level::Error,
            "test.multiline",
            "first line\nsecond line with = and \u{e9}\n\nafter an empty line",
        )
        .job(42)
        .group("payments")
        .key("k1")
        .vault(VAULT)
        .kid("https://byokd-logs.vault.azure.net/keys/payments/0123")
        .version("0123")
        .identity("operator"),
    );
    let sender =
        byokd::logs::journald::Journald::to(&jdir.path().join("run-systemd/journal/socket"))
            .unwrap();
    sender.send(&multi);
    assert_eq!(sender.failed.load(std::sync::atomic::Ordering::Relaxed), 0);
    d.stop();
    drop(stop_journald); // journald writes everything out when it stops

    let mut files = Vec::new();
    journal_files(jdir.path(), &mut files);
    assert!(
        !files.is_empty(),
        "no journal files under {:?}",
        jdir.path()
    );
    let mut cmd = Command::new("journalctl");
    for f in &files {
        cmd.arg(format!("--file={}", f.display()));
    }
    let out = cmd.args(["-o", "json", "--no-pager"]).output().unwrap();
    assert!(out.status.success(), "{out:?} reading {files:?}");
    let entries: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| jfield(e, "SYSLOG_IDENTIFIER").as_deref() == Some("byokd"))
        .collect();
    let by_seq = |seq: u64| -> &Value {
        let found: Vec<&Value> = entries
            .iter()
            .filter(|e| jfield(e, "BYOKD_SEQ") == Some(seq.to_string()))
            .collect();
        assert_eq!(found.len(), 1, "record {seq} in the journal: {found:?}");
        found[0]
    };
    // Every stored record, with its fields, in order.
    let mut journal_order = Vec::new();
    for r in &stored {
        let seq = r["seq"].as_u64().unwrap();
        let e = by_seq(seq);
        journal_order.push(entries.iter().position(|x| std::ptr::eq(x, e)).unwrap());
        assert_eq!(
            jfield(e, "MESSAGE").as_deref(),
            r["message"].as_str(),
            "{e}"
        );
        let priority = match r["level"].as_str().unwrap() {
            "INFO" => "6",
            "WARN" => "4",
            _ => "3",
        };
        assert_eq!(jfield(e, "PRIORITY").as_deref(), Some(priority), "{e}");
        assert_eq!(jfield(e, "_TRANSPORT").as_deref(), Some("journal"), "{e}");
        assert_eq!(jfield(e, "_COMM").as_deref(), Some("byokd"), "{e}");
        for (field, key) in [
            ("BYOKD_EVENT", "event"),
            ("BYOKD_SERVICE", "service"),
            ("BYOKD_LEVEL", "level"),
            ("BYOKD_TS", "ts"),
            ("BYOKD_HASH", "hash"),
            ("BYOKD_IDENTITY", "identity"),
            ("BYOKD_JOB", "job"),
            ("BYOKD_GROUP", "group"),
            ("BYOKD_VAULT", "vault"),
        ] {
            let want = r
                .get(key)
                .filter(|v| !v.is_null())
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            assert_eq!(jfield(e, field), want, "{field} of {r}");
        }
    }
    assert!(
        journal_order.windows(2).all(|w| w[0] < w[1]),
        "journal order {journal_order:?}"
    );
    let denial = stored
        .iter()
        .find(|r| r["event"] == "control.authz.denied")
        .unwrap();
    let e = by_seq(denial["seq"].as_u64().unwrap());
    assert_eq!(jfield(e, "BYOKD_IDENTITY").as_deref(), Some(AUDITOR));
    assert_eq!(jfield(e, "PRIORITY").as_deref(), Some("4"));
    // The multi-line record, byte for byte, with all its fields.
    let e = by_seq(999_999);
    assert_eq!(jfield(e, "MESSAGE"), Some(multi.message.clone()), "{e}");
    assert_eq!(jfield(e, "PRIORITY").as_deref(), Some("3"));
    assert_eq!(jfield(e, "BYOKD_JOB").as_deref(), Some("42"));
    assert_eq!(jfield(e, "BYOKD_KEY").as_deref(), Some("k1"));
    assert_eq!(jfield(e, "BYOKD_KID"), multi.kid);
    assert_eq!(jfield(e, "BYOKD_VERSION").as_deref(), Some("0123"));
    assert_eq!(jfield(e, "BYOKD_IDENTITY").as_deref(), Some("operator"));
    assert_eq!(jfield(e, "BYOKD_HASH"), Some(multi.hash.clone()));
}
