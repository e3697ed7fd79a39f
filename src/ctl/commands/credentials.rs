//! `byokctl credential`: add (a secret read from a file or stdin, or a certificate made in the
//! HSM), list, show, export the certificate or a CSR, set the expiry, and delete.

use super::{Ctx, parse_date, seg};
use crate::contract::{
    CertificateExport, Credential, CredentialCsr, CredentialList, CredentialUpdate, NewCredential,
    Secret,
};
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use crate::ctl::output::{Column, col, wide};
use http::Method;
use std::io::Read;
use zeroize::Zeroizing;

const CREDENTIAL_COLS: &[Column] = &[
    col("NAME", "name"),
    wide("KIND", "kind"),
    col("TENANT", "tenant_id"),
    col("CLIENT", "client_id"),
    col("VERIFIED", "verified"),
    col("FINGERPRINT", "fingerprint"),
    wide("CREATED", "created"),
    col("EXPIRES", "expires"),
    col("GROUPS", "groups"),
];

fn read_secret(file: Option<&std::path::Path>, stdin: bool) -> Result<Secret, CtlError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    match (file, stdin) {
        (Some(p), _) => {
            let mut f = std::fs::File::open(p)
                .map_err(|e| CtlError::Usage(format!("secret file {}: {e}", p.display())))?;
            f.read_to_end(&mut bytes)
                .map_err(|e| CtlError::Usage(format!("secret file {}: {e}", p.display())))?;
        }
        (None, true) => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| CtlError::Usage(format!("reading the secret from stdin: {e}")))?;
        }
        (None, false) => {
            return Err(CtlError::Usage(
                "give --secret-file PATH or --secret-stdin".into(),
            ));
        }
    }
    let trimmed = crate::secret::trim_trailing_newline(std::mem::take(&mut *bytes));
    let text = String::from_utf8(trimmed).map_err(|e| {
        drop(Zeroizing::new(e.into_bytes()));
        CtlError::Usage("the secret is not UTF-8 text".into())
    })?;
    let secret = Secret::new(text);
    if secret.is_empty() {
        return Err(CtlError::Usage("the secret is empty".into()));
    }
    Ok(secret)
}

pub(super) async fn credential(ctx: &Ctx, c: CredentialCmd) -> Result<(), CtlError> {
    match c {
        CredentialCmd::Add {
            name,
            tenant_id,
            client_id,
            secret_file: _,
            secret_stdin: _,
            certificate: true,
            validity_days,
            expires: _,
            no_verify: _,
        } => {
            let body = NewCredential {
                name,
                tenant_id,
                client_id,
                secret: None,
                certificate: true,
                validity_days,
                expires: None,
                verify: false,
            };
            let created: Credential = ctx.send(Method::POST, "/v1/credentials", &body).await?;
            ctx.show(&created)?;
        }
        CredentialCmd::Add {
            name,
            tenant_id,
            client_id,
            secret_file,
            secret_stdin,
            certificate: false,
            validity_days: _,
            expires,
            no_verify,
        } => {
            let secret = read_secret(secret_file.as_deref(), secret_stdin)?;
            let expires = expires.as_deref().map(parse_date).transpose()?;
            let capacity = secret.len() * 6 + 1024;
            let body = NewCredential {
                name,
                tenant_id,
                client_id,
                secret: Some(secret),
                certificate: false,
                validity_days: None,
                expires,
                verify: !no_verify,
            };
            // The body holds the secret: written into a buffer that is zeroed when dropped.
            let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
            serde_json::to_writer(&mut *bytes, &body)
                .map_err(|e| CtlError::Other(e.to_string()))?;
            drop(body);
            let path = "/v1/credentials";
            let a = ctx.call(Method::POST, path, Some(&bytes)).await?;
            ctx.show(&super::typed::<Credential>(path, a)?)?;
        }
        CredentialCmd::Certificate { name, csr, file } => {
            let path = format!(
                "/v1/credentials/{}/certificate{}",
                seg(&name)?,
                if csr { "?format=csr" } else { "" }
            );
            // The PEM, the thumbprint (certificates only), and the answer for `--output json`.
            let (pem, thumbprint, answer) = if csr {
                let v: CredentialCsr = ctx.get(&path).await?;
                (v.csr_pem.clone(), None, serde_json::to_value(v))
            } else {
                let v: CertificateExport = ctx.get(&path).await?;
                let t = v.thumbprint.clone();
                (v.certificate_pem.clone(), Some(t), serde_json::to_value(v))
            };
            let answer = answer.map_err(|e| CtlError::Other(e.to_string()))?;
            match file {
                Some(file) => {
                    std::fs::write(&file, &pem).map_err(|e| {
                        CtlError::Other(format!("cannot write {}: {e}", file.display()))
                    })?;
                    if !ctx.machine(&answer)? {
                        crate::ctl::output::note(&format!("wrote {}", file.display()));
                        if let Some(t) = thumbprint {
                            crate::ctl::output::note(&format!("thumbprint (SHA-1): {t}"));
                        }
                    }
                }
                None => {
                    if !ctx.machine(&answer)? {
                        crate::ctl::output::say_bytes(pem.as_bytes())?;
                    }
                }
            }
        }
        CredentialCmd::List => ctx.list(
            &ctx.get::<CredentialList>("/v1/credentials").await?,
            "credentials",
            CREDENTIAL_COLS,
        )?,
        CredentialCmd::Show { name } => ctx.show(
            &ctx.get::<Credential>(&format!("/v1/credentials/{}", seg(&name)?))
                .await?,
        )?,
        CredentialCmd::SetExpiry { name, date, clear } => {
            let expires = if clear {
                None
            } else {
                date.as_deref().map(parse_date).transpose()?
            };
            let body = CredentialUpdate {
                expires: Some(expires),
            };
            let path = format!("/v1/credentials/{}", seg(&name)?);
            let updated: Credential = ctx.send(Method::PATCH, &path, &body).await?;
            ctx.show(&updated)?;
        }
        CredentialCmd::Delete { name } => {
            let path = format!("/v1/credentials/{}", seg(&name)?);
            let a = ctx.call(Method::DELETE, &path, None).await?;
            ctx.done(&path, a, &format!("credential {name} deleted"))?;
        }
    }
    Ok(())
}
