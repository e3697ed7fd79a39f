//! Clouds and the outbound allowlist.
//!
//! Owns the host names of each Azure cloud (docs/byok-protocol.md#clouds-and-endpoints) and the [`Allowlist`]: the only
//! hosts byokd may connect to are the cloud's sign-in host, its ARM host, `<vault>.<vault
//! suffix>` for the Key Vaults and `<pool>.<Managed HSM suffix>` for the Managed HSM pools that
//! key groups name, over `https` on port 443. The target set follows the service's committed
//! state (read at each check), so a vault or pool is allowed as soon as the group naming it is
//! committed and refused once no group names it.
//! Everything else (other hosts, ports, schemes, IP literals, user-info) is refused *before* any
//! DNS lookup, logged at ERROR. This module must never resolve or connect anything itself.

use super::AzureError;
use crate::config::Cloud;
use crate::model::{Target, TargetKind};
use http::Uri;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// The fixed endpoints of one Azure cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudEndpoints {
    pub cloud: Cloud,
    /// Entra ID sign-in host, e.g. `login.microsoftonline.com`.
    pub login_host: &'static str,
    /// Azure Resource Manager host, e.g. `management.azure.com`.
    pub arm_host: &'static str,
    /// Key Vault host suffix without the leading dot, e.g. `vault.azure.net`.
    pub vault_suffix: &'static str,
    /// Managed HSM host suffix without the leading dot; `None` on a cloud without Managed HSM.
    /// Azure CLI's cloud definitions (`mhsm_dns`) give one for each cloud byokd supports.
    pub managed_hsm_suffix: Option<&'static str>,
}

impl CloudEndpoints {
    pub const fn of(cloud: Cloud) -> Self {
        match cloud {
            Cloud::Public => Self {
                cloud,
                login_host: "login.microsoftonline.com",
                arm_host: "management.azure.com",
                vault_suffix: "vault.azure.net",
                managed_hsm_suffix: Some("managedhsm.azure.net"),
            },
            Cloud::China => Self {
                cloud,
                login_host: "login.chinacloudapi.cn",
                arm_host: "management.chinacloudapi.cn",
                vault_suffix: "vault.azure.cn",
                managed_hsm_suffix: Some("managedhsm.azure.cn"),
            },
            Cloud::Usgov => Self {
                cloud,
                login_host: "login.microsoftonline.us",
                arm_host: "management.usgovcloudapi.net",
                vault_suffix: "vault.usgovcloudapi.net",
                managed_hsm_suffix: Some("managedhsm.usgovcloudapi.net"),
            },
        }
    }

    /// The Key Vault resource (audience), e.g. `https://vault.azure.net`.
    pub fn vault_resource(&self) -> String {
        format!("https://{}", self.vault_suffix)
    }

    /// The OAuth scope for Key Vault data-plane tokens, e.g. `https://vault.azure.net/.default`.
    pub fn vault_scope(&self) -> String {
        format!("https://{}/.default", self.vault_suffix)
    }

    /// The Managed HSM suffix, or why this cloud has none.
    pub fn managed_hsm_suffix(&self) -> Result<&'static str, AzureError> {
        self.managed_hsm_suffix
            .ok_or(AzureError::NoManagedHsm { cloud: self.cloud })
    }

    /// The data-plane resource (token audience) of a target's kind: `https://vault.azure.net`
    /// or `https://managedhsm.azure.net` on the public cloud.
    pub fn resource(&self, kind: TargetKind) -> Result<String, AzureError> {
        Ok(format!("https://{}", self.suffix(kind)?))
    }

    /// The OAuth scope for a target kind's data-plane tokens, e.g.
    /// `https://managedhsm.azure.net/.default`.
    pub fn scope(&self, kind: TargetKind) -> Result<String, AzureError> {
        Ok(format!("https://{}/.default", self.suffix(kind)?))
    }

    /// The host suffix of a target kind, without the leading dot.
    pub fn suffix(&self, kind: TargetKind) -> Result<&'static str, AzureError> {
        match kind {
            TargetKind::KeyVault => Ok(self.vault_suffix),
            TargetKind::ManagedHsm => self.managed_hsm_suffix(),
        }
    }

    /// `<vault>.<vault suffix>` or `<pool>.<Managed HSM suffix>`, lower-case; refused on a
    /// cloud without Managed HSM.
    pub fn host(&self, target: &Target) -> Result<String, AzureError> {
        Ok(format!(
            "{}.{}",
            target.name().to_ascii_lowercase(),
            self.suffix(target.kind())?
        ))
    }

    /// The ARM scope (optional vault look-ups).
    pub fn arm_scope(&self) -> String {
        format!("https://{}/.default", self.arm_host)
    }

    /// `<vault>.<suffix>`, lower-case.
    pub fn vault_host(&self, vault: &str) -> String {
        format!("{}.{}", vault.to_ascii_lowercase(), self.vault_suffix)
    }

    /// Hosts Key Vault may name as the authority of a 401 challenge for this cloud: the sign-in
    /// host and its legacy alias.
    pub fn authority_hosts(&self) -> &'static [&'static str] {
        match self.cloud {
            Cloud::Public => &["login.microsoftonline.com", "login.windows.net"],
            Cloud::China => &["login.chinacloudapi.cn", "login.partner.microsoftonline.cn"],
            Cloud::Usgov => &["login.microsoftonline.us", "login-us.microsoftonline.com"],
        }
    }

    /// `https://{login}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("https://{}/{tenant}/oauth2/v2.0/token", self.login_host)
    }
}

/// The configuration's spelling of a cloud (`azure.cloud`).
pub fn cloud_name(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Public => "public",
        Cloud::China => "china",
        Cloud::Usgov => "usgov",
    }
}

/// Where an allowed request may connect: always port 443 today, kept explicit for the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Lower-case host name (never an IP literal).
    pub host: String,
    pub port: u16,
}

/// The outbound allowlist: the cloud's fixed hosts plus the Key Vaults and Managed HSM pools
/// that key groups name.
///
/// Shared (`Arc`) by the HTTP client; [`Allowlist::follow`] makes its target set the service's
/// committed one (the job runner does so when it is built), [`Allowlist::set_vaults`] and
/// [`Allowlist::set_targets`] name them by hand (tools and tests without a service).
#[derive(Debug)]
pub struct Allowlist {
    endpoints: CloudEndpoints,
    targets: RwLock<Targets>,
    /// Targets allowed for the checks of a group being created ([`Allowlist::probe`]), by
    /// (kind, lower-case name), with how many checks hold each.
    probing: std::sync::Mutex<std::collections::BTreeMap<(TargetKind, String), usize>>,
}

/// Keeps one vault or pool allowed while a group naming it is checked before it is committed;
/// it is refused again when the last guard drops (unless a committed group names it).
#[derive(Debug)]
pub struct ProbeGuard {
    list: Arc<Allowlist>,
    target: (TargetKind, String),
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        let mut probing = self.list.probing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = probing.get_mut(&self.target) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                probing.remove(&self.target);
            }
        }
    }
}

/// Where the allowed vaults and pools come from.
#[derive(Debug)]
enum Targets {
    /// Named by hand: (kind, lower-case name).
    Listed(BTreeSet<(TargetKind, String)>),
    /// The targets key groups name in the committed state (`Service::committed_targets`).
    Committed(watch::Receiver<Arc<BTreeSet<Target>>>),
}

/// A Key Vault name: 3–24 characters of `[0-9a-zA-Z-]`.
pub fn valid_vault_name(name: &str) -> bool {
    (3..=24).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Allowlist {
    /// An allowlist for `cloud` and the given vault names.
    pub fn new<I, S>(cloud: Cloud, vaults: I) -> Result<Self, AzureError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = Self {
            endpoints: CloudEndpoints::of(cloud),
            targets: RwLock::new(Targets::Listed(BTreeSet::new())),
            probing: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        };
        list.set_vaults(vaults)?;
        Ok(list)
    }

    pub fn endpoints(&self) -> &CloudEndpoints {
        &self.endpoints
    }

    /// From now on allows exactly the vaults and pools in `committed`, read at each check: the
    /// service's committed target set, which the commit that changes it replaces before it
    /// returns.
    pub fn follow(&self, committed: watch::Receiver<Arc<BTreeSet<Target>>>) {
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = Targets::Committed(committed);
    }

    /// Replaces the allowed vaults and pools by a hand-named set (no longer following the
    /// service).
    pub fn set_targets<'a>(&self, targets: impl IntoIterator<Item = &'a Target>) {
        let set = targets
            .into_iter()
            .map(|t| (t.kind(), t.name().to_ascii_lowercase()))
            .collect();
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = Targets::Listed(set);
    }

    /// Replaces the set of allowed vaults by a hand-named one (no longer following the service).
    /// Every name must be a valid vault name; on error the previous set is kept.
    pub fn set_vaults<I, S>(&self, vaults: I) -> Result<(), AzureError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = BTreeSet::new();
        for v in vaults {
            let v = v.as_ref();
            if !valid_vault_name(v) {
                return Err(AzureError::InvalidName {
                    kind: "vault",
                    name: v.to_string(),
                });
            }
            set.insert((TargetKind::KeyVault, v.to_ascii_lowercase()));
        }
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = Targets::Listed(set);
        Ok(())
    }

    /// The Key Vault names currently allowed (lower-case).
    pub fn vaults(&self) -> Vec<String> {
        self.names(TargetKind::KeyVault)
    }

    /// The names of one kind currently allowed (lower-case).
    pub fn names(&self, kind: TargetKind) -> Vec<String> {
        match &*self.targets.read().unwrap_or_else(|e| e.into_inner()) {
            Targets::Listed(set) => set
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| n.clone())
                .collect(),
            Targets::Committed(rx) => rx
                .borrow()
                .iter()
                .filter(|t| t.kind() == kind)
                .map(|t| t.name().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Allows `target` until the guard drops: the checks `group create` makes before the group
    /// (and with it the vault or pool) is committed. Refused on a cloud without Managed HSM.
    pub fn probe(self: &Arc<Self>, target: &Target) -> Result<ProbeGuard, AzureError> {
        self.endpoints.host(target)?;
        let key = (target.kind(), target.name().to_ascii_lowercase());
        *self
            .probing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_insert(0) += 1;
        Ok(ProbeGuard {
            list: Arc::clone(self),
            target: key,
        })
    }

    /// Whether a vault is in the allowed set (case-insensitively), or held by a probe.
    pub fn has_vault(&self, vault: &str) -> bool {
        self.has(TargetKind::KeyVault, vault)
    }

    /// Whether a vault or pool is in the allowed set (case-insensitively), or held by a probe.
    pub fn has(&self, kind: TargetKind, name: &str) -> bool {
        let key = (kind, name.to_ascii_lowercase());
        if self
            .probing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&key)
        {
            return true;
        }
        match &*self.targets.read().unwrap_or_else(|e| e.into_inner()) {
            Targets::Listed(set) => set.contains(&key),
            Targets::Committed(rx) => rx
                .borrow()
                .iter()
                .any(|t| t.kind() == kind && t.name().eq_ignore_ascii_case(name)),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let e = &self.endpoints;
        if host == e.login_host || host == e.arm_host {
            return true;
        }
        let under = |suffix: &str| {
            host.strip_suffix(suffix)
                .and_then(|p| p.strip_suffix('.'))
                .map(str::to_owned)
        };
        if let Some(vault) = under(e.vault_suffix) {
            return self.has(TargetKind::KeyVault, &vault);
        }
        match e.managed_hsm_suffix.and_then(under) {
            Some(pool) => self.has(TargetKind::ManagedHsm, &pool),
            None => false,
        }
    }

    /// Checks a URL string; see [`Allowlist::check`].
    pub fn check_str(&self, url: &str) -> Result<Destination, AzureError> {
        match url.parse::<Uri>() {
            Ok(uri) => self.check(&uri),
            Err(_) => Err(refused(&host_hint(url), "not a valid URL")),
        }
    }

    /// Allows only `https`, port 443 and exactly the allowed host names (case-insensitive).
    /// IP literals, user-info and every other port or scheme are refused. A refusal names the
    /// host and is logged at ERROR. Performs no DNS lookup.
    pub fn check(&self, uri: &Uri) -> Result<Destination, AzureError> {
        let host_raw = uri.host().unwrap_or("");
        let host = host_raw.to_ascii_lowercase();
        if host.is_empty() {
            return Err(refused("(none)", "the URL has no host"));
        }
        if uri.scheme_str().map(str::to_ascii_lowercase).as_deref() != Some("https") {
            return Err(refused(&host, "only https is allowed"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(refused(&host, "user-info in URLs is not allowed"));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return Err(refused(
                &host,
                "IP literals are not allowed; use a host name",
            ));
        }
        let port = uri.port_u16().unwrap_or(443);
        if port != 443 {
            return Err(refused(&host, "only port 443 is allowed"));
        }
        if !self.host_allowed(&host) {
            return Err(refused(
                &host,
                "not the configured cloud's sign-in, ARM or a key group's vault or Managed HSM host",
            ));
        }
        Ok(Destination { host, port })
    }
}

/// Best-effort host extraction from a string that did not parse as a URI (for the error).
fn host_hint(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host: String = rest[..end].chars().take(255).collect();
    host.to_ascii_lowercase()
}

fn refused(host: &str, reason: &'static str) -> AzureError {
    tracing::error!(host = %host, reason, "outbound connection refused by the allowlist");
    AzureError::NotAllowed {
        host: host.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Allowlist {
        match Allowlist::new(Cloud::Public, ["myvault"]) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    fn refused_reason(l: &Allowlist, url: &str) -> &'static str {
        match l.check_str(url) {
            Err(AzureError::NotAllowed { reason, .. }) => reason,
            other => panic!("{url} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn cloud_hosts_match_the_reference_table() {
        let p = CloudEndpoints::of(Cloud::Public);
        assert_eq!(p.vault_scope(), "https://vault.azure.net/.default");
        assert_eq!(
            p.token_url("t"),
            "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        );
        let c = CloudEndpoints::of(Cloud::China);
        assert_eq!(
            (c.login_host, c.arm_host),
            ("login.chinacloudapi.cn", "management.chinacloudapi.cn")
        );
        assert_eq!(c.vault_scope(), "https://vault.azure.cn/.default");
        let g = CloudEndpoints::of(Cloud::Usgov);
        assert_eq!(g.login_host, "login.microsoftonline.us");
        assert_eq!(g.vault_host("KV1"), "kv1.vault.usgovcloudapi.net");
        assert_eq!(g.vault_scope(), "https://vault.usgovcloudapi.net/.default");
    }

    #[test]
    fn allows_exactly_the_cloud_hosts_and_named_vaults_case_insensitively() {
        let l = list();
        for ok in [
            "https://login.microsoftonline.com/t/oauth2/v2.0/token",
            "https://management.azure.com/subscriptions",
            "https://myvault.vault.azure.net/keys/k?api-version=7.5",
            "https://MyVault.Vault.Azure.NET:443/keys",
        ] {
            let t = l.check_str(ok);
            assert!(
                matches!(&t, Ok(Destination { port: 443, .. })),
                "{ok}: {t:?}"
            );
        }
    }

    #[test]
    fn refuses_everything_else_with_a_reason_naming_the_host() {
        let l = list();
        assert_eq!(
            refused_reason(&l, "http://myvault.vault.azure.net/"),
            "only https is allowed"
        );
        assert_eq!(
            refused_reason(&l, "https://myvault.vault.azure.net:8443/"),
            "only port 443 is allowed"
        );
        assert!(refused_reason(&l, "https://127.0.0.1/").contains("IP literal"));
        assert!(refused_reason(&l, "https://[::1]/").contains("IP literal"));
        assert!(refused_reason(&l, "https://u:p@myvault.vault.azure.net/").contains("user-info"));
        assert!(refused_reason(&l, "https://other.vault.azure.net/").contains("Managed HSM host"));
        assert!(refused_reason(&l, "https://myvault.vault.azure.cn/").contains("Managed HSM host"));
        assert!(
            refused_reason(&l, "https://myvault.vault.azure.net.evil.example/")
                .contains("Managed HSM host")
        );
        assert!(
            refused_reason(&l, "https://x.myvault.vault.azure.net/").contains("Managed HSM host")
        );
        match l.check_str("https://evil.example/x") {
            Err(e) => assert!(e.to_string().contains("evil.example"), "{e}"),
            Ok(t) => panic!("allowed {t:?}"),
        }
    }

    #[test]
    fn vault_set_is_replaceable_at_run_time_and_validated() {
        let l = list();
        assert!(l.set_vaults(["kv-two"]).is_ok());
        assert!(l.check_str("https://kv-two.vault.azure.net/").is_ok());
        assert!(l.check_str("https://myvault.vault.azure.net/").is_err());
        assert!(matches!(
            l.set_vaults(["evil.example"]),
            Err(AzureError::InvalidName { .. })
        ));
        assert!(
            l.check_str("https://kv-two.vault.azure.net/").is_ok(),
            "a bad update keeps the old set"
        );
    }

    #[test]
    fn a_following_list_allows_what_is_committed_at_check_time() {
        let l = list();
        let vault = |s: &str| Target::KeyVault(crate::model::VaultName::try_from(s).unwrap());
        let (tx, rx) = watch::channel(Arc::new(BTreeSet::from([vault("KV-One")])));
        l.follow(rx);
        assert!(l.check_str("https://kv-one.vault.azure.net/").is_ok());
        assert!(
            l.check_str("https://myvault.vault.azure.net/").is_err(),
            "the hand-named set no longer applies"
        );
        tx.send_replace(Arc::new(BTreeSet::from([vault("kv-one"), vault("kv-two")])));
        assert!(l.check_str("https://kv-two.vault.azure.net/").is_ok());
        assert_eq!(l.vaults(), ["kv-one", "kv-two"]);
        tx.send_replace(Arc::new(BTreeSet::new()));
        assert!(l.check_str("https://kv-one.vault.azure.net/").is_err());
        assert!(l.check_str("https://login.microsoftonline.com/t").is_ok());
    }

    fn pool(name: &str) -> Target {
        Target::ManagedHsm(crate::model::HsmPoolName::try_from(name).unwrap())
    }

    #[test]
    fn managed_hsm_hosts_and_scopes_follow_azure_cli_cloud_definitions() {
        let p = CloudEndpoints::of(Cloud::Public);
        assert_eq!(
            p.host(&pool("Contoso-MHSM")).unwrap(),
            "contoso-mhsm.managedhsm.azure.net"
        );
        assert_eq!(
            p.scope(TargetKind::ManagedHsm).unwrap(),
            "https://managedhsm.azure.net/.default"
        );
        assert_eq!(
            p.scope(TargetKind::KeyVault).unwrap(),
            "https://vault.azure.net/.default"
        );
        let c = CloudEndpoints::of(Cloud::China);
        assert_eq!(c.host(&pool("p1x")).unwrap(), "p1x.managedhsm.azure.cn");
        assert_eq!(
            c.scope(TargetKind::ManagedHsm).unwrap(),
            "https://managedhsm.azure.cn/.default"
        );
        let g = CloudEndpoints::of(Cloud::Usgov);
        assert_eq!(
            g.host(&pool("p1x")).unwrap(),
            "p1x.managedhsm.usgovcloudapi.net"
        );
        assert_eq!(
            g.resource(TargetKind::ManagedHsm).unwrap(),
            "https://managedhsm.usgovcloudapi.net"
        );
    }

    #[test]
    fn a_cloud_without_managed_hsm_refuses_a_pool_with_a_clear_message() {
        let mut e = CloudEndpoints::of(Cloud::Usgov);
        e.managed_hsm_suffix = None;
        let err = e.host(&pool("p1x")).unwrap_err();
        assert!(matches!(
            err,
            AzureError::NoManagedHsm {
                cloud: Cloud::Usgov
            }
        ));
        assert!(
            err.to_string().contains("has no Azure Managed HSM"),
            "{err}"
        );
        assert!(
            e.host(&Target::KeyVault(
                crate::model::VaultName::try_from("kv1").unwrap()
            ))
            .is_ok()
        );
    }

    #[test]
    fn managed_hsm_hosts_are_allowed_exactly_when_a_group_names_the_pool() {
        let l = Arc::new(list());
        let (tx, rx) = watch::channel(Arc::new(BTreeSet::from([pool("Pool-One")])));
        l.follow(rx);
        assert!(
            l.check_str("https://pool-one.managedhsm.azure.net/keys/k")
                .is_ok()
        );
        // A pool no group names is refused before any DNS lookup, and so is a vault of the
        // pool's name: the kinds do not stand in for each other.
        assert!(
            refused_reason(&l, "https://pool-two.managedhsm.azure.net/")
                .contains("Managed HSM host")
        );
        assert!(
            refused_reason(&l, "https://pool-one.vault.azure.net/").contains("Managed HSM host")
        );
        assert!(
            refused_reason(&l, "https://pool-one.managedhsm.azure.cn/")
                .contains("Managed HSM host")
        );
        assert!(
            refused_reason(&l, "https://x.pool-one.managedhsm.azure.net/")
                .contains("Managed HSM host")
        );
        // A probe holds a pool allowed while its group is checked, and only then.
        let guard = l.probe(&pool("pool-two")).unwrap();
        assert!(
            l.check_str("https://pool-two.managedhsm.azure.net/")
                .is_ok()
        );
        drop(guard);
        assert!(
            l.check_str("https://pool-two.managedhsm.azure.net/")
                .is_err()
        );
        tx.send_replace(Arc::new(BTreeSet::new()));
        assert!(
            l.check_str("https://pool-one.managedhsm.azure.net/")
                .is_err()
        );
        assert_eq!(l.names(TargetKind::ManagedHsm), Vec::<String>::new());
    }

    #[test]
    fn other_clouds_do_not_leak_into_the_allowlist() {
        let l = match Allowlist::new(Cloud::China, ["myvault"]) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        assert!(
            l.check_str("https://login.chinacloudapi.cn/t/oauth2/v2.0/token")
                .is_ok()
        );
        assert!(l.check_str("https://login.microsoftonline.com/t").is_err());
        assert!(l.check_str("https://myvault.vault.azure.net/").is_err());
    }
}
