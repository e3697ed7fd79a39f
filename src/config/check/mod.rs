//! Validation with line numbers: syntax, unknown keys, the type and range of every value (every
//! integer has an upper bound), and the checks across settings, all collected so that
//! `byokd check-config` prints every problem at once. The files a configuration names are
//!
//! Files: `keys` (every setting's type and range, and the required ones), `walker` (the walk
//! over the parsed file that checks keys, types and ranges with line numbers), `semantic` (the
//! checks across settings); this file holds the entry points and the problem type.

mod keys;
mod semantic;
mod walker;

use super::Config;
use keys::TOP;
pub use keys::setting_names;
use semantic::semantic;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use toml::de::DeTable;
use walker::{LineIndex, Walker, first_line};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What checking a configuration's text found: every problem, and the configuration when one
/// could be built (with the settings that had a problem left at their defaults, so that the
/// checks of the other settings still run).
pub struct Inspection {
    pub config: Option<Config>,
    pub problems: Vec<Problem>,
    lines: BTreeMap<String, usize>,
}

impl Inspection {
    /// The line of a setting (`"control.server_cert"`, `"logs.syslog.0"`), when the file sets it.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }
}

/// Reads and checks a configuration file.
pub fn check_file(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = read_file(path)?;
    check_text(&text)
}

/// Reads a configuration file's text.
pub fn read_file(path: &Path) -> Result<String, Vec<Problem>> {
    use crate::system::regular_file;
    let problem = |e: String| {
        vec![Problem {
            line: None,
            message: format!("cannot read {}: {e}", path.display()),
        }]
    };
    let bytes =
        regular_file::read(path, regular_file::TEXT_LIMIT).map_err(|e| problem(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| problem(e.to_string()))
}

/// Checks configuration text and returns the config, or every problem found.
pub fn check_text(text: &str) -> Result<Config, Vec<Problem>> {
    let found = inspect(text);
    match found.config {
        Some(config) if found.problems.is_empty() => Ok(config),
        _ => Err(found.problems),
    }
}

/// Checks configuration text: syntax, keys, types and ranges of every value, then the checks
/// across settings. A value of the wrong type or out of range does not hide the problems of the
/// others: it is reported and left out, and the rest is checked as if it were not set.
pub fn inspect(text: &str) -> Inspection {
    let lines = LineIndex::new(text);
    let (doc, errors) = DeTable::parse_recoverable(text);
    let mut problems: Vec<Problem> = errors
        .iter()
        .map(|e| Problem {
            line: e.span().map(|s| lines.line(s.start)),
            message: first_line(e.message()),
        })
        .collect();
    if !problems.is_empty() {
        return Inspection {
            config: None,
            problems,
            lines: BTreeMap::new(),
        };
    }
    let mut walker = Walker {
        lines: &lines,
        problems: &mut problems,
        key_lines: BTreeMap::new(),
        bad_keys: Vec::new(),
    };
    walker.table("", doc.get_ref(), TOP, doc.span().start);
    let Walker {
        key_lines,
        bad_keys,
        ..
    } = walker;
    let config = match toml::from_str::<toml::Table>(text) {
        Ok(mut table) => {
            for key in &bad_keys {
                prune(&mut table, key);
            }
            toml::Value::Table(table).try_into::<Config>().ok()
        }
        Err(_) => None,
    };
    if let Some(c) = &config {
        semantic(c, &key_lines, &bad_keys, &mut problems);
    } else if problems.is_empty() {
        // The walker accepts everything serde does; this is a safety net.
        if let Err(e) = toml::from_str::<Config>(text) {
            problems.push(Problem {
                line: e.span().map(|s| lines.line(s.start)),
                message: first_line(e.message()),
            });
        }
    }
    Inspection {
        config,
        problems,
        lines: key_lines,
    }
}

/// Removes the setting at a dotted path (`limits.max_connections`,
/// `control.identities.0.role`). A bad item of an array removes the whole array.
fn prune(table: &mut toml::Table, key: &str) {
    let parts: Vec<&str> = key.split('.').collect();
    let cut = match parts.iter().rposition(|p| p.parse::<usize>().is_err()) {
        // `extra_ca.1`: drop `extra_ca`; `identities.0.role`: drop `role` in item 0.
        Some(i) => i + 1,
        None => return,
    };
    let mut here = toml::Value::Table(std::mem::take(table));
    prune_value(&mut here, &parts[..cut]);
    if let toml::Value::Table(t) = here {
        *table = t;
    }
}

fn prune_value(v: &mut toml::Value, parts: &[&str]) {
    match (parts, v) {
        ([last], toml::Value::Table(t)) => {
            t.remove(*last);
        }
        ([first, rest @ ..], toml::Value::Table(t)) => {
            if let Some(next) = t.get_mut(*first) {
                prune_value(next, rest);
            }
        }
        ([first, rest @ ..], toml::Value::Array(items)) => {
            if let Some(next) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                prune_value(next, rest);
            }
        }
        _ => {}
    }
}
