//! Loading and initialising the PKCS#11 module, shared correctly within one process.
//!
//! Owns: C_Initialize and C_Finalize. A PKCS#11 library is process-global: loading the same path
//! twice yields the same library state, and C_Finalize ends every user's sessions. So each `Hsm`
//! holds a `Module` guard; the first guard for a path initialises the library, the last one to
//! drop finalises it (after the worker has closed its sessions). A restart inside one process
//! (tests) therefore really re-reads the token.
//! Must never: finalise while another guard for the same module is alive.

use super::HsmError;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error, RvError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

static LIVE: Mutex<Option<HashMap<PathBuf, usize>>> = Mutex::new(None);

fn live() -> MutexGuard<'static, Option<HashMap<PathBuf, usize>>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An initialised PKCS#11 module. Dropping the last guard for a path calls C_Finalize.
pub(crate) struct Module {
    pkcs11: Pkcs11,
    path: PathBuf,
}

impl Module {
    /// Loads the module at `path` and initialises it (once per process).
    pub(crate) fn load(path: &Path) -> Result<Self, HsmError> {
        if !path.is_file() {
            return Err(HsmError::ModuleNotLoadable {
                path: path.to_owned(),
                cause: "no such file".to_owned(),
            });
        }
        let pkcs11 = Pkcs11::new(path).map_err(|e| HsmError::ModuleNotLoadable {
            path: path.to_owned(),
            cause: e.to_string(),
        })?;
        let mut live = live();
        let counts = live.get_or_insert_with(HashMap::new);
        let count = counts.entry(path.to_owned()).or_insert(0);
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            // Another context in this process (a test fixture) initialised it: share it.
            Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, Function::Initialize)) => {
                tracing::debug!(module = %path.display(), "PKCS#11 module already initialised in this process");
            }
            Err(e) => {
                return Err(HsmError::ModuleInit {
                    path: path.to_owned(),
                    cause: e.to_string(),
                });
            }
        }
        *count += 1;
        Ok(Self {
            pkcs11,
            path: path.to_owned(),
        })
    }

    pub(crate) fn pkcs11(&self) -> &Pkcs11 {
        &self.pkcs11
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        let mut live = live();
        let Some(count) = live.as_mut().and_then(|c| c.get_mut(&self.path)) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            if let Some(counts) = live.as_mut() {
                counts.remove(&self.path);
            }
            if let Err(e) = self.pkcs11.clone().finalize() {
                tracing::warn!(module = %self.path.display(), error = %e, "C_Finalize failed");
            }
        }
    }
}
