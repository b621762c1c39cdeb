//! The documentation holds together: every relative link in the repository's Markdown files
//! resolves to a file or folder, `docs/README.md` lists every file under `docs/`, and the README
//! stays a front door (at most 150 lines, its first lines the two commands).
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Files under `dir` (recursively) whose name ends with `suffix`, skipping build output.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if ![".git", "target", "node_modules", "pkg", "fuzz"].contains(&name.as_str()) {
                    stack.push(path);
                }
            } else if name.ends_with(suffix) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The targets of the inline links and images in `text` (`[..](target)`), without titles and
/// outside code spans and fenced blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans: a link inside backticks is an example, not a link.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push(target.to_string());
            rest = &after[end..];
        }
    }
    out
}

/// Whether `target` is a link into the repository (not a web address, mail or in-page anchor).
fn is_relative(target: &str) -> bool {
    !(target.is_empty()
        || target.starts_with('#')
        || target.contains("://")
        || target.starts_with("mailto:"))
}

#[test]
fn link_targets_are_read_from_links_and_images_but_not_code() {
    let cases = [
        (
            "see [a](docs/a.md) and ![b](b.png)",
            vec!["docs/a.md", "b.png"],
        ),
        ("[t](x.md \"title\")", vec!["x.md"]),
        ("`[not](a link)` but [yes](y.md#part)", vec!["y.md#part"]),
        ("```\n[no](fenced.md)\n```\n[after](z.md)", vec!["z.md"]),
        (
            "[web](https://example.com) [anchor](#top)",
            vec!["https://example.com", "#top"],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(link_targets(text), expected, "{text}");
    }
    assert!(!is_relative("https://example.com") && !is_relative("#top"));
    assert!(is_relative("../x.md"));
}

#[test]
fn every_relative_markdown_link_resolves() {
    let mut broken = Vec::new();
    for file in files(root(), ".md") {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in link_targets(&text) {
            if !is_relative(&target) {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = file.parent().unwrap().join(path);
            if !resolved.exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_docs_index_lists_every_file_under_docs() {
    let docs = root().join("docs");
    let index = std::fs::read_to_string(docs.join("README.md")).unwrap();
    let listed: Vec<String> = link_targets(&index);
    let mut missing = Vec::new();
    for file in files(&docs, "") {
        let rel = file
            .strip_prefix(&docs)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if rel != "README.md" && !listed.contains(&rel) {
            missing.push(rel);
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/README.md:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    assert!(lines.len() <= 150, "README.md has {} lines", lines.len());
    let head = lines[..8].join("\n");
    for command in ["scripts/demo.sh", "scripts/test.sh"] {
        assert!(
            head.contains(command),
            "the README's first lines name {command}"
        );
    }
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.contains("scripts/test.sh"),
        ".ci/run calls the README's test command"
    );
    assert!(root().join("CHANGELOG.md").exists());
}
