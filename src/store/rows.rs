//! A list stored one row per entry (a job's key syncs, step messages and journal), that
//! remembers which rows changed since the last commit, so a commit writes those rows only: a
//! journal step of a job with 100,000 keys writes one journal row, not the 100,000 key rows.
//!
//! Reads go through `Deref` to the slice; every way to change an entry goes through a method
//! here that marks its row. There is no `DerefMut`, so no change can slip past.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::ops::Deref;

/// A `Vec` that knows which of its rows the store must write at the next commit.
#[derive(Clone)]
pub struct Rows<T> {
    items: Vec<T>,
    /// Whether the store holds this list's rows as of the last commit; a list never committed
    /// is written whole, over any rows of its job.
    stored: bool,
    /// Indices changed (pushed or borrowed mutably) since the last commit.
    changed: BTreeSet<usize>,
}

/// What a commit writes for one list (see [`Rows::take_changes`]).
#[derive(Debug, PartialEq, Eq)]
pub enum RowChanges<'a, T> {
    /// The list was never committed: remove every stored row of its job, write all of these.
    Whole(&'a [T]),
    /// Write these rows (index, value). A list never shrinks, so no stored row goes away
    /// while its job stays.
    Changed(Vec<(usize, &'a T)>),
}

impl<T> Rows<T> {
    /// A list as the store holds it (nothing to write).
    pub fn committed(items: Vec<T>) -> Self {
        Self {
            items,
            stored: true,
            changed: BTreeSet::new(),
        }
    }

    pub fn push(&mut self, value: T) {
        self.changed.insert(self.items.len());
        self.items.push(value);
    }

    /// A mutable borrow of one entry; the row counts as changed.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        let value = self.items.get_mut(index)?;
        self.changed.insert(index);
        Some(value)
    }

    /// Applies `change` to every entry `select` picks; only those rows count as changed.
    pub fn update_where(&mut self, select: impl Fn(&T) -> bool, mut change: impl FnMut(&mut T)) {
        for (i, item) in self.items.iter_mut().enumerate() {
            if select(item) {
                change(item);
                self.changed.insert(i);
            }
        }
    }

    /// What changed since the last call, as the commit writes it; the marks are taken.
    pub fn take_changes(&mut self) -> RowChanges<'_, T> {
        let changed = std::mem::take(&mut self.changed);
        if !std::mem::replace(&mut self.stored, true) {
            return RowChanges::Whole(&self.items);
        }
        RowChanges::Changed(
            changed
                .into_iter()
                .filter_map(|i| self.items.get(i).map(|v| (i, v)))
                .collect(),
        )
    }

    /// Marks the list as never committed (a migration or a restore writes it whole).
    pub fn mark_all_changed(&mut self) {
        self.stored = false;
        self.changed.clear();
    }

    pub fn into_vec(self) -> Vec<T> {
        self.items
    }
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            stored: false,
            changed: BTreeSet::new(),
        }
    }
}

/// A list built in memory: the store has none of its rows yet.
impl<T> From<Vec<T>> for Rows<T> {
    fn from(items: Vec<T>) -> Self {
        Self {
            items,
            stored: false,
            changed: BTreeSet::new(),
        }
    }
}

impl<T> FromIterator<T> for Rows<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Vec::from_iter(iter).into()
    }
}

impl<T> Extend<T> for Rows<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for v in iter {
            self.push(v);
        }
    }
}

impl<T> Deref for Rows<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<'a, T> IntoIterator for &'a Rows<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<T: PartialEq> PartialEq for Rows<T> {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
    }
}

impl<T: Eq> Eq for Rows<T> {}

impl<T: PartialEq> PartialEq<Vec<T>> for Rows<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        &self.items == other
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Rows<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.items.fmt(f)
    }
}

/// Serialised as the plain list (the A/B formats, format 5's whole-job records and the API
/// hold plain lists).
impl<T: Serialize> Serialize for Rows<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.items.serialize(s)
    }
}

/// A decoded list came from an older format's whole record: the store of this format has
/// none of its rows, so it is written whole.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Rows<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_writes_the_rows_changed_since_the_last_one() {
        let mut r: Rows<u32> = vec![1, 2].into();
        assert_eq!(r.take_changes(), RowChanges::Whole(&[1, 2]));
        r.push(3);
        if let Some(v) = r.get_mut(0) {
            *v = 10;
        }
        r.update_where(|v| *v == 2, |v| *v = 20);
        assert_eq!(
            r.take_changes(),
            RowChanges::Changed(vec![(0, &10), (1, &20), (2, &3)])
        );
        assert_eq!(r.take_changes(), RowChanges::Changed(vec![]));
        assert!(r.get_mut(7).is_none());
        r.mark_all_changed();
        assert_eq!(r.take_changes(), RowChanges::Whole(&[10, 20, 3]));
        let mut loaded = Rows::committed(vec![1]);
        assert_eq!(loaded.take_changes(), RowChanges::Changed(vec![]));
    }
}
