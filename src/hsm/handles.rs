//! The object handles of byokd's keys, kept between requests.
//!
//! Owns: a bounded map from a key's CKA_ID and half (private or public) to the handle the token
//! gave for that object, shared by the pool's sessions (a token object's handle is valid in every
//! session of the process), and the lock that keeps byokd's own destroys apart from requests
//! that use a handle.
//! Why: `C_FindObjects` costs time in proportion to the token's objects on a file-backed soft
//! token (SoftHSM opens, locks and re-reads every object file per search), and every public-key
//! read, wrap and signature searched by CKA_ID. A hit costs one `C_GetAttributeValue` instead.
//! Rules: a kept handle is used only after the token confirms its CKA_CLASS and CKA_ID (a token
//! may give a destroyed object's handle to a new object); a handle the token refuses, or that
//! now names another object, is dropped and the key searched again. A destroy holds the lock's
//! write side and drops the key's entries before the objects go, so no request of this process
//! uses a handle while its object is destroyed.
//! Must never: return a handle whose class and id it has not just had the token confirm (a
//! fresh search's result excepted), or grow without bound.

use super::HsmError;
use crate::model::HsmKeyId;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The most handles kept (two per key): about 1 MiB at most. Beyond it an arbitrary entry goes;
/// a key whose entry went is searched once more.
pub(crate) const CAPACITY: usize = 16_384;

/// Which half of a key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Half {
    Private,
    Public,
}

impl Half {
    fn class(self) -> ObjectClass {
        match self {
            Half::Private => ObjectClass::PRIVATE_KEY,
            Half::Public => ObjectClass::PUBLIC_KEY,
        }
    }
}

/// A map of at most `CAPACITY` entries: a new entry beyond it replaces an arbitrary one.
struct Bounded<V>(HashMap<(Half, HsmKeyId), V>);

impl<V: Copy> Bounded<V> {
    fn insert(&mut self, key: (Half, HsmKeyId), value: V) {
        if self.0.len() >= CAPACITY
            && !self.0.contains_key(&key)
            && let Some(victim) = self.0.keys().next().copied()
        {
            self.0.remove(&victim);
        }
        self.0.insert(key, value);
    }
}

/// The kept handles and the destroy lock, shared by the workers.
pub(crate) struct Handles {
    map: Mutex<Bounded<ObjectHandle>>,
    uses: RwLock<()>,
}

impl Default for Handles {
    fn default() -> Self {
        Self {
            map: Mutex::new(Bounded(HashMap::new())),
            uses: RwLock::new(()),
        }
    }
}

impl Handles {
    fn map(&self) -> MutexGuard<'_, Bounded<ObjectHandle>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the handle of an object this process just created.
    pub(crate) fn remember(&self, half: Half, id: HsmKeyId, handle: ObjectHandle) {
        self.map().insert((half, id), handle);
    }

    fn forget(&self, half: Half, id: HsmKeyId) {
        self.map().0.remove(&(half, id));
    }

    /// For a request that uses key handles: lookups, held until the request ends. A destroy
    /// waits for it.
    pub(crate) fn lookup(&self) -> Lookup<'_> {
        Lookup {
            handles: self,
            _use: self.uses.read().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// For a destroy: lookups while no other request uses a handle.
    pub(crate) fn removal(&self) -> Removal<'_> {
        Removal {
            handles: self,
            _sole: self.uses.write().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// The handle of `half` of key `id`: the kept one if the token confirms it, else a search.
    fn find(
        &self,
        session: &Session,
        half: Half,
        id: HsmKeyId,
    ) -> Result<Option<ObjectHandle>, HsmError> {
        let kept = self.map().0.get(&(half, id)).copied();
        if let Some(handle) = kept {
            if confirms(session, handle, half, id) {
                return Ok(Some(handle));
            }
            tracing::debug!(kid = %id.to_hex(), ?half, "a kept object handle is stale; searching again");
            self.forget(half, id);
        }
        let found = find_one(session, half.class(), id)?;
        if let Some(handle) = found {
            self.remember(half, id, handle);
        }
        Ok(found)
    }
}

/// Whether the token says `handle` is the `half` object with CKA_ID `id`. Any refusal
/// (CKR_OBJECT_HANDLE_INVALID above all) is a no.
fn confirms(session: &Session, handle: ObjectHandle, half: Half, id: HsmKeyId) -> bool {
    session
        .get_attributes(handle, &[AttributeType::Class, AttributeType::Id])
        .is_ok_and(|attrs| names(&attrs, half, id))
}

/// Whether `attrs` hold exactly the class of `half` and the CKA_ID `id`.
fn names(attrs: &[Attribute], half: Half, id: HsmKeyId) -> bool {
    let class = attrs
        .iter()
        .any(|a| matches!(a, Attribute::Class(c) if *c == half.class()));
    let same_id = attrs
        .iter()
        .any(|a| matches!(a, Attribute::Id(v) if v.as_slice() == id.0.as_slice()));
    class && same_id
}

/// Handle lookups for one request; a destroy waits until it is dropped.
pub(crate) struct Lookup<'a> {
    handles: &'a Handles,
    _use: RwLockReadGuard<'a, ()>,
}

impl Lookup<'_> {
    /// The handle of `half` of key `id`, confirmed by the token; `None` when there is none.
    pub(crate) fn find(
        &self,
        session: &Session,
        half: Half,
        id: HsmKeyId,
    ) -> Result<Option<ObjectHandle>, HsmError> {
        self.handles.find(session, half, id)
    }

    /// As `find`, with `HsmError::KeyNotFound` when there is none.
    pub(crate) fn require(
        &self,
        session: &Session,
        half: Half,
        id: HsmKeyId,
    ) -> Result<ObjectHandle, HsmError> {
        self.find(session, half, id)?
            .ok_or(HsmError::KeyNotFound { id })
    }
}

/// Lookups for a destroy, while no other request uses a handle.
pub(crate) struct Removal<'a> {
    handles: &'a Handles,
    _sole: RwLockWriteGuard<'a, ()>,
}

impl Removal<'_> {
    /// The handle of `half` of key `id`, dropped from the kept ones: the caller destroys it.
    pub(crate) fn take(
        &self,
        session: &Session,
        half: Half,
        id: HsmKeyId,
    ) -> Result<Option<ObjectHandle>, HsmError> {
        let found = self.handles.find(session, half, id);
        self.handles.forget(half, id);
        found
    }
}

/// Searches the token for the `class` object with CKA_ID `id` (what a kept handle falls back on).
pub(crate) fn find_one(
    session: &Session,
    class: ObjectClass,
    id: HsmKeyId,
) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(&[Attribute::Class(class), Attribute::Id(id.0.to_vec())])
        .map_err(HsmError::pkcs11("finding a key by id"))?;
    Ok(found.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: HsmKeyId = HsmKeyId([1; 16]);
    const B: HsmKeyId = HsmKeyId([2; 16]);

    #[test]
    fn a_handle_is_confirmed_only_by_its_own_class_and_id() {
        let attrs = |class, id: HsmKeyId| vec![Attribute::Class(class), Attribute::Id(id.0.into())];
        assert!(names(&attrs(ObjectClass::PRIVATE_KEY, A), Half::Private, A));
        assert!(names(&attrs(ObjectClass::PUBLIC_KEY, A), Half::Public, A));
        // The token gave the handle to another key, or to the other half.
        assert!(!names(
            &attrs(ObjectClass::PRIVATE_KEY, B),
            Half::Private,
            A
        ));
        assert!(!names(&attrs(ObjectClass::PUBLIC_KEY, A), Half::Private, A));
        assert!(!names(&attrs(ObjectClass::SECRET_KEY, A), Half::Private, A));
        // An id that only starts like the key's, or no attributes at all.
        let long = vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id([A.0.as_slice(), &[0]].concat()),
        ];
        assert!(!names(&long, Half::Private, A));
        assert!(!names(&[], Half::Private, A));
    }

    #[test]
    fn the_map_stays_bounded() {
        let mut map = Bounded(HashMap::new());
        for i in 0..CAPACITY + 10 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            map.insert((Half::Private, HsmKeyId(id)), i);
        }
        assert_eq!(map.0.len(), CAPACITY);
        // Replacing a kept entry evicts nothing.
        map.insert((Half::Private, HsmKeyId([0; 16])), 7);
        assert_eq!(map.0.len(), CAPACITY);
        assert_eq!(map.0.get(&(Half::Private, HsmKeyId([0; 16]))), Some(&7));
    }
}
