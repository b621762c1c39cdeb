//! The layers under `src/` follow the order ARCHITECTURE.md documents on its `Layer order:`
//! line: a file names only its own layer or layers before it (`crate::x` paths, `use crate::{x,
//! …}` groups, and `l2d::x` in the binary), and within a layer folder a module names only the
//! modules its `mod.rs` declares before it. So the graph has no cycle, and an upward import, a
//! folder the document does not place, or a long file without its reason fails this test.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ORDER_PREFIX: &str = "Layer order:";
/// Files longer than this say why at their top, on a `//! Long because:` line.
const LONG_FILE_LINES: usize = 800;
const LONG_REASON: &str = "//! Long because:";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The documented order: the names on ARCHITECTURE.md's `Layer order:` line, split on `→`.
fn documented_order(text: &str) -> Vec<String> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(ORDER_PREFIX))
        .expect("ARCHITECTURE.md has a `Layer order:` line");
    line.split('→')
        .map(|m| m.trim().trim_matches('`').to_string())
        .collect()
}

/// One source file's place: its layer (the folder under `src/`, or the file's stem for a
/// file directly under it) and its module within a layer folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    layer: String,
    module: Option<String>,
}

fn place(src: &Path, file: &Path) -> Place {
    let rel = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    match parts.as_slice() {
        [single] => Place {
            layer: single.clone(),
            module: None,
        },
        [layer, module, ..] => Place {
            layer: layer.clone(),
            module: (module != "mod").then(|| module.clone()),
        },
        [] => unreachable!(),
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Each path `x::y` named after `prefix` (`crate::` or `l2d::`) in `text`, as `(x, y)` (`y`
/// empty when the path stops at `x`), from plain paths and `use prefix{x::…, y}` groups;
/// sorted, deduplicated.
fn references(text: &str, prefix: &str) -> Vec<(String, String)> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let path = |s: &str| -> (String, String) {
        let first = ident(s);
        let rest = s[first.len()..]
            .strip_prefix("::")
            .map(ident)
            .unwrap_or_default();
        (first, rest)
    };
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        if text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(body.split(',').map(|p| path(p.trim())));
        } else {
            out.push(path(rest));
        }
    }
    out.retain(|(m, _)| !m.is_empty() && m != "self");
    out.sort();
    out.dedup();
    out
}

/// The modules a layer folder's `mod.rs` declares (sorted).
fn declared_modules(mod_rs: &str) -> Vec<String> {
    let mut out: Vec<String> = mod_rs
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect();
    out.sort();
    out
}

/// The order on a `mod.rs`'s `//! Module order:` line (split on `→`).
fn module_order(mod_rs: &str) -> Option<Vec<String>> {
    let line = mod_rs
        .lines()
        .find_map(|l| l.strip_prefix("//! Module order:"))?;
    Some(
        line.split('→')
            .map(|m| m.trim().trim_matches('`').to_string())
            .collect(),
    )
}

/// The violations of `order` by the file at `at` naming `refs` (layer folders' module orders
/// in `modules`).
fn violations(
    at: &Place,
    refs: &[(String, String)],
    order: &[String],
    modules: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let position = |l: &str| order.iter().position(|o| o == l);
    let Some(here) = position(&at.layer) else {
        return vec![format!(
            "`{}` is not in ARCHITECTURE.md's layer order",
            at.layer
        )];
    };
    let mut out = Vec::new();
    for (layer, module) in refs {
        match position(layer) {
            Some(p) if p < here => {}
            Some(p) if p == here => {
                let (Some(own), Some(list)) = (&at.module, modules.get(layer)) else {
                    continue;
                };
                let index = |m: &str| list.iter().position(|x| x == m);
                if let (Some(a), Some(b)) = (index(own), index(module)) {
                    if b >= a && module != own {
                        out.push(format!(
                            "`{layer}::{own}` imports `{layer}::{module}`, declared after it"
                        ));
                    }
                }
            }
            Some(_) => out.push(format!(
                "`{}` imports `{layer}`, a layer after it",
                at.module
                    .as_ref()
                    .map_or(at.layer.clone(), |m| format!("{}::{m}", at.layer))
            )),
            None => {} // an item re-exported at the crate root, not a layer
        }
    }
    out
}

#[test]
fn files_only_import_their_own_layer_and_the_layers_before_it() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let order = documented_order(&doc);
    let src = root().join("src");
    let mut modules = BTreeMap::new();
    let mut found = Vec::new();
    for layer in &order {
        if let Ok(text) = std::fs::read_to_string(src.join(layer).join("mod.rs")) {
            let Some(listed) = module_order(&text) else {
                found.push(format!(
                    "src/{layer}/mod.rs has no `//! Module order:` line"
                ));
                continue;
            };
            let mut sorted = listed.clone();
            sorted.sort();
            if sorted != declared_modules(&text) {
                found.push(format!(
                    "src/{layer}/mod.rs: the module order {listed:?} is not the modules it declares {:?}",
                    declared_modules(&text)
                ));
            }
            modules.insert(layer.clone(), listed);
        }
    }
    let mut layers_seen = Vec::new();
    for file in rust_files(&src) {
        let at = place(&src, &file);
        if at.module.is_none() && ["lib", "main"].contains(&at.layer.as_str()) {
            continue;
        }
        layers_seen.push(at.layer.clone());
        let text = std::fs::read_to_string(&file).unwrap();
        let mut refs = references(&text, "crate::");
        refs.extend(references(&text, "l2d::"));
        found.extend(violations(&at, &refs, &order, &modules));
    }
    for layer in &order {
        if !layers_seen.contains(layer) {
            found.push(format!(
                "`{layer}` is documented but is no file or folder under src/"
            ));
        }
    }
    found.sort();
    found.dedup();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The checker itself: each case is a file's place, what it names, and the violations.
#[test]
fn the_layer_check_catches_upward_imports_and_undocumented_layers() {
    let order: Vec<String> = ["util", "data", "latent", "offline"]
        .map(String::from)
        .to_vec();
    let modules: BTreeMap<String, Vec<String>> = [(
        "latent".to_string(),
        ["memory", "score", "blob"].map(String::from).to_vec(),
    )]
    .into();
    let at = |layer: &str, module: Option<&str>| Place {
        layer: layer.into(),
        module: module.map(String::from),
    };
    let refs = |r: &[(&str, &str)]| -> Vec<(String, String)> {
        r.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    type Refs = Vec<(String, String)>;
    let cases: Vec<(Place, Refs, Vec<&str>)> = vec![
        (
            at("latent", Some("blob")),
            refs(&[("util", "hex"), ("data", "catalog")]),
            vec![],
        ),
        (
            at("latent", Some("blob")),
            refs(&[("latent", "score")]),
            vec![],
        ),
        (
            at("latent", Some("score")),
            refs(&[("latent", "blob")]),
            vec!["`latent::score` imports `latent::blob`, declared after it"],
        ),
        (
            at("data", Some("catalog")),
            refs(&[("offline", "eval")]),
            vec!["`data::catalog` imports `offline`, a layer after it"],
        ),
        (at("util", None), refs(&[("Error", "")]), vec![]),
        (
            at("gadgets", Some("x")),
            refs(&[]),
            vec!["`gadgets` is not in ARCHITECTURE.md's layer order"],
        ),
    ];
    for (place, refs, expected) in cases {
        assert_eq!(
            violations(&place, &refs, &order, &modules),
            expected,
            "{place:?} {refs:?}"
        );
    }
}

#[test]
fn references_are_read_from_paths_and_use_groups() {
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    let cases = [
        (
            "use crate::model::Model;",
            "crate::",
            vec![pair("model", "Model")],
        ),
        (
            "use crate::{latent::blob::Blob, Error};\nlet x = crate::offline::eval::KS;",
            "crate::",
            vec![
                pair("Error", ""),
                pair("latent", "blob"),
                pair("offline", "eval"),
            ],
        ),
        (
            "use l2d::serve::manifest::Manifest;",
            "l2d::",
            vec![pair("serve", "manifest")],
        ),
        ("// not_crate::data here", "crate::", vec![]),
    ];
    for (text, prefix, expected) in cases {
        assert_eq!(references(text, prefix), expected, "{text}");
    }
}

/// Nothing offline reaches the wasm build: the crate root declares `offline` under one
/// `cfg(not(target_arch = "wasm32"))` gate, and no layer the browser runs names it.
#[test]
fn the_offline_layer_is_gated_out_of_the_wasm_build() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let lines: Vec<&str> = lib.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|l| *l == "pub mod offline;")
        .expect("lib.rs declares the offline layer");
    let gate = lines[..at]
        .iter()
        .rev()
        .find(|l| !l.starts_with("///"))
        .unwrap();
    assert_eq!(*gate, "#[cfg(not(target_arch = \"wasm32\"))]");
}

/// A file longer than [`LONG_FILE_LINES`] says why at its top.
#[test]
fn long_files_say_why_they_are_long() {
    let mut offenders = Vec::new();
    for file in rust_files(&root().join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines = text.lines().count();
        let reason = text
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .any(|l| l.starts_with(LONG_REASON));
        if lines > LONG_FILE_LINES && !reason {
            offenders.push(format!("{}: {lines} lines", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "no `{LONG_REASON}` line in:\n{}",
        offenders.join("\n")
    );
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
