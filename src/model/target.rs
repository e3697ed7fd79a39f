//! Where a key group's Azure key lives: a Key Vault or a Managed HSM pool.
//!
//! Both speak the same keys data plane and accept the same BYOK transfer; they differ in host
//! suffix, sign-in scope, access model (vault access policies or Azure RBAC against Managed HSM
//! local RBAC) and in what they accept (only Managed HSM takes AES keys, and its soft-delete is
//! always on). Everything that reaches Azure for a group goes through its [`Target`].

use super::{HsmPoolName, VaultName};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The Azure service a key group's key is pushed to, with its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    /// An Azure Key Vault (Premium): `<vault>.vault.azure.net` on the public cloud.
    KeyVault(VaultName),
    /// An Azure Key Vault Managed HSM pool: `<pool>.managedhsm.azure.net` on the public cloud.
    ManagedHsm(HsmPoolName),
}

/// The kind of a [`Target`], without its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    KeyVault,
    ManagedHsm,
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::KeyVault(_) => TargetKind::KeyVault,
            Target::ManagedHsm(_) => TargetKind::ManagedHsm,
        }
    }

    /// The vault or pool name, as given.
    pub fn name(&self) -> &str {
        match self {
            Target::KeyVault(v) => v.as_str(),
            Target::ManagedHsm(p) => p.as_str(),
        }
    }

    pub fn is_managed_hsm(&self) -> bool {
        matches!(self, Target::ManagedHsm(_))
    }

    /// The Key Vault's name, when the target is one.
    pub fn vault(&self) -> Option<&VaultName> {
        match self {
            Target::KeyVault(v) => Some(v),
            Target::ManagedHsm(_) => None,
        }
    }

    /// The Managed HSM pool's name, when the target is one.
    pub fn managed_hsm(&self) -> Option<&HsmPoolName> {
        match self {
            Target::KeyVault(_) => None,
            Target::ManagedHsm(p) => Some(p),
        }
    }

    /// The name as a KEK journal records it (a [`VaultName`], whichever the kind): the KEK is
    /// always made in the group's own target.
    pub fn journal_name(&self) -> VaultName {
        match self {
            Target::KeyVault(v) => v.clone(),
            Target::ManagedHsm(p) => p.to_vault_name(),
        }
    }

    /// The target of `self`'s kind named `name` (a KEK journal's record of where it made the KEK).
    pub fn with_journal_name(&self, name: &VaultName) -> Target {
        match self {
            Target::KeyVault(_) => Target::KeyVault(name.clone()),
            Target::ManagedHsm(_) => Target::ManagedHsm(name.to_pool_name()),
        }
    }

    /// Whether `self` and `other` are the same vault or pool (Azure names are case-insensitive).
    pub fn same_as(&self, other: &Target) -> bool {
        self.kind() == other.kind() && self.name().eq_ignore_ascii_case(other.name())
    }

    /// `vault contoso-kv` or `Managed HSM pool contoso-mhsm`: how job steps, log messages and
    /// errors name it in a sentence, the kind taken from the type.
    pub fn named(&self) -> Named<'_> {
        Named(self)
    }
}

/// A [`Target`] as a sentence names it: see [`Target::named`].
#[derive(Debug, Clone, Copy)]
pub struct Named<'a>(&'a Target);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.kind().noun(), self.0.name())
    }
}

impl TargetKind {
    /// What operators call it: "Key Vault" or "Managed HSM".
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::KeyVault => "Key Vault",
            TargetKind::ManagedHsm => "Managed HSM",
        }
    }

    /// What a sentence calls one before its name: "vault" or "Managed HSM pool".
    pub fn noun(self) -> &'static str {
        match self {
            TargetKind::KeyVault => "vault",
            TargetKind::ManagedHsm => "Managed HSM pool",
        }
    }

    /// How a sentence refers back to one: "the vault" or "the pool".
    pub fn the(self) -> &'static str {
        match self {
            TargetKind::KeyVault => "the vault",
            TargetKind::ManagedHsm => "the pool",
        }
    }

    /// [`Self::the`] opening a sentence: "The vault" or "The pool".
    pub fn the_capital(self) -> &'static str {
        match self {
            TargetKind::KeyVault => "The vault",
            TargetKind::ManagedHsm => "The pool",
        }
    }

    /// The API's and the CLI's spelling: `key_vault` or `managed_hsm`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::KeyVault => "key_vault",
            TargetKind::ManagedHsm => "managed_hsm",
        }
    }
}

/// `Key Vault contoso-kv` or `Managed HSM contoso-mhsm`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind().label(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_names_its_kind_and_compares_names_case_insensitively() {
        let kv = Target::KeyVault(VaultName::try_from("Contoso-KV").unwrap());
        let hsm = Target::ManagedHsm(HsmPoolName::try_from("contoso-kv").unwrap());
        assert_eq!(kv.to_string(), "Key Vault Contoso-KV");
        assert_eq!(hsm.to_string(), "Managed HSM contoso-kv");
        assert!(kv.same_as(&Target::KeyVault(
            VaultName::try_from("contoso-kv").unwrap()
        )));
        assert!(
            !kv.same_as(&hsm),
            "a vault and a pool of the same name differ"
        );
        assert_eq!(hsm.kind().as_str(), "managed_hsm");
        assert_eq!(kv.named().to_string(), "vault Contoso-KV");
        assert_eq!(hsm.named().to_string(), "Managed HSM pool contoso-kv");
        assert_eq!(
            (kv.kind().the(), hsm.kind().the()),
            ("the vault", "the pool")
        );
        assert_eq!(hsm.kind().the_capital(), "The pool");
        assert!(hsm.is_managed_hsm() && hsm.vault().is_none());
    }

    #[test]
    fn a_target_round_trips_and_revalidates_its_name() {
        let hsm = Target::ManagedHsm(HsmPoolName::try_from("pool-1").unwrap());
        let bytes = postcard::to_allocvec(&hsm).unwrap();
        assert_eq!(postcard::from_bytes::<Target>(&bytes).unwrap(), hsm);
        let bad = postcard::to_allocvec(&(1u8, "bad name")).unwrap();
        assert!(postcard::from_bytes::<Target>(&bad).is_err());
    }
}
