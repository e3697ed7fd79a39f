//! The bundle manifest: a small line format written by `image/build.sh` and signed as bytes.
//!
//! ```text
//! byokd-bundle 1
//! version 0.2.0
//! state-format 2
//! file 0755 <sha256 hex> bin/byokd
//! ```
//! Parsing is strict: the header first, each key once, file paths relative and made of plain
//! components, each path once, modes 0644 or 0755. `bin/byokd` must be there, since the
//! installer runs it to migrate the state and for the health check.

const HEADER: &str = "byokd-bundle 1";
/// Files a bundle must hold.
pub const REQUIRED: [&str; 2] = ["bin/byokd", "bin/byokctl"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub version: String,
    pub state_format: u16,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: String,
    pub mode: u32,
    pub sha256: [u8; 32],
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("the manifest does not start with {HEADER:?}"));
        }
        let mut version = None;
        let mut state_format = None;
        let mut files: Vec<ManifestFile> = Vec::new();
        for (n, line) in lines.enumerate() {
            let at = n + 2;
            let (key, rest) = line
                .split_once(' ')
                .ok_or_else(|| format!("manifest line {at}: expected `key value`"))?;
            match key {
                "version" if version.is_none() => {
                    if !valid_version(rest) {
                        return Err(format!("manifest line {at}: bad version {rest:?}"));
                    }
                    version = Some(rest.to_owned());
                }
                "state-format" if state_format.is_none() => {
                    let f = rest
                        .parse::<u16>()
                        .map_err(|_| format!("manifest line {at}: bad state format {rest:?}"))?;
                    state_format = Some(f);
                }
                "file" => {
                    let file = parse_file(rest).map_err(|e| format!("manifest line {at}: {e}"))?;
                    if files.iter().any(|f| f.path == file.path) {
                        return Err(format!("manifest line {at}: {} listed twice", file.path));
                    }
                    files.push(file);
                }
                other => return Err(format!("manifest line {at}: unexpected key {other:?}")),
            }
        }
        let version = version.ok_or("the manifest has no version")?;
        let state_format = state_format.ok_or("the manifest has no state-format")?;
        for required in REQUIRED {
            if !files.iter().any(|f| f.path == required) {
                return Err(format!("the manifest does not list {required}"));
            }
        }
        Ok(Manifest {
            version,
            state_format,
            files,
        })
    }

    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

fn parse_file(rest: &str) -> Result<ManifestFile, String> {
    let mut parts = rest.split(' ');
    let (Some(mode), Some(sum), Some(path), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected `file MODE SHA256 PATH`".into());
    };
    let mode = match mode {
        "0644" => 0o644,
        "0755" => 0o755,
        other => return Err(format!("mode {other} (only 0644 and 0755)")),
    };
    let sha256: [u8; 32] = hex::decode(sum)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("bad SHA-256 {sum:?}"))?;
    if !valid_path(path) {
        return Err(format!("bad path {path:?}"));
    }
    Ok(ManifestFile {
        path: path.to_owned(),
        mode,
        sha256,
    })
}

fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
}

/// Relative, plain components only: no `..`, `.`, empty parts, or odd characters.
pub(crate) fn valid_path(p: &str) -> bool {
    let parts: Vec<&str> = p.split('/').collect();
    p.len() <= 200
        && parts.len() <= 6
        && parts.iter().all(|c| {
            !c.is_empty()
                && *c != "."
                && *c != ".."
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn text(extra: &str) -> String {
        format!(
            "byokd-bundle 1\nversion 1.2.3\nstate-format 2\nfile 0755 {SUM} bin/byokd\nfile 0755 {SUM} bin/byokctl\n{extra}"
        )
    }

    #[test]
    fn a_good_manifest_parses() {
        let m = Manifest::parse(&text(&format!("file 0644 {SUM} etc/byokd.toml\n"))).unwrap();
        assert_eq!(m.version, "1.2.3");
        assert_eq!(m.state_format, 2);
        assert_eq!(m.files.len(), 3);
        assert_eq!(m.file("etc/byokd.toml").unwrap().mode, 0o644);
    }

    #[test]
    fn escapes_duplicates_and_odd_modes_are_refused() {
        for bad in [
            format!("file 0644 {SUM} ../etc/passwd\n"),
            format!("file 0644 {SUM} /etc/passwd\n"),
            format!("file 0644 {SUM} a//b\n"),
            format!("file 0644 {SUM} bin/byokd\n"),
            format!("file 4755 {SUM} bin/x\n"),
            format!("file 0644 {} bin/x\n", &SUM[2..]),
            "version 2.0\n".to_owned(),
            "colour blue\n".to_owned(),
        ] {
            assert!(Manifest::parse(&text(&bad)).is_err(), "{bad}");
        }
        assert!(Manifest::parse("byokd-bundle 2\nversion 1\nstate-format 2\n").is_err());
        let no_ctl =
            format!("byokd-bundle 1\nversion 1\nstate-format 2\nfile 0755 {SUM} bin/byokd\n");
        assert!(Manifest::parse(&no_ctl).is_err());
    }
}
