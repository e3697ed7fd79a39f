//! The control socket's TLS: TLS 1.3 only, the server certificate, and a client-certificate
//! verifier that requires a certificate chaining to the console CA (`control.client_ca`).
//!
//! It owns loading the PEM files and building the rustls configuration. It never accepts an
//! unauthenticated client and never logs key material.

use super::errors::ControlError;
use crate::config::ControlSection;
use crate::system::regular_file;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

fn pem_error(setting: &'static str, path: &Path, reason: impl ToString) -> ControlError {
    ControlError::Pem {
        setting,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certs(setting: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ControlError> {
    let pem = regular_file::read(path, regular_file::TEXT_LIMIT)
        .map_err(|e| pem_error(setting, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(setting, path, e))?;
    if certs.is_empty() {
        return Err(pem_error(setting, path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// The server's own certificate (the first of `control.server_cert`), for its names.
pub fn server_leaf(c: &ControlSection) -> Result<CertificateDer<'static>, ControlError> {
    certs("server_cert", &c.server_cert)?
        .into_iter()
        .next()
        .ok_or_else(|| pem_error("server_cert", &c.server_cert, "no CERTIFICATE block found"))
}

/// Builds the server configuration from `[control]`.
pub fn server_config(c: &ControlSection) -> Result<Arc<rustls::ServerConfig>, ControlError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs("server_cert", &c.server_cert)?;
    let key_pem = regular_file::read_secret(&c.server_key, regular_file::TEXT_LIMIT)
        .map_err(|e| pem_error("server_key", &c.server_key, e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_error("server_key", &c.server_key, e))?;
    let mut roots = RootCertStore::empty();
    for ca in certs("client_ca", &c.client_ca)? {
        roots
            .add(ca)
            .map_err(|e| pem_error("client_ca", &c.client_ca, e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ControlError::Tls(format!("client certificate verifier: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ControlError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ControlError::Tls(format!("control.server_cert/server_key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
