//! A key group: one Azure key (its versions are the group's pushed keys) and how it rotates,
//! including when its next rotation falls due.

use super::{CredentialName, GroupName, KeyOp, KeyType, RotationPolicy, Target, add_months};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One Azure key, named after the group, in one Key Vault or Managed HSM pool, reached with one
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroup {
    pub name: GroupName,
    pub credential: CredentialName,
    /// The Key Vault or Managed HSM pool holding the key; fixed for the group's life.
    pub target: Target,
    pub key_type: KeyType,
    pub key_ops: Vec<KeyOp>,
    pub rotation: RotationPolicy,
    /// Unix seconds, UTC, of the last successful rotation push.
    pub last_rotated: Option<i64>,
    /// Unix seconds, UTC.
    pub created: i64,
}

impl KeyGroup {
    /// When the next rotation is due (Unix seconds), if rotation is on: N calendar months after
    /// the last rotation (or the group's creation). A time in the past means it was missed and
    /// is due now.
    pub fn rotation_due(&self) -> Option<i64> {
        let last =
            OffsetDateTime::from_unix_timestamp(self.last_rotated.unwrap_or(self.created)).ok()?;
        self.rotation.next_due(last).map(|t| t.unix_timestamp())
    }

    /// The first rotation instant strictly after `now`, stepping whole periods from `due` (used
    /// to skip, not repeat, rotations on an appliance that is not designated).
    pub fn next_period_after(&self, due: i64, now: i64) -> Option<i64> {
        let start = OffsetDateTime::from_unix_timestamp(due).ok()?;
        let months = self.rotation.rotate_every_months.max(1);
        let mut t = start;
        let mut n = 0u32;
        while t.unix_timestamp() <= now {
            n = n.checked_add(months)?;
            t = add_months(start, n);
        }
        Some(t.unix_timestamp())
    }
}

/// Groups for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A group in vault `vault1` with rotation on every `every` months, for unit tests.
    pub(crate) fn test_group(name: &str, created: OffsetDateTime, every: u32) -> KeyGroup {
        KeyGroup {
            name: GroupName::try_from(name).unwrap(),
            credential: CredentialName::try_from("c").unwrap(),
            target: Target::KeyVault(crate::model::VaultName::try_from("vault1").unwrap()),
            key_type: KeyType::Rsa {
                bits: 2048,
                exponent: crate::model::RsaExponent::F4,
            },
            key_ops: vec![],
            rotation: RotationPolicy {
                enabled: true,
                rotate_every_months: every,
                keep_valid_months: 24,
            },
            last_rotated: None,
            created: created.unix_timestamp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::test_group;
    use super::*;
    use time::macros::datetime;

    fn group(created: OffsetDateTime, every: u32, enabled: bool) -> KeyGroup {
        let mut g = test_group("g", created, every);
        g.rotation.enabled = enabled;
        g
    }

    fn ts(t: OffsetDateTime) -> i64 {
        t.unix_timestamp()
    }

    #[test]
    fn rotation_is_due_calendar_months_after_the_last_rotation_or_creation() {
        let mut g = group(datetime!(2026-01-31 10:00 UTC), 1, true);
        assert_eq!(g.rotation_due(), Some(ts(datetime!(2026-02-28 10:00 UTC))));
        g.last_rotated = Some(ts(datetime!(2026-03-15 08:00 UTC)));
        assert_eq!(g.rotation_due(), Some(ts(datetime!(2026-04-15 08:00 UTC))));
        g.rotation.enabled = false;
        assert_eq!(g.rotation_due(), None, "rotation off: never due");
    }

    #[test]
    fn a_skipped_rotation_moves_to_the_next_period_after_now() {
        let g = group(datetime!(2026-01-31 00:00 UTC), 1, true);
        let due = g.rotation_due().unwrap();
        assert_eq!(due, ts(datetime!(2026-02-28 00:00 UTC)));
        let next = g
            .next_period_after(due, ts(datetime!(2026-04-15 00:00 UTC)))
            .unwrap();
        assert_eq!(next, ts(datetime!(2026-04-28 00:00 UTC)));
        // Exactly at a period boundary the next one follows: never the instant itself.
        assert_eq!(
            g.next_period_after(due, ts(datetime!(2026-04-28 00:00 UTC))),
            Some(ts(datetime!(2026-05-28 00:00 UTC)))
        );
        // Not yet due: the due time itself.
        assert_eq!(g.next_period_after(due, due - 1), Some(due));
    }
}
