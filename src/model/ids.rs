//! Ids that are not names: a dual-control approval's id, and an Azure key version. Both are
//! serialized as the bare string they wrap (`serde(transparent)`), so the state format and the
//! API keep their shape.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A dual-control approval's id: a random UUID, made when the request is submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApprovalId(uuid::Uuid);

impl ApprovalId {
    /// A new random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl std::str::FromStr for ApprovalId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

/// An Azure key version: the last segment of a key's `kid` (32 hex characters), exactly as
/// Azure gave it. byokd never makes one up; it only records and compares them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AzureVersion(String);

impl AzureVersion {
    pub fn new(version: impl Into<String>) -> Self {
        Self(version.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AzureVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for AzureVersion {
    fn from(version: String) -> Self {
        Self(version)
    }
}

impl From<&str> for AzureVersion {
    fn from(version: &str) -> Self {
        Self(version.to_owned())
    }
}

impl PartialEq<str> for AzureVersion {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for AzureVersion {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_the_bare_string_form() {
        let id: ApprovalId = "3f0c1b9e-0d6a-4f51-9a55-4d7c1f0f2b11".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"3f0c1b9e-0d6a-4f51-9a55-4d7c1f0f2b11\""
        );
        assert_eq!(id.to_string(), "3f0c1b9e-0d6a-4f51-9a55-4d7c1f0f2b11");
        assert!("not-a-uuid".parse::<ApprovalId>().is_err());
        let v = AzureVersion::new("0123456789abcdef0123456789abcdef");
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, "\"0123456789abcdef0123456789abcdef\"");
        assert_eq!(serde_json::from_str::<AzureVersion>(&json).unwrap(), v);
    }
}
