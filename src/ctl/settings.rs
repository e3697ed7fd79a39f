//! byokctl's settings: the server address, client certificate and key, and CA. Flags and
//! `BYOKCTL_*` variables (handled by clap) win over `~/.config/byokctl/config.toml`.
//!
//! It owns finding and reading the settings file. It never holds the key's contents.

use super::CtlError;
use super::cli::Global;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The settings file's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    server_name: Option<String>,
}

/// Where byokctl connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// Settings resolved from every source.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: Target,
    pub server_name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn default_file() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("byokctl/config.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/byokctl/config.toml"))
}

fn read_file(explicit: Option<&Path>) -> Result<File, CtlError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_file() {
            Some(p) if p.exists() => p,
            _ => return Ok(File::default()),
        },
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CtlError::Usage(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| CtlError::Usage(format!("{}: {e}", path.display())))
}

/// Parses `https://HOST:PORT`, `HOST:PORT` or `unix:/PATH`.
pub fn parse_server(s: &str) -> Result<Target, CtlError> {
    if let Some(path) = s.strip_prefix("unix:") {
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    let rest = s
        .strip_prefix("https://")
        .unwrap_or(s)
        .trim_end_matches('/');
    let bad = || {
        CtlError::Usage(format!(
            "--server {s:?}: use https://HOST:PORT or unix:/PATH"
        ))
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (rest, 7443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || rest.contains('/') {
        return Err(bad());
    }
    Ok(Target::Tcp {
        host: host.to_owned(),
        port,
    })
}

impl Settings {
    pub fn resolve(g: &Global) -> Result<Settings, CtlError> {
        let file = read_file(g.config.as_deref())?;
        let server = g
            .server
            .clone()
            .or(file.server)
            .unwrap_or_else(|| "https://localhost:7443".to_owned());
        let target = parse_server(&server)?;
        let missing = |what: &str| {
            CtlError::Usage(format!(
                "no {what}: give --{what}, BYOKCTL_{}, or `{what}` in ~/.config/byokctl/config.toml",
                what.to_ascii_uppercase()
            ))
        };
        let server_name =
            g.server_name
                .clone()
                .or(file.server_name)
                .unwrap_or_else(|| match &target {
                    Target::Tcp { host, .. } => host.clone(),
                    Target::Unix(_) => "localhost".to_owned(),
                });
        Ok(Settings {
            target,
            server_name,
            cert: g
                .cert
                .clone()
                .or(file.cert)
                .ok_or_else(|| missing("cert"))?,
            key: g.key.clone().or(file.key).ok_or_else(|| missing("key"))?,
            ca: g.ca.clone().or(file.ca).ok_or_else(|| missing("ca"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_parse() {
        assert_eq!(
            parse_server("https://localhost:8443").unwrap(),
            Target::Tcp {
                host: "localhost".into(),
                port: 8443
            }
        );
        assert_eq!(
            parse_server("127.0.0.1:9").unwrap(),
            Target::Tcp {
                host: "127.0.0.1".into(),
                port: 9
            }
        );
        assert_eq!(
            parse_server("unix:/run/byokd.sock").unwrap(),
            Target::Unix("/run/byokd.sock".into())
        );
        assert!(parse_server("https://h:notaport").is_err());
        assert!(parse_server("https://h:1/path").is_err());
    }
}
