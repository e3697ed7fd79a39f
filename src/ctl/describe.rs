//! The describe-style layout of one record (`byokctl ... show`, `-o table`/`wide`): its fields
//! as aligned `name:  value` lines, each nested object as an indented section, and each list of
//! flat objects (a job's steps, journal, keys) as an indented table.
//!
//! It owns that layout only; tables come from [`super::grid`]. Fields keep the API's
//! order (the record is read as an order-keeping YAML value, not a sorted JSON one).

use super::grid::grid;
use serde_norway::{Mapping, Value};

/// One record as describe-style text (no trailing newline).
pub fn describe<T: serde::Serialize>(v: &T) -> String {
    let v = serde_norway::to_value(v).unwrap_or(Value::Null);
    let mut out = String::new();
    match v.as_mapping() {
        Some(o) => section(&mut out, o, 0),
        None => out.push_str(&scalar(&v)),
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

/// A scalar (or a list of scalars) as one line of text: `-` for none, RFC 3339 times as the API
/// gives them, lists comma-separated.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Sequence(a) if a.is_empty() => "-".to_owned(),
        Value::Sequence(a) => a.iter().map(scalar).collect::<Vec<_>>().join(","),
        Value::Mapping(m) if m.is_empty() => "-".to_owned(),
        Value::Mapping(_) => "...".to_owned(),
        Value::Tagged(t) => scalar(&t.value),
    }
}

/// Whether `v` fits on one line.
fn is_flat(v: &Value) -> bool {
    match v {
        Value::Mapping(o) => o.is_empty(),
        Value::Sequence(a) => a.iter().all(|x| !x.is_mapping() && !x.is_sequence()),
        _ => true,
    }
}

/// A mapping's entries with their keys as text.
fn entries(o: &Mapping) -> Vec<(String, &Value)> {
    o.iter().map(|(k, v)| (scalar(k), v)).collect()
}

fn section(out: &mut String, o: &Mapping, indent: usize) {
    let pad = " ".repeat(indent);
    let o = entries(o);
    let width = o
        .iter()
        .filter(|(_, v)| is_flat(v))
        .map(|(k, _)| k.len() + 1)
        .max()
        .unwrap_or(0);
    for (k, v) in o {
        if is_flat(v) {
            let label = format!("{k}:");
            let text = scalar(v);
            let mut lines = text.lines();
            out.push_str(&format!(
                "{pad}{label:<width$}  {}\n",
                lines.next().unwrap_or("")
            ));
            for more in lines {
                out.push_str(&format!("{pad}{:width$}  {more}\n", ""));
            }
            continue;
        }
        out.push_str(&format!("{pad}{k}:\n"));
        match v {
            Value::Mapping(inner) => section(out, inner, indent + 2),
            Value::Sequence(items) => list(out, items, indent + 2),
            _ => {}
        }
    }
}

/// A list of objects: a table when every item is flat, else one section per item.
fn list(out: &mut String, items: &[Value], indent: usize) {
    let pad = " ".repeat(indent);
    let objects: Option<Vec<Vec<(String, &Value)>>> =
        items.iter().map(|i| i.as_mapping().map(entries)).collect();
    if let Some(objects) = objects.filter(|os| os.iter().all(|o| o.iter().all(|(_, v)| is_flat(v))))
    {
        let mut heads: Vec<String> = Vec::new();
        for o in &objects {
            for (k, _) in o {
                if !heads.contains(k) {
                    heads.push(k.clone());
                }
            }
        }
        let rows: Vec<Vec<String>> = objects
            .iter()
            .map(|o| {
                heads
                    .iter()
                    .map(|h| {
                        o.iter()
                            .find(|(k, _)| k == h)
                            .map_or_else(|| "-".to_owned(), |(_, v)| scalar(v))
                    })
                    .collect()
            })
            .collect();
        let heads: Vec<String> = heads.iter().map(|h| h.to_uppercase()).collect();
        for line in grid(&heads, &rows, indent).lines() {
            out.push_str(&format!("{pad}{line}\n"));
        }
        return;
    }
    for item in items {
        match item.as_mapping() {
            Some(o) => {
                let mut inner = String::new();
                section(&mut inner, o, 0);
                for (i, line) in inner.lines().enumerate() {
                    let lead = if i == 0 { "- " } else { "  " };
                    out.push_str(&format!("{pad}{lead}{line}\n"));
                }
            }
            None => out.push_str(&format!("{pad}- {}\n", scalar(item))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Serialize)]
    struct Ordered {
        zeta: u32,
        alpha: u32,
    }

    #[test]
    fn fields_keep_the_api_order() {
        assert_eq!(
            describe(&Ordered { zeta: 1, alpha: 2 }),
            "zeta:   1\nalpha:  2"
        );
    }

    #[test]
    fn nested_objects_are_sections_and_flat_lists_are_tables() {
        let job = json!({
            "id": "4",
            "created": "2026-01-31T12:00:00Z",
            "ended": null,
            "rotation": {"enabled": true, "rotate_every_months": 3},
            "steps": [
                {"at": "2026-01-31T12:00:00Z", "message": "started"},
                {"at": "2026-01-31T12:00:01Z", "message": "done"},
            ],
            "keys": [],
        });
        let text = describe(&job);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "created:  2026-01-31T12:00:00Z", "{text}");
        assert_eq!(lines[1], "ended:    -", "{text}");
        assert_eq!(lines[2], "id:       4", "{text}");
        assert_eq!(lines[3], "keys:     -", "{text}");
        assert_eq!(lines[4], "rotation:", "{text}");
        assert_eq!(lines[5], "  enabled:              yes", "{text}");
        assert_eq!(lines[7], "steps:", "{text}");
        assert!(
            lines[8].starts_with("  AT") && lines[8].contains("MESSAGE"),
            "{text}"
        );
        assert!(lines[9].starts_with("  2026-01-31T12:00:00Z") && lines[9].ends_with("started"));
    }
}
