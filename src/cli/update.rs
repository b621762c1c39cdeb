//! `l2d update`: new interactions and items into a deployed model directory without retraining
//! (memory appended, blobs and manifest rewritten, stale items parts removed).

use std::time::Instant;

use anyhow::{bail, Context, Result};

use l2d::data::dataset::{Sample, Split};
use l2d::latent::blob::BlobKind;
use l2d::latent::memory::Keep;
use l2d::model::{model_fingerprint, ModelFiles};
use l2d::offline::recipe::{build_blob, BlobSpec};

use super::commands::*;
use super::UpdateArgs;

pub fn update(args: UpdateArgs) -> Result<()> {
    let start = Instant::now();
    let mut dataset = load_dataset(&args.dataset)?;
    let mut memory = load_memory(&args.memory)?;
    let train = dataset.split(Split::Train)?.len();
    if memory.len() != train {
        bail!(
            "{} has {} states but {} has {train} train samples: update appends to the full train \
             memory of this dataset (`l2d memory` without --fraction, after the last update)",
            args.memory.display(),
            memory.len(),
            args.dataset.display()
        );
    }
    let (_, manifest) = load_manifest(&args.model)?;
    let spec = args.columns.spec(&args.interactions, args.items.as_deref());
    let (report, appended) = dataset
        .append_log(&spec, args.items.is_some())
        .with_context(|| format!("reading {}", args.interactions.display()))?;
    println!("{report}");
    let model = load_model(&args.model)?;
    let train = dataset.split(Split::Train)?;
    let samples: Vec<&Sample> = train[appended].iter().collect();
    let (states, rate) = encode_samples(&model, &dataset.catalog, &samples, args.batch, "samples")?;
    memory.append(states)?;

    let files = ModelFiles::read_dir(&args.model)?;
    let blob_budget = blob_budget(&args.model, &files, args.budget)?;
    let follows = train_follows(&dataset)?;
    let mut written = Vec::new();
    for name in manifest.blobs.values() {
        let path = args.model.join(name);
        let old = read_blob_file(&path)?;
        let spec = BlobSpec {
            kind: old.kind,
            dtype: old.matrix.dtype(),
            fraction: 1.0,
            keep: Keep::Newest,
            max_bytes: (old.kind == BlobKind::Memory).then_some(blob_budget),
            follows: old.follows.is_some().then(|| follows.clone()),
        };
        let (blob, fraction) = build_blob(
            &memory,
            &dataset.catalog,
            model_fingerprint(&files),
            Some(&model),
            &spec,
        )
        .with_context(|| format!("rebuilding {}", path.display()))?;
        written.push((path, blob, fraction));
    }
    // Everything computed: now replace the files, the memory first (its count is what a rerun
    // checks against the dataset's train split).
    let mut rewritten = Vec::new();
    replace_file(&args.memory, |tmp| Ok(memory.save(tmp)?))?;
    dataset
        .write_dir(&args.dataset)
        .with_context(|| format!("writing {}", args.dataset.display()))?;
    for (path, blob, fraction) in &written {
        let (bytes, _) = write_blob_files(blob, path)?;
        rewritten.push(format!(
            "{} ({:.2} MB, memory fraction {fraction:.4})",
            path.display(),
            bytes as f64 / 1e6
        ));
    }
    let command = manifest.command().unwrap_or("l2d update").to_string();
    write_manifest(&args.model, &dataset, manifest.scoring, &command)?;
    // The items parts of the previous catalog that the new manifest no longer lists (new items
    // give the parts new names): nothing reads them any more.
    let (_, updated) = load_manifest(&args.model)?;
    let mut removed = 0;
    for name in manifest.items.iter().filter(|n| !updated.items.contains(n)) {
        let path = args.model.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    println!(
        "appended {} states ({rate:.0} samples/s) to {} ({} states); rewrote {} and the manifest \
         and removed {removed} stale items part(s) in {:.1} s",
        samples.len(),
        args.memory.display(),
        memory.len(),
        rewritten.join(", "),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
