//! Checking BYOK transfer ciphertexts the way the vault does, with code independent of
//! `byokd::hsm`: a test-made KEK private key, `rsa` OAEP-SHA1, `aes-kw` RFC 5649 unwrap, then a
//! strict PKCS#8 parse (no trailing bytes) whose public key must equal the HSM's SPKI.
//! Also: capturing the process's log lines, to check WARN lines from the HSM worker thread.

use aes_kw::KwpAes256;
use aes_kw::cipher::KeyInit as _;
use byokd::hsm::KekPublicKey;
use byokd::model::{Curve, KeyType};
use der::Decode as _;
use rsa::pkcs8::EncodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A KEK of `bits` made on the host; returns the private key and the public half for byokd.
pub fn kek(bits: usize) -> (rsa::PrivateKey, KekPublicKey) {
    let key = rsa::PrivateKey::new(&mut rand::rng(), bits).expect("generate a KEK");
    let public = kek_public(&key);
    (key, public)
}

/// The public half of a KEK as byokd takes it (big-endian, no leading zeros).
pub fn kek_public(key: &rsa::PrivateKey) -> KekPublicKey {
    let strip = |v: Vec<u8>| v.into_iter().skip_while(|b| *b == 0).collect::<Vec<u8>>();
    KekPublicKey {
        n: strip(key.n().to_be_bytes().to_vec()),
        e: strip(key.e().to_be_bytes().to_vec()),
    }
}

/// `8*ceil(len/8) + 8`.
pub fn kwp_len(len: usize) -> usize {
    len.div_ceil(8) * 8 + 8
}

/// Decrypts a transfer ciphertext: RSA part (exactly the KEK size), OAEP-SHA1 to an AES-256
/// key, then RFC 5649 unwrap of the rest. Returns the plaintext (the PKCS#8 DER).
pub fn unwrap_transfer(kek: &rsa::PrivateKey, ciphertext: &[u8]) -> Vec<u8> {
    let k = kek.size();
    assert!(
        ciphertext.len() > k + 16,
        "ciphertext too short: {}",
        ciphertext.len()
    );
    let (rsa_part, kwp_part) = ciphertext.split_at(k);
    let aes = kek
        .oaep_decrypt::<sha1::Sha1>(rsa_part)
        .expect("the RSA part decrypts with OAEP-SHA1");
    assert_eq!(aes.len(), 32, "the wrapped key is AES-256");
    let kwp = KwpAes256::new_from_slice(&aes).expect("AES-256 key");
    let mut buf = vec![0u8; kwp_part.len() - 8];
    let n = kwp
        .unwrap_key(kwp_part, &mut buf)
        .expect("the AES part unwraps as RFC 5649 AES-KWP")
        .len();
    buf.truncate(n);
    assert_eq!(
        kwp_part.len(),
        kwp_len(n),
        "the KWP part has the RFC 5649 length for its plaintext"
    );
    buf
}

/// Parses `der` strictly as a PKCS#8 private key of `key_type` (strict DER, no trailing bytes,
/// the inner key strictly parsed as well) and returns its public key as SPKI DER.
pub fn strict_pkcs8_public_spki(der: &[u8], key_type: KeyType) -> Vec<u8> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(der)
        .unwrap_or_else(|e| panic!("not strict PKCS#8 DER ({} bytes): {e}", der.len()));
    match key_type {
        KeyType::Rsa { .. } => {
            assert_eq!(info.algorithm.oid.to_string(), "1.2.840.113549.1.1.1");
            let key = rsa::PrivateKey::try_from(info).expect("an RSA private key");
            key.validate().expect("a consistent RSA private key");
            rsa::PublicKey::from(&key)
                .to_public_key_der()
                .expect("encode SPKI")
                .as_bytes()
                .to_vec()
        }
        KeyType::Ec(curve) => {
            use p256::pkcs8::EncodePublicKey as _;
            let spki = match curve {
                Curve::P256 => p256::SecretKey::try_from(info)
                    .expect("a P-256 key")
                    .public_key()
                    .to_public_key_der(),
                Curve::P384 => p384::SecretKey::try_from(info)
                    .expect("a P-384 key")
                    .public_key()
                    .to_public_key_der(),
                Curve::P521 => p521::SecretKey::try_from(info)
                    .expect("a P-521 key")
                    .public_key()
                    .to_public_key_der(),
                Curve::P256K => k256::SecretKey::try_from(info)
                    .expect("a secp256k1 key")
                    .public_key()
                    .to_public_key_der(),
            };
            spki.expect("encode SPKI").as_bytes().to_vec()
        }
    }
}

/// A shared buffer that receives every log line of this process (all threads).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Installs a global subscriber (TRACE and up, no colours) writing into the buffer. Call
    /// once per process: inside an `isolated` body, which runs in its own child process.
    pub fn capture() -> Self {
        let logs = Self::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("install the log capture");
        logs
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
