//! A deployed model directory: the files a page fetches, written so that a reader never sees
//! half of one, and updated with new interactions without retraining (`l2d update`).
//!
//! The update's rules: the memory must be the full train memory of the dataset (its state
//! count equals the train split's sample count, so a memory of another run, or an update
//! applied twice, is refused); the new log's samples are encoded with the unchanged model and
//! appended; every blob the manifest names is rebuilt with its own kind and element type (the
//! memory blob within the download budget, follow weights rebuilt from every train sample);
//! everything is computed before anything is written, the memory first; the manifest is
//! rewritten with its scoring kept; the items parts the new manifest no longer lists are
//! removed.

use std::path::{Path, PathBuf};

use crate::data::dataset::{AppendReport, Dataset, RawLogSpec, Sample, Split};
use crate::error::{Error, Result};
use crate::latent::blob::{Blob, BlobKind};
use crate::latent::follows::{Follows, FollowsFile, FOLLOWS_FILE};
use crate::latent::memory::{Keep, Memory};
use crate::model::{model_fingerprint, Model, ModelFiles, Weights};
use crate::offline::recipe::{build_blob, BlobSpec, FIRST_TIER_BYTES};
use crate::serve::manifest::{FileEntry, Manifest, Scoring, MANIFEST_FILE};
use crate::util::write_atomic;

/// `DIR/manifest.json`, read and validated.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    Manifest::from_json(&text, &path.display().to_string())
}

/// Writes a blob to `path` and its items parts beside it, each atomically, the parts first;
/// returns the bytes of the blob and of the parts.
pub fn write_blob_files(blob: &Blob, path: &Path) -> Result<(usize, usize)> {
    let bytes = blob.to_bytes();
    let parts = blob.items_parts();
    let dir = path.parent().unwrap_or(Path::new("."));
    for (name, part) in blob.items_part_names(parts.len()).iter().zip(&parts) {
        write_atomic(&dir.join(name), part)?;
    }
    write_atomic(path, &bytes)?;
    Ok((bytes.len(), parts.iter().map(Vec::len).sum()))
}

/// The follow weights of the dataset's train samples (the memory's samples).
pub fn train_follows(dataset: &Dataset) -> Result<Follows> {
    let samples = dataset.split(Split::Train)?;
    Follows::from_samples(
        samples.iter().map(|s| (s.history.as_slice(), s.target)),
        dataset.catalog.len(),
    )
    .map_err(|e| {
        Error::invalid(
            format!("the follow weights of {}'s train split", dataset.name),
            e.to_string(),
        )
    })
}

/// How often each item is a train target (popularity, the frequency buckets).
pub fn train_counts(dataset: &Dataset) -> Result<Vec<u32>> {
    let targets: Vec<_> = dataset
        .split(Split::Train)?
        .iter()
        .map(|s| s.target)
        .collect();
    crate::latent::aggregate::item_counts(&targets, dataset.catalog.len())
}

/// Writes `dir/follows.bin` (atomically): the memory blob's follow weights, less their weakest
/// levels until the file and the items parts fit [`FIRST_TIER_BYTES`] (the first tier's
/// download), and the dataset's train-target counts. Returns its bytes; writes nothing (and
/// removes a stale file) when the blob has no follows.
pub fn write_follows_file(dir: &Path, dataset: &Dataset, memory_blob: &Blob) -> Result<usize> {
    let path = dir.join(FOLLOWS_FILE);
    let Some(follows) = &memory_blob.follows else {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        return Ok(0);
    };
    let items = crate::latent::blob::items_bytes(&memory_blob.items);
    let file = FollowsFile {
        items_sha256: memory_blob.items_sha256,
        popularity: train_counts(dataset)?,
        follows: follows.clone(),
    }
    .within((FIRST_TIER_BYTES as usize).saturating_sub(items));
    let bytes = file.to_bytes();
    write_atomic(&path, &bytes)?;
    Ok(bytes.len())
}

/// The bytes a first visit fetches of `dir`'s model files besides the blobs: every model file
/// but `model.safetensors`, and the int8 weights file made from `weights` (its bytes) instead.
pub fn model_files_bytes(dir: &Path, weights: &[u8]) -> Result<u64> {
    let mut total = 0;
    for name in crate::model::MODEL_FILES {
        if name != crate::model::WEIGHTS_FILE {
            let path = dir.join(name);
            total += std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
        }
    }
    Ok(total + crate::model::int8_file::write(weights)?.len() as u64)
}

/// What is left of `budget` for the memory blob once the model files of `dir` (read as
/// `files`) are counted.
pub fn blob_budget(dir: &Path, files: &ModelFiles, budget: u64) -> Result<u64> {
    let fixed = model_files_bytes(dir, &files.weights)?;
    budget.checked_sub(fixed).ok_or_else(|| {
        Error::invalid(
            "budget",
            format!(
                "{budget} bytes is smaller than the model files of {} ({fixed} bytes)",
                dir.display()
            ),
        )
    })
}

/// The int8 weights file of `dir` as `weights` needs it: written from `model.safetensors`
/// under int8 weights (its entry returned), removed under f32.
pub fn write_weights_file(dir: &Path, weights: Weights) -> Result<Option<FileEntry>> {
    let path = dir.join(crate::model::int8_file::INT8_WEIGHTS_FILE);
    if weights != Weights::Int8 {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        return Ok(None);
    }
    let source = dir.join(crate::model::WEIGHTS_FILE);
    let bytes = std::fs::read(&source).map_err(|e| Error::io(&source, e))?;
    let int8 = crate::model::int8_file::write(&bytes)?;
    write_atomic(&path, &int8)?;
    Ok(Some(FileEntry::of(&int8)))
}

/// Writes `dir/manifest.json` for `scoring` (the weights file and the follows file it needs
/// first), describing the directory's files; returns the manifest written.
pub fn write_manifest(
    dir: &Path,
    dataset: &Dataset,
    scoring: Scoring,
    command: &str,
) -> Result<Manifest> {
    write_weights_file(dir, scoring.weights)?;
    let memory_blob = dir.join("memory.blob");
    if memory_blob.exists() {
        write_follows_file(dir, dataset, &Blob::read_file(&memory_blob)?)?;
    }
    let manifest = Manifest::describe(dir, dataset, scoring, command)?;
    write_atomic(&dir.join(MANIFEST_FILE), manifest.to_json())?;
    Ok(manifest)
}

/// Where an update reads and writes.
#[derive(Debug, Clone)]
pub struct UpdatePaths<'a> {
    /// The prepared dataset directory (rewritten with the new samples and items).
    pub dataset: &'a Path,
    /// The deployed model directory (blobs, items parts and manifest rewritten).
    pub model: &'a Path,
    /// The full train memory of the dataset (appended to).
    pub memory: &'a Path,
}

/// What an update did.
#[derive(Debug, Clone)]
pub struct UpdateReport {
    /// What the new log added to the dataset.
    pub import: AppendReport,
    /// Samples encoded and appended to the memory, and their rate (samples per second).
    pub appended: usize,
    pub samples_per_second: f64,
    /// States in the memory after the update.
    pub states: usize,
    /// Each blob rewritten: its path, its bytes and the fraction of the memory it keeps.
    pub blobs: Vec<(PathBuf, usize, f64)>,
    /// Items parts of the previous catalog removed.
    pub removed_parts: usize,
}

/// Appends the interactions (and, with `with_items`, the items) of `log` to a deployed model
/// directory without retraining, by the rules above. `progress(done, total)` follows the
/// encoding of the new samples, in `batch`es.
pub fn update(
    paths: &UpdatePaths,
    log: &RawLogSpec,
    with_items: bool,
    (batch, budget): (usize, u64),
    progress: &mut dyn FnMut(usize, usize),
) -> Result<UpdateReport> {
    let mut dataset = Dataset::read_dir(paths.dataset)?;
    let mut memory = Memory::load(paths.memory)?;
    let train = dataset.split(Split::Train)?.len();
    if memory.len() != train {
        return Err(Error::invalid(
            "memory",
            format!(
                "{} has {} states but {} has {train} train samples: update appends to the full \
                 train memory of this dataset (`l2d memory` without --fraction, after the last \
                 update)",
                paths.memory.display(),
                memory.len(),
                paths.dataset.display()
            ),
        ));
    }
    let manifest = read_manifest(paths.model)?;
    let (import, appended) = dataset.append_log(log, with_items)?;
    let model = Model::load_dir(paths.model)?;
    let train = dataset.split(Split::Train)?;
    let samples: Vec<&Sample> = train[appended].iter().collect();
    let start = std::time::Instant::now();
    let states = Memory::build(&model, &dataset.catalog, &samples, batch, progress)?;
    let samples_per_second = samples.len() as f64 / start.elapsed().as_secs_f64().max(1e-9);
    memory.append(states)?;

    let files = ModelFiles::read_dir(paths.model)?;
    let blob_budget = blob_budget(paths.model, &files, budget)?;
    let follows = train_follows(&dataset)?;
    let mut rebuilt = Vec::new();
    for name in manifest.blobs.values() {
        let path = paths.model.join(name);
        let old = Blob::read_file(&path)?;
        let spec = BlobSpec {
            kind: old.kind,
            dtype: old.matrix.dtype(),
            fraction: 1.0,
            keep: Keep::Newest,
            max_bytes: (old.kind == BlobKind::Memory).then_some(blob_budget),
            follows: old.follows.is_some().then(|| follows.clone()),
        };
        let fingerprint = model_fingerprint(&files);
        let (blob, fraction) =
            build_blob(&memory, &dataset.catalog, fingerprint, Some(&model), &spec)?;
        rebuilt.push((path, blob, fraction));
    }
    // Everything computed: now replace the files, the memory first (its count is what a rerun
    // checks against the dataset's train split).
    crate::util::replace_with(paths.memory, |tmp| memory.save(tmp))?;
    dataset.write_dir(paths.dataset)?;
    let mut blobs = Vec::new();
    for (path, blob, fraction) in &rebuilt {
        let (bytes, _) = write_blob_files(blob, path)?;
        blobs.push((path.clone(), bytes, *fraction));
    }
    let command = manifest.command().unwrap_or("l2d update").to_string();
    let updated = write_manifest(paths.model, &dataset, manifest.scoring.clone(), &command)?;
    let mut removed_parts = 0;
    for name in manifest.items.iter().filter(|n| !updated.items.contains(n)) {
        let path = paths.model.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed_parts += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(UpdateReport {
        import,
        appended: samples.len(),
        samples_per_second,
        states: memory.len(),
        blobs,
        removed_parts,
    })
}
