//! Who is calling: the client certificate's SHA-256 fingerprint and subject CN, mapped through
//! `control.identities` to an identity name and a role.
//!
//! It owns the mapping only. It never decides what a role may do (see `authz`), and it never
//! trusts a certificate by itself: TLS has already checked the chain to the console CA.

use super::errors::ControlError;
use crate::config::{IdentityMapping, Role};
use sha2::{Digest, Sha256};

/// A caller the mapping knows: its configured name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

/// What the TLS layer tells about the peer, and the identity it maps to (if any).
#[derive(Debug, Clone)]
pub struct Caller {
    /// Lower-case hex SHA-256 of the end-entity certificate's DER.
    pub fingerprint: String,
    pub cn: Option<String>,
    pub identity: Option<Identity>,
}

impl Caller {
    /// A name for logs: the identity, or the fingerprint of an unmapped certificate.
    pub fn log_name(&self) -> String {
        match &self.identity {
            Some(id) => id.name.clone(),
            None => format!("unmapped:{}", self.fingerprint),
        }
    }

    pub fn role_name(&self) -> &'static str {
        self.identity
            .as_ref()
            .map_or("none", |id| role_name(id.role))
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Operator => "operator",
        Role::Auditor => "auditor",
    }
}

/// The configured mapping, normalised. Fingerprints win over CNs.
#[derive(Debug, Clone, Default)]
pub struct IdentityMap {
    by_fingerprint: Vec<(String, Identity)>,
    by_cn: Vec<(String, Identity)>,
}

impl IdentityMap {
    pub fn new(mappings: &[IdentityMapping]) -> Result<Self, ControlError> {
        let mut map = IdentityMap::default();
        for (index, m) in mappings.iter().enumerate() {
            let identity = Identity {
                name: m.name.clone(),
                role: m.role,
            };
            match (&m.fingerprint, &m.cn) {
                (Some(fp), _) => {
                    let fp = normalise_fingerprint(fp).ok_or_else(|| ControlError::Identity {
                        index,
                        reason: "fingerprint must be 64 hex digits (SHA-256), colons allowed"
                            .into(),
                    })?;
                    map.by_fingerprint.push((fp, identity.clone()));
                    if let Some(cn) = &m.cn {
                        map.by_cn.push((cn.clone(), identity));
                    }
                }
                (None, Some(cn)) => map.by_cn.push((cn.clone(), identity)),
                (None, None) => {
                    return Err(ControlError::Identity {
                        index,
                        reason: "give a fingerprint or a cn".into(),
                    });
                }
            }
        }
        Ok(map)
    }

    /// Identifies the end-entity certificate (DER) the TLS layer verified.
    pub fn identify(&self, cert_der: &[u8]) -> Caller {
        let fingerprint = fingerprint(cert_der);
        let cn = subject_cn(cert_der);
        let identity = self
            .by_fingerprint
            .iter()
            .find(|(fp, _)| *fp == fingerprint)
            .or_else(|| {
                cn.as_ref()
                    .and_then(|cn| self.by_cn.iter().find(|(c, _)| c == cn))
            })
            .map(|(_, id)| id.clone());
        Caller {
            fingerprint,
            cn,
            identity,
        }
    }
}

/// Lower-case hex SHA-256 of a certificate's DER.
pub fn fingerprint(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

fn normalise_fingerprint(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

fn subject_cn(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(name: &str, role: Role, fp: Option<&str>, cn: Option<&str>) -> IdentityMapping {
        IdentityMapping {
            name: name.into(),
            role,
            fingerprint: fp.map(Into::into),
            cn: cn.map(Into::into),
        }
    }

    #[test]
    fn fingerprints_are_matched_before_common_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let cert = params.self_signed(&key).unwrap();
        let fp = fingerprint(cert.der());
        let colons = fp
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        let map = IdentityMap::new(&[
            mapping("by-cn", Role::Auditor, None, Some("alice")),
            mapping("by-fp", Role::Admin, Some(&colons), None),
        ])
        .unwrap();
        let caller = map.identify(cert.der());
        assert_eq!(caller.cn.as_deref(), Some("alice"));
        assert_eq!(
            caller.identity,
            Some(Identity {
                name: "by-fp".into(),
                role: Role::Admin
            })
        );
        let cn_only =
            IdentityMap::new(&[mapping("by-cn", Role::Auditor, None, Some("alice"))]).unwrap();
        assert_eq!(cn_only.identify(cert.der()).identity.unwrap().name, "by-cn");
        let none = IdentityMap::new(&[mapping("bob", Role::Admin, None, Some("bob"))]).unwrap();
        assert!(none.identify(cert.der()).identity.is_none());
    }

    #[test]
    fn a_mapping_needs_a_fingerprint_or_a_cn() {
        assert!(IdentityMap::new(&[mapping("x", Role::Admin, None, None)]).is_err());
        assert!(IdentityMap::new(&[mapping("x", Role::Admin, Some("abc"), None)]).is_err());
    }
}
