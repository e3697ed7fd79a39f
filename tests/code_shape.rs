//! The shape of the source tree, checked: no file in `src/` is over the size a reader can hold
//! (600 lines), and the modules of each folder import each other top-down, with no circle.
//! A circle between sibling modules (a kind importing the executor that imports the kind)
//! means neither can be read, tested or replaced alone; this test names the files of any
//! circle it finds so the next change breaks it instead of widening it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a source file may have.
const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn no_source_file_is_over_the_size_a_reader_can_hold() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut over: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", rel(f)))
        })
        .collect();
    over.sort();
    assert!(
        over.is_empty(),
        "split these files into modules with one job each (at most {MAX_LINES} lines): {over:#?}"
    );
}

/// The sibling modules of one folder: `name.rs` files and sub-folders, without `mod.rs`.
fn siblings(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let module_dir = path.is_dir() && stem != "tests";
        let module_file = path.extension().is_some_and(|e| e == "rs")
            && !["mod", "lib", "tests"].contains(&stem.as_str());
        if module_dir || module_file {
            out.insert(stem, path);
        }
    }
    out
}

/// The first path segment of every item a `use`/path starting at `at` names, handling
/// `prefix::{a, b::c}` groups.
fn first_segments(text: &str) -> Vec<String> {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0usize;
        let mut items = Vec::new();
        let mut current = String::new();
        for c in group.chars() {
            match c {
                '{' => {
                    depth += 1;
                    current.push(c);
                }
                '}' if depth == 0 => break,
                '}' => {
                    depth -= 1;
                    current.push(c);
                }
                ',' if depth == 0 => items.push(std::mem::take(&mut current)),
                _ => current.push(c),
            }
        }
        items.push(current);
        return items
            .iter()
            .flat_map(|i| first_segments(i).into_iter().take(1))
            .collect();
    }
    let ident: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        vec![]
    } else {
        vec![ident]
    }
}

/// The code of a file before its unit tests, without comment lines.
fn code(text: &str) -> String {
    text.lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which siblings a module's files name, through `super::` or the folder's `crate::` path.
fn edges(dir: &Path, module: &Path, names: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let crate_path = format!(
        "crate::{}::",
        rel(dir).trim_start_matches("src/").replace('/', "::")
    );
    let mut files = Vec::new();
    if module.is_dir() {
        rust_files(module, &mut files);
    } else {
        files.push(module.to_path_buf());
    }
    let own = module.file_stem().unwrap().to_string_lossy().into_owned();
    let mut out = BTreeSet::new();
    // Unit tests (a `tests.rs` file or `tests/` folder inside a module) are not the module's
    // structure: a test may reach any sibling.
    files.retain(|f| {
        !f.components()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs")
    });
    for file in files {
        let text = code(&std::fs::read_to_string(&file).unwrap());
        // Inside a sub-folder, `super::` is the sub-folder's own mod.rs, not a sibling.
        let prefixes: Vec<String> = if file.parent() == Some(dir) {
            vec!["super::".to_owned(), crate_path.clone()]
        } else {
            vec![crate_path.clone()]
        };
        for prefix in &prefixes {
            for (at, _) in text.match_indices(prefix.as_str()) {
                for seg in first_segments(&text[at + prefix.len()..]) {
                    if seg != own && names.contains_key(&seg) {
                        out.insert(seg);
                    }
                }
            }
        }
    }
    out
}

fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn folders(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            folders(&path, out);
        }
    }
}

#[test]
fn the_modules_of_every_folder_import_each_other_without_a_circle() {
    let mut dirs = Vec::new();
    folders(&root().join("src"), &mut dirs);
    let mut circles = Vec::new();
    for dir in dirs {
        let names = siblings(&dir);
        let graph: BTreeMap<String, BTreeSet<String>> = names
            .iter()
            .map(|(name, path)| (name.clone(), edges(&dir, path, &names)))
            .collect();
        if let Some(c) = find_circle(&graph) {
            circles.push(format!("{}: {}", rel(&dir), c.join(" -> ")));
        }
    }
    assert!(
        circles.is_empty(),
        "break these import circles (move what both need into a module below them): {circles:#?}"
    );
}

#[test]
fn the_circle_finder_sees_grouped_imports_and_circles() {
    assert_eq!(
        first_segments("{imports::{a, b}, push, Flow}"),
        vec!["imports", "push", "Flow"]
    );
    assert_eq!(first_segments("push::{Flow, step};"), vec!["push"]);
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    g.insert("c".to_owned(), BTreeSet::new());
    assert_eq!(find_circle(&g), None);
    g.get_mut("c").unwrap().insert("a".to_owned());
    assert_eq!(
        find_circle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
