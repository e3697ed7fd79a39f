//! The canonical PKCS#8 encoding of a parsed key, for the `host` strategy.

use super::Parsed;
use super::der::{
    BIT_STRING, CONTEXT_0, CONTEXT_1, NULL, OCTET_STRING, OID, OID_EC, OID_RSA, SEQUENCE, concat,
    integer_tlv, tlv,
};
use super::ec_key::public_point;
use zeroize::Zeroizing;

impl Parsed {
    /// Canonical DER: RFC 5208 v1; RSA with NULL parameters and minimal INTEGERs; EC with a
    /// fixed-length scalar, the `[0]` namedCurve (RFC 5915 section 3: "MUST always include")
    /// and the `[1]` public key ("SHOULD"): a strict unwrapper that wants either finds it.
    pub(super) fn encode(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        // Every buffer is built at its exact size (`concat`, `tlv`): a growing Vec would leave
        // the secret bytes of each outgrown allocation in freed memory, never zeroized.
        let (algorithm, inner) = match self {
            Parsed::Rsa(k) => {
                let ints = [
                    &[][..],
                    &k.n[..],
                    &k.e[..],
                    &k.d[..],
                    &k.p[..],
                    &k.q[..],
                    &k.dp[..],
                    &k.dq[..],
                    &k.qinv[..],
                ]
                .map(integer_tlv);
                let body = concat(&ints.each_ref().map(|v| &v[..]));
                let alg = concat(&[&tlv(OID, OID_RSA), &[NULL, 0]]);
                (tlv(SEQUENCE, &alg), tlv(SEQUENCE, &body))
            }
            Parsed::Ec { curve, scalar, .. } => {
                let point = public_point(*curve, scalar)?;
                let bits = concat(&[&[0u8], &point]);
                let body = concat(&[
                    &integer_tlv(&[1]),
                    &tlv(OCTET_STRING, scalar),
                    &tlv(CONTEXT_0, curve.params_der()),
                    &tlv(CONTEXT_1, &tlv(BIT_STRING, &bits)),
                ]);
                let alg = concat(&[&tlv(OID, OID_EC), curve.params_der()]);
                (tlv(SEQUENCE, &alg), tlv(SEQUENCE, &body))
            }
        };
        let info = concat(&[&integer_tlv(&[]), &algorithm, &tlv(OCTET_STRING, &inner)]);
        Ok(tlv(SEQUENCE, &info))
    }
}
