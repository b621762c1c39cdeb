//! The subcommands: prepare, tokenizer, train, hidden, generate, memory, blob, eval, choose,
//! bench, recommend, convert, manifest. Each reads its inputs,
//! calls the library and prints; the algorithms live in the library modules.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use l2d::aggregate::Geometry;
use l2d::bench;
use l2d::blob::{Blob, BlobKind};
use l2d::catalog::{Catalog, ItemIndex};
use l2d::dataset::{self, Dataset, RawLogSpec, Sample, Split};
use l2d::decode::{TitleTrie, MAX_TITLE_TOKENS};
use l2d::eval::{
    beam_reports, compare, evaluate, latent_reports, markdown_table, paired_table,
    popularity_report, shipped_report, LatentGrid, Report, Treatment, BUCKETS,
};
use l2d::follows::Follows;
use l2d::manifest::Manifest;
use l2d::memory::{subset, Keep, Memory};
use l2d::model::{model_fingerprint, Model, ModelFiles};
use l2d::prompt::Template;
use l2d::prompt::{history_titles, truncate_history};
use l2d::recommend::{
    build_blob, load_blob, query_state, BlobSpec, Mode, Representations, Request,
};
use l2d::score::DType;
use l2d::synth::{synth_blob, RowStatistics};
use l2d::train::{TrainConfig, TrainState};

use super::progress::Progress;
use super::{
    BenchArgs, BlobArgs, BlobsArgs, ChooseArgs, ConvertArgs, EvalArgs, HiddenArgs, ManifestArgs,
    MemoryArgs, PrepareArgs, ProbeArgs, RecommendArgs, Source, SynthArgs, TokenizerArgs, TrainArgs,
    TrainRecipe, UpdateArgs,
};

fn load_dataset(path: &Path) -> Result<Dataset> {
    Dataset::read_dir(path).with_context(|| {
        format!(
            "reading prepared dataset {} (run `l2d prepare` first)",
            path.display()
        )
    })
}

fn load_model(path: &Path) -> Result<Model> {
    Model::load_dir(path).with_context(|| format!("loading model {}", path.display()))
}

/// [`load_model`], its linear layers multiplying as `weights` says.
fn load_model_with(path: &Path, weights: l2d::model::Weights) -> Result<Model> {
    multiplying(load_model(path)?, weights, path)
}

/// The model of deployment directory `dir` as the page loads it: the manifest's weights file,
/// multiplied as its scoring says.
fn load_deployed_model(dir: &Path, manifest: &Manifest) -> Result<Model> {
    let files = manifest
        .model_files(dir)
        .with_context(|| format!("reading the model files of {}", dir.display()))?;
    let model = Model::from_files(&files)
        .with_context(|| format!("loading {}", dir.join(manifest.weights_file()).display()))?;
    multiplying(model, manifest.scoring.weights, dir)
}

/// `model` (loaded from `dir`) with its linear layers multiplying as `weights` says.
fn multiplying(mut model: Model, weights: l2d::model::Weights, dir: &Path) -> Result<Model> {
    model
        .net
        .set_weights(weights)
        .with_context(|| format!("{} weights for {}", weights.name(), dir.display()))?;
    Ok(model)
}

fn load_memory(path: &Path) -> Result<Memory> {
    Memory::load(path)
        .with_context(|| format!("loading memory {} (run `l2d memory` first)", path.display()))
}

/// Resolves history entries (ids first, then exact titles); unknown entries are an error
/// naming them.
fn resolve_history(catalog: &Catalog, entries: &[String]) -> Result<Vec<ItemIndex>> {
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
fn train_counts(dataset: &Dataset) -> Result<Vec<u32>> {
    let targets: Vec<ItemIndex> = dataset
        .split(Split::Train)?
        .iter()
        .map(|s| s.target)
        .collect();
    Ok(l2d::aggregate::item_counts(
        &targets,
        dataset.catalog.len(),
    )?)
}

/// The follow weights of the dataset's train samples (the memory's samples).
fn train_follows(dataset: &Dataset) -> Result<Follows> {
    let samples = dataset.split(Split::Train)?;
    Follows::from_samples(
        samples.iter().map(|s| (s.history.as_slice(), s.target)),
        dataset.catalog.len(),
    )
    .with_context(|| format!("the follow weights of {}'s train split", dataset.name))
}

/// What the browser loads by default from a model directory: its manifest and the memory blob
/// the manifest names.
struct Shipped {
    manifest_path: PathBuf,
    manifest: Manifest,
    blob_path: PathBuf,
    blob: Blob,
}

/// MODEL/manifest.json, parsed and validated, with its path.
pub(super) fn load_manifest(model_dir: &Path) -> Result<(PathBuf, Manifest)> {
    let path = model_dir.join(l2d::manifest::MANIFEST_FILE);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = Manifest::from_json(&text, &path.display().to_string())?;
    Ok((path, manifest))
}

/// A blob file and its items parts, read and verified.
fn read_blob_file(path: &Path) -> Result<Blob> {
    Blob::read_file(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes a blob to `path` and its items parts beside it (each atomically); returns the bytes
/// of the blob and of the parts.
fn write_blob_files(blob: &Blob, path: &Path) -> Result<(usize, usize)> {
    let bytes = blob.to_bytes();
    let parts = blob.items_parts();
    let dir = path.parent().unwrap_or(Path::new("."));
    for (name, part) in blob.items_part_names(parts.len()).iter().zip(&parts) {
        replace_file(&dir.join(name), |tmp| Ok(std::fs::write(tmp, part)?))?;
    }
    replace_file(path, |tmp| Ok(std::fs::write(tmp, &bytes)?))?;
    Ok((bytes.len(), parts.iter().map(Vec::len).sum()))
}

fn load_shipped(model_dir: &Path) -> Result<Shipped> {
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
const QUERY_BATCH: usize = 64;

/// Hidden states of `samples`' histories, with a progress bar.
fn encode_samples(
    model: &Model,
    catalog: &Catalog,
    samples: &[&Sample],
    batch: usize,
    what: &str,
) -> Result<(Memory, f64)> {
    let mut bar = Progress::new(samples.len(), what);
    let start = Instant::now();
    let states = Memory::build(model, catalog, samples, batch, &mut |done, _| {
        bar.set_position(done)
    })?;
    bar.finish();
    let rate = samples.len() as f64 / start.elapsed().as_secs_f64();
    Ok((states, rate))
}

/// The dataset, model and resolved history a `hidden` or `generate` command works on.
fn history_inputs(args: &HiddenArgs) -> Result<(Dataset, Model, Vec<ItemIndex>)> {
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
    let text = l2d::decode::greedy(&model, &model.prompt_ids(&titles)?, MAX_TITLE_TOKENS)?;
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
    let split: Split = args.split.parse()?;
    let encoded = dataset.split(split)?;
    let keep = subset(encoded.len(), args.fraction, args.seed)?;
    let samples: Vec<&Sample> = keep.iter().map(|&i| &encoded[i]).collect();
    if let Some(shard) = &args.shard {
        let shard: l2d::model::Shard = shard.parse()?;
        let mut bar = Progress::new(0, "samples");
        let start = Instant::now();
        let (memory, positions) = Memory::build_shard(
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
    let counts = l2d::aggregate::state_counts(&memory, dataset.catalog.len())?;
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

fn parse_dtype(name: &str) -> Result<DType> {
    Ok(match name {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "i8" | "int8" => DType::I8,
        "i4" | "int4" => DType::I4,
        other => bail!("unknown dtype `{other}` (expected f32, f16, i8 or i4)"),
    })
}

pub fn blob(args: BlobArgs) -> Result<()> {
    let dataset = load_dataset(&args.io.dataset)?;
    let files = ModelFiles::read_dir(&args.io.model)?;
    let full = load_memory(&args.memory)?;
    let kind = match args.kind.as_str() {
        "global" => BlobKind::Global,
        "memory" => BlobKind::Memory,
        other => bail!("unknown blob kind `{other}` (expected global or memory)"),
    };
    let dtype = parse_dtype(&args.dtype)?;
    let model = match args.cold_start.as_str() {
        "last" => None,
        "title" => Some(Model::from_files(&files)?),
        other => bail!("unknown cold-start rule `{other}` (expected last or title)"),
    };
    let spec = BlobSpec {
        kind,
        dtype,
        fraction: args.fraction,
        keep: Keep::parse(&args.keep, args.seed)?,
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
fn write_blob(
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

/// Bytes of the model files a first visit fetches besides a blob, with the weights as the
/// recipe ships them: the int8 weights file, made here from `weights` (the directory's
/// `model.safetensors`, already read; `l2d choose` keeps int8 weights unless valid says they
/// cost more than its tolerance, and warns then that the folder exceeds the budget).
fn model_files_bytes(dir: &Path, weights: &[u8]) -> Result<u64> {
    let others: u64 = l2d::model::MODEL_FILES
        .iter()
        .filter(|&&name| name != l2d::model::WEIGHTS_FILE)
        .map(|name| {
            let path = dir.join(name);
            std::fs::metadata(&path)
                .map(|m| m.len())
                .with_context(|| format!("reading the size of {}", path.display()))
        })
        .sum::<Result<u64>>()?;
    let int8 = l2d::int8_file::write(weights).with_context(|| {
        format!(
            "quantizing {}",
            dir.join(l2d::model::WEIGHTS_FILE).display()
        )
    })?;
    Ok(others + int8.len() as u64)
}

/// What is left of `budget` for the memory blob once the model files of `model_dir` (read
/// as `files`) are counted.
fn blob_budget(model_dir: &Path, files: &ModelFiles, budget: u64) -> Result<u64> {
    let fixed = model_files_bytes(model_dir, &files.weights)?;
    budget.checked_sub(fixed).with_context(|| {
        format!(
            "the budget of {budget} bytes is smaller than the model files of {} ({fixed} bytes)",
            model_dir.display()
        )
    })
}

pub fn blobs(args: BlobsArgs) -> Result<()> {
    let dataset = load_dataset(&args.io.dataset)?;
    let files = ModelFiles::read_dir(&args.io.model)?;
    let model = Model::from_files(&files)?;
    let memory = load_memory(&args.memory)?;
    let budget = blob_budget(&args.io.model, &files, args.budget)?;
    let memory_dtype = match &args.memory_dtype {
        Some(name) => parse_dtype(name).context("--memory-dtype")?,
        None => l2d::recommend::MEMORY_DTYPE,
    };
    let follows = train_follows(&dataset)?;
    for (name, spec) in l2d::recommend::recipe_blobs(budget, memory_dtype, Some(&follows)) {
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

pub fn eval(args: EvalArgs) -> Result<()> {
    let dataset = load_dataset(&args.io.dataset)?;
    let split: Split = args.split.parse()?;
    let model = load_model(&args.io.model)?;
    let catalog = &dataset.catalog;
    let train_counts = train_counts(&dataset)?;
    let all = dataset.split(split)?;
    let keep = l2d::eval::evaluated_samples(all.len(), args.limit)?;
    let samples: Vec<&Sample> = keep.iter().map(|&i| &all[i]).collect();
    let histories: Vec<&[ItemIndex]> = samples.iter().map(|s| s.history.as_slice()).collect();
    let targets: Vec<ItemIndex> = samples.iter().map(|s| s.target).collect();
    let treatments = std::iter::once(Ok(Treatment::plain()))
        .chain(args.treatments.iter().map(|t| t.parse::<Treatment>()))
        .collect::<l2d::Result<Vec<_>>>()?;
    let dtype = parse_dtype(&args.dtype)?;
    let latent = args.methods.iter().any(|m| m == "global" || m == "local");
    let memory = if latent {
        Some(load_memory(&args.memory)?)
    } else {
        None
    };
    println!(
        "{} {split} samples ({} of {}){}",
        samples.len(),
        samples.len(),
        all.len(),
        memory
            .as_ref()
            .map_or(String::new(), |m| format!(", memory of {} states", m.len()))
    );
    let queries = if latent || args.shipped {
        Some(encode_samples(&model, catalog, &samples, QUERY_BATCH, "queries")?.0)
    } else {
        None
    };
    let mut reports: Vec<Report> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    for method in &args.methods {
        match method.as_str() {
            "popularity" => reports.push(popularity_report(&targets, &train_counts)),
            "follows" => reports.push(l2d::eval::follows_report(
                &train_follows(&dataset)?,
                &histories,
                &targets,
                &train_counts,
            )?),
            "global" | "local" => {
                let grid = LatentGrid {
                    fractions: args.fractions.clone(),
                    dtype,
                    treatments: treatments.clone(),
                    local: method == "local",
                    ms: args.m.clone(),
                };
                reports.extend(latent_reports(
                    &model,
                    catalog,
                    memory.as_ref().expect("loaded"),
                    queries.as_ref().expect("encoded"),
                    &targets,
                    &train_counts,
                    &grid,
                    &mut |report, seconds| {
                        eprintln!(
                            "{}: R@20 {:.4} ({seconds:.1} s)",
                            report.method,
                            report.overall.recall_at(20)
                        )
                    },
                )?);
            }
            "beam" => {
                let mut bars: Vec<(usize, Progress)> = Vec::new();
                reports.extend(beam_reports(
                    &model,
                    catalog,
                    &samples,
                    &args.beam,
                    args.beam_limit,
                    &train_counts,
                    &mut |width, done, total| {
                        if bars.last().is_none_or(|b| b.0 != width) {
                            bars.push((
                                width,
                                Progress::new(total, &format!("beam {width} queries")),
                            ));
                        }
                        let bar = &mut bars.last_mut().expect("pushed").1;
                        bar.set_position(done);
                        if done == total {
                            bar.finish();
                        }
                    },
                )?);
            }
            "sasrec" => {
                let cfg = l2d::sasrec::SasRecConfig {
                    max_minutes: args.sasrec_minutes,
                    ..Default::default()
                };
                let train: Vec<&Sample> = dataset.split(Split::Train)?.iter().collect();
                let valid: Vec<&Sample> = dataset.split(Split::Valid)?.iter().collect();
                let (net, run) = l2d::sasrec::train(
                    &cfg,
                    catalog.len(),
                    &train,
                    &valid,
                    args.sasrec_cache.as_deref(),
                    &mut |line| eprintln!("{line}"),
                )?;
                eprintln!(
                    "sasrec: best valid R@20 {:.4} at epoch {} of {} ({:.0} s, stopped by {:?})",
                    run.best_valid_recall, run.best_epoch, run.epochs, run.seconds, run.stop
                );
                // The method keeps its name (tables are joined by it); a capped run is said
                // below the tables and in the JSON.
                warnings.extend(run.stop.warning(&cfg, run.epochs));
                let rankings = net.rankings(&samples)?;
                reports.push(evaluate("SASRec", &rankings, &targets, &train_counts));
                if args.sasrec_refit {
                    if split != Split::Test {
                        bail!("--sasrec-refit trains on train + valid: evaluate it on test");
                    }
                    let both: Vec<&Sample> = train.iter().chain(&valid).copied().collect();
                    let (net, _) = l2d::sasrec::refit(
                        &cfg,
                        catalog.len(),
                        &both,
                        run.best_epoch,
                        args.sasrec_cache.as_deref(),
                        &mut |line| eprintln!("refit: {line}"),
                    )?;
                    let rankings = net.rankings(&samples)?;
                    let label =
                        format!("SASRec refit on train + valid ({} epochs)", run.best_epoch);
                    reports.push(evaluate(&label, &rankings, &targets, &train_counts));
                }
            }
            other => bail!(
                "unknown method `{other}` (expected popularity, follows, global, local, beam or sasrec)"
            ),
        }
    }
    if args.shipped {
        let Shipped { manifest, blob, .. } = load_shipped(&args.io.model)?;
        // The browser's query states come from the weights the manifest names.
        let weights = manifest.scoring.weights;
        let own;
        let (model, queries) = if weights == model.net.weights() {
            (&model, queries.as_ref().expect("encoded"))
        } else {
            let shipped_model = load_deployed_model(&args.io.model, &manifest)?;
            let encoded = encode_samples(
                &shipped_model,
                catalog,
                &samples,
                QUERY_BATCH,
                &format!("queries, {} weights", weights.name()),
            )?
            .0;
            own = (shipped_model, encoded);
            (&own.0, &own.1)
        };
        reports.push(shipped_report(
            model,
            blob,
            &manifest.scoring,
            (queries, &histories),
            &targets,
            &train_counts,
        )?);
    }
    if reports.is_empty() {
        bail!("nothing to evaluate: give --methods or --shipped");
    }
    let reference = l2d::eval::reference_label(&reports, args.reference.as_deref())?;
    compare(&mut reports, &reference)?;
    println!("{}", markdown_table(&reports));
    println!("{}", paired_table(&reports));
    println!(
        "Recall@20 by train frequency of the target ({}):",
        BUCKETS.join(" / ")
    );
    for r in &reports {
        let parts: Vec<String> = r
            .by_frequency
            .iter()
            .map(|(_, m)| format!("{:.4} (n={})", m.recall_at(20), m.samples))
            .collect();
        println!("  {}: {}", r.method, parts.join(" / "));
    }
    for warning in &warnings {
        println!("warning: {warning}");
        eprintln!("warning: {warning}");
    }
    if let Some(path) = &args.json {
        let out = serde_json::json!({
            "dataset": dataset.name,
            "split": split.name(),
            "samples": samples.len(),
            "model": args.io.model.display().to_string(),
            "memory_states": memory.as_ref().map(|m| m.len()),
            "reference": reference,
            "warnings": warnings,
            "reports": reports,
        });
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

pub fn choose(args: ChooseArgs) -> Result<()> {
    let dataset = load_dataset(&args.io.dataset)?;
    let split: Split = args.split.parse()?;
    if split == Split::Test {
        bail!("--split test: the scoring is chosen on valid only; test is reported once");
    }
    let Shipped {
        manifest_path,
        mut manifest,
        blob_path,
        blob,
    } = load_shipped(&args.io.model)?;
    let model = load_model(&args.io.model)?;
    let (_, base) = load_blob(&model, blob, &blob_path.display().to_string())?;
    let train_counts = train_counts(&dataset)?;
    let samples: Vec<&Sample> = dataset.split(split)?.iter().collect();
    let histories: Vec<&[ItemIndex]> = samples.iter().map(|s| s.history.as_slice()).collect();
    let targets: Vec<ItemIndex> = samples.iter().map(|s| s.target).collect();
    let queries = encode_samples(&model, &dataset.catalog, &samples, QUERY_BATCH, "queries")?.0;
    // One bar per stage (each stage is one pass over the queries).
    let stage_bar = |stage: usize| Progress::new(queries.len(), &format!("stage {stage} queries"));
    let bar = std::sync::Mutex::new((1, 0, stage_bar(1)));
    let (scoring, reports) = l2d::eval::choose_scoring(
        &base,
        (&queries, &histories),
        &targets,
        &train_counts,
        &mut |r| {
            eprintln!(
                "{}: R@20 {:.4}, N@20 {:.4}",
                r.method,
                r.overall.recall_at(20),
                r.overall.ndcg[2]
            )
        },
        &|done, _| {
            if let Ok(mut guard) = bar.lock() {
                let (stage, last, progress) = &mut *guard;
                if done < *last {
                    progress.finish();
                    *stage += 1;
                    *progress = stage_bar(*stage);
                }
                *last = done;
                progress.set_position(done);
            }
        },
    )?;
    if let Ok(guard) = bar.lock() {
        guard.2.finish();
    }
    // Last, the weights: int8 unless it costs more than the tolerance on the chosen scoring.
    let int8 = load_model_with(&args.io.model, l2d::model::Weights::Int8)?;
    let int8_queries = encode_samples(
        &int8,
        &dataset.catalog,
        &samples,
        QUERY_BATCH,
        "queries, int8 weights",
    )?
    .0;
    // The chosen scoring's own row (f32 query states) is the reference; only int8 is scored.
    let f32_report = reports
        .iter()
        .find(|r| r.method == scoring.label())
        .cloned()
        .context("the chosen scoring has no row among the evaluated ones")?;
    let int8_bar =
        std::sync::Mutex::new(Progress::new(int8_queries.len(), "int8 weights, queries"));
    let (weights, int8_report) = l2d::eval::choose_weights(
        &base,
        (&scoring, &f32_report),
        (&int8_queries, &histories),
        (&targets, &train_counts),
        &|done, _| {
            if let Ok(mut bar) = int8_bar.lock() {
                bar.set_position(done);
            }
        },
    )?;
    if let Ok(bar) = int8_bar.lock() {
        bar.finish();
    }
    let mut reports = reports;
    reports.extend([f32_report, int8_report]);
    println!("{}", markdown_table(&reports));
    println!("{}", l2d::eval::paired_table(&reports));
    let best = reports
        .iter()
        .find_map(|r| r.versus.as_ref())
        .map(|p| p.reference.clone())
        .unwrap_or_else(|| scoring.label());
    if best != scoring.label() {
        println!(
            "best R@20: {best}; chosen: {}, cheaper to serve and not significantly worse \
             (its paired 95 % interval of ΔR@20 reaches 0)",
            scoring.label()
        );
    }
    println!(
        "weights: int8 unless its R@20 falls more than {} below f32's (the last two rows)",
        l2d::eval::INT8_TOLERANCE
    );
    if weights != l2d::model::Weights::Int8 {
        let warning = format!(
            "warning: valid chose f32 weights: a first visit fetches {} instead of {}, beyond \
             the download budget `l2d blobs` counted with the int8 weights file",
            l2d::model::WEIGHTS_FILE,
            l2d::int8_file::INT8_WEIGHTS_FILE
        );
        println!("{warning}");
        eprintln!("{warning}");
    }
    let scoring = l2d::manifest::Scoring { weights, ..scoring };
    println!("chosen on {split}: {}", scoring.label());
    manifest.scoring = scoring;
    // The page fetches the int8 weights file when the weights are int8.
    match write_weights_file(&args.io.model, weights)? {
        Some(entry) => manifest
            .files
            .insert(l2d::int8_file::INT8_WEIGHTS_FILE.into(), entry),
        None => manifest.files.remove(l2d::int8_file::INT8_WEIGHTS_FILE),
    };
    std::fs::write(&manifest_path, manifest.to_json())
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    println!("wrote the scoring into {}", manifest_path.display());
    if let Some(path) = &args.json {
        let out = serde_json::json!({
            "split": split.name(), "blob": blob_path.display().to_string(),
            "chosen": manifest.scoring, "reports": reports,
        });
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub fn probe(args: ProbeArgs) -> Result<()> {
    let dataset = load_dataset(&args.io.dataset)?;
    let model = load_model(&args.io.model)?;
    let cfg = TrainConfig {
        seed: args.seed,
        select_memory_fraction: args.select_memory_fraction,
        select_samples: args.select_samples,
        ..TrainConfig::default()
    };
    let (memory, queries) = l2d::train::probe_samples(
        dataset.split(Split::Train)?,
        dataset.split(Split::Valid)?,
        &cfg,
    )?;
    let start = Instant::now();
    let recall = l2d::train::probe_recall(&model, &dataset.catalog, &memory, &queries)?;
    println!(
        "{}: valid L2D-L (M={}) R@{} {recall:.4} on {} samples, memory of {} train states ({:.0} s)",
        args.io.model.display(),
        l2d::train::SELECT_M,
        l2d::train::SELECT_K,
        queries.len(),
        memory.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The test histories `l2d bench` times: a seeded subset of `queries` (the same every run).
fn bench_histories(dataset: &Dataset, queries: usize) -> Result<Vec<&[ItemIndex]>> {
    let test = dataset.split(Split::Test)?;
    let keep = subset(test.len(), (queries as f64 / test.len() as f64).min(1.0), 3)?;
    Ok(keep.iter().map(|&i| test[i].history.as_slice()).collect())
}

pub fn bench(args: BenchArgs) -> Result<()> {
    // candle reads its thread count from these on every product; set before any model work.
    if args.threads > 0 {
        std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", args.threads.to_string());
    }
    let threads = candle_core::utils::get_num_threads();
    let dataset = load_dataset(&args.io.dataset)?;
    let model = load_model_with(&args.io.model, args.weights)?;
    if !args.catalog_sizes.is_empty() {
        return catalog_sweep(&args, &dataset, &model);
    }
    let memory = load_memory(&args.memory)?;
    let catalog = &dataset.catalog;
    let reps = Representations::from_memory(&memory, catalog.len(), Geometry::plain())?;
    let trie = TitleTrie::build(&model, catalog)?;
    let histories = bench_histories(&dataset, args.queries)?;
    let k = 20;
    let paths: Vec<(String, bench::Path)> = vec![
        (
            "L2D-G".into(),
            bench::l2d_path(&model, catalog, &reps, Mode::Global, k),
        ),
        (
            format!("L2D-L (M={})", args.m),
            bench::l2d_path(&model, catalog, &reps, Mode::Local { m: args.m }, k),
        ),
        ("beam 1".into(), bench::beam_path(&model, catalog, &trie, 1)),
        ("beam 5".into(), bench::beam_path(&model, catalog, &trie, 5)),
        (
            "beam 10".into(),
            bench::beam_path(&model, catalog, &trie, 10),
        ),
    ];
    println!(
        "{} test histories, history → top-{k}, model hidden {} ({} layers, {} weights), {} items, memory {} states; \
         {threads} thread(s); the methods take turns on each history",
        histories.len(),
        model.hidden_size(),
        model.net.config().num_hidden_layers,
        model.net.weights().name(),
        catalog.len(),
        memory.len()
    );
    let (names, paths): (Vec<String>, Vec<bench::Path>) = paths.into_iter().unzip();
    let latencies = bench::round_robin(&paths, &histories)?;
    for (name, l) in names.iter().zip(&latencies) {
        println!(
            "{name:>14}: median {:8.2} ms   p90 {:8.2} ms",
            l.median_ms, l.p90_ms
        );
    }
    let grown = bench::grown_by_one_latency(&model, catalog, &reps, Mode::Global, k, &histories)?;
    println!(
        "{:>14}: median {:8.2} ms   p90 {:8.2} ms   (history grown by one: the previous prompt's cache reused)",
        "L2D-G +1",
        grown.median_ms,
        grown.p90_ms
    );
    println!("speed-up of L2D-G over:");
    for (name, l) in names.iter().zip(&latencies).skip(1) {
        println!("{name:>14}: {:6.1}×", l.median_ms / latencies[0].median_ms);
    }
    // Scoring alone: distances + top-k over the global item matrix.
    let query = query_state(&model, catalog, histories[0])?;
    for dtype in [DType::F32, DType::F16, DType::I8] {
        let matrix = reps.global.to_dtype(dtype);
        let secs = bench::scoring_seconds(&matrix, &query, k, 200)?;
        println!(
            "score {dtype:?}: {} items × {} in {:.3} ms = {:.2} G item·dim/s",
            matrix.rows(),
            matrix.dim(),
            secs * 1e3,
            (matrix.rows() * matrix.dim()) as f64 / secs / 1e9
        );
    }
    Ok(())
}

/// Rows of the reference blob for synthetic catalogs: `path`, or MODEL/global.blob.
fn reference_statistics(model_dir: &Path, path: Option<&Path>) -> Result<RowStatistics> {
    let path = path.map_or_else(|| model_dir.join("global.blob"), Path::to_path_buf);
    let blob = read_blob_file(&path)?;
    RowStatistics::of(&blob.matrix).with_context(|| format!("statistics of {}", path.display()))
}

/// `l2d bench --catalog-sizes`: scoring + top-20 per size and dtype, one thread, with the
/// memory-read bandwidth measured in the same run.
fn catalog_sweep(args: &BenchArgs, dataset: &Dataset, model: &Model) -> Result<()> {
    let stats = reference_statistics(&args.io.model, None)?;
    let queries = bench_histories(dataset, args.queries)?
        .into_iter()
        .map(|h| query_state(model, &dataset.catalog, h))
        .collect::<l2d::Result<Vec<_>>>()?;
    let bandwidth = bench::read_bandwidth(1 << 30, 3);
    println!(
        "{} query states; memory-read bandwidth (one thread, 1 GiB, best of 3): {:.1} GB/s",
        queries.len(),
        bandwidth / 1e9
    );
    println!(
        "| items | dtype | rows MB | scoring + top-20 median | p90 | rows read at | of bandwidth |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &items in &args.catalog_sizes {
        for dtype in [DType::I8, DType::F16] {
            let blob = synth_blob(items, dtype, model.fingerprint, &stats, 0)?;
            let latency = bench::scoring_latency(&blob.matrix, &queries, 20)?;
            let bytes = (blob.matrix.rows() as u64 * blob.row_bytes()) as f64;
            let rate = bytes / (latency.median_ms / 1e3);
            println!(
                "| {items} | {dtype:?} | {:.1} | {:.2} ms | {:.2} ms | {:.1} GB/s | {:.0} % |",
                bytes / 1e6,
                latency.median_ms,
                latency.p90_ms,
                rate / 1e9,
                100.0 * rate / bandwidth
            );
        }
    }
    Ok(())
}

pub fn synth(args: SynthArgs) -> Result<()> {
    let files = ModelFiles::read_dir(&args.model)?;
    let config = l2d::model::ModelConfig::from_json(&files.config, l2d::model::CONFIG_FILE)?;
    let stats = reference_statistics(&args.model, args.reference.as_deref())?;
    if stats.mean.len() != config.hidden_size {
        bail!(
            "the reference blob has dimension {}, the model {} has hidden size {}",
            stats.mean.len(),
            args.model.display(),
            config.hidden_size
        );
    }
    let dtype = parse_dtype(&args.dtype)?;
    let blob = synth_blob(
        args.items,
        dtype,
        model_fingerprint(&files),
        &stats,
        args.seed,
    )?;
    let (bytes, items) = write_blob_files(&blob, &args.out)?;
    println!(
        "wrote {}: synthetic global blob, {} items × {} {dtype:?}, {:.1} MB (+ {:.1} MB of items parts)",
        args.out.display(),
        args.items,
        config.hidden_size,
        bytes as f64 / 1e6,
        items as f64 / 1e6
    );
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
    let items = l2d::recommend::recommend(&model, &catalog, &reps, &request)?;
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

/// Writes DIR's int8 weights file when `weights` is int8 (made from its model.safetensors)
/// and returns its manifest entry; removes a stale one otherwise.
fn write_weights_file(
    dir: &Path,
    weights: l2d::model::Weights,
) -> Result<Option<l2d::manifest::FileEntry>> {
    let path = dir.join(l2d::int8_file::INT8_WEIGHTS_FILE);
    if weights != l2d::model::Weights::Int8 {
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing {} (the weights are f32)", path.display()))?;
        }
        return Ok(None);
    }
    let source = dir.join(l2d::model::WEIGHTS_FILE);
    let bytes = std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
    let int8 = l2d::int8_file::write(&bytes)
        .with_context(|| format!("quantizing {}", source.display()))?;
    replace_file(&path, |tmp| Ok(std::fs::write(tmp, &int8)?))?;
    println!(
        "wrote {} ({:.2} MB; {} is {:.2} MB)",
        path.display(),
        int8.len() as f64 / 1e6,
        l2d::model::WEIGHTS_FILE,
        bytes.len() as f64 / 1e6
    );
    Ok(Some(l2d::manifest::FileEntry::of(&int8)))
}

/// Writes DIR/manifest.json (`Manifest::describe`) and says what it lists.
pub(super) fn write_manifest(
    dir: &Path,
    dataset: &Dataset,
    scoring: l2d::manifest::Scoring,
    command: &str,
) -> Result<()> {
    write_weights_file(dir, scoring.weights)?;
    let manifest = Manifest::describe(dir, dataset, scoring, command)
        .with_context(|| format!("describing {}", dir.display()))?;
    let path = dir.join(l2d::manifest::MANIFEST_FILE);
    std::fs::write(&path, manifest.to_json())
        .with_context(|| format!("writing {}", path.display()))?;
    let fetched: u64 = manifest.files.values().map(|f| f.bytes).sum();
    println!(
        "wrote {} ({} files, {:.2} MB in all); default scoring {}",
        path.display(),
        manifest.files.len(),
        fetched as f64 / 1e6,
        manifest.scoring.label()
    );
    Ok(())
}

fn dir_stem(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "dataset".into(), |n| n.to_string_lossy().into_owned())
}

pub fn prepare(args: PrepareArgs) -> Result<()> {
    let dataset = import_source(&args.source)?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("target/data").join(&dataset.name));
    dataset
        .write_dir(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Imports a MovieLens directory, a D3 directory or a raw log, printing the import report
/// and the dataset's summary.
pub(super) fn import_source(source: &Source) -> Result<Dataset> {
    let (dataset, from) = if let Some(dir) = &source.d3 {
        let mut dataset = dataset::load_d3_dir(dir)
            .with_context(|| format!("loading D3 directory {}", dir.display()))?;
        if let Some(name) = &source.name {
            dataset.name = name.clone();
        }
        (dataset, dir.clone())
    } else {
        let (spec, from) = source_log(source)?;
        let name = source.name.clone().unwrap_or_else(|| dir_stem(&from));
        let (dataset, report) = dataset::import_raw_log(&spec, &name).with_context(|| {
            format!(
                "importing {} and {}",
                spec.interactions.display(),
                spec.items.display()
            )
        })?;
        println!("{report}");
        (dataset, from)
    };
    println!("{}", dataset.summary());
    println!("imported from {}", from.display());
    Ok(dataset)
}

/// The raw log a source names (MovieLens directory or interactions + items) and the
/// directory it comes from.
pub(super) fn source_log(source: &Source) -> Result<(RawLogSpec, PathBuf)> {
    match (&source.movielens, &source.interactions, &source.items) {
        (Some(dir), _, _) => Ok((RawLogSpec::movielens(dir), dir.clone())),
        (None, Some(interactions), Some(items)) => Ok((
            source.columns.spec(interactions, Some(items)),
            interactions
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        )),
        _ => bail!("give --movielens DIR, --d3 DIR, or --interactions FILE --items FILE"),
    }
}

fn parse_template(name: &str, category: &str) -> Result<Template> {
    match name {
        "compact" => Ok(Template::Compact),
        "d3" => Ok(Template::D3 {
            category: category.to_string(),
            end_marker: l2d::prompt::EOS.to_string(),
        }),
        other => anyhow::bail!("unknown template `{other}` (expected compact or d3)"),
    }
}

pub fn tokenizer(args: TokenizerArgs) -> Result<()> {
    let dataset = Dataset::read_dir(&args.dataset)
        .with_context(|| format!("reading {}", args.dataset.display()))?;
    let template = parse_template(&args.template, &args.category)?;
    let tokenizer = l2d::tokenizer::train_bpe(
        dataset.catalog.items().map(|i| i.title),
        &template,
        args.vocab_size,
    )?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let path = args.out.join("tokenizer.json");
    tokenizer.save(&path)?;
    l2d::model::ModelMeta::new(template).write(&args.out)?;
    let tokens: usize = dataset
        .catalog
        .items()
        .map(|i| tokenizer.encode(i.title).map(|ids| ids.len()))
        .sum::<l2d::Result<usize>>()?;
    println!(
        "wrote {} (vocab {}); catalog titles average {:.2} tokens",
        path.display(),
        tokenizer.vocab_size(),
        tokens as f64 / dataset.catalog.len() as f64
    );
    Ok(())
}

struct TrainBar {
    bar: Progress,
}

impl l2d::train::Progress for TrainBar {
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

    /// The training configuration these options give.
    pub(super) fn config(&self) -> Result<TrainConfig> {
        Ok(TrainConfig {
            hidden_size: self.hidden,
            layers: self.layers,
            heads: self.heads,
            intermediate_size: self.intermediate,
            epochs: self.epochs,
            batch_tokens: self.batch_tokens,
            learning_rate: self.lr,
            warmup_steps: self.warmup,
            seed: self.seed,
            eval_every: self.eval_every,
            dropout: self.dropout_rates(),
            label_smoothing: self.label_smoothing,
            history_crop: self.history_crop,
            item_dropout: self.item_dropout,
            select: self.select.parse()?,
            select_memory_fraction: self.select_memory_fraction,
            select_samples: self.select_samples,
            patience: self.patience,
            ..TrainConfig::default()
        })
    }
}

pub fn train(args: TrainArgs) -> Result<()> {
    let dataset = Dataset::read_dir(&args.dataset)
        .with_context(|| format!("reading {}", args.dataset.display()))?;
    train_model(
        &dataset,
        &args.model,
        &args.recipe.config()?,
        args.resume,
        args.until_step,
    )
}

/// Trains (or resumes) a model in `model_dir` with a progress bar, then says what it chose.
pub(super) fn train_model(
    dataset: &Dataset,
    model_dir: &Path,
    cfg: &TrainConfig,
    resume: bool,
    until_step: Option<usize>,
) -> Result<()> {
    let mut progress = TrainBar {
        bar: Progress::new(0, "steps"),
    };
    let state = l2d::train::train(dataset, model_dir, cfg, resume, until_step, &mut progress)
        .with_context(|| format!("training {}", model_dir.display()))?;
    progress.bar.finish();
    let exported = match (state.best_step, cfg.select) {
        (None, _) => "nothing exported yet (no evaluation reached; resume with --resume)".into(),
        (Some(step), l2d::train::Selection::Final) => {
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

/// Replaces `path` by what `write` puts into a temporary file beside it, so a reader (or an
/// interrupted run) never sees half a file.
fn replace_file(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("tmp");
    write(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

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
