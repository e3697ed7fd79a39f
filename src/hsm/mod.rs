//! The HSM layer: the only code in byokd that calls PKCS#11.
//!
//! Owns: the `Hsm` handle and its public API. `Hsm::start` loads the module, finds the token by
//! label, logs in, checks (or on first start creates) the sealing key, runs the wrap-strategy
//! self-test and opens a pool of sessions (`hsm.sessions`), each served by its own worker
//! thread; the threads share the PKCS#11 context. Every other method queues a request in one of
//! the pool's two bounded lanes (key generation apart from wraps, signatures and the other short
//! requests, see `pool`) and awaits the reply with a time-out.
//! Must never: call cryptoki outside the worker thread (after start-up), panic, block an async
//! task, or let the PIN, key material or unsealed plaintext reach an error, a log or `Debug`.
//!
//! Files: `library` (C_Initialize/C_Finalize), `token` (slot lookup, login, session count),
//! `pool` (the lanes between the async side and the workers), `worker` (threads and requests),
//! `handles` (key object handles kept between requests), `keygen` (target key pairs),
//! `secret_key` (AES target keys and their check value), `spki` (public key encoding), `seal`
//! (AES-GCM sealing), `signing` (credential signing keys),
//! `wrap` (BYOK wrap strategies and their self-test), `conformance` (the encoding self-test by
//! key family and class), `strict` (the strict PKCS#8 parser and canonical encoder), `host`
//! (host-side RSA-OAEP and AES-KWP), `capability` (which key types the token generates),
//! `report` (token identity and mechanisms), `error`.

mod capability;

mod error;
mod fresh_id;
mod handles;
mod host;
mod keygen;
mod library;
mod pool;
mod report;
mod seal;
mod secret_key;
mod signing;
mod spki;
mod strict;
mod token;
mod worker;
mod wrap;

pub use capability::Capabilities;
pub use error::HsmError;
pub use keygen::{LABEL_PREFIX, key_label, parse_label};
pub use report::{
    CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD, CKM_RSA_AES_KEY_WRAP, CKM_RSA_PKCS_OAEP,
    TokenReport,
};
pub use seal::{SEAL_KEY_LABEL, SEAL_MAGIC};
pub use secret_key::{GeneratedSecretKey, KCV_LEN, SecretKeyInfo, kcv_of_block};
pub use signing::{SIGNING_KEY_BITS, SIGNING_LABEL_PREFIX, SignatureScheme, signing_label};
pub use spki::check_digits;
pub use wrap::{EncodingCheck, KeyFamily, KeyTypeCheck};
pub use wrap::{KekPublicKey, StrategyCheck, WrapReport, WrapStrategy};

use crate::model::{GroupName, HsmKeyId, KeyName, KeyType};
use crate::secret::{Pin, SecretBytes};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;
use worker::{Request, Worker};

/// How many requests may wait in each lane (key generation; everything else) before callers
/// get `HsmError::Busy`.
pub const QUEUE_DEPTH: usize = 64;

/// The most sessions byokd opens, whatever `hsm.sessions` or the token says.
pub const MAX_SESSIONS: usize = 32;

/// Where the token is and how long one request may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (`hsm.module`).
    pub module: PathBuf,
    /// CKA_LABEL of the token (`hsm.token_label`).
    pub token_label: String,
    /// Upper bound for one request, queueing included (`hsm.request_timeout`).
    pub request_timeout: Duration,
    /// Allow the `host` wrap strategy (`hsm.allow_host_wrap`): keys are unwrapped in host memory
    /// for re-wrapping. Only for software tokens.
    pub allow_host_wrap: bool,
    /// Sessions in the pool (`hsm.sessions`); 0 chooses from the token's session limits and
    /// the core count (see `token::session_count`).
    pub sessions: usize,
}

/// A key generated on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    pub id: HsmKeyId,
    pub public: PublicKeyInfo,
}

/// The public half of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// First 4 hex digits, upper case, of SHA-256 over `spki_der`.
    pub check_digits: String,
}

/// What identifies a target key outside the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyIdentity {
    /// An RSA or EC key: its public half.
    Public(PublicKeyInfo),
    /// An AES key: its size and key check value (Azure never returns an oct key's material).
    Secret(SecretKeyInfo),
}

impl KeyIdentity {
    /// The check digits an officer compares: 4 hex digits of the SPKI's SHA-256 for a key
    /// pair, the 6-hex-digit KCV for an AES key.
    pub fn check_digits(&self) -> &str {
        match self {
            Self::Public(p) => &p.check_digits,
            Self::Secret(s) => &s.kcv,
        }
    }
}

/// A target key generated on the token, of any key type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedTarget {
    pub id: HsmKeyId,
    pub identity: KeyIdentity,
}

/// A byokd key found on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmKeyEntry {
    pub id: HsmKeyId,
    /// `byokd/{group}/{key}`; see `parse_label`.
    pub label: String,
    /// `None` for a key of a type byokd does not generate (e.g. RSA-1024 put there by hand).
    pub key_type: Option<KeyType>,
}

/// The protection attributes of a private key as the token reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrivateKeyAttributes {
    pub token: bool,
    pub private: bool,
    pub sensitive: bool,
    pub extractable: bool,
    pub always_sensitive: bool,
    pub never_extractable: bool,
    /// The token refused to reveal CKA_PRIVATE_EXPONENT (RSA) or CKA_VALUE (EC).
    pub secret_value_refused: bool,
}

/// An RSA exponent a trial generation was made with, and the token's answer.
type TriedExponent = (crate::model::RsaExponent, Result<(), String>);

/// A handle to the HSM session pool. Cheap to clone. The workers stop on `shutdown`, or when
/// the last clone is dropped; that drop waits (at most `request_timeout`) for the workers to
/// close their sessions and release the module, so that no PKCS#11 call races the process's
/// exit.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
    report: Arc<TokenReport>,
    wrap: Arc<WrapReport>,
    capabilities: Arc<Capabilities>,
    /// RSA exponents other than 65537, tried on first use: the token's answer, kept.
    exponents: Arc<Mutex<Vec<TriedExponent>>>,
    timeout: Duration,
}

struct Inner {
    pool: Arc<pool::Pool<Request>>,
    sessions: usize,
    stopped: Mutex<Receiver<()>>,
    timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The workers finish queued requests, then stop.
        self.pool.close();
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(self.timeout) {
            tracing::warn!(
                after_ms = self.timeout.as_millis() as u64,
                "the HSM workers did not stop in time"
            );
        }
    }
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("token", &self.report.token_label)
            .field("wrap_strategy", &self.wrap.chosen)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Hsm {
    /// Loads the module, finds the token by label, opens a session, logs in as user, checks the
    /// sealing key (creating it on first start), runs the wrap-strategy self-test (see
    /// `wrap_report`) and opens the session pool, one worker thread per session. Blocking: call it at start-up, or from
    /// `spawn_blocking`. A token with no usable wrap strategy still starts: pushes then fail with
    /// `HsmError::NoWrapStrategy`.
    pub fn start(cfg: &HsmConfig, pin: Pin) -> Result<(Hsm, TokenReport), HsmError> {
        let started = std::time::Instant::now();
        let module = library::Module::load(&cfg.module)?;
        let slot = token::find_slot(module.pkcs11(), &cfg.token_label)?;
        let session = token::open_and_login(module.pkcs11(), slot, &cfg.token_label, pin)?;
        let login_ms = started.elapsed().as_millis();
        let report = TokenReport::read(module.pkcs11(), slot)
            .map_err(HsmError::pkcs11("reading the token report"))?;
        let seal_key = seal::ensure_seal_key(&session)?;
        tracing::info!(
            token = %report.token_label,
            manufacturer = %report.manufacturer,
            model = %report.model,
            serial = %report.serial,
            firmware = %report.firmware_version,
            library = %report.library_description,
            library_version = %report.library_version,
            mechanisms = report.mechanisms.len(),
            "HSM token ready"
        );
        let self_test_started = std::time::Instant::now();
        let capabilities = Capabilities::probe(module.pkcs11(), slot, &session);
        let (wrap_report, wrap_plan) =
            wrap::self_test(&session, &report, &capabilities, cfg.allow_host_wrap);
        tracing::info!(
            login_ms,
            self_test_ms = self_test_started.elapsed().as_millis(),
            hsm_ms = started.elapsed().as_millis(),
            "HSM start-up timed (module load and login, wrap self-test, in all)"
        );
        let sessions = token::session_count(module.pkcs11(), slot, cfg.sessions);
        let mut opened = vec![session];
        while opened.len() < sessions {
            opened.push(token::open_logged_in(module.pkcs11(), slot)?);
        }
        let pool = Arc::new(pool::Pool::new(sessions, QUEUE_DEPTH));
        let (stopped_tx, stopped) = channel();
        let module = Arc::new(module);
        let wrap_plan = Arc::new(wrap_plan);
        let handles = Arc::new(handles::Handles::default());
        let inner = Inner {
            pool: pool.clone(),
            sessions,
            stopped: Mutex::new(stopped),
            timeout: cfg.request_timeout,
        };
        for (index, session) in opened.into_iter().enumerate() {
            let worker = Worker {
                session,
                slot,
                seal_key,
                handles: handles.clone(),
                wrap_plan: wrap_plan.clone(),
                module: module.clone(),
                token_label: cfg.token_label.clone(),
                index,
                lost: std::cell::Cell::new(false),
            };
            let (worker_pool, stopped_tx) = (pool.clone(), stopped_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("byokd-hsm-{index}"))
                .spawn(move || worker.run(worker_pool, stopped_tx));
            if let Err(e) = spawned {
                // This worker and those not spawned will never stop by themselves.
                for _ in index..sessions {
                    pool.worker_stopped();
                }
                return Err(HsmError::ModuleInit {
                    path: cfg.module.clone(),
                    cause: format!("cannot spawn an HSM worker thread: {e}"),
                });
            }
        }
        drop(module);
        tracing::info!(token = %report.token_label, sessions, "HSM session pool started");
        let hsm = Hsm {
            inner: Arc::new(inner),
            report: Arc::new(report.clone()),
            wrap: Arc::new(wrap_report),
            capabilities: Arc::new(capabilities),
            exponents: Arc::new(Mutex::new(Vec::new())),
            timeout: cfg.request_timeout,
        };
        Ok((hsm, report))
    }

    /// Whether the token can generate `key_type`: the start-up probe (RSA sizes, curves) and,
    /// for an RSA exponent other than 65537, a trial generation on first use, kept. The error
    /// names the missing mechanism, curve or exponent.
    pub async fn can_generate(&self, key_type: KeyType) -> Result<(), HsmError> {
        self.capabilities
            .check(key_type)
            .map_err(|(mechanism, cause)| keygen::not_supported(key_type, mechanism, cause))?;
        let KeyType::Rsa { exponent, .. } = key_type else {
            return Ok(());
        };
        if exponent == crate::model::RsaExponent::F4 {
            return Ok(());
        }
        let known = self
            .exponents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(e, _)| *e == exponent)
            .map(|(_, r)| r.clone());
        let result = match known {
            Some(r) => r,
            None => {
                let r = self
                    .call("trial_rsa_exponent", |reply| Request::TrialRsaExponent {
                        exponent,
                        reply,
                    })
                    .await?;
                self.exponents
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((exponent, r.clone()));
                r
            }
        };
        result.map_err(|cause| keygen::not_supported(key_type, capability::RSA_KEYGEN, cause))
    }

    /// Generates a key pair of `key_type` labelled `byokd/{group}/{key}`. A key type the
    /// start-up probe found the token cannot generate is refused without asking the token.
    pub async fn generate(
        &self,
        key_type: KeyType,
        group: &GroupName,
        key: &KeyName,
    ) -> Result<GeneratedKey, HsmError> {
        self.can_generate(key_type).await?;
        let label = key_label(group, key);
        self.call("generate", |reply| Request::Generate {
            key_type,
            label,
            reply,
        })
        .await
    }

    /// Generates a target key of `key_type` labelled `byokd/{group}/{key}`: a key pair (see
    /// `generate`) or an AES key (CKK_AES, sensitive, extractable only for the BYOK wrap; its
    /// KCV computed in the token).
    pub async fn generate_target(
        &self,
        key_type: KeyType,
        group: &GroupName,
        key: &KeyName,
    ) -> Result<GeneratedTarget, HsmError> {
        let KeyType::Aes { bits } = key_type else {
            let pair = self.generate(key_type, group, key).await?;
            return Ok(GeneratedTarget {
                id: pair.id,
                identity: KeyIdentity::Public(pair.public),
            });
        };
        self.can_generate(key_type).await?;
        let label = key_label(group, key);
        let aes = self
            .call("generate", |reply| Request::GenerateAes {
                bits,
                label,
                reply,
            })
            .await?;
        Ok(GeneratedTarget {
            id: aes.id,
            identity: KeyIdentity::Secret(aes.info),
        })
    }

    /// What identifies target key `id` outside the token: its public half, or for an AES key
    /// its size and KCV (computed again in the token).
    pub async fn key_identity(&self, id: HsmKeyId) -> Result<KeyIdentity, HsmError> {
        self.call("key_identity", |reply| Request::KeyIdentity { id, reply })
            .await
    }

    /// The public half of key `id`: SPKI DER and check digits.
    pub async fn public_key(&self, id: HsmKeyId) -> Result<PublicKeyInfo, HsmError> {
        self.call("public_key", |reply| Request::PublicKey { id, reply })
            .await
    }

    /// Every byokd key on the token, sorted by label.
    pub async fn list_keys(&self) -> Result<Vec<HsmKeyEntry>, HsmError> {
        self.call("list_keys", |reply| Request::ListKeys { reply })
            .await
    }

    /// Destroys the private and public objects of key `id`, or AES key `id`.
    pub async fn destroy(&self, id: HsmKeyId) -> Result<(), HsmError> {
        self.call("destroy", |reply| Request::Destroy { id, reply })
            .await
    }

    /// Seals `plaintext` with the token's sealing key; `aad` binds it to its context.
    pub async fn seal(&self, aad: &[u8], plaintext: &SecretBytes) -> Result<Vec<u8>, HsmError> {
        let aad = aad.to_vec();
        // An exact-length copy into another zeroizing box, owned by the request.
        let plaintext = SecretBytes::new(plaintext.expose_secret().to_vec());
        self.call("seal", |reply| Request::Seal {
            aad,
            plaintext,
            reply,
        })
        .await
    }

    /// Authenticates and decrypts data from `seal`. Wrong `aad`, corruption or truncation give
    /// `HsmError::UnsealFailed`.
    pub async fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, HsmError> {
        let (aad, sealed) = (aad.to_vec(), sealed.to_vec());
        self.call("unseal", |reply| Request::Unseal { aad, sealed, reply })
            .await
    }

    /// Generates a credential signing key (RSA-3072, never extractable) labelled
    /// `byokd-cred/{credential}`.
    pub async fn generate_signing_key(&self, credential: &str) -> Result<GeneratedKey, HsmError> {
        let label = signing_label(credential);
        self.call("generate_signing_key", |reply| {
            Request::GenerateSigningKey { label, reply }
        })
        .await
    }

    /// Signs `data` in the token with credential signing key `id`.
    pub async fn sign(
        &self,
        id: HsmKeyId,
        scheme: SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let data = data.to_vec();
        self.call("sign", |reply| Request::Sign {
            id,
            scheme,
            data,
            reply,
        })
        .await
    }

    /// The protection attributes of private key `id`.
    pub async fn key_attributes(&self, id: HsmKeyId) -> Result<PrivateKeyAttributes, HsmError> {
        self.call("key_attributes", |reply| Request::KeyAttributes {
            id,
            reply,
        })
        .await
    }

    /// The wrap strategy the start-up self-test chose; `None` when no allowed strategy works.
    pub fn wrap_strategy(&self) -> Option<WrapStrategy> {
        self.wrap.chosen
    }

    /// Why each wrap strategy was or was not chosen (for `byokctl status` and the log).
    pub fn wrap_report(&self) -> &WrapReport {
        &self.wrap
    }

    /// Wraps private key `id` for Azure's BYOK import under the vault's KEK:
    /// `RSA-OAEP-SHA1(kek, aes256) || AES-KWP(aes256, PKCS#8 of the key)`, with the strategy
    /// `wrap_strategy` names. Fails with `HsmError::NoWrapStrategy` when there is none.
    pub async fn wrap_for_transfer(
        &self,
        id: HsmKeyId,
        kek: &KekPublicKey,
    ) -> Result<Vec<u8>, HsmError> {
        let kek = kek.clone();
        self.call("wrap_for_transfer", |reply| Request::WrapForTransfer {
            id,
            kek,
            reply,
        })
        .await
    }

    /// The token report taken at start-up.
    pub fn report(&self) -> &TokenReport {
        &self.report
    }

    /// How many sessions the pool serves requests on.
    pub fn sessions(&self) -> usize {
        self.inner.sessions
    }

    /// Stops the workers: they serve the queued requests, close their sessions and, if this was
    /// the process's last user of the module, call C_Finalize. Other clones get `WorkerGone`.
    pub async fn shutdown(self) -> Result<(), HsmError> {
        let stopped = self.inner.pool.on_stopped();
        self.inner.pool.close();
        match tokio::time::timeout(self.timeout, stopped).await {
            Ok(_) => Ok(()),
            Err(_) => Err(HsmError::Timeout {
                op: "shutdown",
                after: self.timeout,
            }),
        }
    }

    async fn call<T>(
        &self,
        op: &'static str,
        request: impl FnOnce(oneshot::Sender<Result<T, HsmError>>) -> Request,
    ) -> Result<T, HsmError> {
        let (reply, answer) = oneshot::channel();
        let request = request(reply);
        let lane = request.lane();
        self.inner.pool.push(request, lane)?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(HsmError::WorkerGone),
            Err(_) => {
                tracing::warn!(
                    op,
                    after_ms = self.timeout.as_millis() as u64,
                    "HSM request timed out"
                );
                Err(HsmError::Timeout {
                    op,
                    after: self.timeout,
                })
            }
        }
    }
}
