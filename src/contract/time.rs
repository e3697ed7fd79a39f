//! Times on the wire: RFC 3339 strings in UTC with whole seconds (`2026-01-31T12:00:00Z`).
//! The daemon keeps Unix seconds; this type converts at the edge.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time, whole seconds, written as RFC 3339 UTC. Reading accepts any RFC 3339
/// offset (converted to UTC); fractions of a second are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    /// Unix seconds, UTC.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// RFC 3339, or `None` for a time outside the years 0 to 9999.
    pub fn rfc3339(self) -> Option<String> {
        let t = OffsetDateTime::from_unix_timestamp(self.0).ok()?;
        if !(0..=9999).contains(&t.year()) {
            return None;
        }
        t.format(&Rfc3339).ok()
    }

    /// Parses RFC 3339 text.
    pub fn parse(text: &str) -> Option<Self> {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(|t| Self(t.unix_timestamp()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rfc3339() {
            Some(s) => f.write_str(&s),
            None => write!(f, "@{}", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339() {
            Some(text) => s.serialize_str(&text),
            None => Err(serde::ser::Error::custom(format!(
                "time {} (Unix seconds) is outside the years 0 to 9999",
                self.0
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_and_read_back() {
        let t = Timestamp::from_unix(1_900_000_000);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2030-03-17T17:46:40Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        let offset: Timestamp = serde_json::from_str("\"2030-03-17T19:46:40+02:00\"").unwrap();
        assert_eq!(offset, t);
        assert!(serde_json::from_str::<Timestamp>("1900000000").is_err());
        assert!(serde_json::from_str::<Timestamp>("\"2030-03-17\"").is_err());
        assert!(serde_json::to_string(&Timestamp::from_unix(i64::MAX / 2)).is_err());
    }
}
