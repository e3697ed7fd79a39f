//! Key material held by the emulated vaults, its JWK rendering, the RSA key pool, and the strict
//! PKCS#8 parser used by BYOK import.
//!
//! Private keys live only in memory (KEKs need theirs to unwrap). Nothing here logs or persists
//! private key bytes.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use der::Decode as _;
use der::asn1::ObjectIdentifier;
use rsa::traits::PublicKeyParts as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::KeyPoolConfig;
use crate::util::b64url;

/// An elliptic curve Key Vault supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Curve {
    /// NIST P-256.
    #[serde(rename = "P-256")]
    P256,
    /// NIST P-384.
    #[serde(rename = "P-384")]
    P384,
    /// NIST P-521.
    #[serde(rename = "P-521")]
    P521,
    /// secp256k1.
    #[serde(rename = "P-256K")]
    P256K,
}

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

impl Curve {
    /// The JWK `crv` name.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
            Curve::P256K => "P-256K",
        }
    }

    /// Parse a JWK `crv` name.
    pub fn from_name(s: &str) -> Option<Curve> {
        [Curve::P256, Curve::P384, Curve::P521, Curve::P256K]
            .into_iter()
            .find(|c| c.name() == s)
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Curve::P256 => ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
            Curve::P384 => ObjectIdentifier::new_unwrap("1.3.132.0.34"),
            Curve::P521 => ObjectIdentifier::new_unwrap("1.3.132.0.35"),
            Curve::P256K => ObjectIdentifier::new_unwrap("1.3.132.0.10"),
        }
    }

    /// Field element size in bytes.
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 | Curve::P256K => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// A public key, as the emulator exposes it to tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PublicKey {
    /// RSA: big-endian modulus and exponent without leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// EC: affine coordinates, each exactly the field length.
    Ec {
        /// Curve.
        crv: Curve,
        /// X coordinate.
        x: Vec<u8>,
        /// Y coordinate.
        y: Vec<u8>,
    },
    /// An AES key (`oct-HSM`, Managed HSM only): no public half. Its size and the key check
    /// value the emulator computed from the unwrapped key (the first 3 bytes of AES-ECB of a
    /// zero block, 6 hex digits, upper case); the key itself is not kept.
    Oct {
        /// 128, 192 or 256.
        bits: u32,
        /// Key check value.
        kcv: String,
    },
}

impl PublicKey {
    /// RSA modulus size in bits (0 for EC).
    pub fn rsa_bits(&self) -> usize {
        match self {
            PublicKey::Rsa { n, .. } => {
                let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
                let n = &n[first..];
                match n.first() {
                    Some(b) => (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
                    None => 0,
                }
            }
            PublicKey::Ec { .. } | PublicKey::Oct { .. } => 0,
        }
    }
}

/// Key material of one version.
#[derive(Clone)]
pub(crate) struct Material {
    pub public: PublicKey,
    /// Only KEKs (and other keys created here) keep their private half, for unwrap.
    pub private: Option<Arc<rsa::PrivateKey>>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("public", &self.public)
            .field("private", &self.private.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Material {
    pub fn from_rsa(key: rsa::PrivateKey) -> Material {
        Material {
            public: PublicKey::Rsa {
                n: key.n_bytes().to_vec(),
                e: key.e_bytes().to_vec(),
            },
            private: Some(Arc::new(key)),
        }
    }
}

/// Render the JWK part of a KeyBundle.
pub(crate) fn jwk(kid: &str, kty: &str, key_ops: &[String], public: &PublicKey) -> Value {
    let mut v = json!({"kid": kid, "kty": kty, "key_ops": key_ops});
    match public {
        PublicKey::Rsa { n, e } => {
            v["n"] = json!(b64url(n));
            // Real Azure returns an RSA-HSM exponent with leading zero bytes ("AAEAAQ").
            let e = if kty.ends_with("-HSM") && e.len() < 4 {
                let mut padded = vec![0u8; 4 - e.len()];
                padded.extend_from_slice(e);
                padded
            } else {
                e.clone()
            };
            v["e"] = json!(b64url(&e));
        }
        PublicKey::Ec { crv, x, y } => {
            v["crv"] = json!(crv.name());
            v["x"] = json!(b64url(x));
            v["y"] = json!(b64url(y));
        }
        // Azure never returns an oct key's material.
        PublicKey::Oct { .. } => {}
    }
    v
}

// ---------------------------------------------------------------------------------------------
// RSA key pool (process-wide: generation is slow, keys are independent)

struct PoolInner {
    ready: HashMap<usize, Vec<rsa::PrivateKey>>,
    target: HashMap<usize, usize>,
    filler_started: bool,
}

struct RsaPool {
    inner: Mutex<PoolInner>,
    cv: Condvar,
}

static POOL: OnceLock<Arc<RsaPool>> = OnceLock::new();

fn pool() -> &'static Arc<RsaPool> {
    POOL.get_or_init(|| {
        Arc::new(RsaPool {
            inner: Mutex::new(PoolInner {
                ready: HashMap::new(),
                target: HashMap::new(),
                filler_started: false,
            }),
            cv: Condvar::new(),
        })
    })
}

/// Generate an RSA key now (blocking).
pub(crate) fn generate_rsa(bits: usize) -> Result<rsa::PrivateKey, String> {
    rsa::PrivateKey::new(&mut rand::rng(), bits).map_err(|e| e.to_string())
}

/// Raise the pool targets (process-wide maximum of all configs) and start the filler.
pub(crate) fn configure_pool(cfg: KeyPoolConfig) {
    let pool = pool();
    let Ok(mut inner) = pool.inner.lock() else {
        return;
    };
    for (bits, n) in [
        (2048, cfg.rsa2048),
        (3072, cfg.rsa3072),
        (4096, cfg.rsa4096),
    ] {
        let t = inner.target.entry(bits).or_insert(0);
        *t = (*t).max(n);
    }
    if !inner.filler_started {
        inner.filler_started = true;
        let pool = Arc::clone(pool);
        let spawned = std::thread::Builder::new()
            .name("emu-rsa-pool".into())
            .spawn(move || fill_forever(&pool));
        if spawned.is_err() {
            inner.filler_started = false;
        }
    }
    pool.cv.notify_all();
}

fn fill_forever(pool: &RsaPool) {
    loop {
        let bits = {
            let Ok(mut inner) = pool.inner.lock() else {
                return;
            };
            loop {
                let want = [2048usize, 4096, 3072].into_iter().find(|b| {
                    let have = inner.ready.get(b).map_or(0, Vec::len);
                    have < inner.target.get(b).copied().unwrap_or(0)
                });
                match want {
                    Some(b) => break b,
                    None => match pool.cv.wait(inner) {
                        Ok(g) => inner = g,
                        Err(_) => return,
                    },
                }
            }
        };
        if let Ok(key) = generate_rsa(bits)
            && let Ok(mut inner) = pool.inner.lock()
        {
            inner.ready.entry(bits).or_default().push(key);
        }
    }
}

/// Take a key from the pool, or generate one (off the async runtime).
pub(crate) async fn rsa_key(bits: usize) -> Result<rsa::PrivateKey, String> {
    let p = pool();
    let taken = p
        .inner
        .lock()
        .ok()
        .and_then(|mut i| i.ready.get_mut(&bits).and_then(Vec::pop));
    p.cv.notify_all();
    match taken {
        Some(k) => Ok(k),
        None => tokio::task::spawn_blocking(move || generate_rsa(bits))
            .await
            .map_err(|e| e.to_string())?,
    }
}

/// Number of ready keys of a size (for tests of the pool).
pub fn pool_ready(bits: usize) -> usize {
    pool()
        .inner
        .lock()
        .ok()
        .and_then(|i| i.ready.get(&bits).map(Vec::len))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// EC

macro_rules! ec_public_from_scalar {
    ($c:ident, $d:expr) => {{
        use $c::elliptic_curve::sec1::ToSec1Point as _;
        let sk = $c::SecretKey::from_slice($d).map_err(|_| "EC private key scalar is invalid")?;
        let point = sk.public_key().as_affine().to_sec1_point(false);
        point.as_bytes().to_vec()
    }};
}

/// Uncompressed SEC1 public point (0x04 || x || y) for a private scalar.
pub(crate) fn ec_public_point(crv: Curve, d: &[u8]) -> Result<Vec<u8>, &'static str> {
    if d.len() != crv.field_len() {
        return Err("EC private key has the wrong length for its curve");
    }
    Ok(match crv {
        Curve::P256 => ec_public_from_scalar!(p256, d),
        Curve::P384 => ec_public_from_scalar!(p384, d),
        Curve::P521 => ec_public_from_scalar!(p521, d),
        Curve::P256K => ec_public_from_scalar!(k256, d),
    })
}

/// Generate an EC key (for creates and foreign versions); returns only the public half.
pub(crate) fn generate_ec_public(crv: Curve) -> Result<PublicKey, String> {
    let mut d = vec![0u8; crv.field_len()];
    loop {
        rand::fill(&mut d[..]);
        if crv == Curve::P521 {
            // P-521 scalars are 521 bits: keep the top byte within range.
            d[0] &= 0x01;
        }
        if let Ok(point) = ec_public_point(crv, &d) {
            return split_point(crv, &point).map_err(str::to_owned);
        }
    }
}

fn split_point(crv: Curve, point: &[u8]) -> Result<PublicKey, &'static str> {
    let l = crv.field_len();
    if point.len() != 1 + 2 * l || point[0] != 0x04 {
        return Err("EC public key is not an uncompressed point of the declared curve");
    }
    Ok(PublicKey::Ec {
        crv,
        x: point[1..=l].to_vec(),
        y: point[1 + l..].to_vec(),
    })
}

// ---------------------------------------------------------------------------------------------
// Strict PKCS#8 parsing for BYOK import

/// What the import declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// `RSA-HSM`.
    Rsa,
    /// `EC-HSM` on this curve.
    Ec(Curve),
}

/// Parse the unwrapped plaintext as strict DER PKCS#8 of the declared type; return its public key.
/// Public so that byokd's tests can hold its own strict parser to the same rules.
pub fn parse_pkcs8_strict(der_bytes: &[u8], declared: Declared) -> Result<PublicKey, String> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(der_bytes).map_err(|e| {
        format!("the key material is not a valid DER-encoded PKCS#8 PrivateKeyInfo: {e}")
    })?;
    // The pkcs8 crate also reads RFC 5958 OneAsymmetricKey (version 1); a BYOK plaintext is an
    // RFC 5208 PrivateKeyInfo, version 0.
    match pkcs8_version(der_bytes) {
        Ok(0) => {}
        Ok(v) => {
            return Err(format!(
                "the PrivateKeyInfo version is {v}; RFC 5208 requires 0"
            ));
        }
        Err(e) => return Err(format!("the PrivateKeyInfo version is not readable: {e}")),
    }
    match declared {
        Declared::Rsa => {
            if info.algorithm.oid != OID_RSA {
                return Err(format!(
                    "the key material algorithm {} does not match kty RSA-HSM",
                    info.algorithm.oid
                ));
            }
            if info.algorithm.parameters.is_none_or(|p| !p.is_null()) {
                return Err("rsaEncryption parameters must be NULL (RFC 8017)".into());
            }
            // Strict DER: minimal, non-negative INTEGERs (the der crate refuses the rest).
            let encoded = rsa::pkcs1::RsaPrivateKeyRef::from_der(info.private_key.as_bytes())
                .map_err(|e| format!("the RSAPrivateKey is not valid DER: {e}"))?;
            if encoded.other_prime_infos.is_some() {
                return Err("multi-prime RSA keys are not supported".into());
            }
            let key = rsa::PrivateKey::try_from(info)
                .map_err(|e| format!("the RSA private key is invalid: {e}"))?;
            key.validate()
                .map_err(|e| format!("the RSA private key is inconsistent: {e}"))?;
            check_crt(&key, &encoded)?;
            let public = PublicKey::Rsa {
                n: key.n_bytes().to_vec(),
                e: key.e_bytes().to_vec(),
            };
            let bits = public.rsa_bits();
            if ![2048, 3072, 4096].contains(&bits) {
                return Err(format!(
                    "RSA key size {bits} is not supported; use 2048, 3072 or 4096"
                ));
            }
            Ok(public)
        }
        Declared::Ec(crv) => {
            if info.algorithm.oid != OID_EC {
                return Err(format!(
                    "the key material algorithm {} does not match kty EC-HSM",
                    info.algorithm.oid
                ));
            }
            let curve_oid = info
                .algorithm
                .parameters
                .ok_or("id-ecPublicKey requires the namedCurve parameter")?
                .decode_as::<ObjectIdentifier>()
                .map_err(|e| format!("id-ecPublicKey parameters are not a curve OID: {e}"))?;
            if curve_oid != crv.oid() {
                return Err(format!(
                    "the key material curve {curve_oid} does not match crv {}",
                    crv.name()
                ));
            }
            let ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes())
                .map_err(|e| format!("the ECPrivateKey is not valid DER: {e}"))?;
            if let Some(params) = ec.parameters
                && params.named_curve() != Some(crv.oid())
            {
                return Err("the ECPrivateKey parameters name another curve".into());
            }
            // RFC 5915: exactly ceil(log2(n)/8) bytes, leading zeros kept.
            if ec.private_key.len() != crv.field_len() {
                return Err(format!(
                    "the ECPrivateKey privateKey is {} bytes; RFC 5915 requires exactly {} for {}",
                    ec.private_key.len(),
                    crv.field_len(),
                    crv.name()
                ));
            }
            let point = ec_public_point(crv, ec.private_key).map_err(str::to_owned)?;
            if let Some(embedded) = ec.public_key
                && embedded != point.as_slice()
            {
                return Err("the ECPrivateKey public key does not match its private key".into());
            }
            split_point(crv, &point).map_err(str::to_owned)
        }
    }
}

/// The first field of a PrivateKeyInfo, its version.
fn pkcs8_version(der_bytes: &[u8]) -> Result<u8, der::Error> {
    let mut reader = der::SliceReader::new(der_bytes)?;
    der::Header::decode(&mut reader)?;
    u8::decode(&mut reader)
}

/// The CRT values as encoded must be the ones the key implies (the rsa crate recomputes them
/// and would accept wrong ones): dP = d mod (p-1), dQ = d mod (q-1), qInv = q^-1 mod p.
fn check_crt(
    key: &rsa::PrivateKey,
    encoded: &rsa::pkcs1::RsaPrivateKeyRef<'_>,
) -> Result<(), String> {
    use rsa::traits::PrivateKeyParts as _;
    let strip = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|x| *x == 0).collect() };
    let computed = [
        ("exponent1 (dP)", key.dp().map(|v| v.to_be_bytes())),
        ("exponent2 (dQ)", key.dq().map(|v| v.to_be_bytes())),
        (
            "coefficient (qInv)",
            key.crt_coefficient().map(|v| v.to_be_bytes()),
        ),
    ];
    let given = [
        encoded.exponent1.as_bytes(),
        encoded.exponent2.as_bytes(),
        encoded.coefficient.as_bytes(),
    ];
    for ((what, computed), given) in computed.into_iter().zip(given) {
        match computed {
            Some(c) if strip(&c) == strip(given) => {}
            _ => return Err(format!("the RSA private key's {what} is inconsistent")),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(deprecated)]
mod tests {
    use super::*;
    use der::Encode as _;
    use pkcs8::EncodePrivateKey as _;

    fn check_curve(crv: Curve, der: &[u8], expected_point: &[u8]) {
        let public = parse_pkcs8_strict(der, Declared::Ec(crv)).unwrap();
        let PublicKey::Ec { crv: c, x, y } = public else {
            panic!("not EC")
        };
        assert_eq!(c, crv);
        let mut point = vec![4u8];
        point.extend(x);
        point.extend(y);
        assert_eq!(point, expected_point);
        let mut padded = der.to_vec();
        padded.push(0);
        assert!(parse_pkcs8_strict(&padded, Declared::Ec(crv)).is_err());
        let other = if crv == Curve::P256 {
            Curve::P384
        } else {
            Curve::P256
        };
        assert!(parse_pkcs8_strict(der, Declared::Ec(other)).is_err());
        assert!(parse_pkcs8_strict(der, Declared::Rsa).is_err());
    }

    #[test]
    fn every_curve_parses_strictly_and_derives_its_public_key() {
        use p256::elliptic_curve::sec1::ToSec1Point as _;
        let mut rng = rand::rng();
        let k = p256::SecretKey::random(&mut rng);
        check_curve(
            Curve::P256,
            k.to_pkcs8_der().unwrap().as_bytes(),
            k.public_key().as_affine().to_sec1_point(false).as_bytes(),
        );
        let k = p384::SecretKey::random(&mut rng);
        check_curve(
            Curve::P384,
            k.to_pkcs8_der().unwrap().as_bytes(),
            k.public_key().as_affine().to_sec1_point(false).as_bytes(),
        );
        let k = p521::SecretKey::random(&mut rng);
        check_curve(
            Curve::P521,
            k.to_pkcs8_der().unwrap().as_bytes(),
            k.public_key().as_affine().to_sec1_point(false).as_bytes(),
        );
        let k = k256::SecretKey::random(&mut rng);
        check_curve(
            Curve::P256K,
            k.to_pkcs8_der().unwrap().as_bytes(),
            k.public_key().as_affine().to_sec1_point(false).as_bytes(),
        );
    }

    #[test]
    fn ec_private_key_without_public_key_gets_it_computed() {
        use p256::elliptic_curve::sec1::ToSec1Point as _;
        let k = p256::SecretKey::random(&mut rand::rng());
        let scalar = k.to_bytes();
        let ec = sec1::EcPrivateKey {
            private_key: &scalar,
            parameters: None,
            public_key: None,
        };
        let ec_der = ec.to_der().unwrap();
        let curve_oid = Curve::P256.oid();
        let params = der::asn1::AnyRef::from(&curve_oid);
        let info = pkcs8::PrivateKeyInfoRef::new(
            spki::AlgorithmIdentifier {
                oid: OID_EC,
                parameters: Some(params),
            },
            der::asn1::OctetStringRef::new(&ec_der).unwrap(),
        );
        let der = info.to_der().unwrap();
        check_curve(
            Curve::P256,
            &der,
            k.public_key().as_affine().to_sec1_point(false).as_bytes(),
        );
    }

    #[test]
    fn mismatched_embedded_public_key_is_refused() {
        use p256::elliptic_curve::sec1::ToSec1Point as _;
        let k = p256::SecretKey::random(&mut rand::rng());
        let other = p256::SecretKey::random(&mut rand::rng());
        let scalar = k.to_bytes();
        let wrong_point = other.public_key().as_affine().to_sec1_point(false);
        let ec = sec1::EcPrivateKey {
            private_key: &scalar,
            parameters: None,
            public_key: Some(wrong_point.as_bytes()),
        };
        let ec_der = ec.to_der().unwrap();
        let curve_oid = Curve::P256.oid();
        let info = pkcs8::PrivateKeyInfoRef::new(
            spki::AlgorithmIdentifier {
                oid: OID_EC,
                parameters: Some(der::asn1::AnyRef::from(&curve_oid)),
            },
            der::asn1::OctetStringRef::new(&ec_der).unwrap(),
        );
        let der = info.to_der().unwrap();
        assert!(parse_pkcs8_strict(&der, Declared::Ec(Curve::P256)).is_err());
    }

    /// PKCS#8 of a P-521 key whose ECPrivateKey holds `scalar` as given (any length).
    fn p521_pkcs8(scalar: &[u8], point: &[u8]) -> Vec<u8> {
        let ec = sec1::EcPrivateKey {
            private_key: scalar,
            parameters: None,
            public_key: Some(point),
        };
        let ec_der = ec.to_der().unwrap();
        let curve_oid = Curve::P521.oid();
        let info = pkcs8::PrivateKeyInfoRef::new(
            spki::AlgorithmIdentifier {
                oid: OID_EC,
                parameters: Some(der::asn1::AnyRef::from(&curve_oid)),
            },
            der::asn1::OctetStringRef::new(&ec_der).unwrap(),
        );
        info.to_der().unwrap()
    }

    #[test]
    fn a_p521_scalar_without_its_leading_zero_byte_is_refused() {
        use p521::elliptic_curve::sec1::ToSec1Point as _;
        let mut scalar = vec![0u8; 66];
        for (i, b) in scalar.iter_mut().enumerate().skip(1) {
            *b = (i as u8).wrapping_mul(29) | 1;
        }
        let k = p521::SecretKey::from_slice(&scalar).unwrap();
        let point = k.public_key().as_affine().to_sec1_point(false);
        let good = p521_pkcs8(&scalar, point.as_bytes());
        parse_pkcs8_strict(&good, Declared::Ec(Curve::P521)).unwrap();
        let short = p521_pkcs8(&scalar[1..], point.as_bytes());
        let err = parse_pkcs8_strict(&short, Declared::Ec(Curve::P521)).unwrap_err();
        assert!(
            err.contains("65 bytes") && err.contains("exactly 66"),
            "{err}"
        );
    }

    #[test]
    fn rsa_crt_values_and_null_parameters_are_enforced() {
        use pkcs8::EncodePrivateKey as _;
        let key = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
        let der = key.to_pkcs8_der().unwrap();
        parse_pkcs8_strict(der.as_bytes(), Declared::Rsa).unwrap();
        let info = pkcs8::PrivateKeyInfoRef::from_der(der.as_bytes()).unwrap();
        let inner = info.private_key.as_bytes();
        // Flip the last byte of qInv (the last INTEGER): still DER, no longer consistent.
        let mut wrong = inner.to_vec();
        let last = wrong.len() - 1;
        wrong[last] ^= 2;
        let rebuilt = |inner: &[u8], params: Option<der::asn1::AnyRef<'_>>| {
            pkcs8::PrivateKeyInfoRef::new(
                spki::AlgorithmIdentifier {
                    oid: OID_RSA,
                    parameters: params,
                },
                der::asn1::OctetStringRef::new(inner).unwrap(),
            )
            .to_der()
            .unwrap()
        };
        let err = parse_pkcs8_strict(
            &rebuilt(&wrong, Some(der::asn1::AnyRef::NULL)),
            Declared::Rsa,
        )
        .unwrap_err();
        assert!(err.contains("coefficient"), "{err}");
        let err = parse_pkcs8_strict(&rebuilt(inner, None), Declared::Rsa).unwrap_err();
        assert!(err.contains("NULL"), "{err}");
    }

    /// A DER TLV (test builder; short and long lengths).
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    /// An RSA PKCS#8 whose INTEGER contents are `edit(index, minimal content)`, with the
    /// PrivateKeyInfo version `version` (1: RFC 5958, with the public key).
    fn rsa_pkcs8_with(
        der: &[u8],
        edit: impl Fn(usize, Vec<u8>) -> Vec<u8>,
        version: u8,
    ) -> Vec<u8> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(der).unwrap();
        let k = rsa::pkcs1::RsaPrivateKeyRef::from_der(info.private_key.as_bytes()).unwrap();
        let ints = [
            &[][..],
            k.modulus.as_bytes(),
            k.public_exponent.as_bytes(),
            k.private_exponent.as_bytes(),
            k.prime1.as_bytes(),
            k.prime2.as_bytes(),
            k.exponent1.as_bytes(),
            k.exponent2.as_bytes(),
            k.coefficient.as_bytes(),
        ];
        let mut body = Vec::new();
        for (i, v) in ints.iter().enumerate() {
            let mut content = if v.first().is_none_or(|b| *b >= 0x80) {
                vec![0]
            } else {
                Vec::new()
            };
            content.extend_from_slice(v);
            body.extend(tlv(0x02, &edit(i, content)));
        }
        let mut alg = tlv(
            0x06,
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
        );
        alg.extend([0x05, 0x00]);
        let mut outer = tlv(0x02, &[version]);
        outer.extend(tlv(0x30, &alg));
        outer.extend(tlv(0x04, &tlv(0x30, &body)));
        if version == 1 {
            // RFC 5958 OneAsymmetricKey: `[1] IMPLICIT BIT STRING` publicKey (RSAPublicKey).
            let signed = |v: &[u8]| [&[0u8][..(v[0] >> 7) as usize], v].concat();
            let mut public = tlv(0x02, &signed(ints[1]));
            public.extend(tlv(0x02, &signed(ints[2])));
            let mut bits = vec![0u8];
            bits.extend(tlv(0x30, &public));
            outer.extend(tlv(0x81, &bits));
        }
        tlv(0x30, &outer)
    }

    /// The same DER rules as byokd's strict parser: a non-minimal INTEGER, a negative one and
    /// a PKCS#8 version other than 0 are refused; the canonical rebuild is accepted.
    #[test]
    fn non_minimal_or_negative_rsa_integers_and_pkcs8_v2_are_refused() {
        use pkcs8::EncodePrivateKey as _;
        let key = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let same = rsa_pkcs8_with(der.as_bytes(), |_, c| c, 0);
        assert_eq!(same, der.as_bytes(), "the test builder is canonical");
        parse_pkcs8_strict(&same, Declared::Rsa).unwrap();
        for index in 1..9 {
            let padded = rsa_pkcs8_with(
                der.as_bytes(),
                |i, c| if i == index { [vec![0], c].concat() } else { c },
                0,
            );
            assert!(
                parse_pkcs8_strict(&padded, Declared::Rsa).is_err(),
                "a superfluous 0x00 in INTEGER {index} must be refused"
            );
        }
        // prime1 (a 1024-bit prime: its top bit is set) without its 0x00 sign byte: negative.
        let negative = rsa_pkcs8_with(
            der.as_bytes(),
            |i, c| {
                if i == 4 {
                    assert_eq!(c[0], 0, "prime1 needs a sign byte");
                    c[1..].to_vec()
                } else {
                    c
                }
            },
            0,
        );
        assert!(parse_pkcs8_strict(&negative, Declared::Rsa).is_err());
        let v2 = rsa_pkcs8_with(der.as_bytes(), |_, c| c, 1);
        let err = parse_pkcs8_strict(&v2, Declared::Rsa).unwrap_err();
        assert!(err.contains("version") && err.contains("RFC 5208"), "{err}");
    }

    #[test]
    fn rsa_hsm_exponent_is_rendered_with_leading_zero() {
        let public = PublicKey::Rsa {
            n: vec![0xc0; 256],
            e: vec![1, 0, 1],
        };
        assert_eq!(jwk("kid", "RSA-HSM", &[], &public)["e"], "AAEAAQ");
        assert_eq!(jwk("kid", "RSA", &[], &public)["e"], "AQAB");
        assert_eq!(public.rsa_bits(), 2048);
    }
}
