//! A map that remembers which entries changed since the last commit, so a commit writes those
//! records only: the cost of a commit follows the change, not the size of the state.
//!
//! Reads go through `Deref` to the `BTreeMap`; every way to change an entry goes through a
//! method here that marks its key. There is no `DerefMut`, so no change can slip past.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

/// A `BTreeMap` with the set of keys changed (inserted, replaced, borrowed mutably or removed)
/// since [`Tracked::take_changed`] last ran.
#[derive(Clone)]
pub struct Tracked<K: Ord, V> {
    map: BTreeMap<K, V>,
    changed: BTreeSet<K>,
}

impl<K: Ord, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone, V> Tracked<K, V> {
    /// A map whose entries are all as committed (nothing to write).
    pub fn committed(map: BTreeMap<K, V>) -> Self {
        Self {
            map,
            changed: BTreeSet::new(),
        }
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.changed.insert(key.clone());
        self.map.insert(key, value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let out = self.map.remove(key);
        if out.is_some() {
            self.changed.insert(key.clone());
        }
        out
    }

    /// A mutable borrow of one entry; the entry counts as changed.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let value = self.map.get_mut(key)?;
        self.changed.insert(key.clone());
        Some(value)
    }

    /// Keeps the entries `keep` accepts; the removed ones count as changed.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let changed = &mut self.changed;
        self.map.retain(|k, v| {
            let kept = keep(k, v);
            if !kept {
                changed.insert(k.clone());
            }
            kept
        });
    }

    /// Every entry changed since the last call, with its value now (`None`: removed).
    pub fn take_changed(&mut self) -> Vec<(K, Option<&V>)> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .map(|k| {
                let v = self.map.get(&k);
                (k, v)
            })
            .collect()
    }

    /// Hands every entry changed since the last call to `each`, mutably (`None`: removed), so
    /// a value that tracks its own parts (see `Rows`) can take their marks too.
    pub fn take_changed_mut<E>(
        &mut self,
        mut each: impl FnMut(&K, Option<&mut V>) -> Result<(), E>,
    ) -> Result<(), E> {
        for k in std::mem::take(&mut self.changed) {
            each(&k, self.map.get_mut(&k))?;
        }
        Ok(())
    }

    /// Marks every entry as changed (a migration writes them all once).
    pub fn mark_all_changed(&mut self) {
        self.changed = self.map.keys().cloned().collect();
    }

    /// The keys changed since the last commit.
    pub fn changed(&self) -> impl Iterator<Item = &K> {
        self.changed.iter()
    }

    /// Whether any entry changed since the last commit.
    pub fn is_dirty(&self) -> bool {
        !self.changed.is_empty()
    }
}

impl<K: Ord + Clone, V> From<BTreeMap<K, V>> for Tracked<K, V> {
    fn from(map: BTreeMap<K, V>) -> Self {
        Self::committed(map)
    }
}

impl<K: Ord, V> IntoIterator for Tracked<K, V> {
    type Item = (K, V);
    type IntoIter = std::collections::btree_map::IntoIter<K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.into_iter()
    }
}

impl<K: Ord + Clone, V> Extend<(K, V)> for Tracked<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Ord + Clone, V> FromIterator<(K, V)> for Tracked<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut out = Self::default();
        out.extend(iter);
        out
    }
}

impl<K: Ord, V> Deref for Tracked<K, V> {
    type Target = BTreeMap<K, V>;
    fn deref(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

impl<K: Ord, V: PartialEq> PartialEq for Tracked<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: Ord, V: Eq> Eq for Tracked<K, V> {}

impl<K: Ord + std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for Tracked<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.map.fmt(f)
    }
}

/// Serialised as the plain map (the A/B formats and their fixtures hold plain maps).
impl<K: Ord + Serialize, V: Serialize> Serialize for Tracked<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

/// A decoded map is what the file holds: nothing in it is changed.
impl<'de, K: Ord + Clone + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de>
    for Tracked<K, V>
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(d).map(Self::committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_to_change_an_entry_marks_it() {
        let mut m: Tracked<u32, &str> = Tracked::committed([(1, "a"), (2, "b"), (3, "c")].into());
        assert!(!m.is_dirty());
        m.insert(4, "d");
        if let Some(v) = m.get_mut(&1) {
            *v = "A";
        }
        m.remove(&2);
        m.remove(&99);
        assert_eq!(
            m.take_changed(),
            vec![(1, Some(&"A")), (2, None), (4, Some(&"d"))]
        );
        assert!(m.take_changed().is_empty());
        m.retain(|k, _| *k != 3);
        assert_eq!(m.take_changed(), vec![(3, None)]);
        assert!(m.get_mut(&3).is_none());
        assert!(!m.is_dirty());
    }
}
