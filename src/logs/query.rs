//! Choosing records: the filter of `byokctl log show`, `GET /v1/logs` and exports (service,
//! minimum level, time range, job, group, free text) and paging by sequence number.
//!
//! Owns the query-string form of a filter (percent-decoded, unknown parameters refused) and
//! the match of one record. Never reads the store itself.

use super::record::{Level, Record, Service, ts_of};
use std::collections::BTreeSet;

/// Most records one page may hold.
pub const MAX_LIMIT: usize = 1000;
/// Records per page when the caller names no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// The longest follow wait one request may ask for.
pub const MAX_WAIT_SECS: u64 = 60;

/// A filter over records; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub services: BTreeSet<Service>,
    pub min_level: Option<Level>,
    /// Inclusive bounds, as record timestamps (UTC, milliseconds).
    pub since: Option<String>,
    pub until: Option<String>,
    pub job: Option<u64>,
    pub group: Option<String>,
    /// Case-insensitive text searched in the message, event and named fields.
    pub text: Option<String>,
}

/// A page request: the filter, where to start and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub filter: Filter,
    /// Only records with a greater sequence number.
    pub after: u64,
    pub limit: usize,
    /// Seconds to wait for a matching record when there is none yet (follow).
    pub wait: u64,
}

/// A parameter that does not parse: its name and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FilterError {
    pub field: String,
    pub reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> FilterError {
    FilterError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Parses a time bound: RFC 3339 (any offset), turned into the record timestamp form.
pub fn parse_time(field: &str, v: &str) -> Result<String, FilterError> {
    // A time whose offset takes it past year 9999 in UTC (e.g. `9999-12-31T23:59:59-23:59`)
    // has no UTC form: refused here, since converting it would panic.
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
        .map(ts_of)
        .ok_or_else(|| bad(field, "an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"))
}

impl Filter {
    /// Sets one filter parameter by its query name; `Ok(false)` if the name is not a filter's.
    pub fn set(&mut self, k: &str, v: &str) -> Result<bool, FilterError> {
        match k {
            "service" => {
                for s in v.split(',').filter(|s| !s.is_empty()) {
                    let s = Service::parse(s)
                        .ok_or_else(|| bad(k, "azure, hsm, control, jobs or system"))?;
                    self.services.insert(s);
                }
            }
            "level" => {
                self.min_level = Some(Level::parse(v).ok_or_else(|| bad(k, "info, warn or error"))?)
            }
            "since" => self.since = Some(parse_time(k, v)?),
            "until" => self.until = Some(parse_time(k, v)?),
            "job" => self.job = Some(v.parse().map_err(|_| bad(k, "a job id"))?),
            "group" if !v.is_empty() => self.group = Some(v.to_owned()),
            "text" if !v.is_empty() => self.text = Some(v.to_lowercase()),
            "group" | "text" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn matches(&self, r: &Record) -> bool {
        if !self.services.is_empty() && !self.services.contains(&r.service) {
            return false;
        }
        if self.min_level.is_some_and(|l| r.level < l) {
            return false;
        }
        if self
            .since
            .as_ref()
            .is_some_and(|s| r.ts.as_str() < s.as_str())
            || self
                .until
                .as_ref()
                .is_some_and(|u| r.ts.as_str() > u.as_str())
        {
            return false;
        }
        if self.job.is_some_and(|j| r.job != Some(j)) {
            return false;
        }
        if self
            .group
            .as_ref()
            .is_some_and(|g| r.group.as_ref() != Some(g))
        {
            return false;
        }
        if let Some(t) = &self.text {
            let hay = [
                Some(&r.message),
                Some(&r.event),
                r.identity.as_ref(),
                r.group.as_ref(),
                r.key.as_ref(),
                r.vault.as_ref(),
                r.kid.as_ref(),
                r.version.as_ref(),
                r.credential.as_ref(),
                r.approval.as_ref(),
            ];
            if !hay
                .into_iter()
                .flatten()
                .any(|h| h.to_lowercase().contains(t))
            {
                return false;
            }
        }
        true
    }

    /// The filter as query parameters (what byokctl sends).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !self.services.is_empty() {
            let s: Vec<&str> = self.services.iter().map(|s| s.as_str()).collect();
            out.push(("service", s.join(",")));
        }
        if let Some(l) = self.min_level {
            out.push(("level", l.as_str().to_lowercase()));
        }
        if let Some(v) = &self.since {
            out.push(("since", v.clone()));
        }
        if let Some(v) = &self.until {
            out.push(("until", v.clone()));
        }
        if let Some(v) = self.job {
            out.push(("job", v.to_string()));
        }
        if let Some(v) = &self.group {
            out.push(("group", v.clone()));
        }
        if let Some(v) = &self.text {
            out.push(("text", v.clone()));
        }
        out
    }
}

/// Parses the query string of `GET /v1/logs`; `extra` names further accepted parameters,
/// returned as pairs.
pub fn parse(query: &str, extra: &[&str]) -> Result<(Query, Vec<(String, String)>), FilterError> {
    let mut q = Query {
        filter: Filter::default(),
        after: 0,
        limit: DEFAULT_LIMIT,
        wait: 0,
    };
    let mut rest = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let (k, v) = (k.as_ref(), v.as_ref());
        if q.filter.set(k, v)? {
            continue;
        }
        match k {
            "after" => q.after = v.parse().map_err(|_| bad(k, "a sequence number"))?,
            "limit" => {
                q.limit = match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                    _ => return Err(bad(k, format!("from 1 to {MAX_LIMIT}"))),
                }
            }
            "wait" => {
                q.wait = match v.parse::<u64>() {
                    Ok(n) if n <= MAX_WAIT_SECS => n,
                    _ => return Err(bad(k, format!("seconds, from 0 to {MAX_WAIT_SECS}"))),
                }
            }
            _ if extra.contains(&k) => rest.push((k.to_owned(), v.to_owned())),
            _ => return Err(bad(k, "unknown query parameter")),
        }
    }
    Ok((q, rest))
}

/// Encodes pairs as a query string (percent-encoding values).
pub fn encode(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_filter_and_refuses_unknowns() {
        let (q, _) = parse(
            "service=azure,jobs&level=WARN&since=2026-01-01T01:00:00%2B01:00&job=7&group=g&text=Hello%20World&after=3&limit=5",
            &[],
        )
        .unwrap();
        assert_eq!(q.filter.services.len(), 2);
        assert_eq!(q.filter.min_level, Some(Level::Warn));
        assert_eq!(q.filter.since.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        assert_eq!(q.filter.text.as_deref(), Some("hello world"));
        assert_eq!((q.after, q.limit, q.filter.job), (3, 5, Some(7)));
        assert_eq!(parse("nope=1", &[]).unwrap_err().field, "nope");
        assert_eq!(parse("limit=0", &[]).unwrap_err().field, "limit");
        // Past year 9999 once in UTC: a clear refusal, not a panic (which aborts the daemon).
        for v in ["9999-12-31T23:59:59-23:59", "9999-12-31T23:00:00-01:00"] {
            let q = format!("since={}", v.replace('+', "%2B"));
            assert_eq!(parse(&q, &[]).unwrap_err().field, "since", "{v}");
            assert_eq!(
                parse(&q.replace("since", "until"), &[]).unwrap_err().field,
                "until"
            );
        }
        assert!(parse("since=9999-12-31T22:00:00-01:00", &[]).is_ok());
        assert!(parse("since=0000-01-01T00:00:00%2B23:59", &[]).is_ok());
        assert_eq!(parse("level=debug", &[]).unwrap_err().field, "level");
    }
}
