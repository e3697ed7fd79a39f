//! Key Vault's `WWW-Authenticate` challenge: its parse, the tenant it names, and the check that
//! it points at this cloud's sign-in host and vault resource.

use super::EntraError;
use crate::azure::endpoints::CloudEndpoints;
use crate::model::TargetKind;

/// A parsed `WWW-Authenticate: Bearer authorization="…", resource="…"` (or `scope="…"`) challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The authority URL, e.g. `https://login.windows.net/{tenant}`.
    pub authorization: Option<String>,
    /// The resource, e.g. `https://vault.azure.net`.
    pub resource: Option<String>,
    /// The scope form, e.g. `https://vault.azure.net/.default`.
    pub scope: Option<String>,
}

impl Challenge {
    /// Parses a Bearer challenge; `None` for other schemes or garbage.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut c = Challenge {
            authorization: None,
            resource: None,
            scope: None,
        };
        for part in split_params(rest) {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" | "authorization_uri" => c.authorization = Some(v),
                "resource" => c.resource = Some(v),
                "scope" => c.scope = Some(v),
                _ => {}
            }
        }
        Some(c)
    }

    /// The tenant named by the authority URL's first path segment.
    pub fn tenant(&self) -> Option<String> {
        let auth = self.authorization.as_deref()?;
        let uri = auth.parse::<http::Uri>().ok()?;
        let seg = uri.path().trim_matches('/').split('/').next()?.to_string();
        (!seg.is_empty()).then_some(seg)
    }

    /// The challenge's resource host (from `resource`, else `scope`), lower-case.
    pub fn resource_host(&self) -> Option<String> {
        let r = self.resource.as_deref().or(self.scope.as_deref())?;
        let uri = r.parse::<http::Uri>().ok()?;
        if uri.scheme_str() != Some("https") {
            return None;
        }
        uri.host().map(str::to_ascii_lowercase)
    }

    /// The authority's host (from `authorization`), lower-case.
    pub fn authorization_host(&self) -> Option<String> {
        let uri = self.authorization.as_deref()?.parse::<http::Uri>().ok()?;
        if uri.scheme_str() != Some("https") {
            return None;
        }
        uri.host().map(str::to_ascii_lowercase)
    }

    /// Honoured only when the resource host is this cloud's resource host for the target's
    /// kind (Key Vault or Managed HSM) and the authority (if named) is one of this cloud's
    /// sign-in hosts.
    pub fn check_cloud(
        &self,
        endpoints: &CloudEndpoints,
        kind: TargetKind,
    ) -> Result<(), EntraError> {
        let expected = endpoints.suffix(kind).unwrap_or(endpoints.vault_suffix);
        match self.resource_host() {
            Some(h) if h == expected => {}
            other => {
                let resource = other.unwrap_or_else(|| "(none)".into());
                tracing::error!(host = %resource, expected,
                    reason = "challenge resource is not this cloud's resource for the target", "challenge refused");
                return Err(EntraError::ChallengeMismatch {
                    resource,
                    expected: format!("https://{expected}"),
                });
            }
        }
        if self.authorization.is_some() {
            let host = self.authorization_host();
            let known = host
                .as_deref()
                .is_some_and(|h| endpoints.authority_hosts().contains(&h));
            if !known {
                let authority = host.unwrap_or_else(|| "(none)".into());
                tracing::error!(host = %authority, expected = endpoints.login_host,
                    reason = "challenge authority is not this cloud's sign-in host", "challenge refused");
                return Err(EntraError::ChallengeAuthorityMismatch {
                    authority,
                    expected: endpoints.login_host,
                });
            }
        }
        Ok(())
    }
}

/// Splits `a="x, y", b=z` on commas outside quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, ch) in s.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}
