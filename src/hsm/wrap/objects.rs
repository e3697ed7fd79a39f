//! Session objects the wraps need (imported KEKs, AES keys), destroyed on drop so that no path
//! leaves one behind; key values copied into a template are zeroized right after creation.

use crate::hsm::HsmError;
use crate::hsm::host::AES256_LEN;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroize as _;

/// A session object destroyed on drop, so that no path leaves one behind.
pub(in crate::hsm) struct Temporary<'a> {
    pub(super) session: &'a Session,
    pub(in crate::hsm) handle: ObjectHandle,
    pub(super) what: &'static str,
}

impl<'a> Temporary<'a> {
    pub(in crate::hsm) fn create(
        session: &'a Session,
        template: &[Attribute],
        what: &'static str,
        op: &'static str,
    ) -> Result<Self, HsmError> {
        let handle = session
            .create_object(template)
            .map_err(HsmError::pkcs11(op))?;
        Ok(Self {
            session,
            handle,
            what,
        })
    }
}

impl Drop for Temporary<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.session.destroy_object(self.handle) {
            tracing::warn!(object = self.what, error = %e, "destroying a session object failed");
        }
    }
}

/// A session AES-256 key with a known value (self-test or host strategy). `value` is copied into
/// the template and that copy is zeroized right after C_CreateObject.
pub(super) fn import_aes<'a>(
    session: &'a Session,
    value: &[u8; AES256_LEN],
    readable: bool,
    what: &'static str,
) -> Result<Temporary<'a>, HsmError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(!readable),
        Attribute::Extractable(readable),
        Attribute::Wrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Value(value.to_vec()),
    ];
    let result = Temporary::create(session, &template, what, "importing a session AES key");
    zeroize_values(&mut template);
    result
}

pub(in crate::hsm) fn zeroize_values(template: &mut [Attribute]) {
    for attr in template {
        if let Attribute::Value(v) = attr {
            v.zeroize();
        }
    }
}

/// Imports an RSA public key as a session object that can wrap.
pub(super) fn import_rsa_public<'a>(
    session: &'a Session,
    n: &[u8],
    e: &[u8],
    what: &'static str,
) -> Result<Temporary<'a>, HsmError> {
    let template = [
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Wrap(true),
        Attribute::Encrypt(true),
        Attribute::Verify(false),
        Attribute::Modulus(n.to_vec()),
        Attribute::PublicExponent(e.to_vec()),
    ];
    Temporary::create(session, &template, what, "importing an RSA public key")
}
