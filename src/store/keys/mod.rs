//! The key records of the state: read from the store on demand, not held in memory.
//!
//! At a million keys a resident typed map cost about 500 bytes a key (see
//! docs/performance.md, "State store"), more than the whole footprint budget, for records that
//! are read a group at a time. So [`Keys`] bound to a store holds only the changes the store
//! does not show yet: every insert, change and removal is kept here (an overlay) from the
//! moment it is made under the state lock until the writer thread has committed the batch that
//! carries it; a read looks at the overlay first and at the store's newest commit after. What a
//! reader sees is therefore exactly what a resident map would show, uncommitted changes
//! included. An entry leaves the overlay once a commit holding it is visible (see
//! [`Keys::stage`]); a failed commit never becomes visible, so its changes stay.
//!
//! A `Keys` not bound to a store (a state built in memory, decoded from an A/B file, or about
//! to become a new store's first commit) holds every record in the overlay. A bound `Keys` does
//! not keep its store open: the [`super::Store`] owns the file, and once it is dropped a read
//! fails with [`StoreError::Read`] (take [`Keys::in_memory`] first to keep the keys).

use super::StoreError;
use super::records::Table;
use crate::model::{GroupName, Key, KeyName};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// A key's identity: its group and name.
pub type KeyId = (GroupName, KeyName);

/// The store a [`Keys`] reads from, and how far its writer has committed.
#[derive(Clone)]
pub(super) struct Source {
    /// The store's file, while the [`super::Store`] holds it open.
    pub db: Weak<Database>,
    pub path: PathBuf,
    /// The sequence number of the newest batch the writer has committed (see `commit`).
    pub applied: Arc<AtomicU64>,
}

/// One change not yet visible in the store: the record now (`None`: removed) and the batch that
/// carries it (`None` while it is still to be staged).
#[derive(Clone, Debug)]
struct Entry {
    value: Option<Key>,
    staged: Option<u64>,
}

/// The key records by (group, name); see the module documentation.
#[derive(Clone, Default)]
pub struct Keys {
    source: Option<Source>,
    overlay: BTreeMap<KeyId, Entry>,
    /// Entries changed since the last batch was staged.
    changed: BTreeSet<KeyId>,
    /// Staged batches whose entries may leave the overlay once the batch is committed.
    staged: VecDeque<(u64, Vec<KeyId>)>,
    len: usize,
}

impl Keys {
    /// Keys read from `source`, which holds `len` records and no pending change.
    pub(super) fn bound(source: Source, len: usize) -> Keys {
        Keys {
            source: Some(source),
            len,
            ..Keys::default()
        }
    }

    /// Binds keys whose every record was just committed to `source` (a new store's first
    /// commit): the overlay is dropped, reads go to the store from now on.
    pub(super) fn bind(&mut self, source: Source) {
        self.overlay.clear();
        self.changed.clear();
        self.staged.clear();
        self.source = Some(source);
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key `id`, uncommitted changes included.
    pub fn get(&self, id: &KeyId) -> Result<Option<Key>, StoreError> {
        if let Some(e) = self.overlay.get(id) {
            return Ok(e.value.clone());
        }
        let Some(source) = &self.source else {
            return Ok(None);
        };
        let mut found = None;
        source.read(|table| {
            if let Some(v) = table
                .get(encode_id(id)?.as_slice())
                .map_err(|e| source.fail(e))?
            {
                found = Some(source.decode(v.value())?);
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Whether the key `id` exists, uncommitted changes included.
    pub fn contains_key(&self, id: &KeyId) -> Result<bool, StoreError> {
        if let Some(e) = self.overlay.get(id) {
            return Ok(e.value.is_some());
        }
        let Some(source) = &self.source else {
            return Ok(false);
        };
        let mut found = false;
        source.read(|table| {
            found = table
                .get(encode_id(id)?.as_slice())
                .map_err(|e| source.fail(e))?
                .is_some();
            Ok(())
        })?;
        Ok(found)
    }

    /// The keys of `group`, by name.
    pub fn in_group(&self, group: &GroupName) -> Result<Vec<Key>, StoreError> {
        let mut by_name: BTreeMap<KeyName, Key> = BTreeMap::new();
        if let Some(source) = &self.source {
            source.scan_group(group, |_, v| {
                let key: Key = source.decode(v)?;
                by_name.insert(key.name.clone(), key);
                Ok(())
            })?;
        }
        for ((_, name), e) in self.overlay_of(group) {
            match &e.value {
                Some(k) => by_name.insert(name.clone(), k.clone()),
                None => by_name.remove(name),
            };
        }
        Ok(by_name.into_values().collect())
    }

    /// How many keys `group` has (decoding no record).
    pub fn count_in(&self, group: &GroupName) -> Result<usize, StoreError> {
        Ok(self.count_in_each([group])?.into_iter().sum())
    }

    /// How many keys each of `groups` has, in their order, from one read of the store (a list
    /// of every group reads 200,000 groups' counts at once).
    pub fn count_in_each<'a>(
        &self,
        groups: impl IntoIterator<Item = &'a GroupName>,
    ) -> Result<Vec<usize>, StoreError> {
        let mut counts = Vec::new();
        match &self.source {
            Some(source) => source.read(|table| {
                for group in groups {
                    let mut names: BTreeSet<Vec<u8>> = BTreeSet::new();
                    source.scan_group_in(table, group, |k, _| {
                        names.insert(k.to_vec());
                        Ok(())
                    })?;
                    counts.push(self.overlaid_count(group, names)?);
                }
                Ok(())
            })?,
            None => {
                for group in groups {
                    counts.push(self.overlaid_count(group, BTreeSet::new())?);
                }
            }
        }
        Ok(counts)
    }

    /// The size of `group` given the record keys the store holds for it.
    fn overlaid_count(
        &self,
        group: &GroupName,
        mut names: BTreeSet<Vec<u8>>,
    ) -> Result<usize, StoreError> {
        for (id, e) in self.overlay_of(group) {
            let k = encode_id(id)?;
            match e.value {
                Some(_) => names.insert(k),
                None => names.remove(&k),
            };
        }
        Ok(names.len())
    }

    /// Every key, uncommitted changes included, in no particular order (a restore's check and
    /// the tests; it reads the whole table).
    pub fn for_each(&self, mut each: impl FnMut(&Key)) -> Result<(), StoreError> {
        if let Some(source) = &self.source {
            source.read(|table| {
                for entry in table.iter().map_err(|e| source.fail(e))? {
                    let (_, v) = entry.map_err(|e| source.fail(e))?;
                    let key: Key = source.decode(v.value())?;
                    if !self
                        .overlay
                        .contains_key(&(key.group.clone(), key.name.clone()))
                    {
                        each(&key);
                    }
                }
                Ok(())
            })?;
        }
        self.overlay
            .values()
            .filter_map(|e| e.value.as_ref())
            .for_each(each);
        Ok(())
    }

    /// A copy holding every key in memory, bound to no store (it reads the whole table).
    pub fn in_memory(&self) -> Result<Keys, StoreError> {
        self.to_map().map(Keys::from)
    }

    /// Every key by id (for comparisons and the A/B encoding; it reads the whole table).
    pub fn to_map(&self) -> Result<BTreeMap<KeyId, Key>, StoreError> {
        let mut map = BTreeMap::new();
        self.for_each(|k| {
            map.insert((k.group.clone(), k.name.clone()), k.clone());
        })?;
        Ok(map)
    }

    /// Inserts or replaces the key `id`; returns the key it replaced.
    pub fn insert(&mut self, id: KeyId, key: Key) -> Result<Option<Key>, StoreError> {
        let before = self.get(&id)?;
        if before.is_none() {
            self.len += 1;
        }
        self.set(id, Some(key));
        Ok(before)
    }

    /// Removes the key `id`; returns it.
    pub fn remove(&mut self, id: &KeyId) -> Result<Option<Key>, StoreError> {
        let before = self.get(id)?;
        if before.is_some() {
            self.len -= 1;
            self.set(id.clone(), None);
        }
        Ok(before)
    }

    /// A mutable borrow of the key `id`; the key counts as changed.
    pub fn get_mut(&mut self, id: &KeyId) -> Result<Option<&mut Key>, StoreError> {
        if !self.overlay.contains_key(id) {
            let Some(key) = self.get(id)? else {
                return Ok(None);
            };
            self.overlay.insert(
                id.clone(),
                Entry {
                    value: Some(key),
                    staged: None,
                },
            );
        }
        let Some(entry) = self.overlay.get_mut(id) else {
            return Ok(None);
        };
        let Some(value) = entry.value.as_mut() else {
            return Ok(None);
        };
        entry.staged = None;
        self.changed.insert(id.clone());
        Ok(Some(value))
    }

    fn set(&mut self, id: KeyId, value: Option<Key>) {
        self.changed.insert(id.clone());
        self.overlay.insert(
            id,
            Entry {
                value,
                staged: None,
            },
        );
    }

    fn overlay_of<'a>(
        &'a self,
        group: &'a GroupName,
    ) -> impl Iterator<Item = (&'a KeyId, &'a Entry)> + 'a {
        self.overlay
            .range((group.clone(), KeyName::smallest())..)
            .take_while(move |((g, _), _)| g == group)
    }

    /// Marks every record held in memory as changed (a detached state about to become a new
    /// store's first commit).
    pub(super) fn mark_all_changed(&mut self) {
        self.changed = self.overlay.keys().cloned().collect();
    }

    /// Whether any key changed since the last batch.
    pub fn is_dirty(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Hands every change since the last batch to `each` (`None`: removed) as part of batch
    /// `seq`, and first lets go of the entries whose batch the store has committed.
    pub(super) fn stage(
        &mut self,
        seq: u64,
        mut each: impl FnMut(&KeyId, Option<&Key>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.evict_committed();
        // Nothing is marked staged unless every change was handed over: a batch that fails to
        // encode is never submitted, and its changes must wait for the next one.
        for id in &self.changed {
            let value = self.overlay.get(id).and_then(|e| e.value.as_ref());
            each(id, value)?;
        }
        let changed = std::mem::take(&mut self.changed);
        if self.source.is_some() {
            for id in &changed {
                if let Some(e) = self.overlay.get_mut(id) {
                    e.staged = Some(seq);
                }
            }
            self.staged.push_back((seq, changed.into_iter().collect()));
        } else {
            // Nothing underneath to read a removal from: the record is simply absent.
            self.overlay.retain(|_, e| e.value.is_some());
        }
        Ok(())
    }

    /// Drops the overlay entries a visible commit holds unchanged since.
    fn evict_committed(&mut self) {
        let Some(source) = &self.source else {
            return;
        };
        let applied = source.applied.load(Ordering::Acquire);
        while let Some((seq, _)) = self.staged.front() {
            if *seq > applied {
                break;
            }
            let Some((seq, ids)) = self.staged.pop_front() else {
                break;
            };
            for id in ids {
                if self.overlay.get(&id).is_some_and(|e| e.staged == Some(seq)) {
                    self.overlay.remove(&id);
                }
            }
        }
    }

    /// How many changes are held in memory (for the tests and the benchmark).
    pub fn pending(&self) -> usize {
        self.overlay.len()
    }
}

impl Source {
    fn read(
        &self,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let db = self.db.upgrade().ok_or_else(|| StoreError::Read {
            path: self.path.clone(),
            reason: "the store was closed".into(),
        })?;
        let txn = db.begin_read().map_err(|e| self.fail(e))?;
        match txn.open_table(Table::Keys.def()) {
            Ok(t) => f(&t),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Hands every committed record of `group` to `each` (record key, value).
    fn scan_group(
        &self,
        group: &GroupName,
        each: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.read(|table| self.scan_group_in(table, group, each))
    }

    /// [`Source::scan_group`] in an open table.
    fn scan_group_in(
        &self,
        table: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
        group: &GroupName,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let prefix = encode(group)?;
        for entry in table.range(prefix.as_slice()..).map_err(|e| self.fail(e))? {
            let (k, v) = entry.map_err(|e| self.fail(e))?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            each(k.value(), v.value())?;
        }
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Key, StoreError> {
        postcard::from_bytes(bytes).map_err(|e| StoreError::Read {
            path: self.path.clone(),
            reason: format!("a key record does not decode ({e})"),
        })
    }

    fn fail(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Read {
            path: self.path.clone(),
            reason: e.into().to_string(),
        }
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Encode(e.to_string()))
}

/// A key's id as the store's record key. A group's name encodes as its length and bytes, a
/// prefix no other group's records share, so a group's records are one range of the table.
fn encode_id(id: &KeyId) -> Result<Vec<u8>, StoreError> {
    encode(id)
}

/// Equal when they hold the same keys (reads the whole table of a bound `Keys`; an unreadable
/// store compares unequal).
impl PartialEq for Keys {
    fn eq(&self, other: &Self) -> bool {
        match (self.to_map(), other.to_map()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Keys {}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("len", &self.len)
            .field(
                "bound",
                &self.source.as_ref().map(|s| s.path.display().to_string()),
            )
            .field("pending", &self.overlay.len())
            .finish()
    }
}

/// Serialised as the plain map of every key (the A/B formats and their fixtures hold it).
impl Serialize for Keys {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_map()
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

/// A decoded map is held in memory, unbound, with nothing changed.
impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<KeyId, Key>::deserialize(d).map(Keys::from)
    }
}

impl From<BTreeMap<KeyId, Key>> for Keys {
    fn from(map: BTreeMap<KeyId, Key>) -> Self {
        let len = map.len();
        Keys {
            overlay: map
                .into_iter()
                .map(|(id, k)| {
                    (
                        id,
                        Entry {
                            value: Some(k),
                            staged: Some(0),
                        },
                    )
                })
                .collect(),
            len,
            ..Keys::default()
        }
    }
}

/// The path a read failure names.
pub(super) fn source(db: &Arc<Database>, path: &Path, applied: Arc<AtomicU64>) -> Source {
    Source {
        db: Arc::downgrade(db),
        path: path.to_path_buf(),
        applied,
    }
}

#[cfg(test)]
mod tests;
