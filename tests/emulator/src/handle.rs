//! The in-process API: start an emulator, configure it at runtime, inspect and mutate its vaults
//! behind the client's back, and shut it down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{AppConfig, EmulatorConfig, ThrottleConfig, VaultOptions};
use crate::error::EmulatorError;
use crate::faults::{ActiveRule, FaultRule};
use crate::keys::{self, Curve, Material};
use crate::reqlog::RequestRecord;
use crate::state::{
    DeletedView, KeyVersion, KeyView, Origin, Shared, State, Vault, VaultCounters, VersionView,
    version_view,
};
use crate::util::{new_version_id, now_secs};

/// What kind of key `import_foreign_version` adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ForeignKeyType {
    /// RSA-HSM of this many bits.
    Rsa {
        /// 2048, 3072 or 4096.
        bits: usize,
    },
    /// EC-HSM on this curve.
    Ec {
        /// Curve.
        crv: Curve,
    },
}

/// Entry point.
pub struct Emulator;

impl Emulator {
    /// Start serving: generate/load the CA, issue the server certificate, bind, spawn the server.
    pub async fn start(cfg: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        let mut apps = Vec::new();
        for mut app in cfg.apps.clone() {
            load_app_cert(&mut app)?;
            apps.push(app);
        }
        let mut vaults = BTreeMap::new();
        for v in &cfg.vaults {
            validate_vault_name(&v.name)?;
            vaults.insert(
                v.name.to_ascii_lowercase(),
                Vault::new(&v.name, v.options.clone()),
            );
        }
        let vault_hosts: Vec<String> = vaults.values().map(Vault::host).collect();
        let names = crate::tls::server_names(&vault_hosts, &cfg.extra_hosts);
        let tls = crate::tls::build(cfg.ca_dir.as_deref(), &names)?;
        if let Some(out) = &cfg.ca_out {
            std::fs::write(out, &tls.ca_pem)?;
        }
        keys::configure_pool(cfg.key_pool);

        let log_file = match &cfg.request_log_file {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                apps,
                tokens: Default::default(),
                token_lifetime_secs: cfg.token_lifetime_secs,
                vaults,
                faults: Vec::new(),
                throttle: cfg.throttling.clone(),
                rtt_delay: Duration::from_millis(cfg.rtt_delay_ms),
                delete_pending: Duration::from_millis(cfg.delete_pending_ms),
                requests: Default::default(),
                request_log_cap: cfg.request_log_cap.max(1),
                seq: 0,
                fault_429s: 0,
                seen_jtis: std::collections::HashMap::new(),
                holds: 0,
                retain_imported_pkcs8: false,
                imported_pkcs8: Vec::new(),
            }),
            log_file,
        });

        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config);
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(crate::server::serve(
            listener,
            acceptor,
            Arc::clone(&shared),
            rx,
        ));
        tracing::info!(%addr, "byokd emulator listening");
        Ok(EmulatorHandle {
            shared,
            addr,
            ca_pem: tls.ca_pem,
            ca_path: cfg.ca_out.clone(),
            shutdown: tx,
            task: Some(task),
        })
    }
}

fn load_app_cert(app: &mut AppConfig) -> Result<(), EmulatorError> {
    if app.certificate_der.is_none()
        && let Some(path) = &app.certificate_pem_file
    {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        let der = CertificateDer::from_pem_file(path)
            .map_err(|e| EmulatorError::Config(format!("{}: {e}", path.display())))?;
        app.certificate_der = Some(der.to_vec());
    }
    Ok(())
}

fn validate_vault_name(name: &str) -> Result<(), EmulatorError> {
    let ok = (3..=24).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && name.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(EmulatorError::Config(format!(
            "invalid vault name '{name}': 3-24 characters, letters, digits and single hyphens, starting with a letter"
        )))
    }
}

/// A running emulator.
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: String,
    ca_path: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl EmulatorHandle {
    /// The bound loopback address: map every Azure host name to it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the test CA.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA PEM was written (`EmulatorConfig::ca_out`).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// Host of a vault (`{name}.vault.azure.net` for the public cloud).
    pub fn vault_host(&self, vault: &str) -> Option<String> {
        self.shared
            .lock()
            .vaults
            .get(&vault.to_ascii_lowercase())
            .map(Vault::host)
    }

    /// Register an app.
    pub fn add_app(&self, mut app: AppConfig) -> Result<(), EmulatorError> {
        load_app_cert(&mut app)?;
        self.shared.lock().apps.push(app);
        Ok(())
    }

    /// Mark an app's secret expired (or valid again).
    pub fn set_secret_expired(&self, client_id: &str, expired: bool) {
        for a in self.shared.lock().apps.iter_mut() {
            if a.client_id.eq_ignore_ascii_case(client_id) {
                a.secret_expired = expired;
            }
        }
    }

    /// Add (or replace the options of) a vault.
    pub fn add_vault(&self, name: &str, opts: VaultOptions) -> Result<(), EmulatorError> {
        self.shared.add_vault(name, opts)
    }

    /// Replace a vault's access rules (`None`: everyone may do everything).
    pub fn set_access(
        &self,
        vault: &str,
        access: Option<BTreeMap<String, Vec<crate::config::Permission>>>,
    ) -> Result<(), EmulatorError> {
        let mut st = self.shared.lock();
        let v = vault_mut(&mut st, vault)?;
        v.opts.access = access;
        Ok(())
    }

    /// Replace the throttling configuration (the windows keep their state).
    pub fn set_throttling(&self, cfg: ThrottleConfig) {
        self.shared.lock().throttle = cfg;
    }

    /// `expires_in` of tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.shared.lock().token_lifetime_secs = secs;
    }

    /// Expire every issued token now (the next data-plane call gets 401).
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for t in self.shared.lock().tokens.values_mut() {
            t.expires = now;
        }
    }

    /// Keep the PKCS#8 of every BYOK import from now on (tests that search for key bytes).
    pub fn retain_imported_private_keys(&self, on: bool) {
        self.shared.lock().retain_imported_pkcs8 = on;
    }

    /// The private keys imported while retention was on.
    pub fn imported_private_keys(&self) -> Vec<crate::state::ImportedPrivateKey> {
        self.shared.lock().imported_pkcs8.clone()
    }

    /// Revoke every issued token (the next data-plane call gets 401 "not recognized").
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// The "being deleted" window for keys deleted from now on.
    pub fn set_delete_pending(&self, d: Duration) {
        self.shared.lock().delete_pending = d;
    }

    /// Delay added to every request.
    pub fn set_rtt_delay(&self, d: Duration) {
        self.shared.lock().rtt_delay = d;
    }

    /// Add a fault rule.
    pub fn inject_fault(&self, rule: FaultRule) {
        self.shared.lock().faults.push(ActiveRule::new(rule));
    }

    /// Remove all fault rules.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// How many requests a `Delay` fault has started holding before acting, plus how many a
    /// `CommitThenHold` fault holds after acting: a test waits for this to rise to know a
    /// request is in flight at the point it wants.
    pub fn holds(&self) -> u64 {
        self.shared.lock().holds
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.iter().cloned().collect()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Requests whose body did not match the spec.
    pub fn schema_violations(&self) -> Vec<RequestRecord> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.schema_violation.is_some())
            .cloned()
            .collect()
    }

    /// All versions of a live key, in creation order (empty if none).
    pub fn key_versions(&self, vault: &str, name: &str) -> Vec<VersionView> {
        self.shared.key_versions(vault, name)
    }

    /// All live keys of a vault.
    pub fn all_keys(&self, vault: &str) -> Vec<KeyView> {
        self.shared.all_keys(vault)
    }

    /// Live keys whose latest version is a KEK (key_ops == ["import"]).
    pub fn live_keks(&self, vault: &str) -> Vec<KeyView> {
        self.all_keys(vault)
            .into_iter()
            .filter(|k| k.is_kek)
            .collect()
    }

    /// Soft-deleted keys (including those still in the "being deleted" window).
    pub fn deleted_keys(&self, vault: &str) -> Vec<DeletedView> {
        self.shared.deleted_keys(vault)
    }

    /// Add a version not made through the API (drift tests). Returns the new latest version.
    pub async fn import_foreign_version(
        &self,
        vault: &str,
        name: &str,
        kind: ForeignKeyType,
        tags: BTreeMap<String, String>,
    ) -> Result<VersionView, EmulatorError> {
        self.shared
            .import_foreign_version(vault, name, kind, tags)
            .await
    }

    /// Adds a key exchange key (RSA-HSM, `key_ops` exactly `["import"]`, valid for an hour) whose
    /// private key is `pkcs8_der`, which the test holds: as an officer's `az keyvault key create
    /// --kty RSA-HSM --ops import` makes one, except that the test can unwrap a `.byok` file for
    /// it too, with an implementation independent of byokd and of this emulator.
    pub fn add_kek_from_pkcs8(
        &self,
        vault: &str,
        name: &str,
        pkcs8_der: &[u8],
    ) -> Result<VersionView, EmulatorError> {
        use rsa::pkcs8::DecodePrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let key = rsa::PrivateKey::from_pkcs8_der(pkcs8_der)
            .map_err(|e| EmulatorError::Key(format!("the KEK is not an RSA PKCS#8 key: {e}")))?;
        let bits = key.n_bytes().len() * 8;
        if ![2048, 3072, 4096].contains(&bits) {
            return Err(EmulatorError::Key(format!("unsupported KEK size {bits}")));
        }
        let now = now_secs();
        let ver = KeyVersion {
            version: new_version_id(),
            kty: "RSA-HSM".to_owned(),
            key_ops: vec!["import".to_owned()],
            material: Material::from_rsa(key),
            enabled: true,
            nbf: None,
            exp: Some(now + 3600),
            created: now,
            updated: now,
            tags: BTreeMap::new(),
            origin: Origin::Created,
        };
        self.shared.push_version(vault, name, ver)
    }

    /// Enable or disable a version behind the client's back.
    pub fn set_version_enabled(
        &self,
        vault: &str,
        name: &str,
        version: &str,
        enabled: bool,
    ) -> Result<(), EmulatorError> {
        self.edit_version(vault, name, version, |ver| ver.enabled = enabled)
    }

    /// Set (or clear) a version's `exp` behind the client's back (drift tests).
    pub fn set_version_exp(
        &self,
        vault: &str,
        name: &str,
        version: &str,
        exp: Option<i64>,
    ) -> Result<(), EmulatorError> {
        self.edit_version(vault, name, version, |ver| ver.exp = exp)
    }

    /// Give version `to` the key material of version `from` of the same key, behind the
    /// client's back: `to` then answers with a public key that is not the one imported.
    pub fn copy_version_material(
        &self,
        vault: &str,
        name: &str,
        from: &str,
        to: &str,
    ) -> Result<(), EmulatorError> {
        let material = {
            let mut st = self.shared.lock();
            let v = vault_mut(&mut st, vault)?;
            find_version(v, name, from)?.material.clone()
        };
        self.edit_version(vault, name, to, |ver| ver.material = material)
    }

    fn edit_version(
        &self,
        vault: &str,
        name: &str,
        version: &str,
        edit: impl FnOnce(&mut crate::state::KeyVersion),
    ) -> Result<(), EmulatorError> {
        let mut st = self.shared.lock();
        let v = vault_mut(&mut st, vault)?;
        let ver = find_version(v, name, version)?;
        edit(ver);
        ver.updated = now_secs();
        Ok(())
    }

    /// Delete a key behind the client's back (soft-deleted and immediately visible as deleted).
    pub fn delete_key_now(&self, vault: &str, name: &str) -> Result<(), EmulatorError> {
        self.shared.delete_key_now(vault, name)
    }

    /// Delete a key behind the client's back with the configured "being deleted" window: the
    /// deleted key answers 404 and a purge 409 until the window ends.
    pub fn delete_key_pending(
        &self,
        vault: &str,
        name: &str,
        window: Duration,
    ) -> Result<(), EmulatorError> {
        let mut st = self.shared.lock();
        let v = vault_mut(&mut st, vault)?;
        crate::vault::delete_entry(v, name, window)
            .map(|_| ())
            .ok_or_else(|| EmulatorError::NotFound(format!("key {name}")))
    }

    /// Per-vault counters (creates, imports, throttle 429s).
    pub fn counters(&self, vault: &str) -> VaultCounters {
        self.shared
            .lock()
            .vaults
            .get(&vault.to_ascii_lowercase())
            .map(|v| v.counters)
            .unwrap_or_default()
    }

    /// All 429s issued (throttle and injected).
    pub fn throttled_total(&self) -> u64 {
        let st = self.shared.lock();
        st.fault_429s
            + st.vaults
                .values()
                .map(|v| v.counters.throttled)
                .sum::<u64>()
    }

    /// Stop accepting and close connections.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn vault_mut<'a>(st: &'a mut State, vault: &str) -> Result<&'a mut Vault, EmulatorError> {
    st.vaults
        .get_mut(&vault.to_ascii_lowercase())
        .ok_or_else(|| EmulatorError::NotFound(format!("vault {vault}")))
}

impl Shared {
    pub(crate) fn add_vault(&self, name: &str, opts: VaultOptions) -> Result<(), EmulatorError> {
        validate_vault_name(name)?;
        if opts.managed_hsm && !opts.recovery_level.soft_delete() {
            return Err(EmulatorError::Config(format!(
                "Managed HSM {name}: soft-delete is always on in Managed HSM; use recovery level Recoverable+Purgeable or Recoverable (purge protection)"
            )));
        }
        let mut st = self.lock();
        match st.vaults.get_mut(&name.to_ascii_lowercase()) {
            Some(v) => v.opts = opts,
            None => {
                st.vaults
                    .insert(name.to_ascii_lowercase(), Vault::new(name, opts));
            }
        }
        Ok(())
    }

    pub(crate) fn key_versions(&self, vault: &str, name: &str) -> Vec<VersionView> {
        let st = self.lock();
        let Some(v) = st.vaults.get(&vault.to_ascii_lowercase()) else {
            return Vec::new();
        };
        v.keys
            .get(&name.to_ascii_lowercase())
            .map(|e| {
                e.versions
                    .iter()
                    .map(|x| version_view(v, &e.name, x))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn all_keys(&self, vault: &str) -> Vec<KeyView> {
        let st = self.lock();
        let Some(v) = st.vaults.get(&vault.to_ascii_lowercase()) else {
            return Vec::new();
        };
        v.keys
            .values()
            .filter_map(|e| {
                let latest = e.latest()?;
                Some(KeyView {
                    name: e.name.clone(),
                    is_kek: latest.is_kek(),
                    versions: e.versions.len(),
                    latest_version: latest.version.clone(),
                })
            })
            .collect()
    }

    pub(crate) fn deleted_keys(&self, vault: &str) -> Vec<DeletedView> {
        let st = self.lock();
        let Some(v) = st.vaults.get(&vault.to_ascii_lowercase()) else {
            return Vec::new();
        };
        let now = Instant::now();
        v.deleted
            .values()
            .map(|d| DeletedView {
                name: d.entry.name.clone(),
                pending: d.visible_at > now,
                deleted_date: d.deleted_date,
                scheduled_purge_date: d.scheduled_purge,
            })
            .collect()
    }

    pub(crate) fn delete_key_now(&self, vault: &str, name: &str) -> Result<(), EmulatorError> {
        let mut st = self.lock();
        let v = vault_mut(&mut st, vault)?;
        crate::vault::delete_entry(v, name, Duration::ZERO)
            .map(|_| ())
            .ok_or_else(|| EmulatorError::NotFound(format!("key {name}")))
    }

    pub(crate) async fn import_foreign_version(
        &self,
        vault: &str,
        name: &str,
        kind: ForeignKeyType,
        tags: BTreeMap<String, String>,
    ) -> Result<VersionView, EmulatorError> {
        let (kty, material) = match kind {
            ForeignKeyType::Rsa { bits } => {
                if ![2048, 3072, 4096].contains(&bits) {
                    return Err(EmulatorError::Key(format!("unsupported RSA size {bits}")));
                }
                let k = keys::rsa_key(bits).await.map_err(EmulatorError::Key)?;
                let mut m = Material::from_rsa(k);
                m.private = None;
                ("RSA-HSM", m)
            }
            ForeignKeyType::Ec { crv } => (
                "EC-HSM",
                Material {
                    public: keys::generate_ec_public(crv).map_err(EmulatorError::Key)?,
                    private: None,
                },
            ),
        };
        let ops: Vec<String> = if kty == "EC-HSM" {
            vec!["sign".into(), "verify".into()]
        } else {
            [
                "encrypt",
                "decrypt",
                "sign",
                "verify",
                "wrapKey",
                "unwrapKey",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
        };
        let now = now_secs();
        let ver = KeyVersion {
            version: new_version_id(),
            kty: kty.to_owned(),
            key_ops: ops,
            material,
            enabled: true,
            nbf: None,
            exp: None,
            created: now,
            updated: now,
            tags,
            origin: Origin::Foreign,
        };
        self.push_version(vault, name, ver)
    }

    /// Adds `ver` as the latest version of key `name` behind the client's back.
    fn push_version(
        &self,
        vault: &str,
        name: &str,
        ver: KeyVersion,
    ) -> Result<VersionView, EmulatorError> {
        let mut st = self.lock();
        let v = vault_mut(&mut st, vault)?;
        let entry =
            v.keys
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| crate::state::KeyEntry {
                    name: name.to_owned(),
                    versions: Vec::new(),
                });
        entry.versions.push(ver.clone());
        let stored = entry.name.clone();
        Ok(version_view(v, &stored, &ver))
    }
}

fn find_version<'a>(
    v: &'a mut Vault,
    name: &str,
    version: &str,
) -> Result<&'a mut crate::state::KeyVersion, EmulatorError> {
    v.keys
        .get_mut(&name.to_ascii_lowercase())
        .ok_or_else(|| EmulatorError::NotFound(format!("key {name}")))?
        .versions
        .iter_mut()
        .find(|x| x.version.eq_ignore_ascii_case(version))
        .ok_or_else(|| EmulatorError::NotFound(format!("version {name}/{version}")))
}
