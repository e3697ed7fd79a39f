//! The TLS configuration of the client (ring, TLS 1.2 and 1.3, ALPN) and its trust anchors:
//! the system's plus `azure.extra_ca`. Verification cannot be turned off.

use crate::azure::AzureError;
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;

/// The rustls configuration: ring, TLS 1.2 and 1.3, system roots plus extra anchors, ALPN h2 then
/// http/1.1. Verification cannot be turned off.
pub(super) fn tls_config(extra_ca: &[std::path::PathBuf]) -> Result<ClientConfig, AzureError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::warn!(error = %err, "some system trust anchors could not be loaded");
    }
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    add_extra_ca(&mut roots, extra_ca)?;
    if roots.is_empty() {
        return Err(AzureError::TrustAnchors {
            path: "(system store)".into(),
            detail: "no trust anchors: install ca-certificates or set azure.extra_ca".into(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| AzureError::TrustAnchors {
            path: "(tls)".into(),
            detail: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Checks that every `azure.extra_ca` file holds trust anchors byokd can use (for
/// `byokd check-config`; the client refuses the same files at start-up).
pub fn check_extra_ca(extra_ca: &[std::path::PathBuf]) -> Result<(), AzureError> {
    add_extra_ca(&mut rustls::RootCertStore::empty(), extra_ca)
}

fn add_extra_ca(
    roots: &mut rustls::RootCertStore,
    extra_ca: &[std::path::PathBuf],
) -> Result<(), AzureError> {
    for path in extra_ca {
        for cert in read_pem_certs(path)? {
            roots.add(cert).map_err(|e| AzureError::TrustAnchors {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        }
    }
    Ok(())
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, AzureError> {
    let err = |detail: String| AzureError::TrustAnchors {
        path: path.display().to_string(),
        detail,
    };
    let pem = crate::system::regular_file::read(path, crate::system::regular_file::TEXT_LIMIT)
        .map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}
