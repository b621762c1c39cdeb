//! The methods `l2d eval` compares on one split, by name: popularity, the item-to-item follows
//! baseline, L2D-G and L2D-L over a grid of memory fractions and treatments, constrained beam
//! search, and SASRec (trained on train, optionally refit on train + valid). The shipped row
//! (the manifest's scoring on the shipped blob) is `eval::shipped_report`.

use std::path::PathBuf;

use crate::data::catalog::ItemIndex;
use crate::data::dataset::{Dataset, Sample, Split};
use crate::error::{Error, Result};
use crate::latent::memory::Memory;
use crate::latent::score::DType;
use crate::model::Model;
use crate::offline::eval::{
    beam_reports, evaluate, history_ranking_report, latent_reports, popularity_report, LatentGrid,
    Report, Treatment, EVAL_DEPTH,
};
use crate::offline::sasrec::SasRecConfig;

/// A baseline or an L2D rule `l2d eval` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Popularity,
    Follows,
    Global,
    Local,
    Beam,
    SasRec,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "popularity" => Ok(Method::Popularity),
            "follows" => Ok(Method::Follows),
            "global" => Ok(Method::Global),
            "local" => Ok(Method::Local),
            "beam" => Ok(Method::Beam),
            "sasrec" => Ok(Method::SasRec),
            other => Err(Error::invalid(
                "method",
                format!("`{other}` (expected popularity, follows, global, local, beam or sasrec)"),
            )),
        }
    }
}

impl Method {
    /// Whether the method ranks with the L2D memory and the split's query states.
    pub fn reads_memory(self) -> bool {
        matches!(self, Method::Global | Method::Local)
    }
}

/// How the methods run: the L2D grid, beam widths and the SASRec runs.
#[derive(Debug, Clone)]
pub struct MethodOptions {
    /// Memory fractions of the L2D grid (0 < f ≤ 1).
    pub fractions: Vec<f64>,
    /// Storage type the memory is rounded through.
    pub dtype: DType,
    /// Treatments besides the plain one.
    pub treatments: Vec<Treatment>,
    /// Neighbour counts for L2D-L.
    pub ms: Vec<usize>,
    /// Beam widths, and how many samples (a seeded subset) beam search ranks.
    pub beam_widths: Vec<usize>,
    pub beam_limit: usize,
    /// SASRec's configuration, whether to refit it on train + valid (test only), and where
    /// finished runs are kept.
    pub sasrec: SasRecConfig,
    pub sasrec_refit: bool,
    pub sasrec_cache: Option<PathBuf>,
}

/// What the methods rank: a split's evaluated samples with their histories, targets and query
/// states, the memory, the train-target counts and the train follow weights.
pub struct EvalSet<'a> {
    pub dataset: &'a Dataset,
    pub split: Split,
    pub model: &'a Model,
    pub samples: &'a [&'a Sample],
    pub train_counts: &'a [u32],
    /// The L2D memory and the samples' query states (needed by global and local).
    pub memory: Option<&'a Memory>,
    pub queries: Option<&'a Memory>,
}

/// What the caller shows while methods run.
pub trait Progress {
    /// An L2D grid row is done, after `seconds`.
    fn latent_row(&mut self, report: &Report, seconds: f64);
    /// Beam search of width `width` has ranked `done` of `total` samples.
    fn beam(&mut self, width: usize, done: usize, total: usize);
    /// A line of a long run (SASRec's epochs).
    fn line(&mut self, line: &str);
}

/// The reports of `method` on `on`, and any warning to print under the tables (a SASRec run
/// stopped by its time cap).
pub fn method_reports(
    method: Method,
    on: &EvalSet,
    options: &MethodOptions,
    progress: &mut dyn Progress,
) -> Result<(Vec<Report>, Vec<String>)> {
    let catalog = &on.dataset.catalog;
    let targets: Vec<ItemIndex> = on.samples.iter().map(|s| s.target).collect();
    let histories: Vec<&[ItemIndex]> = on.samples.iter().map(|s| s.history.as_slice()).collect();
    let needs = |what: &str| Error::invalid("method", format!("{method:?} needs {what}"));
    let mut warnings = Vec::new();
    let reports = match method {
        Method::Popularity => vec![popularity_report(&targets, on.train_counts)],
        Method::Follows => {
            // The item-to-item baseline alone: items by what followed the query's history in
            // the train samples, then by train-target count.
            let follows = crate::offline::deploy::train_follows(on.dataset)?;
            vec![history_ranking_report(
                "item-to-item follows",
                &histories,
                &targets,
                on.train_counts,
                |h| follows.ranking(h, on.train_counts, EVAL_DEPTH),
            )?]
        }
        Method::Global | Method::Local => {
            let grid = LatentGrid {
                fractions: options.fractions.clone(),
                dtype: options.dtype,
                treatments: std::iter::once(Treatment::plain())
                    .chain(options.treatments.iter().cloned())
                    .collect(),
                local: method == Method::Local,
                ms: options.ms.clone(),
            };
            latent_reports(
                on.model,
                catalog,
                on.memory.ok_or_else(|| needs("a memory"))?,
                on.queries.ok_or_else(|| needs("query states"))?,
                &targets,
                on.train_counts,
                &grid,
                &mut |report, seconds| progress.latent_row(report, seconds),
            )?
        }
        Method::Beam => beam_reports(
            on.model,
            catalog,
            on.samples,
            &options.beam_widths,
            options.beam_limit,
            on.train_counts,
            &mut |width, done, total| progress.beam(width, done, total),
        )?,
        Method::SasRec => {
            let cfg = &options.sasrec;
            let train: Vec<&Sample> = on.dataset.split(Split::Train)?.iter().collect();
            let valid: Vec<&Sample> = on.dataset.split(Split::Valid)?.iter().collect();
            let cache = options.sasrec_cache.as_deref();
            let (net, run) = crate::offline::sasrec::train(
                cfg,
                catalog.len(),
                &train,
                &valid,
                cache,
                &mut |line| progress.line(line),
            )?;
            progress.line(&format!(
                "sasrec: best valid R@20 {:.4} at epoch {} of {} ({:.0} s, stopped by {:?})",
                run.best_valid_recall, run.best_epoch, run.epochs, run.seconds, run.stop
            ));
            // The method keeps its name (tables are joined by it); a capped run is said
            // below the tables and in the JSON.
            warnings.extend(run.stop.warning(cfg, run.epochs));
            let rankings = net.rankings(on.samples)?;
            let mut reports = vec![evaluate("SASRec", &rankings, &targets, on.train_counts)];
            if options.sasrec_refit {
                if on.split != Split::Test {
                    return Err(Error::invalid(
                        "sasrec refit",
                        "it trains on train + valid: evaluate it on test",
                    ));
                }
                let both: Vec<&Sample> = train.iter().chain(&valid).copied().collect();
                let (net, _) = crate::offline::sasrec::refit(
                    cfg,
                    catalog.len(),
                    &both,
                    run.best_epoch,
                    cache,
                    &mut |line| progress.line(&format!("refit: {line}")),
                )?;
                let rankings = net.rankings(on.samples)?;
                let label = format!("SASRec refit on train + valid ({} epochs)", run.best_epoch);
                reports.push(evaluate(&label, &rankings, &targets, on.train_counts));
            }
            reports
        }
    };
    Ok((reports, warnings))
}

/// The widget's first tier as shipped: the follows file's ranking (its follow weights, then its
/// popularity counts; [`crate::latent::follows::FollowsFile::recommend`], nothing left out),
/// the very function `www/l2d-follows.js` is checked against.
pub fn first_tier_report(
    file: &crate::latent::follows::FollowsFile,
    histories: &[&[ItemIndex]],
    targets: &[ItemIndex],
    train_counts: &[u32],
) -> Result<Report> {
    history_ranking_report(
        "first tier (shipped follows file)",
        histories,
        targets,
        train_counts,
        |h| file.recommend(h, EVAL_DEPTH, &[]),
    )
}
