//! Making a token object under a fresh random CKA_ID, tried again when the token's object store
//! loses a race.
//!
//! Owns: the random CKA_ID of every key byokd makes, and the bounded retry of a generation that
//! failed the way a racing object store fails. SoftHSM 2.6 (upstream issue 573) answers
//! CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED or CKR_TEMPLATE_INCONSISTENT now and then when two
//! sessions create token objects at once, although the request is sound: the same call succeeds
//! when repeated. A failed attempt's leftovers (anything under its CKA_ID) are destroyed before
//! the next attempt, which gets a new CKA_ID. A request that is really wrong fails every attempt
//! and its last error is returned as before.
//! Must never: retry anything but object creation, or leave an object of a failed attempt.

use super::HsmError;
use crate::model::HsmKeyId;
use cryptoki::error::{Error, RvError};
use cryptoki::object::Attribute;
use cryptoki::session::Session;

/// Attempts at most, the first included.
pub(crate) const ATTEMPTS: u32 = 3;

/// Why making the object failed.
pub(crate) enum Failed {
    /// No random CKA_ID could be drawn.
    Id(HsmError),
    /// The token refused every attempt; its last answer.
    Token(Error),
}

/// A random 16-byte CKA_ID from the token's generator.
pub(crate) fn random_id(session: &Session) -> Result<HsmKeyId, HsmError> {
    let mut id = [0u8; 16];
    session
        .generate_random_slice(&mut id)
        .map_err(HsmError::pkcs11("generating a key id"))?;
    Ok(HsmKeyId(id))
}

/// Runs `make` with a fresh CKA_ID, again (with another) after an answer a racing object store
/// gives, at most [`ATTEMPTS`] times; returns the id that worked with what `make` made.
pub(crate) fn make_with_fresh_id<T>(
    session: &Session,
    what: &'static str,
    mut make: impl FnMut(HsmKeyId) -> Result<T, Error>,
) -> Result<(HsmKeyId, T), Failed> {
    let mut attempt = 1;
    loop {
        let id = random_id(session).map_err(Failed::Id)?;
        match make(id) {
            Ok(made) => return Ok((id, made)),
            Err(e) if attempt < ATTEMPTS && lost_a_race(&e) => {
                destroy_leftovers(session, id);
                tracing::warn!(what, attempt, error = %e, kid = %id.to_hex(),
                    "the token refused to make a key in a way its object store does when racing; trying again under a new id");
                attempt += 1;
            }
            Err(e) => {
                destroy_leftovers(session, id);
                return Err(Failed::Token(e));
            }
        }
    }
}

/// Whether `e` is an answer a token's object store gives when it loses a race.
fn lost_a_race(e: &Error) -> bool {
    matches!(
        e,
        Error::Pkcs11(
            RvError::GeneralError | RvError::FunctionFailed | RvError::TemplateInconsistent,
            _
        )
    )
}

/// Destroys whatever a failed attempt left under `id` (normally nothing).
fn destroy_leftovers(session: &Session, id: HsmKeyId) {
    let Ok(handles) = session.find_objects(&[Attribute::Id(id.0.to_vec())]) else {
        return;
    };
    for handle in handles {
        if let Err(e) = session.destroy_object(handle) {
            tracing::warn!(error = %e, kid = %id.to_hex(), "could not destroy what a failed key generation left on the token");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lost_a_race;
    use cryptoki::context::Function;
    use cryptoki::error::{Error, RvError};

    #[test]
    fn only_the_answers_of_a_racing_object_store_are_tried_again() {
        let rv = |rv| Error::Pkcs11(rv, Function::GenerateKeyPair);
        assert!(lost_a_race(&rv(RvError::GeneralError)));
        assert!(lost_a_race(&rv(RvError::FunctionFailed)));
        assert!(lost_a_race(&rv(RvError::TemplateInconsistent)));
        assert!(!lost_a_race(&rv(RvError::CurveNotSupported)));
        assert!(!lost_a_race(&rv(RvError::MechanismInvalid)));
        assert!(!lost_a_race(&rv(RvError::UserNotLoggedIn)));
        assert!(!lost_a_race(&rv(RvError::DeviceMemory)));
    }
}
