//! The walk over the parsed file: unknown and missing keys, the type and range of every value,
//! each problem with its line; settings with a problem are remembered so that the checks
//! across settings leave them out.

use super::Problem;
use super::keys::{Kind, REQUIRED};
use serde_spanned::Spanned;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use toml::de::{DeTable, DeValue};

pub(super) struct Walker<'a> {
    pub(super) lines: &'a LineIndex,
    pub(super) problems: &'a mut Vec<Problem>,
    pub(super) key_lines: BTreeMap<String, usize>,
    /// Settings with a problem, left out of the configuration the checks across settings see.
    pub(super) bad_keys: Vec<String>,
}

impl Walker<'_> {
    pub(super) fn table(
        &mut self,
        path: &str,
        table: &DeTable<'_>,
        schema: &[(&str, Kind)],
        start: usize,
    ) {
        for (key, value) in table.iter() {
            let name: &str = key.get_ref();
            let full = join(path, name);
            let line = self.lines.line(key.span().start);
            self.key_lines.insert(full.clone(), line);
            match schema.iter().find(|(k, _)| *k == name) {
                Some((_, kind)) => self.value(&full, value, *kind),
                None => {
                    let known: Vec<&str> = schema.iter().map(|(k, _)| *k).collect();
                    let where_ = if path.is_empty() {
                        "at the top level".to_owned()
                    } else {
                        format!("in [{path}]")
                    };
                    self.problem(
                        &full,
                        line,
                        format!(
                            "unknown key {name:?} {where_}; known keys: {}",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        let schema_path = strip_indexes(path);
        for (section, required) in REQUIRED {
            if *section == schema_path {
                for req in *required {
                    if !table.iter().any(|(k, _)| k.get_ref().as_ref() == *req) {
                        let what = if path.is_empty() {
                            format!("section [{req}]")
                        } else {
                            format!("key {req:?} in [{path}]")
                        };
                        let line = self.lines.line(start);
                        self.problems.push(Problem {
                            line: Some(line),
                            message: format!("missing required {what}"),
                        });
                    }
                }
            }
        }
    }

    fn value(&mut self, path: &str, value: &Spanned<DeValue<'_>>, kind: Kind) {
        let line = self.lines.line(value.span().start);
        let v = value.get_ref();
        let found = v.type_str();
        let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        let wrong = |want: &str| format!("{path} must be {want}, not {article} {found}");
        let problem = match kind {
            Kind::Str | Kind::Path => match v.as_str() {
                Some("") if matches!(kind, Kind::Path) => Some(format!("{path} must not be empty")),
                Some(_) => None,
                None => Some(wrong("a string")),
            },
            Kind::Bool => (!v.is_bool()).then(|| wrong("true or false")),
            Kind::Int(min, max) => match v.as_integer() {
                Some(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) if (min..=max).contains(&n) => None,
                    _ => Some(format!(
                        "{path} = {i} is out of range: it must be a whole number from {min} to {max}"
                    )),
                },
                None => Some(wrong(&format!("a whole number from {min} to {max}"))),
            },
            Kind::Addr => match v.as_str() {
                Some(s) if s.parse::<SocketAddr>().is_ok() => None,
                Some(s) => Some(format!("{path}: {s:?} is not an ip:port address")),
                None => Some(wrong("an \"ip:port\" string")),
            },
            Kind::OneOf(allowed) => match v.as_str() {
                Some(s) if allowed.contains(&s) => None,
                Some(s) => Some(format!(
                    "{path}: {s:?} is not one of {}",
                    allowed.join(", ")
                )),
                None => Some(wrong(&format!("one of {}", allowed.join(", ")))),
            },
            Kind::Table(schema) => match v.as_table() {
                Some(t) => {
                    self.table(path, t, schema, value.span().start);
                    None
                }
                None => Some(wrong("a table")),
            },
            Kind::MapOf(inner) => match v.as_table() {
                Some(t) => {
                    for (k, item) in t.iter() {
                        let name: &str = k.get_ref();
                        self.value(&join(path, name), item, *inner);
                    }
                    None
                }
                None => Some(wrong("a table")),
            },
            Kind::ArrayOf(inner) => match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let key = format!("{path}.{i}");
                        self.key_lines
                            .insert(key.clone(), self.lines.line(item.span().start));
                        self.value(&key, item, *inner);
                    }
                    None
                }
                None => Some(wrong("an array")),
            },
        };
        if let Some(message) = problem {
            self.problem(path, line, message);
        }
    }

    fn problem(&mut self, key: &str, line: usize, message: String) {
        self.bad_keys.push(key.to_owned());
        self.problems.push(Problem {
            line: Some(line),
            message,
        });
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn strip_indexes(path: &str) -> String {
    path.split('.')
        .filter(|p| !p.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(".")
}

pub(super) fn first_line(msg: &str) -> String {
    msg.lines().next().unwrap_or(msg).trim().to_owned()
}

pub(super) struct LineIndex(Vec<usize>);

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        Self(text.match_indices('\n').map(|(i, _)| i).collect())
    }
    /// 1-based line of a byte offset.
    pub(super) fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}
