//! The hash chain: how a record's hash is computed, a record sealed into the chain, and how a
//! run of records is checked.
//!
//! A record's hash is SHA-256 over its JSON form with an empty `hash` field (fields in the
//! fixed order of [`Record`]); its `prev` is the hash of the record before it. Editing a record
//! breaks its own hash; deleting, inserting or reordering breaks the next record's `prev` or the
//! sequence. The check reports the first broken link and never stops at a panic.

use super::record::{Entry, Record};
use serde::{Deserialize, Serialize};

/// `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash a record must carry (defined by the record itself, see [`Record::content_hash`]).
pub fn hash_of(r: &Record) -> String {
    r.content_hash()
}

/// Empty optional text counts as absent, so every export format reads back the same record.
fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

impl Record {
    /// Builds the record for `entry` at `seq`, chained to `prev` (the hash is computed here).
    pub fn seal(seq: u64, ts: String, prev: String, entry: Entry) -> Record {
        let mut r = Record {
            seq,
            ts,
            service: entry.service,
            level: entry.level,
            event: entry.event,
            identity: nonempty(entry.identity),
            job: entry.job,
            group: nonempty(entry.group),
            key: nonempty(entry.key),
            vault: nonempty(entry.vault),
            kid: nonempty(entry.kid),
            version: nonempty(entry.version),
            credential: nonempty(entry.credential),
            approval: nonempty(entry.approval),
            message: entry.message,
            prev,
            hash: String::new(),
        };
        r.hash = hash_of(&r);
        r
    }
}

/// One item of a chain as stored or exported: a full record, or a link (a record left out of a
/// filtered export, represented by its sequence number and hashes only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Full(Box<Record>),
    Link {
        seq: u64,
        prev: String,
        hash: String,
    },
}

impl Item {
    pub fn seq(&self) -> u64 {
        match self {
            Item::Full(r) => r.seq,
            Item::Link { seq, .. } => *seq,
        }
    }
    pub fn prev(&self) -> &str {
        match self {
            Item::Full(r) => &r.prev,
            Item::Link { prev, .. } => prev,
        }
    }
    pub fn hash(&self) -> &str {
        match self {
            Item::Full(r) => &r.hash,
            Item::Link { hash, .. } => hash,
        }
    }
}

/// The first broken link: where (1-based position in the input) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broken {
    /// 1-based position of the offending item in what was checked.
    pub position: u64,
    /// The sequence number the offending item claims.
    pub seq: u64,
    pub reason: String,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub checked: u64,
    /// Records whose content was re-hashed (links carry no content).
    pub full: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub broken: Option<Broken>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Checks items one by one; keeps the first break.
#[derive(Debug)]
pub struct Verifier {
    last: Option<(u64, String)>,
    anchor: Option<String>,
    verdict: Verdict,
}

impl Verifier {
    /// `anchor`: the hash the first item's `prev` must equal, when known (a store's oldest
    /// segment header); `None` trusts the first item's `prev`.
    pub fn new(anchor: Option<String>) -> Self {
        Self {
            last: None,
            anchor,
            verdict: Verdict {
                checked: 0,
                full: 0,
                first_seq: None,
                last_seq: None,
                broken: None,
            },
        }
    }

    /// Expects the next item's `prev` to be `hash` and its sequence to follow `seq` (a segment
    /// header joins onto the previous segment this way).
    pub fn expect_next(&mut self, seq_before: u64, prev: &str) -> Result<(), Broken> {
        if let Some((s, h)) = &self.last
            && (*s != seq_before || h != prev)
        {
            let b = Broken {
                position: self.verdict.checked + 1,
                seq: seq_before.saturating_add(1),
                reason: format!(
                    "segment header says it follows record {seq_before} with hash {prev}, but the previous segment ends at record {s} with hash {h}"
                ),
            };
            self.verdict.broken = Some(b.clone());
            return Err(b);
        }
        Ok(())
    }

    /// Checks one item; the first failure is kept and returned.
    pub fn feed(&mut self, item: &Item) -> Result<(), Broken> {
        if self.verdict.broken.is_some() {
            return Ok(());
        }
        let position = self.verdict.checked + 1;
        let seq = item.seq();
        let fail = |reason: String| Broken {
            position,
            seq,
            reason,
        };
        let problem = if let Item::Full(r) = item
            && hash_of(r) != r.hash
        {
            Some(fail(format!(
                "record {seq} was altered: its content does not match its hash"
            )))
        } else {
            match &self.last {
                Some((s, h)) if s.checked_add(1) != Some(seq) => Some(fail(format!(
                    "record {seq} follows record {s}: {}",
                    if seq <= *s {
                        "records are out of order or repeated".to_owned()
                    } else {
                        format!(
                            "record(s) {}..{} are missing",
                            s.saturating_add(1),
                            seq.saturating_sub(1)
                        )
                    }
                ))),
                Some((s, h)) if item.prev() != h => Some(fail(format!(
                    "record {seq} does not chain to record {s}: a record before it was altered, removed or replaced"
                ))),
                None => match &self.anchor {
                    Some(a) if a != item.prev() => Some(fail(format!(
                        "record {seq} does not chain to the start of the log"
                    ))),
                    _ => None,
                },
                _ => None,
            }
        };
        self.verdict.checked += 1;
        if let Some(b) = problem {
            self.verdict.broken = Some(b.clone());
            return Err(b);
        }
        if matches!(item, Item::Full(_)) {
            self.verdict.full += 1;
        }
        self.verdict.first_seq.get_or_insert(seq);
        self.verdict.last_seq = Some(seq);
        self.last = Some((seq, item.hash().to_owned()));
        Ok(())
    }

    /// Marks the input itself unreadable at the next position (a line that does not parse).
    pub fn unreadable(&mut self, reason: String) {
        if self.verdict.broken.is_none() {
            self.verdict.broken = Some(Broken {
                position: self.verdict.checked + 1,
                seq: self.last.as_ref().map_or(0, |(s, _)| s.saturating_add(1)),
                reason,
            });
        }
    }

    pub fn broken(&self) -> bool {
        self.verdict.broken.is_some()
    }

    pub fn finish(self) -> Verdict {
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::{Entry, Level, Service};

    fn chain(n: u64) -> Vec<Record> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let r = Record::seal(
                    seq,
                    "2026-01-01T00:00:00.000Z".into(),
                    prev.clone(),
                    Entry::new(Service::Azure, Level::Info, "t.e", format!("m{seq}")),
                );
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    fn check(items: &[Record]) -> Verdict {
        let mut v = Verifier::new(Some(GENESIS.into()));
        for r in items {
            let _ = v.feed(&Item::Full(Box::new(r.clone())));
        }
        v.finish()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let v = check(&chain(5));
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.checked, v.first_seq, v.last_seq), (5, Some(1), Some(5)));
    }

    #[test]
    fn edit_delete_reorder_are_found_at_the_right_record() {
        let mut c = chain(6);
        c[2].message.push('!');
        let b = check(&c).broken.unwrap();
        assert_eq!((b.position, b.seq), (3, 3));

        let mut c = chain(6);
        c.remove(3);
        let b = check(&c).broken.unwrap();
        assert_eq!((b.position, b.seq), (4, 5));

        let mut c = chain(6);
        c.swap(1, 2);
        let b = check(&c).broken.unwrap();
        assert_eq!((b.position, b.seq), (2, 3));
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_link() {
        let mut c = chain(4);
        c[1].message = "forged".into();
        c[1].hash = hash_of(&c[1]);
        let b = check(&c).broken.unwrap();
        assert_eq!((b.position, b.seq), (3, 3));
    }
}
