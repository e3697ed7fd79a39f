//! One service log record: what happened, where, to what, and its place in the hash chain.
//!
//! Owns the record's fields, their names on the wire, and the entry a producer hands in
//! (everything but sequence, time and hashes). Never holds a secret: producers pass names,
//! ids and plain-language messages only.

use serde::{Deserialize, Serialize};

/// The part of byokd a record is about (the console's "service" drop-down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Azure,
    Hsm,
    Control,
    Jobs,
    System,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Azure,
        Service::Hsm,
        Service::Control,
        Service::Jobs,
        Service::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Azure => "azure",
            Service::Hsm => "hsm",
            Service::Control => "control",
            Service::Jobs => "jobs",
            Service::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// INFO: it worked; WARN: it worked after a recoverable problem; ERROR: it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// Accepts `info`, `INFO`, `warn`, `warning`, `error` in any case.
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

/// What a producer records; the log adds sequence, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub service: Service,
    pub level: Level,
    /// A dotted event code, e.g. `azure.kek.created`.
    pub event: String,
    pub message: String,
    pub identity: Option<String>,
    pub job: Option<u64>,
    pub group: Option<String>,
    pub key: Option<String>,
    pub vault: Option<String>,
    pub kid: Option<String>,
    pub version: Option<String>,
    /// The credential an action concerns.
    pub credential: Option<String>,
    /// The dual-control approval an action belongs to.
    pub approval: Option<String>,
}

impl Entry {
    pub fn new(service: Service, level: Level, event: &str, message: impl Into<String>) -> Self {
        Self {
            service,
            level,
            event: event.to_owned(),
            message: message.into(),
            identity: None,
            job: None,
            group: None,
            key: None,
            vault: None,
            kid: None,
            version: None,
            credential: None,
            approval: None,
        }
    }

    pub fn job(mut self, job: u64) -> Self {
        self.job = Some(job);
        self
    }
    pub fn group(mut self, v: impl Into<String>) -> Self {
        self.group = Some(v.into());
        self
    }
    pub fn key(mut self, v: impl Into<String>) -> Self {
        self.key = Some(v.into());
        self
    }
    pub fn vault(mut self, v: impl Into<String>) -> Self {
        self.vault = Some(v.into());
        self
    }
    pub fn kid(mut self, v: impl Into<String>) -> Self {
        self.kid = Some(v.into());
        self
    }
    pub fn version(mut self, v: impl Into<String>) -> Self {
        self.version = Some(v.into());
        self
    }
    pub fn credential(mut self, v: impl Into<String>) -> Self {
        self.credential = Some(v.into());
        self
    }
    pub fn approval(mut self, v: impl Into<String>) -> Self {
        self.approval = Some(v.into());
        self
    }
    pub fn identity(mut self, v: impl Into<String>) -> Self {
        self.identity = Some(v.into());
        self
    }
}

/// A stored record. Field order here is the hashed form's order (see `chain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    /// UTC, RFC 3339 with milliseconds, e.g. `2026-11-29T04:30:00.123Z`.
    pub ts: String,
    pub service: Service,
    pub level: Level,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Absent from records written before it existed, so their hashes are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    pub message: String,
    /// The previous record's hash (hex); 64 zeros before the first record ever.
    pub prev: String,
    /// SHA-256 (hex) over this record's other fields, `prev` included (see `chain`).
    pub hash: String,
}

impl Record {
    /// The hash this record must carry: SHA-256 over its JSON form with an empty `hash` field,
    /// fields in the fixed order of the struct.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut unhashed = self.clone();
        unhashed.hash.clear();
        let bytes = serde_json::to_vec(&unhashed).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }
}

/// A time as a record timestamp (UTC, milliseconds).
pub fn ts_of(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}
