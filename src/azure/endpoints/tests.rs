//! Unit tests of the cloud endpoints: hosts, scopes and the outbound allowlist.
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
    assert!(refused_reason(&l, "https://x.myvault.vault.azure.net/").contains("Managed HSM host"));
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
        refused_reason(&l, "https://pool-two.managedhsm.azure.net/").contains("Managed HSM host")
    );
    assert!(refused_reason(&l, "https://pool-one.vault.azure.net/").contains("Managed HSM host"));
    assert!(
        refused_reason(&l, "https://pool-one.managedhsm.azure.cn/").contains("Managed HSM host")
    );
    assert!(
        refused_reason(&l, "https://x.pool-one.managedhsm.azure.net/").contains("Managed HSM host")
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
