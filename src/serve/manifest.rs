//! The deployment manifest (`manifest.json`): every file a browser fetches with its sha256 and
//! size, which blob serves which kind, the scoring the browser applies by default (chosen on the
//! valid split, evaluated with `l2d eval --shipped`), and a record of how the model was made.
//! `l2d manifest` writes it, the browser and `l2d eval --shipped` read it: this type is the one
//! definition of its shape and of the scoring defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::prompt::Template;
use crate::error::{Error, Result};
use crate::latent::aggregate::{Density, Mode, ModeKind, ScoreOptions};
use crate::model::int8_file::INT8_WEIGHTS_FILE;
use crate::model::Weights;

/// The manifest format this code writes and reads.
pub const FORMAT: &str = "l2d-manifest-2";
/// File name of the manifest in a model or site directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the shipped variant's test evaluation, listed in the manifest when present.
pub const EVAL_FILE: &str = "eval.json";

/// One fetched file: its sha256 (lower-case hex), size in bytes, and where it is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    #[serde(default)]
    pub bytes: u64,
    /// The URL relative to the manifest when it is not the file's name: a deployed site serves
    /// content-hashed names (`model.3f2a…c1.safetensors`) that a CDN may cache forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl FileEntry {
    /// The entry of `bytes`, served under the file's own name.
    pub fn of(bytes: &[u8]) -> Self {
        FileEntry {
            sha256: crate::util::sha256_hex(bytes),
            bytes: bytes.len() as u64,
            path: None,
        }
    }

    /// Where the file is served, relative to the manifest.
    pub fn url<'a>(&'a self, name: &'a str) -> &'a str {
        self.path.as_deref().unwrap_or(name)
    }
}

/// How the browser ranks unless a page overrides it: the recipe chosen on valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scoring {
    /// `global` (L2D-G), `local` (L2D-L) or `density` (kernel density of the states); an
    /// unknown name is refused when the manifest is read.
    #[serde(default)]
    pub mode: ModeKind,
    /// Neighbours per item for local mode.
    #[serde(default = "default_m")]
    pub m: usize,
    /// Popularity prior weight `w`: rank by `‖h − r‖ − w·ln(1 + states)` (0 = plain L2).
    #[serde(default)]
    pub popularity_prior: f32,
    /// Adaptive local/global: in local mode, items with fewer memory states than this are
    /// scored by their global vector (0 or 1 = every item local).
    #[serde(default)]
    pub local_min_states: u32,
    /// Density mode's kernel bandwidth and count exponent (required by `density`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density: Option<Density>,
    /// Weight λ of the follows term (`crate::latent::follows`: items that followed the history's
    /// items in the memory's samples score `λ·ln(1 + weight)` better; 0 = off, the paper's
    /// scores). Needs a blob with follow weights.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub follows: f32,
    /// How the model's linear layers multiply (`f32` when absent): the query states the
    /// scoring above was chosen and evaluated with.
    #[serde(default, skip_serializing_if = "is_f32")]
    pub weights: Weights,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

fn is_f32(weights: &Weights) -> bool {
    *weights == Weights::F32
}

fn default_m() -> usize {
    20
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            mode: ModeKind::Global,
            m: default_m(),
            popularity_prior: 0.0,
            local_min_states: 0,
            follows: 0.0,
            density: None,
            weights: Weights::F32,
        }
    }
}

impl Scoring {
    /// The decoding mode (`mode` and `m` checked).
    pub fn mode(&self) -> Result<Mode> {
        self.mode.with_m(self.m)
    }

    /// Checks every field: a known mode, `m ≥ 1`, a finite prior ≥ 0, and for density mode
    /// its parameters (and no popularity prior: the count exponent is its prior).
    pub fn validate(&self) -> Result<()> {
        let mode = self.mode()?;
        if self.m == 0 {
            return Err(Error::invalid("scoring.m", "must be ≥ 1"));
        }
        if !self.popularity_prior.is_finite() || self.popularity_prior < 0.0 {
            return Err(Error::invalid(
                "scoring.popularity_prior",
                format!("{} (expected a finite number ≥ 0)", self.popularity_prior),
            ));
        }
        if !self.follows.is_finite() || self.follows < 0.0 {
            return Err(Error::invalid(
                "scoring.follows",
                format!("{} (expected a finite number ≥ 0)", self.follows),
            ));
        }
        if let Some(density) = &self.density {
            density.validate()?;
        }
        if mode == Mode::Density {
            if self.density.is_none() {
                return Err(Error::invalid(
                    "scoring.density",
                    "missing: density mode needs a bandwidth and a count exponent",
                ));
            }
            if self.popularity_prior != 0.0 {
                return Err(Error::invalid(
                    "scoring.popularity_prior",
                    format!(
                        "{} with density mode (expected 0: its count exponent is the prior)",
                        self.popularity_prior
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The scoring options besides the mode, validated: what the representations apply.
    pub fn options(&self) -> Result<ScoreOptions> {
        self.validate()?;
        Ok(ScoreOptions {
            popularity_prior: self.popularity_prior,
            local_min_states: self.local_min_states,
            density: self.density,
            follows: self.follows,
        })
    }

    /// A short label of the recipe, e.g. `L2D-L (M=10) [prior=0.5, local≥3]`.
    pub fn label(&self) -> String {
        let mut label = match (self.mode(), self.density) {
            (Ok(Mode::Local { m }), _) => format!("L2D-L (M={m})"),
            (Ok(Mode::Density), Some(d)) if d.cold_states != 1.0 => format!(
                "density (bandwidth={}, β={}, cold={})",
                d.bandwidth, d.count_exponent, d.cold_states
            ),
            (Ok(Mode::Density), Some(d)) => format!(
                "density (bandwidth={}, β={})",
                d.bandwidth, d.count_exponent
            ),
            _ => "L2D-G".to_string(),
        };
        let mut extras = Vec::new();
        if self.popularity_prior != 0.0 {
            extras.push(format!("prior={}", self.popularity_prior));
        }
        if self.local_min_states > 1 && self.mode == ModeKind::Local {
            extras.push(format!("local≥{}", self.local_min_states));
        }
        if self.follows != 0.0 {
            extras.push(format!("follows={}", self.follows));
        }
        if self.weights != Weights::F32 {
            extras.push(format!("{} weights", self.weights.name()));
        }
        if !extras.is_empty() {
            label += &format!(" [{}]", extras.join(", "));
        }
        label
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The model fingerprint (hex) every blob must carry.
    #[serde(default)]
    pub model_fingerprint: String,
    /// The prompt template of the model.
    #[serde(default)]
    pub template: Option<Template>,
    /// Every fetched file by name (relative to the manifest's URL).
    pub files: BTreeMap<String, FileEntry>,
    /// Blob file per kind: `global`, `memory`.
    pub blobs: BTreeMap<String, String>,
    /// The items parts (ids and titles) the blobs share, in order: a page fetches all of them,
    /// whatever it shows.
    #[serde(default)]
    pub items: Vec<String>,
    /// The follows file (`follows.bin`: follow weights and popularity), which a page ranks with
    /// before the model has loaded (the widget's first tier); absent in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// The default scoring.
    #[serde(default)]
    pub scoring: Scoring,
    /// The dataset the model and blobs were built from (record only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<serde_json::Value>,
    /// How the model was trained (record only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
}

impl Manifest {
    /// Parses and validates manifest text; `source` names it in errors.
    pub fn from_json(text: &[u8], source: &str) -> Result<Self> {
        let manifest: Manifest = serde_json::from_slice(text).map_err(|e| Error::Json {
            file: source.into(),
            source: e,
        })?;
        manifest.validate(source)?;
        Ok(manifest)
    }

    /// Checks the format, every sha256, that each blob is a listed file, and the scoring.
    pub fn validate(&self, source: &str) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::mismatch(
                format!("{source}: format"),
                format!("\"{FORMAT}\""),
                format!("{:?}", self.format),
            ));
        }
        for (name, entry) in &self.files {
            let hex = entry.sha256.len() == 64
                && entry
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                return Err(Error::mismatch(
                    format!("{source}: files.{name}.sha256"),
                    "64 lower-case hex digits",
                    format!("{:?}", entry.sha256),
                ));
            }
        }
        for (name, entry) in &self.files {
            if let Some(path) = &entry.path {
                let relative = !path.is_empty()
                    && !path.starts_with('/')
                    && !path.contains("://")
                    && !path.contains('\\')
                    && path.split('/').all(|part| part != ".." && !part.is_empty());
                if !relative {
                    return Err(Error::mismatch(
                        format!("{source}: files.{name}.path"),
                        "a relative URL below the manifest's directory",
                        format!("{path:?}"),
                    ));
                }
            }
        }
        // Every file the manifest names by role is one it lists (field, file).
        let named = self
            .blobs
            .iter()
            .map(|(kind, file)| (format!("blobs.{kind}"), file))
            .chain(
                self.items
                    .iter()
                    .enumerate()
                    .map(|(i, file)| (format!("items[{i}]"), file)),
            )
            .chain(
                self.follows
                    .iter()
                    .map(|file| ("follows".to_string(), file)),
            );
        for (field, file) in named {
            if !self.files.contains_key(file) {
                return Err(Error::mismatch(
                    format!("{source}: {field}"),
                    "a file listed in `files`",
                    format!("{file:?}"),
                ));
            }
        }
        if !self.blobs.is_empty() && self.items.is_empty() {
            return Err(Error::mismatch(
                format!("{source}: items"),
                "the items parts of the blobs (ids and titles)",
                "none",
            ));
        }
        self.scoring.validate().map_err(|e| match e {
            Error::Invalid { what, message } => Error::Invalid {
                what: format!("{source}: {what}"),
                message,
            },
            other => other,
        })
    }

    /// The file a blob kind is served from.
    pub fn blob_file(&self, kind: &str, source: &str) -> Result<&str> {
        self.blobs.get(kind).map(String::as_str).ok_or_else(|| {
            Error::mismatch(
                format!("{source}: blobs"),
                format!("a `{kind}` blob"),
                format!("{:?}", self.blobs.keys().collect::<Vec<_>>()),
            )
        })
    }

    /// Every file a page loading blob `kind` fetches, in the order it fetches them: the model
    /// files, the blob, then every items part. The list never depends on a history.
    pub fn fetched_files(&self, kind: &str, source: &str) -> Result<Vec<&str>> {
        let blob = self.blob_file(kind, source)?;
        Ok(crate::model::MODEL_FILES
            .iter()
            .map(|&name| match name {
                crate::model::WEIGHTS_FILE => self.weights_file(),
                other => other,
            })
            .chain(std::iter::once(blob))
            .chain(self.items.iter().map(String::as_str))
            .collect())
    }

    /// The weights file a page fetches: the int8 weights file when the scoring multiplies
    /// int8 weights and the manifest lists it (a manifest from before that file existed does
    /// not), else `model.safetensors`.
    pub fn weights_file(&self) -> &'static str {
        if self.scoring.weights == Weights::Int8 && self.files.contains_key(INT8_WEIGHTS_FILE) {
            INT8_WEIGHTS_FILE
        } else {
            crate::model::WEIGHTS_FILE
        }
    }

    /// The model files of deployment directory `dir` as a page gets them (the weights file
    /// [`Manifest::weights_file`] names).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn model_files(&self, dir: &std::path::Path) -> Result<crate::model::ModelFiles> {
        let mut files = crate::model::ModelFiles::read_dir(dir)?;
        if self.weights_file() != crate::model::WEIGHTS_FILE {
            let path = dir.join(self.weights_file());
            files.weights = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(files)
    }

    /// The entry of a listed file.
    pub fn file(&self, name: &str, source: &str) -> Result<&FileEntry> {
        self.files.get(name).ok_or_else(|| {
            Error::mismatch(
                format!("{source}: files"),
                format!("an entry for {name}"),
                "none",
            )
        })
    }

    /// The manifest of a model directory: every file the browser fetches (model files, the
    /// blobs present, `eval.json` when present) with its sha256 and size, `scoring`, and how
    /// the model was made (from `train.json` and `dataset`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn describe(
        dir: &std::path::Path,
        dataset: &crate::data::dataset::Dataset,
        scoring: Scoring,
        command: &str,
    ) -> Result<Self> {
        use crate::latent::follows::{FollowsFile, FOLLOWS_FILE};
        use crate::model::{model_fingerprint, ModelFiles, ModelMeta, MODEL_FILES};
        scoring.validate()?;
        let model = ModelFiles::read_dir(dir)?;
        let mut names: Vec<String> = MODEL_FILES.iter().map(|s| s.to_string()).collect();
        if scoring.weights == Weights::Int8 {
            check_int8_file(dir, &model.weights)?;
            names.push(INT8_WEIGHTS_FILE.into());
        }
        let mut blobs = BTreeMap::new();
        let mut items: Option<(String, [u8; 32])> = None;
        for kind in ["global", "memory"] {
            let name = format!("{kind}.blob");
            let path = dir.join(&name);
            if path.exists() {
                let blob = crate::latent::blob::Blob::read_file(&path)?;
                match &items {
                    Some((first, sha)) if *sha != blob.items_sha256 => {
                        return Err(Error::invalid(
                            dir.display().to_string(),
                            format!("{first} and {name} were built from different catalogs (their items sha256 differ): rebuild both from one dataset"),
                        ))
                    }
                    Some(_) => {}
                    None => items = Some((name.clone(), blob.items_sha256)),
                }
                blobs.insert(kind.to_string(), name.clone());
                names.push(name);
            }
        }
        let follows = match (&items, dir.join(FOLLOWS_FILE)) {
            (Some((first, sha)), path) if path.exists() => {
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                let file = FollowsFile::from_bytes(&bytes)
                    .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
                if file.items_sha256 != *sha {
                    return Err(Error::invalid(
                        dir.display().to_string(),
                        format!("{first} and {FOLLOWS_FILE} were built from different catalogs (their items sha256 differ): rebuild both from one dataset"),
                    ));
                }
                names.push(FOLLOWS_FILE.into());
                Some(FOLLOWS_FILE.to_string())
            }
            _ => None,
        };
        let items = items
            .map(|(_, sha)| crate::latent::blob::items_parts_in(dir, &sha))
            .unwrap_or_default();
        names.extend(items.iter().cloned());
        if dir.join(EVAL_FILE).exists() {
            names.push(EVAL_FILE.into());
        }
        let mut files = BTreeMap::new();
        for name in names {
            let path = dir.join(&name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            files.insert(name, FileEntry::of(&bytes));
        }
        let meta = ModelMeta::from_json(&model.meta, "l2d.json")?;
        let train: serde_json::Value = std::fs::read(dir.join("train.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        let counts: serde_json::Map<String, serde_json::Value> = dataset
            .counts()
            .iter()
            .map(|(s, c)| (s.name().to_string(), serde_json::json!(c)))
            .collect();
        let manifest = Manifest {
            format: FORMAT.into(),
            model_fingerprint: model_fingerprint(&model)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            template: Some(meta.template),
            files,
            blobs,
            items,
            follows,
            scoring,
            dataset: Some(serde_json::json!({
                "name": dataset.name, "items": dataset.catalog.len(), "samples": counts
            })),
            training: Some(serde_json::json!({
                "command": command,
                "seed": train["config"]["seed"],
                "config": train["config"],
                "steps": train["step"],
                "target_tokens": train["tokens"],
                "seconds": train["seconds"],
                "best_valid_loss": train["best_valid_loss"],
                "best_valid_recall": train["best_valid_recall"],
                "best_step": train["best_step"],
                "stopped_early_at": train["stopped_early_at"],
                "unigram_valid_loss": train["unigram_valid_loss"],
                "final_train_loss": train["history"].as_array().and_then(|h| h.last()).map(|h| h[1].clone()),
                "epoch_changes": train["epoch_changes"],
            })),
        };
        manifest.validate("manifest")?;
        Ok(manifest)
    }

    /// The command recorded as having made the model (`training.command`), if any.
    pub fn command(&self) -> Option<&str> {
        self.training.as_ref().and_then(|t| t["command"].as_str())
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest serializes") + "\n"
    }
}

/// Checks that DIR's int8 weights file exists and was made from `weights` (DIR's
/// `model.safetensors`): a stale one would load a model the blobs were not built with.
#[cfg(not(target_arch = "wasm32"))]
fn check_int8_file(dir: &std::path::Path, weights: &[u8]) -> Result<()> {
    use crate::model::WEIGHTS_FILE;
    use crate::util::{hex, sha256_hex};
    let path = dir.join(INT8_WEIGHTS_FILE);
    let hint = "`l2d manifest --weights int8` writes it";
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::mismatch(
            path.display().to_string(),
            format!("the int8 weights file int8 weights need ({hint})"),
            e,
        )
    })?;
    let source = crate::model::int8_file::source_sha256(&bytes)?.map(|s| hex(&s));
    let own = sha256_hex(weights);
    if source.as_deref() != Some(own.as_str()) {
        return Err(Error::mismatch(
            format!("{}: the source model", path.display()),
            format!("{WEIGHTS_FILE} beside it (sha256 {own}; {hint})"),
            source.map_or("no int8 weights metadata".into(), |s| format!("sha256 {s}")),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Manifest {
        let sha = "a".repeat(64);
        Manifest {
            format: FORMAT.into(),
            model_fingerprint: sha.clone(),
            template: Some(Template::Compact),
            files: [
                (
                    "memory.blob".to_string(),
                    FileEntry {
                        sha256: sha.clone(),
                        bytes: 3,
                        path: Some("memory.0123456789abcdef.blob".into()),
                    },
                ),
                (
                    "items-0123456789abcdef-0.jsonl".to_string(),
                    FileEntry {
                        sha256: sha,
                        bytes: 40,
                        path: None,
                    },
                ),
            ]
            .into(),
            blobs: [("memory".to_string(), "memory.blob".to_string())].into(),
            items: vec!["items-0123456789abcdef-0.jsonl".into()],
            follows: None,
            scoring: Scoring::default(),
            dataset: None,
            training: None,
        }
    }

    #[test]
    fn a_manifest_round_trips_through_json() {
        let m = valid();
        assert_eq!(Manifest::from_json(m.to_json().as_bytes(), "m").unwrap(), m);
    }

    /// Each broken field, and the words its error must contain.
    #[test]
    fn invalid_manifests_are_refused_naming_the_field() {
        type Edit = fn(&mut Manifest);
        let cases: [(Edit, &str); 18] = [
            (|m| m.format = "l2d-manifest-0".into(), "format"),
            (
                |m| m.files.get_mut("memory.blob").unwrap().sha256 = "xyz".into(),
                "files.memory.blob.sha256",
            ),
            (
                |m| {
                    m.blobs.insert("global".into(), "nope.blob".into());
                },
                "blobs.global",
            ),
            (|m| m.items.push("items-x-1.jsonl".into()), "items[1]"),
            (|m| m.items.clear(), "items"),
            (|m| m.follows = Some("follows.bin".into()), "follows"),
            (
                |m| m.files.get_mut("memory.blob").unwrap().path = Some("../x.blob".into()),
                "files.memory.blob.path",
            ),
            (
                |m| m.files.get_mut("memory.blob").unwrap().path = Some("/x.blob".into()),
                "files.memory.blob.path",
            ),
            (
                |m| {
                    m.files.get_mut("memory.blob").unwrap().path =
                        Some("https://cdn.example/x.blob".into())
                },
                "files.memory.blob.path",
            ),
            (
                |m| {
                    m.scoring.mode = ModeKind::Local;
                    m.scoring.m = 0
                },
                "m",
            ),
            (
                |m| m.scoring.popularity_prior = f32::NAN,
                "scoring.popularity_prior",
            ),
            (
                |m| m.scoring.popularity_prior = -1.0,
                "scoring.popularity_prior",
            ),
            (|m| m.scoring.follows = -0.5, "scoring.follows"),
            (|m| m.scoring.follows = f32::INFINITY, "scoring.follows"),
            (|m| m.scoring.mode = ModeKind::Density, "scoring.density"),
            (
                |m| {
                    m.scoring.mode = ModeKind::Density;
                    m.scoring.density = Some(Density::new(0.0, 0.25))
                },
                "bandwidth",
            ),
            (
                |m| m.scoring.density = Some(Density::new(30.0, 2.0)),
                "count exponent",
            ),
            (
                |m| {
                    m.scoring.mode = ModeKind::Density;
                    m.scoring.popularity_prior = 0.5;
                    m.scoring.density = Some(Density::new(30.0, 0.25))
                },
                "scoring.popularity_prior",
            ),
        ];
        for (edit, field) in cases {
            let mut m = valid();
            edit(&mut m);
            let err = m.validate("site/manifest.json").unwrap_err().to_string();
            assert!(
                err.contains(field) && err.contains("site/manifest.json"),
                "{field}: {err}"
            );
        }
    }

    /// A mode name the manifest does not know is refused when the file is read, naming the
    /// file, the name and the names it expects; the known names read as before.
    #[test]
    fn scoring_modes_read_by_name() {
        let text = |mode: &str| {
            let mut value: serde_json::Value = serde_json::from_str(&valid().to_json()).unwrap();
            value["scoring"]["mode"] = mode.into();
            value.to_string()
        };
        for (name, kind) in [
            ("global", ModeKind::Global),
            ("local", ModeKind::Local),
            ("density", ModeKind::Density),
        ] {
            let read = Manifest::from_json(text(name).as_bytes(), "m.json");
            // Density needs its parameters; the name itself was read.
            match read {
                Ok(m) => assert_eq!(m.scoring.mode, kind),
                Err(e) => assert!(e.to_string().contains("density"), "{name}: {e}"),
            }
        }
        let err = Manifest::from_json(text("sideways").as_bytes(), "m.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.json") && err.contains("sideways") && err.contains("density"),
            "{err}"
        );
    }

    #[test]
    fn scoring_defaults_and_labels() {
        let cases = [
            (Scoring::default(), "L2D-G"),
            (
                Scoring {
                    mode: ModeKind::Local,
                    m: 10,
                    ..Scoring::default()
                },
                "L2D-L (M=10)",
            ),
            (
                Scoring {
                    mode: ModeKind::Local,
                    m: 10,
                    popularity_prior: 0.5,
                    local_min_states: 3,
                    density: None,
                    follows: 0.0,
                    weights: Weights::F32,
                },
                "L2D-L (M=10) [prior=0.5, local≥3]",
            ),
            (
                Scoring {
                    mode: ModeKind::Density,
                    density: Some(Density::new(34.5, 0.25)),
                    follows: 0.5,
                    weights: Weights::Int8,
                    ..Scoring::default()
                },
                "density (bandwidth=34.5, β=0.25) [follows=0.5, int8 weights]",
            ),
            (
                Scoring {
                    mode: ModeKind::Density,
                    density: Some(Density::new(34.5, 0.25)),
                    weights: Weights::Int8,
                    ..Scoring::default()
                },
                "density (bandwidth=34.5, β=0.25) [int8 weights]",
            ),
            (
                Scoring {
                    mode: ModeKind::Density,
                    density: Some(Density::new(34.5, 0.25)),
                    ..Scoring::default()
                },
                "density (bandwidth=34.5, β=0.25)",
            ),
        ];
        for (scoring, label) in cases {
            assert_eq!(scoring.label(), label);
        }
        let parsed: Scoring = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, Scoring::default());
        // f32 weights are left out of the manifest (older manifests read the same); others
        // are written and read back; an unknown name is refused.
        // So is a follows weight of 0.
        let default = serde_json::to_string(&Scoring::default()).unwrap();
        assert!(
            !default.contains("weights") && !default.contains("follows"),
            "{default}"
        );
        let follows = Scoring {
            follows: 0.25,
            ..Scoring::default()
        };
        let text = serde_json::to_string(&follows).unwrap();
        assert_eq!(serde_json::from_str::<Scoring>(&text).unwrap(), follows);
        let int8 = Scoring {
            weights: Weights::Int8,
            ..Scoring::default()
        };
        let text = serde_json::to_string(&int8).unwrap();
        assert!(text.contains(r#""weights":"int8""#), "{text}");
        assert_eq!(serde_json::from_str::<Scoring>(&text).unwrap(), int8);
        assert!(serde_json::from_str::<Scoring>(r#"{"weights":"int4"}"#).is_err());
    }
}
