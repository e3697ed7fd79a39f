//! The man pages, generated: byokctl(1) and one page per subcommand from byokctl's command
//! line, byokd(8) and its subcommands' pages from byokd's, and byokd.toml(5) from the
//! configuration reference (Markdown, `docs/configuration.md`). `byokctl generate-man DIR`
//! writes them; the firmware bundle ships them and `docs/man/` holds the checked-in copy that a
//! test diffs against these.
//!
//! It owns rendering only: the texts come from the command lines' help and from the reference.

use super::CtlError;
use super::cli::Cli;
use std::path::{Path, PathBuf};

/// Writes every page into `dir`; returns their paths, sorted.
pub fn generate(dir: &Path, config_reference: &Path) -> Result<Vec<PathBuf>, CtlError> {
    use clap::CommandFactory;
    let io = |what: &Path, e: std::io::Error| CtlError::Other(format!("{}: {e}", what.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(|e| io(dir, e))?;
    let top = dir.join("byokctl.1");
    let mut page = Vec::new();
    byokctl_page(&mut page).map_err(|e| io(&top, e))?;
    std::fs::write(&top, page).map_err(|e| io(&top, e))?;
    let mut daemon = crate::daemon::cli::Args::command().disable_help_subcommand(true);
    daemon.build();
    pages(daemon, "8", dir).map_err(|e| io(dir, e))?;
    let reference = std::fs::read_to_string(config_reference).map_err(|e| {
        CtlError::Usage(format!(
            "the configuration reference {}: {e}",
            config_reference.display()
        ))
    })?;
    let page = dir.join("byokd.toml.5");
    std::fs::write(&page, config_page(&reference)).map_err(|e| io(&page, e))?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    written.sort();
    Ok(written)
}

/// byokctl(1): clap's sections, with the exit codes and settings as sections of their own
/// instead of clap's one preformatted "extra" block.
fn byokctl_page(w: &mut Vec<u8>) -> std::io::Result<()> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut cmd = Cli::command()
        .disable_help_subcommand(true)
        .after_help(None::<&str>)
        .after_long_help(None::<&str>);
    cmd.build();
    let man = clap_mangen::Man::new(cmd);
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    writeln!(w, ".SH \"EXIT STATUS\"")?;
    let mut rest = Vec::new();
    for l in super::cli::EXIT_CODES.lines().skip(1) {
        let t = l.trim_start();
        let lead = l.len() - t.len();
        if lead == 2 && t.starts_with(|c: char| c.is_ascii_digit()) {
            let (code, text) = t.split_once(' ').unwrap_or((t, ""));
            writeln!(w, ".TP\n\\fB{code}\\fR\n{}", line(&inline(text.trim())))?;
        } else if lead > 2 {
            writeln!(w, "{}", line(&inline(t)))?;
        } else if !t.is_empty() {
            rest.push(t);
        }
    }
    writeln!(w, ".SH FILES\n.PP")?;
    for t in rest {
        writeln!(w, "{}", line(&inline(t)))?;
    }
    writeln!(w, ".SH \"SEE ALSO\"\nbyokd(8), byokd.toml(5)")?;
    man.render_version_section(w)
}

/// `cmd`'s page and its visible subcommands' pages, in `section`.
fn pages(cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        pages(sub, section, dir)?;
    }
    clap_mangen::Man::new(cmd)
        .section(section)
        .manual("System Administration")
        .generate_to(dir)?;
    Ok(())
}

/// Text for roff: backslashes escaped, and inline Markdown (`code`, **bold**, [text](link))
/// as fonts and plain text.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut code = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\e"),
            '`' => {
                out.push_str(if code { "\\fR" } else { "\\fB" });
                code = !code;
            }
            '*' if !code && chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str("\\fB");
                let mut bold = String::new();
                while let Some(b) = chars.next() {
                    if b == '*' && chars.peek() == Some(&'*') {
                        chars.next();
                        break;
                    }
                    bold.push(b);
                }
                out.push_str(&inline(&bold));
                out.push_str("\\fR");
            }
            '[' if !code => {
                let rest: String = chars.clone().collect();
                match rest
                    .find("](")
                    .and_then(|m| rest[m..].find(')').map(|e| (m, m + e)))
                {
                    Some((m, end)) => {
                        out.push_str(&inline(&rest[..m]));
                        for _ in 0..rest[..=end].chars().count() {
                            chars.next();
                        }
                    }
                    None => out.push('['),
                }
            }
            '-' => out.push_str("\\-"),
            c if !c.is_ascii() => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
            _ => out.push(c),
        }
    }
    if code {
        out.push_str("\\fR");
    }
    out
}

/// A roff line that cannot be read as a request (a leading `.` or `'`).
fn line(text: &str) -> String {
    if text.starts_with(['.', '\'']) {
        format!("\\&{text}")
    } else {
        text.to_owned()
    }
}

fn cells(row: &str) -> Vec<String> {
    row.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_owned())
        .collect()
}

/// byokd.toml(5) from the configuration reference's Markdown: headings as sections, fenced
/// blocks as literal text, tables as tagged paragraphs (the first cell the tag, the others
/// named by their column), lists as bullets.
pub fn config_page(markdown: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut out = vec![
        format!(".TH BYOKD.TOML 5 \"\" \"byokd {version}\" \"File Formats\""),
        ".SH NAME".to_owned(),
        "byokd.toml \\- the byokd daemon's configuration file".to_owned(),
    ];
    let mut lines = markdown.lines().peekable();
    let mut heads: Vec<String> = Vec::new();
    let mut para = false;
    while let Some(l) = lines.next() {
        if l.starts_with("# ") {
            out.push(".SH DESCRIPTION".to_owned());
            para = false;
        } else if let Some(h) = l.strip_prefix("## ") {
            out.push(format!(".SH {}", inline(&h.to_uppercase())));
            para = false;
        } else if let Some(h) = l.strip_prefix("### ") {
            out.push(format!(".SS {}", inline(h)));
            para = false;
        } else if l.starts_with("```") {
            out.push(".PP".to_owned());
            out.push(".nf".to_owned());
            for code in lines.by_ref() {
                if code.starts_with("```") {
                    break;
                }
                out.push(line(&inline(&code.replace('`', "'"))));
            }
            out.push(".fi".to_owned());
            para = false;
        } else if l.starts_with('|') {
            if lines
                .peek()
                .is_some_and(|n| n.starts_with("|--") || n.starts_with("| --"))
            {
                heads = cells(l);
                lines.next();
                continue;
            }
            let row = cells(l);
            out.push(".TP".to_owned());
            out.push(line(&inline(row.first().map_or("", String::as_str))));
            let last = row.len().saturating_sub(1);
            for (i, c) in row.iter().enumerate().skip(1) {
                let name = heads.get(i).map_or("", String::as_str);
                if i == last || name.is_empty() {
                    out.push(line(&inline(c)));
                } else {
                    out.push(line(&format!("{}: {}.", inline(name), inline(c))));
                }
            }
            para = false;
        } else if let Some(item) = l.strip_prefix("- ") {
            out.push(".IP \\(bu 2".to_owned());
            out.push(line(&inline(item)));
            para = true;
        } else if l.trim().is_empty() {
            para = false;
        } else {
            if !para {
                out.push(".PP".to_owned());
                para = true;
            }
            out.push(line(&inline(l.trim())));
        }
    }
    out.push(".SH SEE ALSO".to_owned());
    out.push("byokd(8), byokctl(1)".to_owned());
    let mut text = out.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_roff() {
        let page = config_page(
            "# Configuration\n\nReads `/etc/byokd/byokd.toml`, see [the unit](../x.md).\n\n## Keys\n\n| key | default | meaning |\n|---|---|---|\n| `state_dir` | `/var/lib/byokd` | durable state |\n\n```\n$ byokd check-config\n.x\n```\n- one **two**\n",
        );
        let want = [
            ".SH DESCRIPTION",
            ".PP",
            "Reads \\fB/etc/byokd/byokd.toml\\fR, see the unit.",
            ".SH KEYS",
            ".TP",
            "\\fBstate_dir\\fR",
            "default: \\fB/var/lib/byokd\\fR.",
            "durable state",
            ".PP",
            ".nf",
            "$ byokd check\\-config",
            "\\&.x",
            ".fi",
            ".IP \\(bu 2",
            "one \\fBtwo\\fR",
            ".SH SEE ALSO",
        ];
        let lines: Vec<&str> = page.lines().skip(3).take(want.len()).collect();
        assert_eq!(lines, want, "{page}");
    }
}
