//! Offline evaluation (the D3 / L2D protocol): full ranking over the catalog, history not
//! masked, Recall@K (the single target is in the top K) and NDCG@K = 1/log2(rank + 2), for
//! K = 5, 10, 20, 50, 100; overall and split by how often the target occurs as a train target.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use crate::data::catalog::{popularity_ranking, Catalog, ItemIndex};
use crate::data::dataset::Sample;
use crate::error::{Error, Result};
use crate::latent::aggregate::Geometry;
use crate::latent::blob::Blob;
use crate::latent::memory::{subset, Memory};
use crate::latent::score::{top_k, Candidate, DType, ItemMatrix};
use crate::model::Model;
use crate::serve::decode::{beam_search, ranking, TitleTrie, MAX_TITLE_TOKENS};
use crate::serve::manifest::Scoring;
use crate::serve::recommend::{load_blob, Mode, Representations};

/// Ranking depth of every evaluation (the largest K).
pub const EVAL_DEPTH: usize = 100;
/// Bootstrap resamples behind every interval.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
/// Seed of the bootstrap (intervals are reproducible).
pub const BOOTSTRAP_SEED: u64 = 2025;

/// Cut-offs reported everywhere.
pub const KS: [usize; 5] = [5, 10, 20, 50, 100];

/// Recall and NDCG at each of [`KS`] over a set of samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Samples evaluated.
    pub samples: usize,
    /// Recall@K per K.
    pub recall: [f64; 5],
    /// NDCG@K per K.
    pub ndcg: [f64; 5],
}

impl Metrics {
    fn add(&mut self, rank: Option<u32>) {
        self.samples += 1;
        let g = gains(rank);
        for j in 0..KS.len() {
            self.recall[j] += g[j];
            self.ndcg[j] += g[KS.len() + j];
        }
    }

    fn finish(&mut self) {
        let n = self.samples.max(1) as f64;
        self.recall
            .iter_mut()
            .chain(self.ndcg.iter_mut())
            .for_each(|v| *v /= n);
    }

    /// Recall at cut-off `k` (one of [`KS`]).
    pub fn recall_at(&self, k: usize) -> f64 {
        KS.iter()
            .position(|&x| x == k)
            .map_or(f64::NAN, |j| self.recall[j])
    }
}

/// Frequency buckets of targets by their train-target count.
pub const BUCKETS: [&str; 3] = ["unseen (0)", "rare (1-5)", "frequent (>5)"];

fn bucket(count: u32) -> usize {
    match count {
        0 => 0,
        1..=5 => 1,
        _ => 2,
    }
}

/// One method's results.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Method label, e.g. `L2D-L (M=20)`.
    pub method: String,
    /// Over all samples.
    pub overall: Metrics,
    /// Per frequency bucket ([`BUCKETS`] order).
    pub by_frequency: Vec<(String, Metrics)>,
    /// 95 % bootstrap intervals of the overall metrics.
    pub intervals: Intervals,
    /// Paired difference against the reference row (filled by [`compare`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versus: Option<Paired>,
    /// Which evaluated samples (indices) this report covers, and each one's target rank.
    #[serde(skip)]
    pub ranks: Vec<(u32, Option<u32>)>,
}

/// A 95 % bootstrap interval: its lower and upper bound. Written to JSON as `[low, high]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bounds {
    pub low: f64,
    pub high: f64,
}

impl Serialize for Bounds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.low, self.high).serialize(s)
    }
}

/// A mean with its 95 % bootstrap interval. Written to JSON as `[mean, low, high]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Interval {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// The interval alone.
    pub fn bounds(self) -> Bounds {
        Bounds {
            low: self.low,
            high: self.high,
        }
    }
}

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.mean, self.low, self.high).serialize(s)
    }
}

/// The 95 % bootstrap interval per K, for recall and NDCG.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Intervals {
    pub recall: [Bounds; 5],
    pub ndcg: [Bounds; 5],
}

/// A variant minus a reference on the samples both cover: mean difference and its 95 %
/// bootstrap interval (paired: the same resampled samples for both), per K.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    pub reference: String,
    pub samples: usize,
    pub recall: [Interval; 5],
    pub ndcg: [Interval; 5],
}

/// One sample's recall at each of [`KS`], then its NDCG at each (the protocol's one rule:
/// a hit when rank < K, gain 1/log2(rank + 2)).
fn gains(rank: Option<u32>) -> [f64; 10] {
    let mut g = [0.0; 10];
    if let Some(r) = rank {
        for (j, &k) in KS.iter().enumerate() {
            if (r as usize) < k {
                g[j] = 1.0;
                g[KS.len() + j] = 1.0 / ((r + 2) as f64).log2();
            }
        }
    }
    g
}

/// Percentile bootstrap: `values[i]` per sample (10 metrics), resampled with replacement;
/// returns the mean and its 2.5 % and 97.5 % percentiles per metric.
fn bootstrap(values: &[[f64; 10]], seed: u64) -> [Interval; 10] {
    let n = values.len();
    let mut out = [Interval::default(); 10];
    if n == 0 {
        return out;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<[f64; 10]> = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        let mut sum = [0.0; 10];
        for _ in 0..n {
            let v = &values[rng.random_range(0..n)];
            sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
        }
        means.push(sum.map(|s| s / n as f64));
    }
    for (j, o) in out.iter_mut().enumerate() {
        let mut col: Vec<f64> = means.iter().map(|m| m[j]).collect();
        col.sort_by(f64::total_cmp);
        let at = |q: f64| col[((q * (col.len() - 1) as f64).round() as usize).min(col.len() - 1)];
        let mean = values.iter().map(|v| v[j]).sum::<f64>() / n as f64;
        *o = Interval {
            mean,
            low: at(0.025),
            high: at(0.975),
        };
    }
    out
}

/// Fills `versus` of every report but the reference with its paired difference against the
/// report labelled `reference`, over the samples both cover.
pub fn compare(reports: &mut [Report], reference: &str) -> Result<()> {
    let base = reports
        .iter()
        .find(|r| r.method == reference)
        .ok_or_else(|| {
            Error::invalid(
                "reference",
                format!(
                    "`{reference}` is not an evaluated row (rows: {})",
                    reports
                        .iter()
                        .map(|r| r.method.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    let base_ranks: std::collections::HashMap<u32, Option<u32>> =
        base.ranks.iter().copied().collect();
    let name = base.method.clone();
    for report in reports.iter_mut().filter(|r| r.method != reference) {
        let pairs: Vec<(Option<u32>, Option<u32>)> = report
            .ranks
            .iter()
            .filter_map(|(i, r)| base_ranks.get(i).map(|b| (*r, *b)))
            .collect();
        let diffs: Vec<[f64; 10]> = pairs
            .iter()
            .map(|(r, b)| {
                let (a, c) = (gains(*r), gains(*b));
                std::array::from_fn(|j| a[j] - c[j])
            })
            .collect();
        let b = bootstrap(&diffs, BOOTSTRAP_SEED ^ 0xd1ff);
        report.versus = Some(Paired {
            reference: name.clone(),
            samples: pairs.len(),
            recall: [b[0], b[1], b[2], b[3], b[4]],
            ndcg: [b[5], b[6], b[7], b[8], b[9]],
        });
    }
    Ok(())
}

/// Scores rankings (best first) against targets; `train_counts[i]` = train samples whose
/// target is item i.
pub fn evaluate(
    method: &str,
    rankings: &[Vec<ItemIndex>],
    targets: &[ItemIndex],
    train_counts: &[u32],
) -> Report {
    let indices: Vec<u32> = (0..targets.len() as u32).collect();
    evaluate_samples(method, rankings, targets, &indices, train_counts)
}

/// [`evaluate`] for rankings of a subset: `indices[i]` is the evaluated sample `rankings[i]`
/// and `targets[i]` belong to (what pairs rows for [`compare`]).
pub fn evaluate_samples(
    method: &str,
    rankings: &[Vec<ItemIndex>],
    targets: &[ItemIndex],
    indices: &[u32],
    train_counts: &[u32],
) -> Report {
    assert_eq!(rankings.len(), targets.len(), "one ranking per target");
    let ranks: Vec<Option<u32>> = rankings
        .iter()
        .zip(targets)
        .map(|(ranking, &target)| ranking.iter().position(|&i| i == target).map(|r| r as u32))
        .collect();
    evaluate_ranks(method, &ranks, targets, indices, train_counts)
}

/// A report from each sample's 0-based target rank (`None` = not in the ranked depth).
pub fn evaluate_ranks(
    method: &str,
    target_ranks: &[Option<u32>],
    targets: &[ItemIndex],
    indices: &[u32],
    train_counts: &[u32],
) -> Report {
    assert_eq!(target_ranks.len(), targets.len(), "one rank per target");
    assert_eq!(indices.len(), targets.len(), "one sample index per target");
    let mut overall = Metrics::default();
    let mut buckets = vec![Metrics::default(); BUCKETS.len()];
    let mut ranks = Vec::with_capacity(targets.len());
    for ((&rank, &target), &index) in target_ranks.iter().zip(targets).zip(indices) {
        overall.add(rank);
        buckets[bucket(train_counts.get(target as usize).copied().unwrap_or(0))].add(rank);
        ranks.push((index, rank));
    }
    overall.finish();
    buckets.iter_mut().for_each(Metrics::finish);
    let per_sample: Vec<[f64; 10]> = ranks.iter().map(|r| gains(r.1)).collect();
    let b = bootstrap(&per_sample, BOOTSTRAP_SEED);
    let interval = |j: usize| b[j].bounds();
    Report {
        method: method.to_string(),
        overall,
        by_frequency: BUCKETS.iter().map(|b| b.to_string()).zip(buckets).collect(),
        intervals: Intervals {
            recall: [0, 1, 2, 3, 4].map(interval),
            ndcg: [5, 6, 7, 8, 9].map(interval),
        },
        versus: None,
        ranks,
    }
}

/// 0-based rank of `target` in `scores`: how many items `top_k`'s order puts before it.
pub fn rank_of(scores: &[f32], target: ItemIndex) -> usize {
    let own = Candidate(scores[target as usize], target);
    scores
        .iter()
        .enumerate()
        .filter(|&(i, &s)| Candidate(s, i as u32) < own)
        .count()
}

/// The items of the top-[`EVAL_DEPTH`] of `scores`, best first (what a ranking is judged on).
pub fn top_items(scores: &[f32]) -> Vec<ItemIndex> {
    top_k(scores, EVAL_DEPTH, &[])
        .into_iter()
        .map(|(i, _)| i)
        .collect()
}

/// L2D Recall@`k` of `queries` with a memory built from `memory_samples`: the quick check that
/// selects weights during training (a seeded subset of valid against a seeded fraction of the
/// train memory, plain L2, no cold-start vectors).
pub fn l2d_recall(
    model: &Model,
    catalog: &Catalog,
    memory_samples: &[Sample],
    queries: &[Sample],
    mode: Mode,
    k: usize,
) -> Result<f64> {
    let memory_refs: Vec<&Sample> = memory_samples.iter().collect();
    let query_refs: Vec<&Sample> = queries.iter().collect();
    let memory = Memory::build(model, catalog, &memory_refs, 64, &mut |_, _| {})?;
    let states = Memory::build(model, catalog, &query_refs, 64, &mut |_, _| {})?;
    let reps = Representations::from_memory(&memory, catalog.len(), Geometry::plain())?;
    let mut hits = 0usize;
    for (q, &target) in states.items.iter().enumerate() {
        let scores = reps.distances(states.state(q), mode, &[])?;
        if rank_of(&scores, target) < k {
            hits += 1;
        }
    }
    Ok(hits as f64 / queries.len().max(1) as f64)
}

/// A latent-space treatment evaluated against plain L2 (`l2d eval --treatments`): parts joined
/// by `+`: `center`, `cosine`, `prior=W` (popularity prior), `cold=title|last` (cold-start
/// rule), `local>=T` (adaptive local/global threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct Treatment {
    /// The text it was parsed from (`plain` for none).
    pub name: String,
    pub center: bool,
    pub cosine: bool,
    pub prior: f32,
    pub cold_titles: bool,
    pub local_min_states: u32,
}

impl Treatment {
    /// The paper's plain L2.
    pub fn plain() -> Self {
        Treatment {
            name: "plain".into(),
            center: false,
            cosine: false,
            prior: 0.0,
            cold_titles: false,
            local_min_states: 0,
        }
    }
}

impl std::str::FromStr for Treatment {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let mut t = Treatment {
            name: text.to_string(),
            ..Treatment::plain()
        };
        let bad = |part: &str, expected: &str| {
            Error::invalid(
                "treatment",
                format!("`{text}`: `{part}` (expected {expected})"),
            )
        };
        for part in text.split('+') {
            if let Some(w) = part.strip_prefix("prior=") {
                t.prior = w
                    .parse()
                    .ok()
                    .filter(|w: &f32| w.is_finite() && *w >= 0.0)
                    .ok_or_else(|| bad(part, "a weight ≥ 0"))?;
            } else if let Some(rule) = part.strip_prefix("cold=") {
                t.cold_titles = match rule {
                    "title" => true,
                    "last" => false,
                    _ => return Err(bad(part, "cold=title or cold=last")),
                };
            } else if let Some(n) = part.strip_prefix("local>=") {
                t.local_min_states = n.parse().map_err(|_| bad(part, "local>=T, T a count"))?;
            } else {
                match part {
                    "plain" => {}
                    "center" => t.center = true,
                    "cosine" => t.cosine = true,
                    _ => {
                        return Err(bad(
                            part,
                            "plain, center, cosine, prior=W, cold=title|last or local>=T",
                        ))
                    }
                }
            }
        }
        Ok(t)
    }
}

/// The memory states rounded through `dtype` (as a blob stores them).
pub fn round_memory(memory: &Memory, dtype: DType) -> Result<Memory> {
    if dtype == DType::F32 {
        return Ok(memory.clone());
    }
    let matrix = ItemMatrix::from_f32(memory.states.clone(), memory.dim, vec![true; memory.len()])?;
    Ok(Memory {
        dim: memory.dim,
        states: matrix.to_dtype(dtype).to_f32_values(),
        items: memory.items.clone(),
    })
}

/// Item representations of `memory` under a treatment (geometry, prior, cold-start rule,
/// adaptive threshold).
pub fn representations(
    model: &Model,
    catalog: &Catalog,
    memory: &Memory,
    treatment: &Treatment,
) -> Result<Representations> {
    let geometry = if treatment.center || treatment.cosine {
        Geometry::fit(memory, treatment.center, treatment.cosine)
    } else {
        Geometry::plain()
    };
    let mut reps = Representations::from_memory(memory, catalog.len(), geometry)?;
    reps.options.popularity_prior = treatment.prior;
    reps.options.local_min_states = treatment.local_min_states;
    if treatment.cold_titles {
        reps.fill_cold_from_titles(model, catalog)?;
    }
    Ok(reps)
}

/// Checks that there is one history per query when a scoring `needs` them (the follows
/// term), and that any given are one per query.
pub(crate) fn check_histories(
    needs: bool,
    histories: &[&[ItemIndex]],
    queries: usize,
) -> Result<()> {
    if (needs || !histories.is_empty()) && histories.len() != queries {
        return Err(Error::mismatch(
            "query histories",
            format!("one per query ({queries})"),
            histories.len(),
        ));
    }
    Ok(())
}

/// The top-[`EVAL_DEPTH`] ranking of every query state (rows of `queries`, made from
/// `histories`: the follows term's input, empty when the scoring has none), in parallel.
pub fn rank_queries(
    reps: &Representations,
    queries: &Memory,
    histories: &[&[ItemIndex]],
    mode: Mode,
) -> Result<Vec<Vec<ItemIndex>>> {
    check_histories(reps.options.follows != 0.0, histories, queries.len())?;
    (0..queries.len())
        .into_par_iter()
        .map(|q| {
            let history = histories.get(q).copied().unwrap_or_default();
            Ok(top_items(&reps.distances(
                queries.state(q),
                mode,
                history,
            )?))
        })
        .collect()
}

/// L2D-L rankings for several M at once (outer: M, inner: queries); the query-to-state
/// distances are computed once per query.
pub fn rank_queries_local(
    reps: &Representations,
    queries: &Memory,
    ms: &[usize],
) -> Result<Vec<Vec<Vec<ItemIndex>>>> {
    let per_query: Vec<Vec<Vec<ItemIndex>>> = (0..queries.len())
        .into_par_iter()
        .map(|q| {
            Ok(reps
                // Representations from a memory carry no follow weights: no history needed.
                .local_scores(queries.state(q), ms, &[])?
                .iter()
                .map(|scores| top_items(scores))
                .collect())
        })
        .collect::<Result<_>>()?;
    Ok((0..ms.len())
        .map(|j| per_query.iter().map(|r| r[j].clone()).collect())
        .collect())
}

/// The samples of a split an evaluation ranks: all of them, or a seeded subset of `limit`
/// (the same subset every run, so rows of different runs pair up).
pub fn evaluated_samples(total: usize, limit: Option<usize>) -> Result<Vec<usize>> {
    match limit {
        Some(limit) if limit < total => subset(total, limit as f64 / total as f64, 7),
        _ => Ok((0..total).collect()),
    }
}

/// Which latent-space variants [`latent_reports`] evaluates: each memory fraction (seeded
/// random, rounded through `dtype` as a blob stores it) × each treatment × L2D-G or L2D-L at
/// every M.
#[derive(Debug, Clone)]
pub struct LatentGrid {
    /// Memory fractions (0 < f ≤ 1).
    pub fractions: Vec<f64>,
    /// Storage type the memory is rounded through.
    pub dtype: DType,
    /// Treatments (the first is usually [`Treatment::plain`]).
    pub treatments: Vec<Treatment>,
    /// `false`: L2D-G; `true`: L2D-L at every `ms`.
    pub local: bool,
    /// Neighbour counts for L2D-L.
    pub ms: Vec<usize>,
}

/// The label suffix of an evaluated variant: memory fraction, dtype, treatment.
pub fn variant_suffix(fraction: f64, dtype: DType, treatment: &str) -> String {
    let mut suffix = String::new();
    if fraction < 1.0 {
        suffix += &format!(" [memory {:.0}%]", fraction * 100.0);
    }
    if dtype != DType::F32 {
        suffix += &format!(" [{dtype:?}]");
    }
    if treatment != "plain" {
        suffix += &format!(" [{treatment}]");
    }
    suffix
}

/// Reports of every variant of `grid` on the query states (`done(report, seconds)` after each,
/// with the seconds its ranking took).
#[allow(clippy::too_many_arguments)]
pub fn latent_reports(
    model: &Model,
    catalog: &Catalog,
    memory: &Memory,
    queries: &Memory,
    targets: &[ItemIndex],
    train_counts: &[u32],
    grid: &LatentGrid,
    done: &mut dyn FnMut(&Report, f64),
) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for &fraction in &grid.fractions {
        let kept = round_memory(
            &memory.select(&subset(memory.len(), fraction, 0)?),
            grid.dtype,
        )?;
        for treatment in &grid.treatments {
            let reps = representations(model, catalog, &kept, treatment)?;
            let suffix = variant_suffix(fraction, grid.dtype, &treatment.name);
            let start = std::time::Instant::now();
            let labelled: Vec<(String, Vec<Vec<ItemIndex>>)> = if grid.local {
                let labels = grid.ms.iter().map(|m| format!("L2D-L (M={m}){suffix}"));
                labels
                    .zip(rank_queries_local(&reps, queries, &grid.ms)?)
                    .collect()
            } else {
                vec![(
                    format!("L2D-G{suffix}"),
                    rank_queries(&reps, queries, &[], Mode::Global)?,
                )]
            };
            let seconds = start.elapsed().as_secs_f64();
            for (label, rankings) in &labelled {
                let report = evaluate(label, rankings, targets, train_counts);
                done(&report, seconds);
                reports.push(report);
            }
        }
    }
    Ok(reports)
}

/// The reference row of [`compare`]: `None` → the first report, `shipped` → the
/// [`SHIPPED_LABEL`] row, otherwise the label itself.
pub fn reference_label(reports: &[Report], reference: Option<&str>) -> Result<String> {
    match reference {
        None => reports
            .first()
            .map(|r| r.method.clone())
            .ok_or_else(|| Error::invalid("reference", "there is no report to compare with")),
        Some("shipped") => reports
            .iter()
            .find(|r| r.method.starts_with(SHIPPED_LABEL))
            .map(|r| r.method.clone())
            .ok_or_else(|| {
                Error::invalid(
                    "reference",
                    "`shipped` needs the shipped report (--shipped)",
                )
            }),
        Some(name) => Ok(name.to_string()),
    }
}

/// The popularity baseline's report (train-target counts).
pub fn popularity_report(targets: &[ItemIndex], train_counts: &[u32]) -> Report {
    let ranking = popularity_ranking(train_counts, EVAL_DEPTH);
    evaluate(
        "popularity",
        &vec![ranking; targets.len()],
        targets,
        train_counts,
    )
}

/// The report of a method that ranks from a history alone (no query state): `rank(history)`
/// gives each sample's ranking, at least [`EVAL_DEPTH`] deep where the catalog allows.
pub fn history_ranking_report(
    name: &str,
    histories: &[&[ItemIndex]],
    targets: &[ItemIndex],
    train_counts: &[u32],
    rank: impl Fn(&[ItemIndex]) -> Vec<ItemIndex> + Sync,
) -> Result<Report> {
    check_histories(true, histories, targets.len())?;
    let rankings: Vec<Vec<ItemIndex>> = histories.par_iter().map(|h| rank(h)).collect();
    Ok(evaluate(name, &rankings, targets, train_counts))
}

/// Beam-search reports, one per width, on a seeded subset of at most `limit` of `samples`
/// (beam search is slow); `progress(width, done, total)` after each query.
pub fn beam_reports(
    model: &Model,
    catalog: &Catalog,
    samples: &[&Sample],
    widths: &[usize],
    limit: usize,
    train_counts: &[u32],
    progress: &mut dyn FnMut(usize, usize, usize),
) -> Result<Vec<Report>> {
    let trie = TitleTrie::build(model, catalog)?;
    let keep = subset(
        samples.len(),
        (limit as f64 / samples.len().max(1) as f64).min(1.0),
        11,
    )?;
    let targets: Vec<ItemIndex> = keep.iter().map(|&i| samples[i].target).collect();
    let indices: Vec<u32> = keep.iter().map(|&i| i as u32).collect();
    let mut reports = Vec::new();
    for &width in widths {
        let mut rankings = Vec::with_capacity(keep.len());
        for (done, &i) in keep.iter().enumerate() {
            let ids = model.history_prompt_ids(catalog, &samples[i].history)?;
            let found = beam_search(model, &trie, &ids, width, MAX_TITLE_TOKENS)?;
            rankings.push(ranking(&found).into_iter().map(|(i, _)| i).collect());
            progress(width, done + 1, keep.len());
        }
        reports.push(evaluate_samples(
            &format!("beam {width}"),
            &rankings,
            &targets,
            &indices,
            train_counts,
        ));
    }
    Ok(reports)
}

/// How the shipped row's label starts (what `--reference shipped` finds).
pub const SHIPPED_LABEL: &str = "shipped: ";

/// What the browser runs by default: the manifest's scoring applied to the shipped blob file
/// itself (its dtype, its memory fraction, its cold-start vectors), ranked for `queries`.
pub fn shipped_report(
    model: &Model,
    blob: Blob,
    scoring: &Scoring,
    (queries, histories): (&Memory, &[&[ItemIndex]]),
    targets: &[ItemIndex],
    train_counts: &[u32],
) -> Result<Report> {
    let (_, mut reps) = load_blob(model, blob, "shipped blob")?;
    reps.apply_scoring(scoring)?;
    let rankings = rank_queries(&reps, queries, histories, scoring.mode()?)?;
    Ok(evaluate(
        &format!("{SHIPPED_LABEL}{}", scoring.label()),
        &rankings,
        targets,
        train_counts,
    ))
}

/// A Markdown table of reports: each metric with its 95 % bootstrap interval.
pub fn markdown_table(reports: &[Report]) -> String {
    let mut out = String::from("| method | samples |");
    for k in KS {
        out += &format!(" R@{k} |");
    }
    for k in KS {
        out += &format!(" N@{k} |");
    }
    out += "\n|---|---|";
    out += &"---|".repeat(2 * KS.len());
    out += "\n";
    for r in reports {
        out += &format!("| {} | {} |", r.method, r.overall.samples);
        let values = r.overall.recall.iter().chain(&r.overall.ndcg);
        let bounds = r.intervals.recall.iter().chain(&r.intervals.ndcg);
        for (v, Bounds { low, high }) in values.zip(bounds) {
            out += &format!(" {v:.4} ({low:.4}–{high:.4}) |");
        }
        out += "\n";
    }
    out
}

/// A Markdown table of each row's paired difference against its reference (mean and 95 %
/// bootstrap interval; an interval above 0 means the row wins at that K).
pub fn paired_table(reports: &[Report]) -> String {
    let Some(reference) = reports.iter().find_map(|r| r.versus.as_ref()) else {
        return String::new();
    };
    let mut out = format!(
        "Paired difference against `{}`:\n\n| method | paired samples |",
        reference.reference
    );
    for k in KS {
        out += &format!(" ΔR@{k} |");
    }
    out += " ΔN@20 |\n|---|---|";
    out += &"---|".repeat(KS.len() + 1);
    out += "\n";
    for r in reports {
        let Some(p) = &r.versus else { continue };
        out += &format!("| {} | {} |", r.method, p.samples);
        for Interval { mean, low, high } in p.recall.iter().chain(std::iter::once(&p.ndcg[2])) {
            out += &format!(" {mean:+.4} ({low:+.4}…{high:+.4}) |");
        }
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_and_ndcg_follow_the_protocol() {
        let rankings = vec![vec![3, 1, 2], vec![0, 1, 2], (0..60).collect()];
        let targets = [3, 2, 55];
        let r = evaluate("m", &rankings, &targets, &[9, 0, 3, 0]);
        assert_eq!(r.overall.samples, 3);
        assert!((r.overall.recall_at(5) - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.overall.recall_at(100) - 1.0).abs() < 1e-12);
        let ndcg5 = (1.0 + 1.0 / 4f64.log2()) / 3.0;
        assert!((r.overall.ndcg[0] - ndcg5).abs() < 1e-12);
    }
}
