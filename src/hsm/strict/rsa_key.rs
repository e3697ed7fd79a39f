//! RSAPrivateKey (RFC 8017 A.1.2): the two-prime reader and the consistency rules (n = p·q,
//! d, dP, dQ and qInv as RFC 8017 defines them).

use super::Mode;
use super::der::{Reader, SEQUENCE, strip_zeros};
use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
use zeroize::Zeroizing;

/// The integers of an RSAPrivateKey, as magnitudes (no sign byte, no leading zeros).
pub(crate) struct RsaParts {
    pub(crate) n: Vec<u8>,
    pub(crate) e: Vec<u8>,
    pub(crate) d: Zeroizing<Vec<u8>>,
    pub(crate) p: Zeroizing<Vec<u8>>,
    pub(crate) q: Zeroizing<Vec<u8>>,
    pub(crate) dp: Zeroizing<Vec<u8>>,
    pub(crate) dq: Zeroizing<Vec<u8>>,
    pub(crate) qinv: Zeroizing<Vec<u8>>,
}

pub(super) fn parse_rsa(key: &[u8], mode: Mode) -> Result<RsaParts, String> {
    let mut outer = Reader::new(key);
    let seq = outer.expect(SEQUENCE, "RSAPrivateKey")?;
    outer.end("the RSAPrivateKey")?;
    let mut r = Reader::new(seq);
    match r.integer("RSAPrivateKey.version", mode)? {
        [] => {}
        [1] => {
            return Err(
                "RSAPrivateKey is multi-prime (version 1); two-prime (0) is required".into(),
            );
        }
        _ => return Err("RSAPrivateKey.version is not 0".into()),
    }
    let mut int = |what: &str| r.integer(what, mode).map(<[u8]>::to_vec);
    let n = int("modulus")?;
    let e = int("publicExponent")?;
    let d = Zeroizing::new(int("privateExponent")?);
    let p = Zeroizing::new(int("prime1")?);
    let q = Zeroizing::new(int("prime2")?);
    let dp = Zeroizing::new(int("exponent1 (dP)")?);
    let dq = Zeroizing::new(int("exponent2 (dQ)")?);
    let qinv = Zeroizing::new(int("coefficient (qInv)")?);
    r.end("RSAPrivateKey.coefficient (otherPrimeInfos are not allowed)")?;
    Ok(RsaParts {
        n,
        e,
        d,
        p,
        q,
        dp,
        dq,
        qinv,
    })
}

impl RsaParts {
    /// n = p·q, e·d ≡ 1 mod p-1 and q-1 (via the `rsa` crate), dP, dQ and qInv as RFC 8017
    /// defines them.
    pub(super) fn check(&self) -> Result<(), String> {
        let bits = u32::try_from(self.n.len() * 8).map_err(|_| "the modulus is too long")?;
        let uint = |v: &[u8], bits: u32, what: &str| {
            rsa::BoxedUint::from_be_slice(v, bits)
                .map_err(|_| format!("RSAPrivateKey.{what} is larger than the modulus"))
        };
        let e_bits = u32::try_from(self.e.len().max(1) * 8).map_err(|_| "e is too long")?;
        let key = rsa::PrivateKey::from_components(
            uint(&self.n, bits, "modulus")?,
            uint(&self.e, e_bits, "publicExponent")?,
            uint(&self.d, bits, "privateExponent")?,
            vec![
                uint(&self.p, bits, "prime1")?,
                uint(&self.q, bits, "prime2")?,
            ],
        )
        .map_err(|e| {
            format!("the RSA key is inconsistent (n, e, d, p and q do not form a key): {e}")
        })?;
        // The values derived here are secret: held in `Zeroizing` while compared.
        let same = |v: Option<rsa::BoxedUint>, parsed: &[u8]| {
            v.map(Zeroizing::new)
                .is_some_and(|v| strip_zeros(&Zeroizing::new(v.to_be_bytes())) == parsed)
        };
        if !same(key.dp().cloned(), &self.dp) {
            return Err("RSAPrivateKey.exponent1 is not d mod (p-1)".to_owned());
        }
        if !same(key.dq().cloned(), &self.dq) {
            return Err("RSAPrivateKey.exponent2 is not d mod (q-1)".to_owned());
        }
        if !same(key.crt_coefficient(), &self.qinv) {
            return Err("RSAPrivateKey.coefficient is not q^-1 mod p".to_owned());
        }
        if strip_zeros(&key.n().to_be_bytes()) != self.n {
            return Err("the RSA modulus is not p·q".to_owned());
        }
        Ok(())
    }
}
