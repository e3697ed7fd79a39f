//! The threads that talk to the token: one per session of the pool.
//!
//! Owns: one logged-in session each (the login is the token's, shared by every session of the
//! process), a share of the `Pkcs11` module guard, the sealing key handle and the wrap plan; the
//! request enum and which lane each request waits in; the loop that serves requests one at a
//! time and replies over oneshot channels; reopening a session the token lost.
//! Must never: panic, block on the async side, or outlive its module guard (each session is
//! closed before the last guard calls C_Finalize).

use super::library::Module;
use super::pool::{Lane, Pool};
use super::{
    GeneratedKey, HsmError, HsmKeyEntry, KekPublicKey, PrivateKeyAttributes, PublicKeyInfo,
    capability, keygen, seal, secret_key, signing, token, wrap,
};
use crate::model::{HsmKeyId, KeyType};
use crate::secret::SecretBytes;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use tokio::sync::oneshot;

type Reply<T> = oneshot::Sender<Result<T, HsmError>>;

/// A request to the worker. Each carries its own reply channel.
pub(crate) enum Request {
    Generate {
        key_type: KeyType,
        label: String,
        reply: Reply<GeneratedKey>,
    },
    PublicKey {
        id: HsmKeyId,
        reply: Reply<PublicKeyInfo>,
    },
    GenerateAes {
        bits: u32,
        label: String,
        reply: Reply<secret_key::GeneratedSecretKey>,
    },
    KeyIdentity {
        id: HsmKeyId,
        reply: Reply<super::KeyIdentity>,
    },
    ListKeys {
        reply: Reply<Vec<HsmKeyEntry>>,
    },
    Destroy {
        id: HsmKeyId,
        reply: Reply<()>,
    },
    Seal {
        aad: Vec<u8>,
        plaintext: SecretBytes,
        reply: Reply<Vec<u8>>,
    },
    Unseal {
        aad: Vec<u8>,
        sealed: Vec<u8>,
        reply: Reply<SecretBytes>,
    },
    KeyAttributes {
        id: HsmKeyId,
        reply: Reply<PrivateKeyAttributes>,
    },
    WrapForTransfer {
        id: HsmKeyId,
        kek: KekPublicKey,
        reply: Reply<Vec<u8>>,
    },
    GenerateSigningKey {
        label: String,
        reply: Reply<GeneratedKey>,
    },
    Sign {
        id: HsmKeyId,
        scheme: signing::SignatureScheme,
        data: Vec<u8>,
        reply: Reply<Vec<u8>>,
    },
    /// A trial generation of an RSA exponent (`capability::trial_rsa_exponent`); the inner
    /// error says why the token cannot.
    TrialRsaExponent {
        exponent: crate::model::RsaExponent,
        reply: Reply<Result<(), String>>,
    },
}

impl Request {
    /// Key generation (and the whole-token listing and destroys that go with batches) waits in
    /// the bulk lane; what a running job waits on per key goes in the fast lane (see `pool`).
    pub(crate) fn lane(&self) -> Lane {
        match self {
            Request::Generate { .. }
            | Request::GenerateAes { .. }
            | Request::GenerateSigningKey { .. }
            | Request::TrialRsaExponent { .. }
            | Request::ListKeys { .. }
            | Request::Destroy { .. } => Lane::Bulk,
            Request::PublicKey { .. }
            | Request::KeyIdentity { .. }
            | Request::Seal { .. }
            | Request::Unseal { .. }
            | Request::KeyAttributes { .. }
            | Request::WrapForTransfer { .. }
            | Request::Sign { .. } => Lane::Fast,
        }
    }
}

/// Everything one worker thread owns.
pub(crate) struct Worker {
    pub(crate) session: Session,
    pub(crate) slot: Slot,
    pub(crate) seal_key: ObjectHandle,
    /// The wrap strategy the start-up self-test chose.
    pub(crate) wrap_plan: Arc<wrap::Plan>,
    pub(crate) module: Arc<Module>,
    pub(crate) token_label: String,
    /// Which session of the pool (for the log).
    pub(crate) index: usize,
    /// Set by `answer` when the token said this session is gone.
    pub(crate) lost: Cell<bool>,
}

impl Worker {
    /// Serves requests until the pool is closed and empty. The last worker to stop signals
    /// `stopped`, after its session is closed and the module released.
    pub(crate) fn run(mut self, pool: Arc<Pool<Request>>, stopped: Sender<()>) {
        while let Some((request, lane)) = pool.next() {
            self.serve(request);
            if lane == Lane::Bulk {
                pool.bulk_done();
            }
            if self.lost.replace(false) {
                self.reopen();
            }
        }
        let Worker {
            session,
            module,
            token_label,
            index,
            ..
        } = self;
        if let Err(e) = session.close() {
            tracing::warn!(token = %token_label, session = index, error = %e, "closing the HSM session failed");
        }
        drop(module);
        if pool.worker_stopped() {
            tracing::info!(token = %token_label, "HSM workers stopped");
            let _ = stopped.send(());
        }
    }

    /// Replaces a session the token lost. It shares the login of the pool's other sessions;
    /// when none is left the token has logged byokd out, and requests on this session fail
    /// until byokd is restarted (the PIN is not kept after start-up).
    fn reopen(&mut self) {
        match token::open_logged_in(self.module.pkcs11(), self.slot) {
            Ok(session) => {
                tracing::warn!(token = %self.token_label, session = self.index, "the token lost an HSM session; opened a new one");
                self.session = session;
            }
            Err(e) => {
                tracing::error!(token = %self.token_label, session = self.index, error = %e, "the token lost an HSM session and a new one could not be opened; restart byokd");
            }
        }
    }

    /// Sends `result` to the caller, noting first whether it says the session is gone.
    fn answer<T>(&self, reply: Reply<T>, result: Result<T, HsmError>) {
        if result.as_ref().is_err_and(HsmError::session_lost) {
            self.lost.set(true);
        }
        let _ = reply.send(result);
    }

    /// A reply whose caller has gone (time-out) is dropped silently: the result is lost, not the
    /// worker. Callers that time out on `Generate` reconcile through `list_keys` (the label).
    fn serve(&self, request: Request) {
        let s = &self.session;
        match request {
            Request::Generate {
                key_type,
                label,
                reply,
            } => {
                self.answer(reply, keygen::generate(s, key_type, &label));
            }
            Request::PublicKey { id, reply } => {
                self.answer(reply, keygen::public_key(s, id));
            }
            Request::GenerateAes { bits, label, reply } => {
                self.answer(reply, secret_key::generate(s, bits, &label));
            }
            Request::KeyIdentity { id, reply } => {
                self.answer(reply, secret_key::identity(s, id));
            }
            Request::ListKeys { reply } => {
                let listed = keygen::list(s).and_then(|mut pairs| {
                    pairs.extend(secret_key::list(s)?);
                    pairs.sort_by(|a, b| a.label.cmp(&b.label).then(a.id.cmp(&b.id)));
                    Ok(pairs)
                });
                self.answer(reply, listed);
            }
            Request::Destroy { id, reply } => {
                let destroyed = secret_key::destroy(s, id)
                    .and_then(|aes| if aes { Ok(()) } else { keygen::destroy(s, id) });
                self.answer(reply, destroyed);
            }
            Request::Seal {
                aad,
                plaintext,
                reply,
            } => {
                self.answer(reply, seal::seal(s, self.seal_key, &aad, &plaintext));
            }
            Request::Unseal { aad, sealed, reply } => {
                self.answer(reply, seal::unseal(s, self.seal_key, &aad, &sealed));
            }
            Request::KeyAttributes { id, reply } => {
                let attributes = secret_key::attributes(s, id).and_then(|aes| match aes {
                    Some(a) => Ok(a),
                    None => keygen::attributes(s, id),
                });
                self.answer(reply, attributes);
            }
            Request::WrapForTransfer { id, kek, reply } => {
                self.answer(reply, wrap::wrap_for_transfer(s, &self.wrap_plan, id, &kek));
            }
            Request::GenerateSigningKey { label, reply } => {
                self.answer(reply, signing::generate(s, &label));
            }
            Request::Sign {
                id,
                scheme,
                data,
                reply,
            } => {
                self.answer(reply, signing::sign(s, id, scheme, &data));
            }
            Request::TrialRsaExponent { exponent, reply } => {
                self.answer(reply, Ok(capability::trial_rsa_exponent(s, exponent)));
            }
        }
    }
}
