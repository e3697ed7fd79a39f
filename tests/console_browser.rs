//! The web console (`/ui/`): its headers on every answer and its refusal of callers without a
//! mapped client certificate (curl), then the console itself in Debian's Chromium driven by
//! playwright-core (`tests/browser/run.mjs`), against the real daemon on a SoftHSM token and
//! the Azure emulator over real TLS: the seed workflow end to end, dual control across two
//! browser contexts with two admins' certificates (Delete on Cloud Service, Purge of a key
//! deleted behind byokd's back, and a .byok export imported into the emulator and recorded in the
//! console), every menu, the auditor's read-only console,
//! a cross-origin page that must not drive the API, and the screenshots of `docs/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod control_rig;
mod emulator_rig;

use byokd_emulator::RecoveryLevel;
use control_rig::{ADMIN, ADMIN2, AUDITOR, Daemon, OPERATOR, Options, STRANGER};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "5d1c8e2a-3b4f-4a6e-9c7d-8e9f0a1b2c3d";
const SECRET: &str = "Zx7~console.Uploaded-Secret_0042";
const VAULT: &str = "console-kv";
/// A Managed HSM pool of the emulator.
const POOL: &str = "console-mhsm";
/// Keys seeded into group `bulk` for the keys-table benchmark.
const BULK_KEYS: usize = 10_000;

/// The screens the browser test photographs.
const SCREENSHOTS: &[&str] = &[
    "credentials",
    "keys",
    "approvals",
    "jobs",
    "logs",
    "administration",
    "admin-auditor",
    "front-panel-keys",
];

/// The headers every console answer must carry, with the exact values.
const HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-embedder-policy", "require-corp"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
];

/// The response headers of a curl `-D -` dump, lower-cased names.
fn headers_of(dump: &str) -> Vec<(String, String)> {
    dump.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

fn status_of(dump: &str) -> u16 {
    dump.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// GET `path` as `who` with extra curl arguments: (status, headers, body).
fn fetch(
    d: &Daemon,
    who: Option<&str>,
    path: &str,
    extra: &[&str],
) -> (u16, Vec<(String, String)>, String) {
    let dump = d.path("headers.txt");
    let mut args = vec!["-D", dump.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, body) = d.curl_raw(who, "GET", path, None, &args);
    let text = std::fs::read_to_string(&dump).unwrap_or_default();
    let _ = std::fs::remove_file(&dump);
    assert!(code == 0 || status_of(&text) == code, "{text}");
    (code, headers_of(&text), body)
}

fn assert_console_headers(what: &str, headers: &[(String, String)]) {
    for (name, value) in HEADERS {
        let got: Vec<&str> = headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(got, [*value], "{what}: header {name}");
    }
    let csp = headers
        .iter()
        .find(|(k, _)| k == "content-security-policy")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{what}: CSP {csp:?} lacks {part}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert!(
        !headers
            .iter()
            .any(|(k, _)| k.starts_with("access-control-")),
        "{what}: a CORS header"
    );
}

/// The daemon binary: this build's, or `BYOKD_TEST_DAEMON` (for a checkout whose target
/// directory other checkouts build into as well).
fn start(o: Options) -> Daemon {
    let binary = std::env::var_os("BYOKD_TEST_DAEMON")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_byokd")), PathBuf::from);
    let mut d = Daemon::prepare(o);
    d.launch(&binary);
    d
}

#[test]
fn every_console_answer_carries_the_headers_and_needs_a_mapped_certificate() {
    let d = start(Options::default());
    for asset in byokd::control::ui::ASSETS {
        let (status, headers, body) = fetch(&d, Some(AUDITOR), asset.path, &[]);
        assert_eq!(status, 200, "{}", asset.path);
        assert_console_headers(asset.path, &headers);
        let ct = headers.iter().find(|(k, _)| k == "content-type").unwrap();
        assert_eq!(ct.1, asset.content_type, "{}", asset.path);
        assert_eq!(
            body.as_bytes(),
            asset.body,
            "{} is served as compiled in",
            asset.path
        );
    }
    // The page loads its code from the daemon only, as modules.
    let (_, _, page) = fetch(&d, Some(ADMIN), "/ui/", &[]);
    assert!(
        page.contains(r#"<script type="module" src="app.js"></script>"#),
        "{page}"
    );
    // Errors, redirects and refusals under /ui carry the same headers.
    for (path, extra, want) in [
        ("/ui/no-such-file.js", &[][..], 404),
        ("/ui", &[][..], 308),
        (
            "/ui/",
            &["-X", "POST", "-H", "content-type: application/json"][..],
            405,
        ),
        ("/ui/", &["-H", "sec-fetch-site: cross-site"][..], 403),
        (
            "/ui/app.js",
            &["-H", "origin: https://evil.example"][..],
            403,
        ),
    ] {
        let (status, headers, _) = fetch(&d, Some(OPERATOR), path, extra);
        assert_eq!(status, want, "{path} {extra:?}");
        assert_console_headers(path, &headers);
    }
    let (_, headers, _) = fetch(&d, Some(OPERATOR), "/ui", &[]);
    assert!(headers.contains(&("location".into(), "/ui/".into())));
    // The front panel's unix socket serves the same console, under the same TLS.
    let dump = d.path("unix-headers.txt");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--tlsv1.3", "-D"])
        .arg(&dump)
        .arg("--unix-socket")
        .arg(&d.unix_socket)
        .arg("--cacert")
        .arg(d.path("ca.pem"))
        .arg("--cert")
        .arg(d.path(&format!("{ADMIN}.pem")))
        .arg("--key")
        .arg(d.path(&format!("{ADMIN}.key")))
        .arg("https://localhost/ui/app.js")
        .output()
        .unwrap();
    let dumped = std::fs::read_to_string(&dump).unwrap_or_default();
    assert_eq!(status_of(&dumped), 200, "{dumped}");
    assert_console_headers("/ui/app.js on the unix socket", &headers_of(&dumped));
    let app = byokd::control::ui::ASSETS
        .iter()
        .find(|a| a.path == "/ui/app.js")
        .unwrap();
    assert_eq!(out.stdout, app.body);
    // Without a client certificate there is no TLS session, so no page at all.
    let (status, _, body) = fetch(&d, None, "/ui/", &[]);
    assert_eq!((status, body.contains("<html")), (0, false));
    // A certificate of the console CA that maps to no identity gets no page either.
    let (status, headers, body) = fetch(&d, Some(STRANGER), "/ui/", &[]);
    assert_eq!(status, 403);
    assert!(!body.contains("<html"), "{body}");
    assert_console_headers("/ui/ for an unmapped certificate", &headers);
}

/// Seeds the rig's credential `c1` and group `g1` (see [`control_rig::seed_pushed_key`]) and
/// [`BULK_KEYS`] more keys in `g1`: records only, for the keys table's benchmark (no HSM object
/// is behind them, and none is ever used).
fn seed_bulk(dir: &Path) {
    use byokd::model::*;
    control_rig::seed_pushed_key(dir);
    let (mut store, mut state, _) = byokd::store::Store::open(dir).unwrap();
    let group = GroupName::try_from("g1".to_owned()).unwrap();
    let template = state.keys_in(&group).unwrap().remove(0);
    for i in 0..BULK_KEYS {
        let name = KeyName::try_from(format!("bulk-{i:05}")).unwrap();
        let mut key = template.clone();
        key.name = name.clone();
        key.hsm_id.0[..8].copy_from_slice(&(i as u64).to_be_bytes());
        key.created += i as i64;
        key.azure_version = (i % 3 == 0).then(|| format!("{i:032x}").into());
        state.keys.insert((group.clone(), name), key).unwrap();
    }
    store.commit(&mut state).unwrap();
}

/// The KEK of the browser's offline export: an RSA 2048 key made with openssl and registered in
/// the emulator's vault as `kek-offline` (as `az keyvault key create --ops import` makes one), so
/// that the exported file imports there; the browser test unwraps the file with its private key
/// too. Returns the private key's PEM file and the KEK's versioned kid.
fn offline_kek(azure: &emulator_rig::EmulatorRig, dir: &Path) -> (PathBuf, String) {
    let key = dir.join("kek-offline.key");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        out.stdout
    };
    let file = key.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        file,
    ]);
    let der = openssl(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", file, "-outform", "DER",
    ]);
    let kek = azure
        .emu
        .add_kek_from_pkcs8(VAULT, "kek-offline", &der)
        .unwrap();
    let kid = format!(
        "https://{VAULT}.vault.azure.net/keys/kek-offline/{}",
        kek.version
    );
    (key, kid)
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `npm ci` in tests/browser when its modules are not there yet (never a browser download).
fn npm_ci() {
    let dir = browser_dir();
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .expect("npm (Node 18 or later) runs the console's browser tests");
    assert!(
        out.status.success(),
        "npm ci in tests/browser: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_console_works_in_chromium() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the console's browser tests need Debian's chromium: apt-get install chromium"
    );
    npm_ci();
    let azure = emulator_rig::start(
        (TENANT, CLIENT, SECRET),
        &[(VAULT, RecoveryLevel::RecoverablePurgeable)],
        300,
    );
    let pool = azure.add_managed_hsm(POOL, RecoveryLevel::RecoverablePurgeable);
    let sections = azure.sections(
        &[VAULT],
        "",
        &format!("{pool}[lifecycle]\ngrace_days = 0\ndrift_check_hours = 0\n"),
    );
    let d = start(Options {
        hsm_extra: "allow_host_wrap = true\n".into(),
        sections,
        seed_state: Some(seed_bulk),
        max_connections: 64,
        idle_timeout_ms: 30_000,
        read_timeout_ms: 5_000,
        ..Options::default()
    });
    let out_dir = d.path("browser-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let secret_file = d.path("client-secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let (kek_key, kek_kid) = offline_kek(&azure, &out_dir);
    // The screenshots go to the target directory; BYOKD_UPDATE_SCREENSHOTS=1 writes them over
    // the README's, in docs/screenshots.
    let shots = if std::env::var_os("BYOKD_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
    };
    std::fs::create_dir_all(&shots).unwrap();
    let run = Command::new("node")
        .arg("run.mjs")
        .current_dir(browser_dir())
        .env("BYOKD_URL", format!("https://localhost:{}", d.port))
        .env("BYOKD_CERTS", d.dir.path())
        .env("BYOKD_OUT", &out_dir)
        .env("BYOKD_SCREENSHOTS", &shots)
        .env("BYOKD_SECRET_FILE", &secret_file)
        .env("BYOKD_TENANT", TENANT)
        .env("BYOKD_CLIENT", CLIENT)
        .env("BYOKD_VAULT", VAULT)
        .env("BYOKD_POOL", POOL)
        .env("BYOKD_BULK_KEYS", BULK_KEYS.to_string())
        // The offline export's KEK, in the emulator's vault (the import of the file needs it).
        .env("BYOKD_KEK_KEY", &kek_key)
        .env("BYOKD_KEK_KID", &kek_kid)
        // The emulator's admin interface, where the purge test deletes a key behind byokd's back.
        .env("BYOKD_EMULATOR", azure.emu.addr().to_string())
        .env("BYOKD_EMULATOR_CA", &azure.ca_path)
        // Playwright's own TLS client (which presents the client certificate) trusts the
        // rig's console CA, and nothing is fetched from anywhere else.
        .env("NODE_EXTRA_CA_CERTS", d.path("ca.pem"))
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .expect("node runs tests/browser/run.mjs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}\n--- daemon log ---\n{}",
        tail(&d.log(), 60)
    );
    // The main screens were photographed (the README and docs/console.md show them).
    for name in SCREENSHOTS {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG"),
            "no screenshot {name}.png in {}",
            shots.display()
        );
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("docs/screenshots/{name}.png"))
                .exists(),
            "docs/screenshots/{name}.png is not committed (BYOKD_UPDATE_SCREENSHOTS=1 writes it)"
        );
    }
    // What the browser did, checked on the daemon's side.
    let (_, jobs) = d.curl(Some(AUDITOR), "GET", "/v1/jobs", None);
    let kinds: Vec<(&str, &str)> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["kind"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    for kind in ["sync", "rotate", "delete-cloud", "purge"] {
        assert!(
            kinds.contains(&(kind, "succeeded")),
            "no succeeded {kind} job: {kinds:?}"
        );
    }
    let (_, approvals) = d.curl(Some(AUDITOR), "GET", "/v1/approvals?status=approved", None);
    for kind in ["delete_group_cloud", "purge_group_cloud"] {
        let a = approvals["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["action"]["kind"] == kind)
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(
            (a["requested_by"].as_str(), a["decided_by"].as_str()),
            (Some(ADMIN), Some(ADMIN2)),
            "{kind}: {approvals}"
        );
    }
    // The purge the browser asked for left no deleted key of group ledger in Azure, and the
    // service log says who purged it.
    let deleted = azure.emu.deleted_keys(VAULT);
    assert!(
        deleted.iter().all(|k| k.name != "ledger"),
        "ledger's Azure key is still deleted, not purged: {:?}",
        deleted.iter().map(|k| &k.name).collect::<Vec<_>>()
    );
    let (_, logs) = d.curl(
        Some(AUDITOR),
        "GET",
        "/v1/logs?service=azure&group=ledger&limit=1000",
        None,
    );
    let purged = logs["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["event"] == "azure.key.purged" && r["group"] == "ledger");
    assert!(purged, "no azure.key.purged record of group ledger: {logs}");
    // The import the browser recorded is in the service log, by the admin who recorded it.
    let (_, logs) = d.curl(
        Some(AUDITOR),
        "GET",
        "/v1/logs?group=ledger&limit=1000",
        None,
    );
    let recorded =
        logs["records"].as_array().unwrap().iter().any(|r| {
            r["event"] == "key.import_recorded" && r["identity"] == ADMIN && r["key"] == "l1"
        });
    assert!(
        recorded,
        "no key.import_recorded record of ledger/l1 by admin: {logs}"
    );
    // The uploaded secret never reached the log, and the export the browser saved verifies.
    assert!(
        !d.log().contains(SECRET),
        "the uploaded secret reached the daemon's output"
    );
    for format in ["jsonl", "csv"] {
        let file = out_dir.join(format!("byokd-log.{format}"));
        assert!(file.exists(), "the browser saved no {format} export");
        let out = d.ctl(AUDITOR, &["log", "verify", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "byokctl log verify {format}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!std::fs::read_to_string(&file).unwrap().contains(SECRET));
    }
    drop(azure);
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
