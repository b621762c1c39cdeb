//! The module graph under `src/` follows the order ARCHITECTURE.md documents: every library
//! module appears in its "Module order" line, and a module only names modules listed before it
//! (`crate::x` paths, `use crate::{x, …}` groups), so the graph has no cycle. Adding an upward
//! import, or a module the document does not place, fails this test.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeMap;
use std::path::Path;

const ORDER_PREFIX: &str = "Module order:";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The documented order: the names on ARCHITECTURE.md's `Module order:` line, split on `→`.
fn documented_order(text: &str) -> Vec<String> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(ORDER_PREFIX))
        .expect("ARCHITECTURE.md has a `Module order:` line");
    line.split('→')
        .map(|m| m.trim().trim_matches('`').to_string())
        .collect()
}

/// Library modules (files directly under `src/`, but the crate root and the binary) and the
/// crate modules each one names.
fn module_imports(src: &Path) -> BTreeMap<String, Vec<String>> {
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.extension().is_none_or(|e| e != "rs") || name == "lib" || name == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        graph.insert(name, crate_references(&text));
    }
    graph
}

/// Names `x` of every `crate::x` path and `use crate::{x, y::…}` group in `text` (sorted,
/// deduplicated).
fn crate_references(text: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(body.split(',').map(|p| ident(p.trim())));
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out.sort();
    out.dedup();
    out
}

/// The violations of `order` in `graph`: undocumented modules and imports of a module that is
/// not strictly earlier.
fn violations(graph: &BTreeMap<String, Vec<String>>, order: &[String]) -> Vec<String> {
    let position = |m: &str| order.iter().position(|o| o == m);
    let mut out = Vec::new();
    for (module, imports) in graph {
        let Some(at) = position(module) else {
            out.push(format!(
                "`{module}` is not in ARCHITECTURE.md's module order"
            ));
            continue;
        };
        for import in imports {
            match position(import) {
                Some(p) if p < at => {}
                Some(_) => out.push(format!(
                    "`{module}` imports `{import}`, which comes after it"
                )),
                None if graph.contains_key(import) => {}
                None => {} // a re-exported item of the crate root, not a module
            }
        }
    }
    for documented in order {
        if !graph.contains_key(documented) {
            out.push(format!(
                "`{documented}` is documented but is no module under src/"
            ));
        }
    }
    out
}

#[test]
fn modules_only_import_modules_documented_before_them() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let order = documented_order(&doc);
    let graph = module_imports(&root().join("src"));
    let found = violations(&graph, &order);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The checker itself: each case is a graph, an order and the violations it must report.
#[test]
fn the_order_check_catches_upward_imports_and_undocumented_modules() {
    let order: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let graph = |edges: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(m, is)| (m.to_string(), is.iter().map(|s| s.to_string()).collect()))
            .collect()
    };
    type Edges<'a> = &'a [(&'a str, &'a [&'a str])];
    let cases: [(Edges, &[&str]); 4] = [
        (&[("a", &[]), ("b", &["a"]), ("c", &["a", "b"])], &[]),
        (
            &[("a", &["c"]), ("b", &[]), ("c", &[])],
            &["`a` imports `c`, which comes after it"],
        ),
        (
            &[("a", &[]), ("b", &["b"]), ("c", &[])],
            &["`b` imports `b`, which comes after it"],
        ),
        (
            &[("a", &[]), ("b", &[]), ("c", &[]), ("d", &["a"])],
            &["`d` is not in ARCHITECTURE.md's module order"],
        ),
    ];
    for (edges, expected) in cases {
        assert_eq!(violations(&graph(edges), &order), expected, "{edges:?}");
    }
}

#[test]
fn crate_references_are_read_from_paths_and_use_groups() {
    let cases = [
        ("use crate::model::Model;", vec!["model"]),
        (
            "use crate::{blob::Blob, score::top_k};\nlet x = crate::eval::KS;",
            vec!["blob", "eval", "score"],
        ),
        ("// nothing here", vec![]),
    ];
    for (text, expected) in cases {
        assert_eq!(crate_references(text), expected, "{text}");
    }
}

/// No file of the repository points outside it (the project stands alone): no path into the
/// shared folder beside the checkout and no mention of the notes kept there.
#[test]
fn no_file_refers_outside_the_repository() {
    // Spelled in parts, so that this file (which is scanned too) does not contain them.
    let needles = [
        concat!("..", "/", "shared"),
        concat!("REFERENCE", ".md"),
        concat!("TOOLCHAIN", ".md"),
        concat!("STYLE", ".md"),
    ];
    let mut offenders = Vec::new();
    let mut stack = vec![root().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if ![".git", "target", "node_modules", "pkg"].contains(&name.as_str()) {
                    stack.push(path);
                }
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for needle in needles {
                if text.contains(needle) {
                    offenders.push(format!("{}: {needle}", path.display()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}
