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
    /// While a change is recorded (see [`Rows::record_undo`]): how to undo it.
    undo: Option<Undo<T>>,
}

/// What undoes a change to a list: its length before, and the old value of each row the
/// change borrowed mutably. Costs what the change touched, not the list.
#[derive(Debug, Clone)]
pub struct Undo<T> {
    len: usize,
    old: Vec<(usize, T)>,
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
            undo: None,
        }
    }

    pub fn push(&mut self, value: T) {
        self.changed.insert(self.items.len());
        self.items.push(value);
    }

    /// A mutable borrow of one entry; the row counts as changed.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T>
    where
        T: Clone,
    {
        let value = self.items.get_mut(index)?;
        self.changed.insert(index);
        if let Some(u) = &mut self.undo {
            u.keep(index, value);
        }
        Some(value)
    }

    /// Applies `change` to every entry `select` picks; only those rows count as changed.
    pub fn update_where(&mut self, select: impl Fn(&T) -> bool, mut change: impl FnMut(&mut T))
    where
        T: Clone,
    {
        for (i, item) in self.items.iter_mut().enumerate() {
            if select(item) {
                if let Some(u) = &mut self.undo {
                    u.keep(i, item);
                }
                change(item);
                self.changed.insert(i);
            }
        }
    }

    /// Starts recording how to undo the changes that follow (until [`Rows::take_undo`]).
    pub fn record_undo(&mut self) {
        self.undo = Some(Undo {
            len: self.items.len(),
            old: Vec::new(),
        });
    }

    /// Stops recording: what undoes the changes since [`Rows::record_undo`].
    pub fn take_undo(&mut self) -> Undo<T> {
        self.undo.take().unwrap_or(Undo {
            len: self.items.len(),
            old: Vec::new(),
        })
    }

    /// Puts the list back as it was before the changes `undo` recorded; the rows it restores
    /// count as changed.
    pub fn undo(&mut self, undo: Undo<T>) {
        self.items.truncate(undo.len);
        self.changed.retain(|i| *i < undo.len);
        for (i, old) in undo.old {
            if let Some(v) = self.items.get_mut(i) {
                *v = old;
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

impl<T: Clone> Undo<T> {
    /// Keeps row `index`'s value before its first change (rows pushed since are truncated).
    fn keep(&mut self, index: usize, value: &T) {
        if index < self.len && !self.old.iter().any(|(i, _)| *i == index) {
            self.old.push((index, value.clone()));
        }
    }
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            stored: false,
            changed: BTreeSet::new(),
            undo: None,
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
            undo: None,
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

    #[test]
    fn an_undo_puts_back_what_the_change_touched_and_nothing_else() {
        let mut r = Rows::committed(vec![1, 2, 3]);
        r.record_undo();
        *r.get_mut(1).unwrap() = 20;
        *r.get_mut(1).unwrap() = 200;
        r.push(4);
        *r.get_mut(3).unwrap() = 40;
        let undo = r.take_undo();
        assert_eq!(
            undo.old,
            vec![(1, 2)],
            "only the first old value of a row is kept"
        );
        *r.get_mut(0).unwrap() = 10;
        r.undo(undo);
        assert_eq!(r, vec![10, 2, 3], "a change after the recording stays");
        assert_eq!(
            r.take_changes(),
            RowChanges::Changed(vec![(0, &10), (1, &2)])
        );
    }
}
