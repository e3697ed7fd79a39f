//! The test CA and the server certificate.
//!
//! The CA is generated with rcgen (or loaded from `ca_dir`), the server certificate is freshly
//! issued at every start and covers the Entra, ARM and vault host names of all clouds.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::Cloud;
use crate::error::EmulatorError;

/// The admin host name served on the same listener.
pub const ADMIN_HOST: &str = "admin.emulator.test";

/// The CA and server credentials.
pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub server_config: Arc<ServerConfig>,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "byokd-emulator test CA");
    dn.push(DnType::OrganizationName, "byokd tests");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    params
}

fn tls_err(e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Tls(e.to_string())
}

/// All DNS names the server certificate carries.
pub(crate) fn server_names(vault_hosts: &[String], extra: &[String]) -> Vec<String> {
    let mut names = vec![ADMIN_HOST.to_owned(), "localhost".to_owned()];
    for c in Cloud::ALL {
        names.push(c.login_host().to_owned());
        names.push(c.arm_host().to_owned());
        names.push(format!("*.{}", c.vault_suffix()));
        names.push(format!("*.{}", c.managed_hsm_suffix()));
    }
    names.extend(vault_hosts.iter().cloned());
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// Create or load the CA, issue the server certificate, build the rustls config.
pub(crate) fn build(ca_dir: Option<&Path>, names: &[String]) -> Result<TlsMaterial, EmulatorError> {
    let (ca_key, ca_pem) = match ca_dir {
        Some(dir) if dir.join("ca.key.pem").exists() && dir.join("ca.cert.pem").exists() => {
            let key_pem = std::fs::read_to_string(dir.join("ca.key.pem"))?;
            let cert_pem = std::fs::read_to_string(dir.join("ca.cert.pem"))?;
            (KeyPair::from_pem(&key_pem).map_err(tls_err)?, cert_pem)
        }
        _ => {
            let key = KeyPair::generate().map_err(tls_err)?;
            let cert = ca_params().self_signed(&key).map_err(tls_err)?;
            let pem = cert.pem();
            if let Some(dir) = ca_dir {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join("ca.cert.pem"), &pem)?;
                write_private(&dir.join("ca.key.pem"), &key.serialize_pem())?;
            }
            (key, pem)
        }
    };
    let issuer = Issuer::new(ca_params(), ca_key);

    let server_key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "byokd-emulator");
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| n.clone().try_into().map(SanType::DnsName).map_err(tls_err))
        .collect::<Result<Vec<_>, _>>()?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let server_cert = params.signed_by(&server_key, &issuer).map_err(tls_err)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(
            vec![
                server_cert.der().clone(),
                CertificateDer::from(issuer_der(&ca_pem)?),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem,
        server_config: Arc::new(config),
    })
}

fn issuer_der(ca_pem: &str) -> Result<Vec<u8>, EmulatorError> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(tls_err)
}

fn write_private(path: &Path, data: &str) -> Result<(), EmulatorError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data.as_bytes())?;
    Ok(())
}
