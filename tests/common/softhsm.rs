//! A fresh SoftHSMv2 token for each test, with no fakes.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, at C_Initialize, and keeps its state per process. Setting
//! an environment variable in-process is `unsafe` in Rust 2024 (and this workspace forbids
//! `unsafe`), and parallel tests would share one library state anyway. So each test runs its
//! body in **its own child process**: the test binary re-runs itself for just that test, with
//! `SOFTHSM2_CONF` pointing at a fresh temporary token directory. Inside the child, a token is
//! initialised the way the cryptoki crate's own tests do it: `C_InitToken` on the free slot,
//! SO login, `C_InitPIN`.
//!
//! Two entry points:
//! - [`isolated`]: for tests that drive `byokd::hsm` in-process. Call it as the whole test body:
//!   ```ignore
//!   #[test]
//!   fn sealing_round_trips() {
//!       softhsm::isolated("sealing_round_trips", |token| async move {
//!           let (hsm, _) = Hsm::start(&token.config(), token.pin()).unwrap();
//!           // ...
//!       });
//!   }
//!   ```
//!   The first argument must be the test function's name (the child runs it with `--exact`); a
//!   mismatch fails loudly instead of silently passing.
//! - [`SoftHsmDir::new`] + [`SoftHsmDir::init_token`]: for tests that start the `byokd` binary as
//!   a child process. The token is initialised with `softhsm2-util` in a child process; give the
//!   daemon `SOFTHSM2_CONF` from [`SoftHsmDir::conf`] with `Command::env`, and reuse the same dir
//!   across daemon restarts.
//!
//! The module path comes from `BYOKD_PKCS11_MODULE`, defaulting to Debian's SoftHSM.

use byokd::hsm::HsmConfig;
use byokd::secret::Pin;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Debian's SoftHSMv2 module.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN every fixture token gets.
pub const USER_PIN: &str = "fixture-user-1234";
/// The security officer PIN every fixture token gets.
pub const SO_PIN: &str = "fixture-so-5678";
/// The token label [`isolated`] uses.
pub const TOKEN_LABEL: &str = "byokd-test";

/// Set in the child process that [`isolated`] starts.
const CHILD_MARKER: &str = "BYOKD_SOFTHSM_CHILD";

/// The PKCS#11 module under test: `$BYOKD_PKCS11_MODULE` or [`DEFAULT_MODULE`].
pub fn module_path() -> PathBuf {
    std::env::var_os("BYOKD_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODULE))
}

/// A temporary SoftHSM token directory and the `softhsm2.conf` that points at it. Removed on drop.
pub struct SoftHsmDir {
    root: Option<tempfile::TempDir>,
    /// The `softhsm2.conf`: pass it to a child as `SOFTHSM2_CONF`.
    pub conf: PathBuf,
    /// `directories.tokendir`: one sub-directory per token.
    pub token_dir: PathBuf,
    /// The PKCS#11 module path.
    pub module: PathBuf,
}

impl SoftHsmDir {
    /// Creates `<tmp>/tokens` and `<tmp>/softhsm2.conf` (file backend, log level ERROR).
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("byokd-softhsm-")
            .tempdir()
            .expect("create a temporary directory");
        let token_dir = root.path().join("tokens");
        std::fs::create_dir(&token_dir).expect("create the token directory");
        let conf = root.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                token_dir.display()
            ),
        )
        .expect("write softhsm2.conf");
        Self {
            root: Some(root),
            conf,
            token_dir,
            module: module_path(),
        }
    }

    /// The directory that `SOFTHSM2_CONF` of the current process names; not removed on drop.
    fn from_current_env() -> Self {
        let conf = PathBuf::from(
            std::env::var_os("SOFTHSM2_CONF").expect("SOFTHSM2_CONF is set in the child"),
        );
        let root = conf
            .parent()
            .expect("the conf has a parent directory")
            .to_owned();
        Self {
            root: None,
            token_dir: root.join("tokens"),
            conf,
            module: module_path(),
        }
    }

    /// The temporary root (holds `softhsm2.conf` and `tokens/`).
    pub fn root(&self) -> &Path {
        self.conf.parent().unwrap_or(Path::new("/"))
    }

    /// Initialises a new token labelled `label` on the free slot with `softhsm2-util`, run as a
    /// child with this directory's `SOFTHSM2_CONF`. For tests whose HSM user is another process
    /// (the `byokd` binary); a process that already initialised SoftHSM will not see the token
    /// until it re-initialises.
    pub fn init_token(&self, label: &str) -> SoftHsmToken {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &self.conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                USER_PIN,
            ])
            .output()
            .expect("run softhsm2-util (package softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.token(label)
    }

    /// Initialises a new token labelled `label` in this process with cryptoki, as the cryptoki
    /// crate's tests do: C_InitToken on the free slot, SO login, C_InitPIN, then C_Finalize.
    /// Only valid where `SOFTHSM2_CONF` of this process is this directory's (inside [`isolated`]).
    fn init_token_in_process(&self, label: &str) -> SoftHsmToken {
        let pkcs11 = Pkcs11::new(&self.module).expect("load the PKCS#11 module");
        pkcs11
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("C_Initialize");
        let free = pkcs11
            .get_slots_with_token()
            .expect("C_GetSlotList")
            .into_iter()
            .find(|slot| {
                pkcs11
                    .get_token_info(*slot)
                    .is_ok_and(|i| !i.token_initialized())
            })
            .expect("SoftHSM always offers one uninitialised slot");
        let so_pin = AuthPin::new(SO_PIN.into());
        pkcs11
            .init_token(free, &so_pin, label)
            .expect("C_InitToken");
        // SoftHSM moves a freshly initialised token to a new slot id: find it by label.
        let slot = pkcs11
            .get_slots_with_initialized_token()
            .expect("C_GetSlotList")
            .into_iter()
            .find(|slot| {
                pkcs11
                    .get_token_info(*slot)
                    .is_ok_and(|i| i.label().trim() == label)
            })
            .expect("the new token is listed");
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
        self.token(label)
    }

    fn token(&self, label: &str) -> SoftHsmToken {
        SoftHsmToken {
            module: self.module.clone(),
            label: label.to_owned(),
            user_pin: USER_PIN.to_owned(),
            so_pin: SO_PIN.to_owned(),
            token_dir: self.token_dir.clone(),
            conf: self.conf.clone(),
        }
    }
}

impl Default for SoftHsmDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SoftHsmDir {
    fn drop(&mut self) {
        drop(self.root.take());
    }
}

/// An initialised token with its user PIN set.
#[derive(Debug, Clone)]
pub struct SoftHsmToken {
    pub module: PathBuf,
    pub label: String,
    pub user_pin: String,
    pub so_pin: String,
    pub token_dir: PathBuf,
    pub conf: PathBuf,
}

impl SoftHsmToken {
    /// An `HsmConfig` for this token with a generous time-out (RSA-4096 generation is slow).
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

/// Runs `body` in a child process of this test binary that has its own SoftHSM token directory
/// (`SOFTHSM2_CONF`) and a fresh token labelled [`TOKEN_LABEL`]. `test_name` must be the calling
/// test's function name. The child's output is shown if it fails.
pub fn isolated<F, Fut>(test_name: &str, body: F)
where
    F: FnOnce(SoftHsmToken) -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var_os(CHILD_MARKER).is_some() {
        let dir = SoftHsmDir::from_current_env();
        let token = dir.init_token_in_process(TOKEN_LABEL);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio runtime");
        runtime.block_on(body(token));
        return;
    }
    let dir = SoftHsmDir::new();
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, "1")
        .env("SOFTHSM2_CONF", &dir.conf)
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "test {test_name} failed in its SoftHSM child process ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test named {test_name:?}: pass the test's own function name\n{stdout}"
    );
}
