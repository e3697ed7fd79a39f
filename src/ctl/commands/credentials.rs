//! `byokctl credential`: add (a secret read from a file or stdin, or a certificate made in the
//! HSM), list, show, export the certificate or a CSR, set the expiry, and delete.

use super::{Ctx, parse_date, seg};
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use crate::ctl::output::Column;
use http::Method;
use serde_json::{Value, json};
use std::io::Read;
use zeroize::Zeroizing;

const CREDENTIAL_COLS: &[Column] = &[
    ("NAME", "name"),
    ("TENANT", "tenant_id"),
    ("CLIENT", "client_id"),
    ("FINGERPRINT", "fingerprint"),
    ("EXPIRES", "expires"),
    ("GROUPS", "groups"),
];

fn read_secret(file: Option<&std::path::Path>, stdin: bool) -> Result<Zeroizing<String>, CtlError> {
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
    let trimmed = Zeroizing::new(crate::secret::trim_trailing_newline(std::mem::take(
        &mut *bytes,
    )));
    let text = std::str::from_utf8(&trimmed)
        .map_err(|_| CtlError::Usage("the secret is not UTF-8 text".into()))?;
    if text.is_empty() {
        return Err(CtlError::Usage("the secret is empty".into()));
    }
    Ok(Zeroizing::new(text.to_owned()))
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
        } => {
            let a = ctx
                .send(
                    Method::POST,
                    "/v1/credentials",
                    &json!({ "name": name, "tenant_id": tenant_id, "client_id": client_id,
                        "certificate": true, "validity_days": validity_days }),
                )
                .await?;
            ctx.show(&a.body);
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
        } => {
            let secret = read_secret(secret_file.as_deref(), secret_stdin)?;
            let expires = expires.as_deref().map(parse_date).transpose()?;
            #[derive(serde::Serialize)]
            struct Body<'a> {
                name: &'a str,
                tenant_id: &'a str,
                client_id: &'a str,
                secret: &'a str,
                expires: Option<i64>,
            }
            let body = Body {
                name: &name,
                tenant_id: &tenant_id,
                client_id: &client_id,
                secret: &secret,
                expires,
            };
            let mut bytes = Zeroizing::new(Vec::with_capacity(secret.len() * 6 + 1024));
            serde_json::to_writer(&mut *bytes, &body)
                .map_err(|e| CtlError::Other(e.to_string()))?;
            let a = ctx
                .call(Method::POST, "/v1/credentials", Some(&bytes))
                .await?;
            ctx.show(&a.body);
        }
        CredentialCmd::Certificate { name, csr, file } => {
            let path = format!(
                "/v1/credentials/{}/certificate{}",
                seg(&name)?,
                if csr { "?format=csr" } else { "" }
            );
            let v = ctx.get(&path).await?;
            let field = if csr { "csr_pem" } else { "certificate_pem" };
            let pem = v.get(field).and_then(Value::as_str).unwrap_or_default();
            match file {
                Some(file) => {
                    std::fs::write(&file, pem).map_err(|e| {
                        CtlError::Other(format!("cannot write {}: {e}", file.display()))
                    })?;
                    if !ctx.json(&v) {
                        eprintln!("wrote {}", file.display());
                        if let Some(t) = v.get("thumbprint").and_then(Value::as_str) {
                            eprintln!("thumbprint (SHA-1): {t}");
                        }
                    }
                }
                None => {
                    if !ctx.json(&v) {
                        print!("{pem}");
                    }
                }
            }
        }
        CredentialCmd::List => ctx.list(
            &ctx.get("/v1/credentials").await?,
            "credentials",
            CREDENTIAL_COLS,
        ),
        CredentialCmd::Show { name } => {
            ctx.show(&ctx.get(&format!("/v1/credentials/{}", seg(&name)?)).await?)
        }
        CredentialCmd::SetExpiry { name, date, clear } => {
            let expires = if clear {
                None
            } else {
                date.as_deref().map(parse_date).transpose()?
            };
            let a = ctx
                .send(
                    Method::PATCH,
                    &format!("/v1/credentials/{}", seg(&name)?),
                    &json!({ "expires": expires }),
                )
                .await?;
            ctx.show(&a.body);
        }
        CredentialCmd::Delete { name } => {
            let a = ctx
                .call(
                    Method::DELETE,
                    &format!("/v1/credentials/{}", seg(&name)?),
                    None,
                )
                .await?;
            ctx.done(&a, &format!("credential {name} deleted"));
        }
    }
    Ok(())
}
