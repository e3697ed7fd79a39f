//! Validated names: group names (the Azure key's name), vault and Managed HSM pool names, GUIDs,
//! credential names and key names (a key's own name inside its group).
//!
//! Each type can only be built through validation, and deserializing re-validates, so a
//! value of one of these types is always well-formed.

use super::ModelError;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $field:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ModelError;
            fn try_from(value: String) -> Result<Self, ModelError> {
                $check(&value).map_err(|reason| ModelError::new($field, reason))?;
                Ok(Self(value))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ModelError;
            fn try_from(value: &str) -> Result<Self, ModelError> {
                Self::try_from(value.to_owned())
            }
        }

        impl std::str::FromStr for $name {
            type Err = ModelError;
            fn from_str(value: &str) -> Result<Self, ModelError> {
                Self::try_from(value.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated_name!(
    /// A key group's name, which is also the Azure key's name: 1–127 of `[0-9A-Za-z-]`.
    GroupName, "name", check_key_name
);
validated_name!(
    /// An Azure Key Vault name: 3–24 letters, digits and hyphens, starting with a letter,
    /// not ending with a hyphen, with no `--`.
    VaultName, "vault", check_vault_name
);
validated_name!(
    /// An Azure Key Vault Managed HSM pool name: the same rules as a vault name (3–24 letters,
    /// digits and hyphens, starting with a letter, not ending with a hyphen, with no `--`).
    HsmPoolName, "managed_hsm", check_vault_name
);
validated_name!(
    /// A GUID such as an Entra tenant or client id, kept in canonical lower case.
    Guid, "guid", check_guid
);
validated_name!(
    /// A credential's unique name: 1–64 of `[0-9A-Za-z._-]`, starting with a letter or digit.
    CredentialName, "credential", check_simple_name
);
validated_name!(
    /// A local key's name inside its group: 1–64 of `[0-9A-Za-z._-]`, starting with a letter or
    /// digit.
    KeyName, "key", check_simple_name
);

fn check_key_name(s: &str) -> Result<(), String> {
    let ok =
        (1..=127).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then_some(())
        .ok_or_else(|| format!("{s:?} must be 1-127 characters of 0-9, a-z, A-Z and '-'"))
}

fn check_vault_name(s: &str) -> Result<(), String> {
    let rule = "must be 3-24 letters, digits and hyphens, start with a letter, not end with a hyphen, and not contain '--'";
    let bytes = s.as_bytes();
    let ok = (3..=24).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && !s.ends_with('-')
        && !s.contains("--");
    ok.then_some(()).ok_or_else(|| format!("{s:?} {rule}"))
}

fn check_guid(s: &str) -> Result<(), String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then_some(())
        .ok_or_else(|| format!("{s:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"))
}

fn check_simple_name(s: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        format!("{s:?} must be 1-64 characters of 0-9, a-z, A-Z, '.', '_' and '-', starting with a letter or digit")
    })
}

impl HsmPoolName {
    /// The same name as a [`VaultName`]: both follow the same rules, so records that name "the
    /// vault or pool" (a KEK journal's) hold either as one.
    pub fn to_vault_name(&self) -> VaultName {
        VaultName(self.0.clone())
    }
}

impl VaultName {
    /// The same name as an [`HsmPoolName`] (see [`HsmPoolName::to_vault_name`]).
    pub fn to_pool_name(&self) -> HsmPoolName {
        HsmPoolName(self.0.clone())
    }
}

impl KeyName {
    /// The smallest valid name in byte order, for range scans over (group, key) maps.
    pub fn smallest() -> Self {
        Self("0".to_owned())
    }
}

impl Guid {
    /// Parses a GUID and stores it in lower case, Azure's canonical form.
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        Self::try_from(s.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_follow_azure_key_rules() {
        assert!(GroupName::try_from("payments-2026").is_ok());
        assert!(GroupName::try_from("a".repeat(127)).is_ok());
        for bad in ["", "has space", "under_score", "dot.name", "é"] {
            let err = GroupName::try_from(bad).unwrap_err();
            assert_eq!(err.field, "name", "{bad}");
        }
        assert!(GroupName::try_from("a".repeat(128)).is_err());
    }

    #[test]
    fn vault_names_follow_azure_rules() {
        for good in ["abc", "contoso-hsm-01", "A23456789012345678901234"] {
            assert!(VaultName::try_from(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "1vault",
            "vault-",
            "va--ult",
            "vault_1",
            "a2345678901234567890123456",
        ] {
            assert_eq!(
                VaultName::try_from(bad).unwrap_err().field,
                "vault",
                "{bad}"
            );
        }
    }

    #[test]
    fn managed_hsm_pool_names_follow_azure_rules() {
        assert!(HsmPoolName::try_from("contoso-mhsm-01").is_ok());
        for bad in [
            "ab",
            "1pool",
            "pool-",
            "po--ol",
            "pool.x",
            "a2345678901234567890123456",
        ] {
            assert_eq!(
                HsmPoolName::try_from(bad).unwrap_err().field,
                "managed_hsm",
                "{bad}"
            );
        }
    }

    #[test]
    fn guids_are_validated_and_lowercased() {
        let g = Guid::parse("72F988BF-86F1-41AF-91AB-2D7CD011DB47").unwrap();
        assert_eq!(g.as_str(), "72f988bf-86f1-41af-91ab-2d7cd011db47");
        for bad in [
            "",
            "72f988bf86f141af91ab2d7cd011db47",
            "72f988bf-86f1-41af-91ab-2d7cd011db4g",
            "{72f988bf-86f1-41af-91ab-2d7cd011db47}",
        ] {
            assert!(Guid::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deserializing_revalidates() {
        let bytes = postcard::to_allocvec(&"bad name".to_string()).unwrap();
        assert!(postcard::from_bytes::<GroupName>(&bytes).is_err());
    }
}
