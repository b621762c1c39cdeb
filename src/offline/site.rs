//! The rules of `l2d build` (raw log → deployable folder): when a stage may be skipped, and
//! what a deployed site holds.
//!
//! - **Stages** run in [`STAGES`] order. Each has a key: the sha256 of its name, its options
//!   and the key of the stage before it (the first stage hashes its input files instead). A
//!   stage is skipped when `build.json` records it finished with the same key and every output
//!   file it recorded still has the recorded sha256 — never because a file merely exists. So
//!   changing one option reruns exactly that stage and the ones after it.
//! - **The site** (`DIR/site/`) is what a CDN serves: every file the model directory's manifest
//!   lists, copied under a content-hashed name (`model.<hash>.safetensors`), and a
//!   `manifest.json` that names them (`files.*.path`). A new build writes its files first and
//!   the manifest last, and keeps the previous manifest's files, so a browser never gets a
//!   mixed set; older files are deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::serve::manifest::{Manifest, MANIFEST_FILE};
use crate::util::{sha256_hex, write_atomic};

/// The stages of a build, in order.
pub const STAGES: [&str; 8] = [
    "prepare",
    "tokenizer",
    "train",
    "memory",
    "blobs",
    "choose",
    "eval",
    "site",
];

/// The build record in the output directory.
pub const BUILD_FILE: &str = "build.json";

/// What a finished (or started) stage left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// [`stage_key`] of the run.
    pub key: String,
    /// False while the stage runs: an interrupted stage with the same key may resume (training
    /// continues from its checkpoint).
    pub finished: bool,
    /// Output files (relative to the build directory) and their sha256.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// Wall-clock seconds of the run.
    #[serde(default)]
    pub seconds: f64,
}

/// `DIR/build.json`: one record per stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildLog {
    pub stages: BTreeMap<String, StageRecord>,
}

/// Whether a stage runs, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Finished with this key and its outputs unchanged.
    Skip,
    /// Started with this key and interrupted: continue (e.g. from a checkpoint).
    Resume,
    /// Never run with this key.
    Run,
}

/// The key of `stage` given its options and the key before it.
pub fn stage_key(stage: &str, options: &serde_json::Value, upstream: &str) -> String {
    let text = serde_json::json!({ "stage": stage, "options": options, "upstream": upstream });
    sha256_hex(text.to_string().as_bytes())
}

/// sha256 of a file.
pub fn hash_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(sha256_hex(&bytes))
}

/// Every file under `dir` (recursively), sorted, relative to `dir`.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let path = entry.map_err(|e| Error::io(&d, e))?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap_or(&path).to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A key for input files: their names relative to `root` and sha256s.
pub fn inputs_key(root: &Path, files: &[PathBuf]) -> Result<serde_json::Value> {
    let mut out = BTreeMap::new();
    for file in files {
        let name = file.strip_prefix(root).unwrap_or(file);
        out.insert(name.display().to_string(), hash_file(file)?);
    }
    Ok(serde_json::json!(out))
}

impl BuildLog {
    /// `dir/build.json`, or an empty log when the build is new.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(BUILD_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Json {
                file: path.display().to_string(),
                source: e,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Writes `dir/build.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a build log serializes") + "\n";
        write_atomic(&dir.join(BUILD_FILE), text)
    }

    /// Whether `stage` with `key` is skipped, resumed or run: skipped only when it finished
    /// with this key and each recorded output still has its recorded sha256.
    pub fn decide(&self, dir: &Path, stage: &str, key: &str) -> Result<Decision> {
        let Some(record) = self.stages.get(stage).filter(|r| r.key == key) else {
            return Ok(Decision::Run);
        };
        if !record.finished {
            return Ok(Decision::Resume);
        }
        for (file, sha) in &record.outputs {
            let path = dir.join(file);
            if !path.is_file() || &hash_file(&path)? != sha {
                return Ok(Decision::Run);
            }
        }
        Ok(Decision::Skip)
    }

    /// Records that `stage` started with `key` (and saves the log).
    pub fn start(&mut self, dir: &Path, stage: &str, key: &str) -> Result<()> {
        self.stages.insert(
            stage.to_string(),
            StageRecord {
                key: key.to_string(),
                finished: false,
                outputs: BTreeMap::new(),
                seconds: 0.0,
            },
        );
        self.save(dir)
    }

    /// Records that `stage` finished, with its outputs (relative to `dir`) hashed now.
    pub fn finish(
        &mut self,
        dir: &Path,
        stage: &str,
        key: &str,
        outputs: &[PathBuf],
        seconds: f64,
    ) -> Result<()> {
        let mut hashed = BTreeMap::new();
        for file in outputs {
            hashed.insert(file.display().to_string(), hash_file(&dir.join(file))?);
        }
        self.stages.insert(
            stage.to_string(),
            StageRecord {
                key: key.to_string(),
                finished: true,
                outputs: hashed,
                seconds,
            },
        );
        self.save(dir)
    }
}

/// The content-hashed name of a file: `model.safetensors` → `model.<16 hex>.safetensors`.
pub fn hashed_name(name: &str, sha256: &str) -> String {
    let hash = &sha256[..16.min(sha256.len())];
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{hash}.{ext}"),
        _ => format!("{name}.{hash}"),
    }
}

/// Writes `site_dir` from `model_dir` (whose manifest lists what the browser fetches): the
/// files under content-hashed names, then `manifest.json` naming them. Files that neither this
/// manifest nor the previous one names are deleted afterwards. Returns the site's manifest.
pub fn write_site(model_dir: &Path, site_dir: &Path) -> Result<Manifest> {
    let source = model_dir.join(MANIFEST_FILE);
    let text = std::fs::read(&source).map_err(|e| Error::io(&source, e))?;
    let mut manifest = Manifest::from_json(&text, &source.display().to_string())?;
    std::fs::create_dir_all(site_dir).map_err(|e| Error::io(site_dir, e))?;
    let target = site_dir.join(MANIFEST_FILE);
    let previous: BTreeSet<String> = std::fs::read(&target)
        .ok()
        .and_then(|t| Manifest::from_json(&t, "previous site manifest").ok())
        .map(|m| {
            m.files
                .iter()
                .map(|(name, e)| e.url(name).to_string())
                .collect()
        })
        .unwrap_or_default();
    for (name, entry) in manifest.files.iter_mut() {
        let from = model_dir.join(name);
        let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
        let found = sha256_hex(&bytes);
        if found != entry.sha256 {
            return Err(Error::mismatch(
                format!("{}: sha256 of {name}", source.display()),
                &entry.sha256,
                format!("{found} (rerun the stages that write it)"),
            ));
        }
        let hashed = hashed_name(name, &entry.sha256);
        let to = site_dir.join(&hashed);
        if !to.is_file() || hash_file(&to)? != entry.sha256 {
            std::fs::write(&to, &bytes).map_err(|e| Error::io(&to, e))?;
        }
        entry.path = Some(hashed);
    }
    manifest.validate(&target.display().to_string())?;
    write_atomic(&target, manifest.to_json())?;
    let keep: BTreeSet<String> = manifest
        .files
        .iter()
        .map(|(name, e)| e.url(name).to_string())
        .chain(previous)
        .chain(std::iter::once(MANIFEST_FILE.to_string()))
        .collect();
    for file in files_under(site_dir)? {
        let name = file.display().to_string();
        if !keep.contains(&name) {
            let path = site_dir.join(&file);
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(manifest)
}

/// The HTML a shop pastes into a page to show the widget for a site whose manifest is at
/// `manifest_url` (the widget's module URL is where the l2d package is served).
pub fn embed_snippet(widget_url: &str, manifest_url: &str) -> String {
    format!(
        "<script type=\"module\" src=\"{widget_url}\"></script>\n\
         <l2d-recommendations manifest=\"{manifest_url}\" k=\"8\"></l2d-recommendations>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_keep_the_extension() {
        let sha = "0123456789abcdef0123";
        let cases = [
            ("model.safetensors", "model.0123456789abcdef.safetensors"),
            ("memory.blob", "memory.0123456789abcdef.blob"),
            ("LICENSE", "LICENSE.0123456789abcdef"),
            (".hidden", ".hidden.0123456789abcdef"),
        ];
        for (name, hashed) in cases {
            assert_eq!(hashed_name(name, sha), hashed);
        }
    }

    /// Each change to a finished stage and the decision it leads to.
    #[test]
    fn a_stage_is_skipped_only_with_its_key_and_unchanged_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("out.txt"), "one").unwrap();
        let mut log = BuildLog::default();
        let key = stage_key("memory", &serde_json::json!({"batch": 64}), "up");
        assert_eq!(log.decide(root, "memory", &key).unwrap(), Decision::Run);
        log.start(root, "memory", &key).unwrap();
        assert_eq!(log.decide(root, "memory", &key).unwrap(), Decision::Resume);
        log.finish(root, "memory", &key, &["out.txt".into()], 1.0)
            .unwrap();
        let reloaded = BuildLog::load(root).unwrap();
        assert_eq!(reloaded, log);
        type Case = (&'static str, fn(&Path) -> String, Decision);
        let cases: [Case; 4] = [
            (
                "same key",
                |_| stage_key("memory", &serde_json::json!({"batch": 64}), "up"),
                Decision::Skip,
            ),
            (
                "another option",
                |_| stage_key("memory", &serde_json::json!({"batch": 32}), "up"),
                Decision::Run,
            ),
            (
                "another upstream",
                |_| stage_key("memory", &serde_json::json!({"batch": 64}), "up2"),
                Decision::Run,
            ),
            (
                "an output changed",
                |root| {
                    std::fs::write(root.join("out.txt"), "two").unwrap();
                    stage_key("memory", &serde_json::json!({"batch": 64}), "up")
                },
                Decision::Run,
            ),
        ];
        for (what, key, decision) in cases {
            let key = key(root);
            assert_eq!(
                reloaded.decide(root, "memory", &key).unwrap(),
                decision,
                "{what}"
            );
        }
    }

    #[test]
    fn a_malformed_build_log_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BUILD_FILE), "{").unwrap();
        let err = BuildLog::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(BUILD_FILE), "{err}");
    }
}
