//! `l2d bench` and `l2d synth`: latency of the online paths against beam search, the
//! catalog-size sweep, and the synthetic catalogs it scores.

use std::path::Path;

use anyhow::{bail, Context, Result};

use l2d::data::catalog::ItemIndex;
use l2d::data::dataset::{Dataset, Split};
use l2d::latent::aggregate::Geometry;
use l2d::latent::memory::subset;
use l2d::latent::score::DType;
use l2d::model::{model_fingerprint, Model, ModelFiles};
use l2d::offline::bench;
use l2d::offline::synth::{synth_blob, RowStatistics};
use l2d::serve::decode::TitleTrie;
use l2d::serve::recommend::{query_state, Mode, Representations};

use super::commands::*;
use super::{BenchArgs, SynthArgs};

/// The test histories `l2d bench` times: a seeded subset of `queries` (the same every run).
pub(super) fn bench_histories(dataset: &Dataset, queries: usize) -> Result<Vec<&[ItemIndex]>> {
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
pub(super) fn reference_statistics(model_dir: &Path, path: Option<&Path>) -> Result<RowStatistics> {
    let path = path.map_or_else(|| model_dir.join("global.blob"), Path::to_path_buf);
    let blob = read_blob_file(&path)?;
    RowStatistics::of(&blob.matrix).with_context(|| format!("statistics of {}", path.display()))
}

/// `l2d bench --catalog-sizes`: scoring + top-20 per size and dtype, one thread, with the
/// memory-read bandwidth measured in the same run.
pub(super) fn catalog_sweep(args: &BenchArgs, dataset: &Dataset, model: &Model) -> Result<()> {
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
    let dtype = args.dtype;
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
