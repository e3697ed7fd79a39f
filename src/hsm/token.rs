//! Finding the configured token and logging in.
//!
//! Owns: slot lookup by token label, the PIN state checks, C_OpenSession and C_Login, and the
//! mapping of PIN failures to errors that name the fix. Login state is per application and
//! token, so the pool's first session logs in and every further one shares that login.
//! Must never: keep the PIN after login, put it in an error or a log, or retry a wrong PIN
//! (each attempt counts towards the token's lock-out).

use super::HsmError;
use crate::secret::Pin;
use cryptoki::context::{Function, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::{Limit, Slot};
use cryptoki::types::AuthPin;

/// The slot holding the initialised token whose label is `label` (labels compare trimmed).
pub(crate) fn find_slot(pkcs11: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let slots = pkcs11
        .get_slots_with_initialized_token()
        .map_err(HsmError::pkcs11("listing slots"))?;
    let mut available = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let info = pkcs11
            .get_token_info(slot)
            .map_err(HsmError::pkcs11("reading token info"))?;
        let token_label = info.label().trim().to_owned();
        if token_label == label.trim() {
            matching.push(slot);
        }
        available.push(token_label);
    }
    match matching.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(HsmError::TokenNotFound {
            label: label.to_owned(),
            available,
        }),
        many => Err(HsmError::TokenAmbiguous {
            label: label.to_owned(),
            count: many.len(),
        }),
    }
}

/// Opens a read-write session on `slot` and logs in as the user. The PIN is dropped on return.
pub(crate) fn open_and_login(
    pkcs11: &Pkcs11,
    slot: Slot,
    label: &str,
    pin: Pin,
) -> Result<Session, HsmError> {
    let info = pkcs11
        .get_token_info(slot)
        .map_err(HsmError::pkcs11("reading token info"))?;
    let label = label.to_owned();
    if info.user_pin_locked() {
        return Err(HsmError::PinLocked { label });
    }
    if !info.user_pin_initialized() {
        return Err(HsmError::PinNotInitialized { label });
    }
    let session = pkcs11
        .open_rw_session(slot)
        .map_err(HsmError::pkcs11("opening a session"))?;
    let auth = AuthPin::new(pin.expose_secret().into());
    drop(pin);
    let result = session.login(UserType::User, Some(&auth));
    drop(auth);
    match result {
        Ok(()) => Ok(session),
        // Another session of this process is already logged in to the token (login state is
        // per application and token): this session shares it.
        Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, Function::Login)) => Ok(session),
        Err(Error::Pkcs11(
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
            _,
        )) => Err(HsmError::WrongPin { label }),
        Err(Error::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked { label }),
        Err(Error::Pkcs11(RvError::PinExpired, _)) => Err(HsmError::PinExpired { label }),
        Err(Error::Pkcs11(RvError::UserPinNotInitialized, _)) => {
            Err(HsmError::PinNotInitialized { label })
        }
        Err(e) => Err(HsmError::Pkcs11 {
            op: "logging in",
            source: e,
        }),
    }
}

/// Opens a further read-write session on `slot`, sharing the login of a session this process
/// already has on the token (no PIN: login state is per application and token).
pub(crate) fn open_logged_in(pkcs11: &Pkcs11, slot: Slot) -> Result<Session, HsmError> {
    let session = pkcs11
        .open_rw_session(slot)
        .map_err(HsmError::pkcs11("opening a session"))?;
    let info = session
        .get_session_info()
        .map_err(HsmError::pkcs11("reading session info"))?;
    if info.session_state() == SessionState::RwUser {
        return Ok(session);
    }
    let label = pkcs11
        .get_token_info(slot)
        .map(|t| t.label().trim().to_owned())
        .unwrap_or_default();
    Err(HsmError::SessionNotLoggedIn { label })
}

/// How many sessions the pool opens: `configured` if not 0, else one more than the cores (one
/// session is kept for wraps and signatures, see `pool`), at least 2; never more than the
/// token's `ulMaxSessionCount` or `ulMaxRwSessionCount` allow, nor `MAX_SESSIONS`.
pub(crate) fn session_count(pkcs11: &Pkcs11, slot: Slot, configured: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let wanted = if configured > 0 {
        configured
    } else {
        (cores + 1).max(2)
    };
    let token_cap = pkcs11.get_token_info(slot).ok().map_or(usize::MAX, |info| {
        [info.max_session_count(), info.max_rw_session_count()]
            .into_iter()
            .filter_map(|limit| match limit {
                Limit::Max(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                Limit::Unavailable | Limit::Infinite => None,
            })
            .min()
            .unwrap_or(usize::MAX)
    });
    let n = wanted.min(token_cap).clamp(1, super::MAX_SESSIONS);
    if configured > 0 && n < configured {
        tracing::warn!(
            configured,
            sessions = n,
            "hsm.sessions is more than the token (or byokd) allows; using fewer"
        );
    }
    n
}
