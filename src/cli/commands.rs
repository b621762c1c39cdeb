//! The subcommands: prepare, tokenizer, train, hidden, generate, memory, blob, eval, choose,
//! bench, recommend, convert, manifest. Each reads its inputs,
//! calls the library and prints; the algorithms live in the library modules.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use l2d::data::catalog::{Catalog, ItemIndex};
use l2d::data::dataset::{Dataset, Sample, Split};
use l2d::data::prompt::{history_titles, truncate_history};
use l2d::latent::blob::Blob;
use l2d::latent::follows::Follows;
use l2d::latent::memory::{subset, Memory};
use l2d::model::{model_fingerprint, Model, ModelFiles};
use l2d::offline::data_parallel::{memory_shard, Workers};
use l2d::offline::recipe::{build_blob, BlobSpec};
use l2d::offline::train::{RunOptions, TrainConfig, TrainState};
use l2d::serve::decode::MAX_TITLE_TOKENS;
use l2d::serve::manifest::Manifest;
use l2d::serve::recommend::{load_blob, Request};
use l2d::util::Shard;

use super::progress::Progress;
use super::{
    BlobArgs, BlobsArgs, ConvertArgs, HiddenArgs, ManifestArgs, MemoryArgs, RecommendArgs,
    TrainArgs, TrainRecipe,
};

pub(super) fn load_dataset(path: &Path) -> Result<Dataset> {
    Dataset::read_dir(path).with_context(|| {
        format!(
            "reading prepared dataset {} (run `l2d prepare` first)",
            path.display()
        )
    })
}

pub(super) fn load_model(path: &Path) -> Result<Model> {
    Model::load_dir(path).with_context(|| format!("loading model {}", path.display()))
}

/// [`load_model`], its linear layers multiplying as `weights` says.
pub(super) fn load_model_with(path: &Path, weights: l2d::model::Weights) -> Result<Model> {
    multiplying(load_model(path)?, weights, path)
}

/// The model of deployment directory `dir` as the page loads it: the manifest's weights file,
/// multiplied as its scoring says.
pub(super) fn load_deployed_model(dir: &Path, manifest: &Manifest) -> Result<Model> {
    let files = manifest
        .model_files(dir)
        .with_context(|| format!("reading the model files of {}", dir.display()))?;
    let model = Model::from_files(&files)
        .with_context(|| format!("loading {}", dir.join(manifest.weights_file()).display()))?;
    multiplying(model, manifest.scoring.weights, dir)
}

/// `model` (loaded from `dir`) with its linear layers multiplying as `weights` says.
pub(super) fn multiplying(
    mut model: Model,
    weights: l2d::model::Weights,
    dir: &Path,
) -> Result<Model> {
    model
        .net
        .set_weights(weights)
        .with_context(|| format!("{} weights for {}", weights.name(), dir.display()))?;
    Ok(model)
}

pub(super) fn load_memory(path: &Path) -> Result<Memory> {
    Memory::load(path)
        .with_context(|| format!("loading memory {} (run `l2d memory` first)", path.display()))
}

/// Resolves history entries (ids first, then exact titles); unknown entries are an error
/// naming them.
pub(super) fn resolve_history(catalog: &Catalog, entries: &[String]) -> Result<Vec<ItemIndex>> {
    let mut unknown = Vec::new();
    let items: Vec<ItemIndex> = entries
        .iter()
        .filter_map(|e| {
            let found = catalog.resolve(e);
            if found.is_none() {
                unknown.push(e.as_str());
            }
            found
        })
        .collect();
    if !unknown.is_empty() {
        bail!("history entries that are neither an item id nor an exact title: {unknown:?}");
    }
    Ok(items)
}

/// How often each item is a train target (the frequency buckets and popularity).
pub(super) fn train_counts(dataset: &Dataset) -> Result<Vec<u32>> {
    Ok(l2d::offline::deploy::train_counts(dataset)?)
}

/// The follow weights of the dataset's train samples (the memory's samples).
pub(super) fn train_follows(dataset: &Dataset) -> Result<Follows> {
    Ok(l2d::offline::deploy::train_follows(dataset)?)
}

/// What the browser loads by default from a model directory: its manifest and the memory blob
/// the manifest names.
pub(super) struct Shipped {
    pub(super) manifest_path: PathBuf,
    pub(super) manifest: Manifest,
    pub(super) blob_path: PathBuf,
    pub(super) blob: Blob,
}

/// MODEL/manifest.json, parsed and validated, with its path.
pub(super) fn load_manifest(model_dir: &Path) -> Result<(PathBuf, Manifest)> {
    let path = model_dir.join(l2d::serve::manifest::MANIFEST_FILE);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = Manifest::from_json(&text, &path.display().to_string())?;
    Ok((path, manifest))
}

/// A blob file and its items parts, read and verified.
pub(super) fn read_blob_file(path: &Path) -> Result<Blob> {
    Blob::read_file(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes a blob to `path` and its items parts beside it; returns the bytes of both.
pub(super) fn write_blob_files(blob: &Blob, path: &Path) -> Result<(usize, usize)> {
    l2d::offline::deploy::write_blob_files(blob, path)
        .with_context(|| format!("writing {}", path.display()))
}

pub(super) fn load_shipped(model_dir: &Path) -> Result<Shipped> {
    let (manifest_path, manifest) = load_manifest(model_dir)?;
    let blob_path = model_dir.join(manifest.blob_file("memory", "manifest")?);
    let blob = read_blob_file(&blob_path)?;
    Ok(Shipped {
        manifest_path,
        manifest,
        blob_path,
        blob,
    })
}

/// Prompts per forward pass when encoding evaluation queries.
pub(super) const QUERY_BATCH: usize = 64;

/// Hidden states of `samples`' histories, with a progress bar.
pub(super) fn encode_samples(
    model: &Model,
    catalog: &Catalog,
    samples: &[&Sample],
    batch: usize,
    what: &str,
) -> Result<(Memory, f64)> {
    let mut bar = Progress::new(samples.len(), what);
    let start = Instant::now();
    let workers = Workers::every_core()?;
    let (states, _) = memory_shard(
        &workers,
        model,
        catalog,
        samples,
        batch,
        Shard::WHOLE,
        &mut |done, _| bar.set_position(done),
    )?;
    bar.finish();
    let rate = samples.len() as f64 / start.elapsed().as_secs_f64();
    Ok((states, rate))
}

/// The dataset, model and resolved history a `hidden` or `generate` command works on.
pub(super) fn history_inputs(args: &HiddenArgs) -> Result<(Dataset, Model, Vec<ItemIndex>)> {
    let dataset = load_dataset(&args.io.dataset)?;
    let model = load_model(&args.io.model)?;
    let history = resolve_history(&dataset.catalog, &args.history)?;
    Ok((dataset, model, history))
}

pub fn hidden(args: HiddenArgs) -> Result<()> {
    let (dataset, model, history) = history_inputs(&args)?;
    let titles = history_titles(&dataset.catalog, &history);
    let prompt = model.template.prompt(&titles);
    let ids = model.tokenizer.encode(&prompt)?;
    let hidden = model
        .last_hidden_batch(std::slice::from_ref(&ids))?
        .remove(0);
    let out = serde_json::json!({
        "model": args.io.model.display().to_string(),
        "history": truncate_history(&history).iter().map(|&i| dataset.catalog.item(i).id).collect::<Vec<_>>(),
        "prompt": prompt,
        "token_ids": ids,
        "hidden": hidden,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub fn generate(args: HiddenArgs) -> Result<()> {
    let (dataset, model, history) = history_inputs(&args)?;
    let titles = history_titles(&dataset.catalog, &history);
    let text = l2d::serve::decode::greedy(&model, &model.prompt_ids(&titles)?, MAX_TITLE_TOKENS)?;
    let matches = dataset.catalog.indices_with_title(&text);
    println!("history: {titles:?}");
    println!("greedy:  {text:?}");
    match matches.first() {
        Some(&i) => println!("a catalog title (item id {})", dataset.catalog.item(i).id),
        None => println!("not a catalog title"),
    }
    Ok(())
}

pub fn memory(args: MemoryArgs) -> Result<()> {
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if !args.merge.is_empty() {
        let shards = args
            .merge
            .iter()
            .map(|p| {
                Memory::load_shard(p).with_context(|| format!("reading shard {}", p.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let memory = Memory::merge(&shards)?;
        memory
            .save(&args.out)
            .with_context(|| format!("writing {}", args.out.display()))?;
        println!(
            "wrote {}: {} states × {} from {} shards",
            args.out.display(),
            memory.len(),
            memory.dim,
            shards.len()
        );
        return Ok(());
    }
    let dataset = load_dataset(&args.io.dataset)?;
    let model = load_model(&args.io.model)?;
    let split = args.split;
    let encoded = dataset.split(split)?;
    let keep = subset(encoded.len(), args.fraction, args.seed)?;
    let samples: Vec<&Sample> = keep.iter().map(|&i| &encoded[i]).collect();
    if let Some(shard) = &args.shard {
        let shard: l2d::util::Shard = shard.parse()?;
        let mut bar = Progress::new(0, "samples");
        let start = Instant::now();
        let workers = Workers::every_core()?;
        let (memory, positions) = memory_shard(
            &workers,
            &model,
            &dataset.catalog,
            &samples,
            args.batch,
            shard,
            &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done)
            },
        )?;
        bar.finish();
        memory
            .save_with_positions(&args.out, Some(&positions))
            .with_context(|| format!("writing {}", args.out.display()))?;
        println!(
            "wrote {}: shard {}/{} of {} samples, {} states ({:.0} samples/s)",
            args.out.display(),
            shard.index,
            shard.count,
            samples.len(),
            memory.len(),
            memory.len() as f64 / start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let (memory, rate) = encode_samples(&model, &dataset.catalog, &samples, args.batch, "samples")?;
    memory
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let counts = l2d::latent::aggregate::state_counts(&memory, dataset.catalog.len())?;
    let cold = counts.iter().filter(|&&c| c == 0).count();
    println!(
        "wrote {}: {} states × {} ({:.0} samples/s); {} of {} items have no state (ranked last)",
        args.out.display(),
        memory.len(),
        memory.dim,
        rate,
        cold,
        dataset.catalog.len()
    );
    Ok(())
}

pub fn blob(args: BlobArgs) -> Result<()> {
    let dataset = load_dataset(&args.io.dataset)?;
    let files = ModelFiles::read_dir(&args.io.model)?;
    let full = load_memory(&args.memory)?;
    let kind = args.kind;
    let dtype = args.dtype;
    let model = match args.cold_start {
        super::ColdStart::Last => None,
        super::ColdStart::Title => Some(Model::from_files(&files)?),
    };
    let spec = BlobSpec {
        kind,
        dtype,
        fraction: args.fraction,
        keep: args.keep.with_seed(args.seed),
        max_bytes: args.max_bytes,
        follows: args.follows.then(|| train_follows(&dataset)).transpose()?,
    };
    write_blob(
        &full,
        &dataset.catalog,
        model_fingerprint(&files),
        model.as_ref(),
        &spec,
        &args.out,
    )
}

/// Builds a blob by `spec` and writes it to `out` (atomically), saying what it holds.
pub(super) fn write_blob(
    memory: &Memory,
    catalog: &Catalog,
    fingerprint: [u8; 32],
    model: Option<&Model>,
    spec: &BlobSpec,
    out: &Path,
) -> Result<()> {
    let (blob, fraction) = build_blob(memory, catalog, fingerprint, model, spec)
        .with_context(|| format!("building {}", out.display()))?;
    let (bytes, items) = write_blob_files(&blob, out)?;
    println!(
        "wrote {}: {:?} blob, memory fraction {fraction:.4}, {} rows × {} {:?}, {} items ({} without a state{}), {:.2} MB (+ {:.2} MB of items parts)",
        out.display(),
        spec.kind,
        blob.matrix.rows(),
        blob.matrix.dim(),
        spec.dtype,
        blob.items.len(),
        blob.counts.iter().filter(|&&c| c == 0).count(),
        if blob.cold.is_some() {
            ", given title vectors"
        } else {
            ""
        },
        bytes as f64 / 1e6,
        items as f64 / 1e6
    );
    Ok(())
}

/// What is left of `budget` for the memory blob once the model files of `model_dir` (read
/// as `files`) are counted.
pub(super) fn blob_budget(model_dir: &Path, files: &ModelFiles, budget: u64) -> Result<u64> {
    Ok(l2d::offline::deploy::blob_budget(model_dir, files, budget)?)
}

pub fn blobs(args: BlobsArgs) -> Result<()> {
    let dataset = load_dataset(&args.io.dataset)?;
    let files = ModelFiles::read_dir(&args.io.model)?;
    let model = Model::from_files(&files)?;
    let memory = load_memory(&args.memory)?;
    let budget = blob_budget(&args.io.model, &files, args.budget)?;
    let memory_dtype = args
        .memory_dtype
        .unwrap_or(l2d::offline::recipe::MEMORY_DTYPE);
    let follows = train_follows(&dataset)?;
    for (name, spec) in l2d::offline::recipe::recipe_blobs(budget, memory_dtype, Some(&follows)) {
        write_blob(
            &memory,
            &dataset.catalog,
            model.fingerprint,
            Some(&model),
            &spec,
            &args.io.model.join(name),
        )?;
    }
    Ok(())
}

pub fn recommend(args: RecommendArgs) -> Result<()> {
    let scoring = args.scoring.scoring();
    let model = load_model_with(&args.model, scoring.weights)?;
    let blob = read_blob_file(&args.blob)?;
    let (catalog, mut reps) = load_blob(&model, blob, &args.blob.display().to_string())
        .with_context(|| {
            format!(
                "{} cannot serve {}",
                args.blob.display(),
                args.model.display()
            )
        })?;
    let history = resolve_history(&catalog, &args.history)?;
    let mode = scoring.mode()?;
    reps.apply_scoring(&scoring).context("scoring options")?;
    let exclude = if args.include_history {
        Vec::new()
    } else {
        history.clone()
    };
    let request = Request {
        history: &history,
        mode,
        k: args.k,
        exclude: &exclude,
    };
    let items = l2d::serve::recommend::recommend(&model, &catalog, &reps, &request)?;
    if truncate_history(&history).is_empty() {
        println!("(empty history: the most popular items)");
    }
    for (rank_no, (item, distance)) in items.into_iter().enumerate() {
        let item_ref = catalog.item(item);
        let distance = if distance.is_nan() {
            "-".to_string()
        } else {
            format!("{distance:.4}")
        };
        println!(
            "{:>3}. {:<60} id {:<8} distance {distance}",
            rank_no + 1,
            item_ref.title,
            item_ref.id,
        );
    }
    Ok(())
}

pub fn convert(args: ConvertArgs) -> Result<()> {
    let dtype = match args.dtype.as_str() {
        "f32" => (candle_core::DType::F32, "float32"),
        "f16" => (candle_core::DType::F16, "float16"),
        "bf16" => (candle_core::DType::BF16, "bfloat16"),
        other => bail!("unknown dtype `{other}` (expected f32, f16 or bf16)"),
    };
    let weights = args.model.join(l2d::model::WEIGHTS_FILE);
    let tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu)
        .with_context(|| format!("reading {}", weights.display()))?;
    let converted = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_dtype(dtype.0)?)))
        .collect::<candle_core::Result<std::collections::HashMap<_, _>>>()?;
    candle_core::safetensors::save(&converted, &weights)?;
    let config_path = args.model.join(l2d::model::CONFIG_FILE);
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)
        .with_context(|| format!("parsing {}", config_path.display()))?;
    config["torch_dtype"] = dtype.1.into();
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)? + "\n")?;
    println!(
        "{}: {} tensors now {}, {} bytes",
        weights.display(),
        converted.len(),
        dtype.1,
        std::fs::metadata(&weights)?.len()
    );
    Ok(())
}

pub fn manifest(args: ManifestArgs) -> Result<()> {
    let mut scoring = if args.keep_scoring {
        load_manifest(&args.io.model)
            .context("--keep-scoring")?
            .1
            .scoring
    } else {
        args.scoring.scoring()
    };
    if let Some(weights) = args.scoring.weights {
        scoring.weights = weights;
    }
    let dataset = load_dataset(&args.io.dataset)?;
    write_manifest(&args.io.model, &dataset, scoring, &args.command)
}

/// Writes DIR/manifest.json (`Manifest::describe`, the int8 weights file first when the
/// scoring needs it) and says what it lists.
pub(super) fn write_manifest(
    dir: &Path,
    dataset: &Dataset,
    scoring: l2d::serve::manifest::Scoring,
    command: &str,
) -> Result<()> {
    let manifest = l2d::offline::deploy::write_manifest(dir, dataset, scoring, command)
        .with_context(|| format!("writing the manifest of {}", dir.display()))?;
    let fetched: u64 = manifest.files.values().map(|f| f.bytes).sum();
    println!(
        "wrote {} ({} files, {:.2} MB in all); default scoring {}",
        dir.join(l2d::serve::manifest::MANIFEST_FILE).display(),
        manifest.files.len(),
        fetched as f64 / 1e6,
        manifest.scoring.label()
    );
    Ok(())
}

pub(super) struct TrainBar {
    bar: Progress,
}

impl l2d::offline::train::Progress for TrainBar {
    fn step(&mut self, state: &TrainState, loss: f64, tokens_per_second: f64) {
        self.bar.set_length(state.total_steps);
        self.bar
            .set_message(format!("loss {loss:.3}, {tokens_per_second:.0} tok/s"));
        self.bar.set_position(state.step);
    }

    fn message(&mut self, line: &str) {
        self.bar.println(line);
    }
}

impl TrainRecipe {
    /// The dropout rates the flags ask for: `--dropout` for all four places (else the
    /// recipe's defaults), each overridden by its own flag.
    fn dropout_rates(&self) -> l2d::model::DropoutRates {
        let base = match self.dropout {
            Some(p) => l2d::model::DropoutRates {
                embedding: p,
                attention: p,
                residual: p,
                mlp: p,
            },
            None => TrainConfig::default().dropout,
        };
        l2d::model::DropoutRates {
            embedding: self.dropout_embedding.unwrap_or(base.embedding),
            attention: self.dropout_attention.unwrap_or(base.attention),
            residual: self.dropout_residual.unwrap_or(base.residual),
            mlp: self.dropout_mlp.unwrap_or(base.mlp),
        }
    }

    /// How an invocation runs: `--threads` (default every core) and the caller's resume and
    /// stop.
    pub(super) fn run(&self, resume: bool, until_step: Option<usize>) -> RunOptions {
        RunOptions {
            resume,
            until_step,
            threads: self
                .threads
                .unwrap_or_else(l2d::offline::data_parallel::default_threads),
        }
    }

    /// The training configuration these options give for a train split of `train_samples`.
    pub(super) fn config(&self, train_samples: usize) -> Result<TrainConfig> {
        let recipe = TrainConfig::recipe(train_samples);
        Ok(TrainConfig {
            hidden_size: self.hidden,
            layers: self.layers,
            heads: self.heads,
            intermediate_size: self.intermediate,
            epochs: self.epochs.unwrap_or(recipe.epochs),
            schedule: self.schedule,
            batch_tokens: self.batch_tokens,
            learning_rate: self.lr,
            warmup_steps: self.warmup,
            seed: self.seed,
            eval_every: self.eval_every,
            dropout: self.dropout_rates(),
            label_smoothing: self.label_smoothing,
            history_crop: self.history_crop,
            item_dropout: self.item_dropout,
            select: self.select,
            select_memory_fraction: self.select_memory_fraction,
            select_samples: self.select_samples,
            patience: self.patience,
            ..recipe
        })
    }
}

pub fn train(args: TrainArgs) -> Result<()> {
    let dataset = Dataset::read_dir(&args.dataset)
        .with_context(|| format!("reading {}", args.dataset.display()))?;
    train_model(
        &dataset,
        &args.model,
        &args.recipe.config(dataset.split(Split::Train)?.len())?,
        &args.recipe.run(args.resume, args.until_step),
    )
}

/// Trains (or resumes) a model in `model_dir` with a progress bar, then says what it chose.
pub(super) fn train_model(
    dataset: &Dataset,
    model_dir: &Path,
    cfg: &TrainConfig,
    run: &RunOptions,
) -> Result<()> {
    let mut progress = TrainBar {
        bar: Progress::new(0, "steps"),
    };
    let state = l2d::offline::train::train(dataset, model_dir, cfg, run, &mut progress)
        .with_context(|| format!("training {}", model_dir.display()))?;
    progress.bar.finish();
    let exported = match (state.best_step, cfg.select) {
        (None, _) => "nothing exported yet (no evaluation reached; resume with --resume)".into(),
        (Some(step), l2d::offline::train::Selection::Final) => {
            format!("the weights of step {step} exported (selection: final)")
        }
        (Some(step), _) => match state.best_valid_recall {
            Some(r) => format!("best valid recall {r:.4} at step {step} (exported)"),
            None => format!(
                "best valid loss {:.4} at step {step} (exported)",
                state.best_valid_loss.unwrap_or(f64::NAN)
            ),
        },
    };
    println!(
        "done: {} steps, {} target tokens in {:.0} s; {exported}; unigram valid loss {:.4}",
        state.step, state.tokens, state.seconds, state.unigram_valid_loss
    );
    Ok(())
}
