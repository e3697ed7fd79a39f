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
    // RFC 5208 version 0: the pkcs8 crate also reads RFC 5958 v2 (version 1).
    let mut reader = der::SliceReader::new(der).expect("DER");
    der::Header::decode(&mut reader).expect("PrivateKeyInfo header");
    assert_eq!(
        u8::decode(&mut reader).expect("PrivateKeyInfo.version"),
        0,
        "PrivateKeyInfo.version must be 0 (RFC 5208)"
    );
    match key_type {
        KeyType::Rsa { .. } => {
            assert_eq!(info.algorithm.oid.to_string(), "1.2.840.113549.1.1.1");
            assert!(
                info.algorithm.parameters.is_some_and(|p| p.is_null()),
                "rsaEncryption parameters must be NULL (RFC 8017)"
            );
            let inner_der = info.private_key.as_bytes();
            let key = rsa::PrivateKey::try_from(info.clone()).expect("an RSA private key");
            key.validate().expect("a consistent RSA private key");
            // The rsa crate recomputes the CRT values: compare the encoded ones with them.
            let inner = rsa::pkcs1::RsaPrivateKeyRef::from_der(inner_der)
                .expect("a strict DER RSAPrivateKey");
            let strip = |b: &[u8]| {
                b.iter()
                    .copied()
                    .skip_while(|x| *x == 0)
                    .collect::<Vec<u8>>()
            };
            use rsa::traits::PrivateKeyParts as _;
            for (what, encoded, computed) in [
                (
                    "dP",
                    inner.exponent1.as_bytes(),
                    key.dp().unwrap().to_be_bytes(),
                ),
                (
                    "dQ",
                    inner.exponent2.as_bytes(),
                    key.dq().unwrap().to_be_bytes(),
                ),
                (
                    "qInv",
                    inner.coefficient.as_bytes(),
                    key.crt_coefficient().unwrap().to_be_bytes(),
                ),
            ] {
                assert_eq!(
                    strip(encoded),
                    strip(&computed),
                    "RSA {what} is inconsistent"
                );
            }
            rsa::PublicKey::from(&key)
                .to_public_key_der()
                .expect("encode SPKI")
                .as_bytes()
                .to_vec()
        }
        KeyType::Ec(curve) => {
            use p256::pkcs8::EncodePublicKey as _;
            // RFC 5915: the scalar has exactly the curve order's byte length; the curve crates
            // below would accept a shorter one.
            let ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes())
                .expect("a strict DER ECPrivateKey");
            assert_eq!(
                ec.private_key.len(),
                curve.field_bytes(),
                "ECPrivateKey.privateKey of {curve:?} is not fixed-length"
            );
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
        KeyType::Aes { .. } => panic!("an AES key's transfer blob holds its raw value, not PKCS#8"),
    }
}

/// The key check value of a raw AES key, computed here with the `aes` crate (not byokd's code):
/// the first 3 bytes of AES-ECB(key, 16 zero bytes), hex, upper case.
pub fn aes_kcv(raw: &[u8]) -> String {
    use aes_kw::aes::cipher::{BlockCipherEncrypt as _, KeyInit as _};
    let mut block = [0u8; 16].into();
    match raw.len() {
        16 => aes_kw::aes::Aes128::new_from_slice(raw)
            .unwrap()
            .encrypt_block(&mut block),
        24 => aes_kw::aes::Aes192::new_from_slice(raw)
            .unwrap()
            .encrypt_block(&mut block),
        32 => aes_kw::aes::Aes256::new_from_slice(raw)
            .unwrap()
            .encrypt_block(&mut block),
        n => panic!("an AES key of {n} bytes"),
    }
    hex::encode_upper(&block[..3])
}

/// Generates an AES key of `bits` named `key` in `group`, wraps it under the KEK, opens the
/// blob here and checks it holds exactly `bits / 8` raw bytes (no PKCS#8) whose KCV is the one
/// the HSM computed. Returns the ciphertext and the raw key.
pub async fn wrap_and_check_aes(
    hsm: &byokd::hsm::Hsm,
    bits: u32,
    group: &byokd::model::GroupName,
    key: &str,
    kek: &(rsa::PrivateKey, KekPublicKey),
) -> (Vec<u8>, Vec<u8>) {
    let key_type = KeyType::aes(bits).expect("AES size");
    let key = byokd::model::KeyName::try_from(key).expect("key name");
    let generated = hsm
        .generate_target(key_type, group, &key)
        .await
        .expect("generate");
    let byokd::hsm::KeyIdentity::Secret(info) = &generated.identity else {
        panic!("an AES key has no public half: {:?}", generated.identity);
    };
    assert_eq!(info.bits, bits);
    assert_eq!(info.kcv.len(), 6, "{info:?}");
    let ciphertext = hsm
        .wrap_for_transfer(generated.id, &kek.1)
        .await
        .expect("wrap");
    let raw = unwrap_transfer(&kek.0, &ciphertext);
    assert_eq!(
        raw.len(),
        bits as usize / 8,
        "{key_type}: the raw key value"
    );
    assert_eq!(
        ciphertext.len(),
        kek.0.size() + kwp_len(raw.len()),
        "{key_type}: RSA part = KEK size, KWP part = 8*ceil(len/8)+8"
    );
    assert_eq!(
        aes_kcv(&raw),
        info.kcv,
        "{key_type}: KCV of the unwrapped key"
    );
    assert_eq!(
        hsm.key_identity(generated.id).await.expect("identity"),
        generated.identity,
        "{key_type}: the KCV read again"
    );
    (ciphertext, raw)
}

/// Generates a `key_type` key named `key` in `group`, wraps it under the KEK, opens the blob
/// and checks it strictly against the HSM's public key. Returns the ciphertext and the PKCS#8.
pub async fn wrap_and_check(
    hsm: &byokd::hsm::Hsm,
    key_type: KeyType,
    group: &byokd::model::GroupName,
    key: &str,
    kek: &(rsa::PrivateKey, KekPublicKey),
) -> (Vec<u8>, Vec<u8>) {
    let key = byokd::model::KeyName::try_from(key).expect("key name");
    let generated = hsm.generate(key_type, group, &key).await.expect("generate");
    let ciphertext = hsm
        .wrap_for_transfer(generated.id, &kek.1)
        .await
        .expect("wrap");
    let der = unwrap_transfer(&kek.0, &ciphertext);
    let spki = strict_pkcs8_public_spki(&der, key_type);
    let hsm_public = hsm.public_key(generated.id).await.expect("public key");
    assert_eq!(spki, hsm_public.spki_der, "{key_type}");
    (ciphertext, der)
}

/// Whether the strictly parsed EC PKCS#8 `der` holds a scalar with a leading zero byte.
pub fn scalar_has_leading_zero(der: &[u8]) -> bool {
    let info = pkcs8::PrivateKeyInfoRef::from_der(der).expect("PKCS#8");
    let ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).expect("ECPrivateKey");
    ec.private_key.first() == Some(&0)
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
