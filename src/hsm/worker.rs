//! The one thread that talks to the token.
//!
//! Owns: the `Pkcs11` module guard, the logged-in session, the sealing key handle and the wrap
//! plan; the request
//! enum; the loop that serves requests one at a time and replies over oneshot channels.
//! Must never: panic, block on the async side, or outlive its module guard (the session is
//! closed before C_Finalize).

use super::library::Module;
use super::{
    GeneratedKey, HsmError, HsmKeyEntry, KekPublicKey, PrivateKeyAttributes, PublicKeyInfo,
    capability, keygen, seal, signing, wrap,
};
use crate::model::{HsmKeyId, KeyType};
use crate::secret::SecretBytes;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use std::sync::mpsc::{Receiver, Sender};
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
    /// Closes the session and releases the module, then answers.
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Everything the worker thread owns.
pub(crate) struct Worker {
    pub(crate) session: Session,
    pub(crate) seal_key: ObjectHandle,
    /// The wrap strategy the start-up self-test chose.
    pub(crate) wrap_plan: wrap::Plan,
    pub(crate) module: Module,
    pub(crate) token_label: String,
}

impl Worker {
    /// Serves requests until every `Hsm` handle is dropped or `Shutdown` arrives.
    /// `stopped` is signalled last, after the session is closed and the module released.
    pub(crate) fn run(self, requests: Receiver<Request>, stopped: Sender<()>) {
        let mut shutdown_reply = None;
        while let Ok(request) = requests.recv() {
            match request {
                Request::Shutdown { reply } => {
                    shutdown_reply = Some(reply);
                    break;
                }
                other => self.serve(other),
            }
        }
        let Worker {
            session,
            module,
            token_label,
            ..
        } = self;
        if let Err(e) = session.close() {
            tracing::warn!(token = %token_label, error = %e, "closing the HSM session failed");
        }
        drop(module);
        tracing::info!(token = %token_label, "HSM worker stopped");
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
        let _ = stopped.send(());
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
                let _ = reply.send(keygen::generate(s, key_type, &label));
            }
            Request::PublicKey { id, reply } => {
                let _ = reply.send(keygen::public_key(s, id));
            }
            Request::ListKeys { reply } => {
                let _ = reply.send(keygen::list(s));
            }
            Request::Destroy { id, reply } => {
                let _ = reply.send(keygen::destroy(s, id));
            }
            Request::Seal {
                aad,
                plaintext,
                reply,
            } => {
                let _ = reply.send(seal::seal(s, self.seal_key, &aad, &plaintext));
            }
            Request::Unseal { aad, sealed, reply } => {
                let _ = reply.send(seal::unseal(s, self.seal_key, &aad, &sealed));
            }
            Request::KeyAttributes { id, reply } => {
                let _ = reply.send(keygen::attributes(s, id));
            }
            Request::WrapForTransfer { id, kek, reply } => {
                let _ = reply.send(wrap::wrap_for_transfer(s, &self.wrap_plan, id, &kek));
            }
            Request::GenerateSigningKey { label, reply } => {
                let _ = reply.send(signing::generate(s, &label));
            }
            Request::Sign {
                id,
                scheme,
                data,
                reply,
            } => {
                let _ = reply.send(signing::sign(s, id, scheme, &data));
            }
            Request::TrialRsaExponent { exponent, reply } => {
                let _ = reply.send(Ok(capability::trial_rsa_exponent(s, exponent)));
            }
            Request::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }
}
