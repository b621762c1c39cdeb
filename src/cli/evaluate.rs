//! `l2d eval`, `l2d choose` and `l2d probe`: the protocol's reports, the browser's scoring chosen
//! on valid, and the in-training recall probe of any model.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use l2d::data::catalog::ItemIndex;
use l2d::data::dataset::{Sample, Split};
use l2d::offline::eval::{
    compare, markdown_table, paired_table, shipped_report, Report, Treatment, BUCKETS,
};
use l2d::offline::methods::{method_reports, EvalSet, MethodOptions};
use l2d::offline::train::TrainConfig;
use l2d::serve::recommend::load_blob;

use super::commands::*;
use super::progress::Progress;
use super::{ChooseArgs, EvalArgs, ProbeArgs};

/// What `l2d eval` shows while its methods run: grid rows and SASRec lines on stderr, a bar
/// per beam width.
struct EvalProgress {
    beams: Vec<(usize, Progress)>,
}

impl l2d::offline::methods::Progress for EvalProgress {
    fn latent_row(&mut self, report: &Report, seconds: f64) {
        eprintln!(
            "{}: R@20 {:.4} ({seconds:.1} s)",
            report.method,
            report.overall.recall_at(20)
        );
    }
    fn beam(&mut self, width: usize, done: usize, total: usize) {
        if self.beams.last().is_none_or(|b| b.0 != width) {
            self.beams.push((
                width,
                Progress::new(total, &format!("beam {width} queries")),
            ));
        }
        let bar = &mut self.beams.last_mut().expect("pushed").1;
        bar.set_position(done);
        if done == total {
            bar.finish();
        }
    }
    fn line(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let dataset = load_dataset(&args.io.dataset)?;
    let split = args.split;
    let model = load_model(&args.io.model)?;
    let catalog = &dataset.catalog;
    let train_counts = train_counts(&dataset)?;
    let all = dataset.split(split)?;
    let keep = l2d::offline::eval::evaluated_samples(all.len(), args.limit)?;
    let samples: Vec<&Sample> = keep.iter().map(|&i| &all[i]).collect();
    let histories: Vec<&[ItemIndex]> = samples.iter().map(|s| s.history.as_slice()).collect();
    let targets: Vec<ItemIndex> = samples.iter().map(|s| s.target).collect();
    let latent = args.methods.iter().any(|m| m.reads_memory());
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
    let options = MethodOptions {
        fractions: args.fractions.clone(),
        dtype: args.dtype,
        treatments: args
            .treatments
            .iter()
            .map(|t| t.parse::<Treatment>())
            .collect::<l2d::Result<Vec<_>>>()?,
        ms: args.m.clone(),
        beam_widths: args.beam.clone(),
        beam_limit: args.beam_limit,
        sasrec: l2d::offline::sasrec::SasRecConfig {
            max_minutes: args.sasrec_minutes,
            ..Default::default()
        },
        sasrec_refit: args.sasrec_refit,
        sasrec_cache: args.sasrec_cache.clone(),
    };
    let on = EvalSet {
        dataset: &dataset,
        split,
        model: &model,
        samples: &samples,
        train_counts: &train_counts,
        memory: memory.as_ref(),
        queries: queries.as_ref(),
    };
    let mut reports: Vec<Report> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut progress = EvalProgress { beams: Vec::new() };
    for &method in &args.methods {
        let (more, warned) = method_reports(method, &on, &options, &mut progress)
            .with_context(|| format!("evaluating {method:?} on {split}"))?;
        reports.extend(more);
        warnings.extend(warned);
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
        // The widget's first tier, as deployed beside the blob.
        if let Some(name) = &manifest.follows {
            let path = args.io.model.join(name);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let file = l2d::latent::follows::FollowsFile::from_bytes(&bytes)
                .with_context(|| format!("{} (the manifest's follows file)", path.display()))?;
            reports.push(l2d::offline::methods::first_tier_report(
                &file,
                &histories,
                &targets,
                &train_counts,
            )?);
        }
    }
    if reports.is_empty() {
        bail!("nothing to evaluate: give --methods or --shipped");
    }
    let reference = l2d::offline::eval::reference_label(&reports, args.reference.as_deref())?;
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
    let split = args.split;
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
    let (scoring, reports) = l2d::offline::choose::choose_scoring(
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
    let (weights, int8_report) = l2d::offline::choose::choose_weights(
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
    println!("{}", l2d::offline::eval::paired_table(&reports));
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
        l2d::offline::choose::INT8_TOLERANCE
    );
    if weights != l2d::model::Weights::Int8 {
        let warning = format!(
            "warning: valid chose f32 weights: a first visit fetches {} instead of {}, beyond \
             the download budget `l2d blobs` counted with the int8 weights file",
            l2d::model::WEIGHTS_FILE,
            l2d::model::int8_file::INT8_WEIGHTS_FILE
        );
        println!("{warning}");
        eprintln!("{warning}");
    }
    let scoring = l2d::serve::manifest::Scoring { weights, ..scoring };
    println!("chosen on {split}: {}", scoring.label());
    manifest.scoring = scoring;
    // The page fetches the int8 weights file when the weights are int8.
    let written = l2d::offline::deploy::write_weights_file(&args.io.model, weights)
        .with_context(|| format!("the weights file of {}", args.io.model.display()))?;
    match written {
        Some(entry) => manifest
            .files
            .insert(l2d::model::int8_file::INT8_WEIGHTS_FILE.into(), entry),
        None => manifest
            .files
            .remove(l2d::model::int8_file::INT8_WEIGHTS_FILE),
    };
    l2d::util::write_atomic(&manifest_path, manifest.to_json())?;
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
    let (memory, queries) = l2d::offline::train::probe_samples(
        dataset.split(Split::Train)?,
        dataset.split(Split::Valid)?,
        &cfg,
    )?;
    let start = Instant::now();
    let recall = l2d::offline::train::probe_recall(&model, &dataset.catalog, &memory, &queries)?;
    println!(
        "{}: valid L2D-L (M={}) R@{} {recall:.4} on {} samples, memory of {} train states ({:.0} s)",
        args.io.model.display(),
        l2d::offline::train::SELECT_M,
        l2d::offline::train::SELECT_K,
        queries.len(),
        memory.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
