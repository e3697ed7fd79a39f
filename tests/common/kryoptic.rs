//! A fresh kryoptic token for each test: a second, RFC 5649-conforming soft token.
//!
//! kryoptic is a PKCS#11 soft token written in Rust whose CKM_AES_KEY_WRAP_KWP is RFC 5649, so
//! byokd's in-HSM `two-step` wrap strategy can be proven on it (SoftHSM 2.6.1's padded wrap is
//! not RFC 5649). It is built as a PKCS#11 module by the crate in `tests/kryoptic-module`:
//! ```text
//! cargo build --release --manifest-path tests/kryoptic-module/Cargo.toml
//! ```
//! The module path comes from `BYOKD_KRYOPTIC_MODULE`, defaulting to that build's output. A
//! missing module fails the test with this build line; it never skips.
//!
//! Like [`super::softhsm::isolated`], [`isolated`] runs the test body in a child process of the
//! test binary, here with `KRYOPTIC_CONF` naming a fresh `kryoptic.conf` (one sqlite slot in a
//! temporary directory). The child initialises the token and user PIN with cryptoki.

use super::softhsm::{SO_PIN, TOKEN_LABEL, USER_PIN};
use byokd::hsm::HsmConfig;
use byokd::secret::Pin;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Where `cargo build --release --manifest-path tests/kryoptic-module/Cargo.toml` puts the module.
pub const DEFAULT_MODULE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/kryoptic-module/target/release/libbyokd_kryoptic_module.so"
);
/// The build command for the module, for failure messages.
pub const BUILD_LINE: &str =
    "cargo build --release --manifest-path tests/kryoptic-module/Cargo.toml";
/// The kryoptic slot the fixture configures.
const SLOT: u64 = 1;
/// Set in the child process that [`isolated`] starts.
const CHILD_MARKER: &str = "BYOKD_KRYOPTIC_CHILD";

/// `$BYOKD_KRYOPTIC_MODULE` or [`DEFAULT_MODULE`]; panics with the build line if it is missing.
pub fn module_path() -> PathBuf {
    let path = std::env::var_os("BYOKD_KRYOPTIC_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODULE));
    assert!(
        path.is_file(),
        "the kryoptic PKCS#11 module {} is missing: build it with `{BUILD_LINE}` (needs clang and \
         libclang-dev; about 3 minutes) or point BYOKD_KRYOPTIC_MODULE at it",
        path.display()
    );
    path
}

/// An initialised kryoptic token with its user PIN set.
#[derive(Debug, Clone)]
pub struct KryopticToken {
    pub module: PathBuf,
    pub label: String,
    pub user_pin: String,
    /// The `kryoptic.conf` (`KRYOPTIC_CONF`).
    pub conf: PathBuf,
}

impl KryopticToken {
    /// An `HsmConfig` for this token (`allow_host_wrap = false`).
    pub fn config(&self) -> HsmConfig {
        HsmConfig {
            module: self.module.clone(),
            token_label: self.label.clone(),
            request_timeout: Duration::from_secs(120),
            allow_host_wrap: false,
            sessions: 0,
        }
    }

    /// The user PIN as byokd's secret type.
    pub fn pin(&self) -> Pin {
        Pin::new(self.user_pin.clone())
    }
}

/// C_InitToken on the configured slot, SO login, C_InitPIN, C_Finalize.
fn init_token(module: PathBuf, conf: PathBuf) -> KryopticToken {
    let pkcs11 = Pkcs11::new(&module).expect("load the kryoptic module");
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize (kryoptic)");
    let slot = pkcs11
        .get_all_slots()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|s| s.id() == SLOT)
        .expect("kryoptic lists the configured slot");
    let so_pin = AuthPin::new(SO_PIN.into());
    pkcs11
        .init_token(slot, &so_pin, TOKEN_LABEL)
        .expect("C_InitToken (kryoptic)");
    {
        let session = pkcs11.open_rw_session(slot).expect("C_OpenSession");
        session
            .login(UserType::So, Some(&so_pin))
            .expect("SO login");
        session
            .init_pin(&AuthPin::new(USER_PIN.into()))
            .expect("C_InitPIN");
    }
    pkcs11.finalize().expect("C_Finalize");
    KryopticToken {
        module,
        label: TOKEN_LABEL.to_owned(),
        user_pin: USER_PIN.to_owned(),
        conf,
    }
}

/// [`isolated`] for a blocking `body`, run on a thread of its own: a rig starts its own tokio
/// runtime, which cannot run on the child's runtime thread.
pub fn isolated_blocking(test_name: &str, body: impl FnOnce(KryopticToken) + Send + 'static) {
    isolated(test_name, |token| async move {
        std::thread::spawn(move || body(token))
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
    });
}

/// Runs `body` in a child process of this test binary with its own kryoptic token (slot 1,
/// sqlite in a temporary directory, labelled [`TOKEN_LABEL`]). `test_name` must be the calling
/// test's function name. Fails, with the build line, when the module is missing.
pub fn isolated<F, Fut>(test_name: &str, body: F)
where
    F: FnOnce(KryopticToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let module = module_path();
    if std::env::var_os(CHILD_MARKER).is_some() {
        let conf = PathBuf::from(
            std::env::var_os("KRYOPTIC_CONF").expect("KRYOPTIC_CONF is set in the child"),
        );
        let token = init_token(module, conf);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio runtime");
        runtime.block_on(body(token));
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("byokd-kryoptic-")
        .tempdir()
        .expect("create a temporary directory");
    let conf = dir.path().join("kryoptic.conf");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = {SLOT}\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            dir.path().join("kryoptic.sql").display()
        ),
    )
    .expect("write kryoptic.conf");
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, "1")
        .env("KRYOPTIC_CONF", &conf)
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "test {test_name} failed in its kryoptic child process ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test named {test_name:?}: pass the test's own function name\n{stdout}"
    );
}
