//! The foundation end to end on a real SoftHSM token: credentials sealed in the HSM, keys of
//! every type stable across a restart, and bad input refused with nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::config::{Config, check_text};
use byokd::hsm::{Hsm, HsmConfig};
use byokd::model::{
    CredentialName, GroupName, Guid, KeyName, KeyOp, KeyType, RotationPolicy, RsaExponent,
    VaultName,
};
use byokd::secret::{Pin, SecretBytes, trim_trailing_newline};
use byokd::service::{NewCertificateCredential, NewCredential, NewGroup, Service, ServiceError};
use common::softhsm::{self, SoftHsmToken};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const SECRET: &str = "Zq8~Qx.u7-KnownClientSecretValue_4711";

/// Everything logged by this test binary, so tests can grep it for secrets.
fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The configuration, with `more` (whole sections) appended.
fn config(token: &SoftHsmToken, state_dir: &Path, more: &str) -> Config {
    let text = format!(
        "state_dir = {:?}\n[hsm]\nmodule = {:?}\ntoken_label = {:?}\npin_file = \"/unused\"\n{more}",
        state_dir,
        token.module.display().to_string(),
        token.label
    );
    check_text(&text).unwrap_or_else(|p| panic!("{p:?}"))
}

fn open(token: &SoftHsmToken, state_dir: &Path) -> Service {
    open_with(token, state_dir, "")
}

fn open_with(token: &SoftHsmToken, state_dir: &Path, more: &str) -> Service {
    let cfg = config(token, state_dir, more);
    let hsm_cfg = HsmConfig {
        module: token.module.clone(),
        token_label: token.label.clone(),
        request_timeout: Duration::from_secs(120),
        allow_host_wrap: false,
        sessions: 0,
    };
    let (hsm, _report) = Hsm::start(&hsm_cfg, Pin::new(token.user_pin.clone())).unwrap();
    Service::open(cfg, hsm, byokd::clock::SystemClock::shared())
        .unwrap()
        .0
}

fn name<T: TryFrom<&'static str>>(s: &'static str) -> T
where
    T::Error: std::fmt::Debug,
{
    T::try_from(s).unwrap()
}

fn tenant() -> Guid {
    Guid::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap()
}

fn client() -> Guid {
    Guid::parse("0c8f1b3a-6a3e-4d59-9a47-2b8e6f1d2c3b").unwrap()
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            hits.push(entry.display().to_string());
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

/// Adds the client-secret credential `app`.
async fn add_app(service: &Service) -> Result<byokd::service::CredentialView, ServiceError> {
    service
        .add_credential(
            NewCredential {
                name: name("app"),
                tenant_id: tenant(),
                client_id: client(),
                secret: SecretBytes::new(b"s".to_vec()),
                expires: None,
            },
            "t",
        )
        .await
}

/// Adds the credential `app` and an EC-P256 group of it; returns the key type.
async fn app_and_ec_group(service: &Service, group: &'static str) -> KeyType {
    add_app(service).await.unwrap();
    let ec = KeyType::parse("EC-P256", RsaExponent::F4).unwrap();
    service
        .create_group(new_group(group, "app", ec), "t")
        .await
        .unwrap();
    ec
}

fn new_group(group: &'static str, cred: &'static str, key_type: KeyType) -> NewGroup {
    NewGroup {
        name: name(group),
        credential: name(cred),
        target: byokd::model::Target::KeyVault(name("contoso-vault")),
        key_type,
        key_ops: None,
        rotation: RotationPolicy::default(),
    }
}

#[test]
fn a_credential_secret_is_sealed_and_appears_nowhere() {
    softhsm::isolated(
        "a_credential_secret_is_sealed_and_appears_nowhere",
        |token| async move {
            let logs = log_buffer();
            let state = tempfile::tempdir().unwrap();
            let service = open(&token, state.path());

            let new = NewCredential {
                name: name("payments-app"),
                tenant_id: tenant(),
                client_id: client(),
                secret: SecretBytes::new(SECRET.as_bytes().to_vec()),
                expires: None,
            };
            let debug_of_request = format!("{new:?}");
            let view = service.add_credential(new, "test-admin").await.unwrap();
            assert_eq!(view.fingerprint.len(), 8);
            assert_eq!(view.kind, "secret");

            // Round-trips exactly through the HSM.
            let unsealed = service
                .unseal_credential(&name("payments-app"))
                .await
                .unwrap();
            assert_eq!(unsealed.expose_secret(), SECRET.as_bytes());

            // Not in the state directory (nor the SoftHSM token directory), not in Debug, not in logs.
            assert!(
                files_contain(state.path(), SECRET.as_bytes()).is_empty(),
                "secret found in state dir"
            );
            assert!(
                files_contain(&token.token_dir, SECRET.as_bytes()).is_empty(),
                "secret found in token dir"
            );
            let debugs = format!(
                "{debug_of_request} {view:?} {:?} {:?} {unsealed:?}",
                service.list_credentials().await,
                service.credential(&name("payments-app")).await.unwrap()
            );
            assert!(!debugs.contains(SECRET), "secret in Debug output");
            assert!(
                !debugs.contains(&SECRET[..12]),
                "part of the secret in Debug output"
            );
            let log_text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
            assert!(
                log_text.contains("credential added"),
                "the operation must be logged"
            );
            assert!(
                !log_text.contains(SECRET) && !log_text.contains(&SECRET[..12]),
                "secret in the log output"
            );
            // A second credential with the same secret has a different sealed blob (fresh IV).
            let other = NewCredential {
                name: name("other-app"),
                tenant_id: tenant(),
                client_id: client(),
                secret: SecretBytes::new(SECRET.as_bytes().to_vec()),
                expires: Some(1_900_000_000),
            };
            let other = service.add_credential(other, "test-admin").await.unwrap();
            assert_ne!(
                other.fingerprint, view.fingerprint,
                "fingerprints are bound to the credential name"
            );
            assert_eq!(other.expires, Some(1_900_000_000));
        },
    );
}

#[test]
fn a_secret_imported_from_a_file_round_trips_exactly() {
    softhsm::isolated(
        "a_secret_imported_from_a_file_round_trips_exactly",
        |token| async move {
            let state = tempfile::tempdir().unwrap();
            let service = open(&token, state.path());
            let cases: [(&str, &[u8], &[u8]); 4] = [
                ("lf", b"abc~DEF.123\n", b"abc~DEF.123"),
                ("crlf", b"abc~DEF.123\r\n", b"abc~DEF.123"),
                (
                    "inner-space",
                    b" lead and trail \t\n",
                    b" lead and trail \t",
                ),
                ("two-newlines", b"secret\n\n", b"secret\n"),
            ];
            for (n, file_bytes, want) in cases {
                let file = state.path().join(format!("{n}.txt"));
                std::fs::write(&file, file_bytes).unwrap();
                let secret = trim_trailing_newline(std::fs::read(&file).unwrap());
                std::fs::remove_file(&file).unwrap();
                let cred: CredentialName = CredentialName::try_from(n).unwrap();
                service
                    .add_credential(
                        NewCredential {
                            name: cred.clone(),
                            tenant_id: tenant(),
                            client_id: client(),
                            secret: SecretBytes::new(secret),
                            expires: None,
                        },
                        "t",
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    service
                        .unseal_credential(&cred)
                        .await
                        .unwrap()
                        .expose_secret(),
                    want,
                    "{n}"
                );
            }
            // And after a restart of the daemon, the sealed secrets still unseal.
            drop(service);
            let service = open(&token, state.path());
            assert_eq!(
                service
                    .unseal_credential(&name("crlf"))
                    .await
                    .unwrap()
                    .expose_secret(),
                b"abc~DEF.123"
            );
        },
    );
}

#[test]
fn keys_of_every_type_are_stable_across_a_restart_and_protected_on_the_token() {
    softhsm::isolated(
        "keys_of_every_type_are_stable_across_a_restart_and_protected_on_the_token",
        |token| async move {
            let state = tempfile::tempdir().unwrap();
            let service = open(&token, state.path());
            add_app(&service).await.unwrap();
            let types = [
                ("rsa2048", KeyType::rsa(2048, RsaExponent::F4).unwrap()),
                ("rsa3072", KeyType::rsa(3072, RsaExponent::F4).unwrap()),
                ("rsa4096", KeyType::rsa(4096, RsaExponent::F4).unwrap()),
                (
                    "rsa2048-e3",
                    KeyType::rsa(2048, RsaExponent::Three).unwrap(),
                ),
                (
                    "ec-p256",
                    KeyType::parse("EC-P256", RsaExponent::F4).unwrap(),
                ),
                (
                    "ec-p384",
                    KeyType::parse("EC-P384", RsaExponent::F4).unwrap(),
                ),
                (
                    "ec-p521",
                    KeyType::parse("EC-P521", RsaExponent::F4).unwrap(),
                ),
                (
                    "ec-p256k",
                    KeyType::parse("EC-P256K", RsaExponent::F4).unwrap(),
                ),
            ];
            let mut before = Vec::new();
            for (group, kt) in types {
                let group: GroupName = GroupName::try_from(group).unwrap();
                service
                    .create_group(
                        NewGroup {
                            name: group.clone(),
                            ..new_group("x", "app", kt)
                        },
                        "t",
                    )
                    .await
                    .unwrap();
                let key = service.create_key(&group, &name("k1"), "t").await.unwrap();
                assert_eq!(key.algorithm, kt.to_string());
                assert_eq!(key.storage, "Protected");
                assert_eq!(key.version, None);
                let der = service.key_public_der(&group, &name("k1")).await.unwrap();
                use sha2::Digest;
                let digest = hex::encode_upper(sha2::Sha256::digest(&der));
                assert_eq!(
                    key.check_digits,
                    digest[..4],
                    "check digits are SHA-256 of the SPKI"
                );
                // The SPKI parses as the declared type.
                let spki = spki::SubjectPublicKeyInfoRef::try_from(der.as_slice()).unwrap();
                match kt {
                    KeyType::Rsa { .. } => {
                        assert_eq!(spki.algorithm.oid.to_string(), "1.2.840.113549.1.1.1")
                    }
                    KeyType::Ec(c) => {
                        assert_eq!(spki.algorithm.oid.to_string(), "1.2.840.10045.2.1");
                        assert_eq!(
                            spki.algorithm.parameters_oid().unwrap().to_string(),
                            c.oid()
                        );
                    }
                    KeyType::Aes { .. } => unreachable!("no AES group in this test"),
                }
                let attrs = service
                    .hsm()
                    .key_attributes(byokd::model::HsmKeyId(
                        hex::decode(&key.hsm_id).unwrap().try_into().unwrap(),
                    ))
                    .await
                    .unwrap();
                assert!(
                    attrs.sensitive && attrs.token && attrs.private && attrs.always_sensitive,
                    "{group}: {attrs:?}"
                );
                assert!(
                    attrs.secret_value_refused,
                    "{group}: private value must not be readable"
                );
                before.push((group, key, der));
            }
            drop(service);
            let service = open(&token, state.path());
            for (group, key, der) in before {
                let again = service.key(&group, &name("k1")).await.unwrap();
                assert_eq!(again, key, "{group}: key record changed across restart");
                assert_eq!(
                    service.key_public_der(&group, &name("k1")).await.unwrap(),
                    der,
                    "{group}: public key changed"
                );
                assert_eq!(service.list_keys(&group).await.unwrap(), vec![key]);
            }
        },
    );
}

#[test]
fn bad_input_is_refused_and_nothing_changes() {
    softhsm::isolated(
        "bad_input_is_refused_and_nothing_changes",
        |token| async move {
            let state = tempfile::tempdir().unwrap();
            let service = open(&token, state.path());
            let ec = app_and_ec_group(&service, "grp").await;
            service
                .create_key(&name("grp"), &name("k1"), "t")
                .await
                .unwrap();
            let generation = service.generation().await;
            let snapshot = (
                service.list_credentials().await,
                service.list_groups().await,
                service.list_keys(&name("grp")).await.unwrap(),
            );

            // Validation happens when input becomes domain values: each names its field.
            assert_eq!(GroupName::try_from("bad name").unwrap_err().field, "name");
            assert_eq!(VaultName::try_from("1vault").unwrap_err().field, "vault");
            assert_eq!(Guid::parse("not-a-guid").unwrap_err().field, "guid");
            assert_eq!(
                KeyType::parse("RSA-1024", RsaExponent::F4)
                    .unwrap_err()
                    .field,
                "key_type"
            );
            assert_eq!(
                KeyType::parse("EC-P224", RsaExponent::F4)
                    .unwrap_err()
                    .field,
                "key_type"
            );
            assert_eq!(KeyName::try_from("").unwrap_err().field, "key");

            let refusals: Vec<(&str, ServiceError)> = vec![
                (
                    "unknown credential",
                    service
                        .create_group(new_group("g2", "nobody", ec), "t")
                        .await
                        .unwrap_err(),
                ),
                (
                    "duplicate group",
                    service
                        .create_group(new_group("grp", "app", ec), "t")
                        .await
                        .unwrap_err(),
                ),
                (
                    "EC with encrypt",
                    service
                        .create_group(
                            NewGroup {
                                key_ops: Some(vec![KeyOp::Encrypt]),
                                ..new_group("g3", "app", ec)
                            },
                            "t",
                        )
                        .await
                        .unwrap_err(),
                ),
                (
                    "bad policy",
                    service
                        .create_group(
                            NewGroup {
                                rotation: RotationPolicy {
                                    enabled: true,
                                    rotate_every_months: 0,
                                    keep_valid_months: 1,
                                },
                                ..new_group("g4", "app", ec)
                            },
                            "t",
                        )
                        .await
                        .unwrap_err(),
                ),
                (
                    "credential in use",
                    service
                        .check_credential_deletable(&name("app"))
                        .await
                        .unwrap_err(),
                ),
                (
                    "group not empty",
                    service.delete_group(&name("grp"), "t").await.unwrap_err(),
                ),
                (
                    "duplicate key",
                    service
                        .create_key(&name("grp"), &name("k1"), "t")
                        .await
                        .unwrap_err(),
                ),
                (
                    "key in unknown group",
                    service
                        .create_key(&name("nogroup"), &name("k1"), "t")
                        .await
                        .unwrap_err(),
                ),
                (
                    "empty secret",
                    service
                        .add_credential(
                            NewCredential {
                                name: name("e"),
                                tenant_id: tenant(),
                                client_id: client(),
                                secret: SecretBytes::new(vec![]),
                                expires: None,
                            },
                            "t",
                        )
                        .await
                        .unwrap_err(),
                ),
                ("duplicate credential", add_app(&service).await.unwrap_err()),
            ];
            for (what, err) in &refusals {
                assert!(!err.to_string().is_empty(), "{what}");
            }
            assert!(matches!(refusals[0].1, ServiceError::NotFound { .. }));
            assert!(matches!(refusals[1].1, ServiceError::Conflict(_)));
            assert!(matches!(refusals[2].1, ServiceError::Invalid(ref e) if e.field == "key_ops"));
            assert!(
                matches!(refusals[3].1, ServiceError::Invalid(ref e) if e.field == "rotate_every_months")
            );
            assert!(
                refusals[4]
                    .1
                    .to_string()
                    .contains("in use by key group(s) grp")
            );
            assert_eq!(
                service.generation().await,
                generation,
                "a refused request must not write state"
            );
            let after = (
                service.list_credentials().await,
                service.list_groups().await,
                service.list_keys(&name("grp")).await.unwrap(),
            );
            assert_eq!(after, snapshot);
        },
    );
}

/// How many of `results` succeeded; every other one must have been refused by a limit.
fn made_within_limit<T: std::fmt::Debug>(results: &[Result<T, ServiceError>]) -> usize {
    for r in results {
        assert!(
            matches!(r, Ok(_) | Err(ServiceError::Limit(_))),
            "{results:?}"
        );
    }
    results.iter().filter(|r| r.is_ok()).count()
}

#[test]
fn concurrent_creates_cannot_pass_the_key_and_credential_limits() {
    softhsm::isolated(
        "concurrent_creates_cannot_pass_the_key_and_credential_limits",
        |token| async move {
            let state = tempfile::tempdir().unwrap();
            let service = open_with(
                &token,
                state.path(),
                "[limits]\nmax_keys = 2\nmax_credentials = 2\n",
            );
            app_and_ec_group(&service, "g").await;
            // Each create looks at the limit, then generates in the HSM, then commits: all
            // five look before any commits.
            let g: GroupName = name("g");
            let create = |k: &'static str| {
                let (service, g) = (service.clone(), g.clone());
                async move { service.create_key(&g, &name(k), "t").await }
            };
            let r = tokio::join!(
                create("k1"),
                create("k2"),
                create("k3"),
                create("k4"),
                create("k5")
            );
            assert_eq!(made_within_limit(&[r.0, r.1, r.2, r.3, r.4]), 2);
            assert_eq!(service.list_keys(&g).await.unwrap().len(), 2);
            // The refused creates' HSM keys are destroyed again: only the recorded ones stay.
            let on_token = service
                .hsm()
                .list_keys()
                .await
                .unwrap()
                .into_iter()
                .filter(|e| byokd::hsm::parse_label(&e.label).is_some_and(|(grp, _)| grp == g))
                .count();
            assert_eq!(on_token, 2, "HSM keys left behind");
            // Likewise credentials: a secret is sealed, a certificate's signing key generated,
            // between look and commit. Two of each race for the one place left.
            let secret = |n: &'static str| {
                let service = service.clone();
                async move {
                    let new = NewCredential {
                        name: name(n),
                        tenant_id: tenant(),
                        client_id: client(),
                        secret: SecretBytes::new(b"s".to_vec()),
                        expires: None,
                    };
                    service.add_credential(new, "t").await
                }
            };
            let certificate = |n: &'static str| {
                let service = service.clone();
                async move {
                    let new = NewCertificateCredential {
                        name: name(n),
                        tenant_id: tenant(),
                        client_id: client(),
                        validity_days: None,
                    };
                    service.add_certificate_credential(new, "t").await
                }
            };
            let r = tokio::join!(
                secret("s1"),
                certificate("c1"),
                secret("s2"),
                certificate("c2")
            );
            assert_eq!(
                made_within_limit(&[r.0, r.1, r.2, r.3]),
                1,
                "one place was left"
            );
            assert_eq!(service.list_credentials().await.len(), 2);
        },
    );
}
