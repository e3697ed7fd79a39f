//! How the application proves its identity: a client secret or a client-assertion JWT signed
//! in the HSM, and the form body that carries it, built straight into a zeroizing buffer.

use crate::azure::AzureError;
use crate::secret::SecretBytes;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;
use zeroize::Zeroizing;

/// How the application proves its identity.
pub enum ClientAuth<'a> {
    /// A client secret (unsealed by the caller, zeroized by it).
    Secret(&'a SecretBytes),
    /// A signed client-assertion JWT (see [`build_client_assertion`]).
    Assertion(Zeroizing<String>),
}

impl fmt::Debug for ClientAuth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Secret(_) => f.write_str("ClientAuth::Secret([REDACTED])"),
            ClientAuth::Assertion(_) => f.write_str("ClientAuth::Assertion([REDACTED])"),
        }
    }
}

/// Signs a client assertion with the certificate credential's private key. The implementation is
/// HSM-backed (the key never leaves the HSM); this layer only builds the JWT around it.
pub trait AssertionSigner: Send + Sync {
    /// `"PS256"` (preferred) or `"RS256"` (fallback, with a SHA-1 `x5t`).
    fn algorithm(&self) -> &'static str;
    /// The DER of the certificate uploaded to the app registration.
    fn certificate_der(&self) -> &[u8];
    /// Signs the JWT signing input (`b64(header).b64(claims)`) and returns the raw signature.
    fn sign<'a>(
        &'a self,
        signing_input: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, AzureError>> + Send + 'a>>;
}

/// Builds a client-assertion JWT: header `{alg, typ, x5t#S256}` (or `x5t` for RS256), claims
/// `aud` = token URL, `iss` = `sub` = client id, a fresh `jti`, `nbf` = now, `exp` = now + 10 min.
pub async fn build_client_assertion(
    signer: &dyn AssertionSigner,
    token_url: &str,
    client_id: &str,
    now: SystemTime,
) -> Result<Zeroizing<String>, AzureError> {
    let alg = signer.algorithm();
    let cert = signer.certificate_der();
    let header = if alg == "RS256" {
        let thumb = sha1::Sha1::digest(cert);
        serde_json::json!({"alg": alg, "typ": "JWT", "x5t": URL_SAFE_NO_PAD.encode(thumb)})
    } else {
        let thumb = sha2::Sha256::digest(cert);
        serde_json::json!({"alg": alg, "typ": "JWT", "x5t#S256": URL_SAFE_NO_PAD.encode(thumb)})
    };
    let now_s = unix_seconds(now);
    let claims = serde_json::json!({
        "aud": token_url, "iss": client_id, "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(), "nbf": now_s, "iat": now_s, "exp": now_s + 600,
    });
    let mut jwt = Zeroizing::new(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    ));
    let signature = signer.sign(jwt.as_bytes()).await?;
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jwt)
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn extend<'a>(body: &mut Vec<u8>, parts: impl IntoIterator<Item = &'a str>) {
    for p in parts {
        body.extend_from_slice(p.as_bytes());
    }
}

/// The form body, built straight into a zeroizing buffer sized up front (no reallocation copies).
pub(super) fn form_body(client_id: &str, scope: &str, auth: &ClientAuth<'_>) -> Zeroizing<Vec<u8>> {
    let secret_len = match auth {
        ClientAuth::Secret(s) => s.len(),
        ClientAuth::Assertion(a) => a.len() + 128,
    };
    let mut body = Zeroizing::new(Vec::with_capacity(
        256 + client_id.len() * 3 + scope.len() * 3 + secret_len * 3,
    ));
    extend(&mut body, ["grant_type=client_credentials&client_id="]);
    extend(
        &mut body,
        form_urlencoded::byte_serialize(client_id.as_bytes()),
    );
    extend(&mut body, ["&scope="]);
    extend(&mut body, form_urlencoded::byte_serialize(scope.as_bytes()));
    match auth {
        ClientAuth::Secret(secret) => {
            extend(&mut body, ["&client_secret="]);
            extend(
                &mut body,
                form_urlencoded::byte_serialize(secret.expose_secret()),
            );
        }
        ClientAuth::Assertion(jwt) => {
            extend(&mut body, ["&client_assertion_type="]);
            extend(
                &mut body,
                form_urlencoded::byte_serialize(
                    b"urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
            );
            extend(&mut body, ["&client_assertion="]);
            extend(&mut body, form_urlencoded::byte_serialize(jwt.as_bytes()));
        }
    }
    body
}
