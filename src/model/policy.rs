//! Rotation policy and calendar-month arithmetic in UTC (day clamped to the month's end).

use super::ModelError;
use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

/// "Rotate every N months" and "keep key valid for N months", with an on/off switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    pub enabled: bool,
    /// Rotate every N calendar months (1–120).
    pub rotate_every_months: u32,
    /// Each pushed version expires N calendar months after it is pushed (1–120).
    pub keep_valid_months: u32,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            rotate_every_months: 12,
            keep_valid_months: 24,
        }
    }
}

impl RotationPolicy {
    pub const MAX_MONTHS: u32 = 120;

    pub fn validate(&self) -> Result<(), ModelError> {
        for (field, v) in [
            ("rotate_every_months", self.rotate_every_months),
            ("keep_valid_months", self.keep_valid_months),
        ] {
            if !(1..=Self::MAX_MONTHS).contains(&v) {
                return Err(ModelError::new(
                    field,
                    format!("{v} must be between 1 and {}", Self::MAX_MONTHS),
                ));
            }
        }
        Ok(())
    }

    /// When the next rotation is due, given the last one (or the group's creation time).
    pub fn next_due(&self, last: OffsetDateTime) -> Option<OffsetDateTime> {
        self.enabled
            .then(|| add_months(last, self.rotate_every_months))
    }

    /// The `exp` to set on a version pushed at `now`.
    pub fn expiry_from(&self, now: OffsetDateTime) -> OffsetDateTime {
        add_months(now, self.keep_valid_months)
    }
}

/// Adds calendar months in UTC, clamping the day to the end of the target month
/// (Jan 31 + 1 month = Feb 28, or Feb 29 in a leap year). Time of day is kept.
pub fn add_months(t: OffsetDateTime, months: u32) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    let total = t.year() as i64 * 12 + (t.month() as i64 - 1) + months as i64;
    let year = (total.div_euclid(12)) as i32;
    let month_index = total.rem_euclid(12) as u8 + 1;
    let month = Month::try_from(month_index).unwrap_or(Month::December);
    let day = t.day().min(month.length(year));
    match Date::from_calendar_date(year, month, day) {
        Ok(date) => t.replace_date(date),
        // Only reachable beyond year 9999: saturate rather than panic.
        Err(_) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn month_arithmetic_clamps_to_month_end() {
        assert_eq!(
            add_months(datetime!(2026-01-31 10:00 UTC), 1),
            datetime!(2026-02-28 10:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2028-01-31 10:00 UTC), 1),
            datetime!(2028-02-29 10:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2026-08-31 00:00 UTC), 1),
            datetime!(2026-09-30 00:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2026-11-15 23:59 UTC), 2),
            datetime!(2027-01-15 23:59 UTC)
        );
        assert_eq!(
            add_months(datetime!(2024-02-29 12:00 UTC), 12),
            datetime!(2025-02-28 12:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2024-02-29 12:00 UTC), 48),
            datetime!(2028-02-29 12:00 UTC)
        );
    }

    #[test]
    fn policy_limits_are_enforced() {
        let mut p = RotationPolicy::default();
        assert!(p.validate().is_ok());
        p.rotate_every_months = 0;
        assert_eq!(p.validate().unwrap_err().field, "rotate_every_months");
        p.rotate_every_months = 1;
        p.keep_valid_months = 121;
        assert_eq!(p.validate().unwrap_err().field, "keep_valid_months");
    }
}
