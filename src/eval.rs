//! Offline evaluation (the D3 / L2D protocol): full ranking over the catalog, history not
//! masked, Recall@K (the single target is in the top K) and NDCG@K = 1/log2(rank + 2), for
//! K = 5, 10, 20, 50, 100; overall and split by how often the target occurs as a train target.

use serde::Serialize;

use crate::aggregate::Geometry;
use crate::catalog::{Catalog, ItemIndex};
use crate::dataset::Sample;
use crate::error::Result;
use crate::memory::Memory;
use crate::model::Model;
use crate::recommend::{Mode, Representations};

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
    fn add(&mut self, rank: Option<usize>) {
        self.samples += 1;
        if let Some(r) = rank {
            for (j, &k) in KS.iter().enumerate() {
                if r < k {
                    self.recall[j] += 1.0;
                    self.ndcg[j] += 1.0 / ((r + 2) as f64).log2();
                }
            }
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
}

/// Scores rankings (best first) against targets; `train_counts[i]` = train samples whose
/// target is item i.
pub fn evaluate(
    method: &str,
    rankings: &[Vec<ItemIndex>],
    targets: &[ItemIndex],
    train_counts: &[u32],
) -> Report {
    let mut overall = Metrics::default();
    let mut buckets = vec![Metrics::default(); BUCKETS.len()];
    for (ranking, &target) in rankings.iter().zip(targets) {
        let rank = ranking.iter().position(|&i| i == target);
        overall.add(rank);
        buckets[bucket(train_counts.get(target as usize).copied().unwrap_or(0))].add(rank);
    }
    overall.finish();
    buckets.iter_mut().for_each(Metrics::finish);
    Report {
        method: method.to_string(),
        overall,
        by_frequency: BUCKETS.iter().map(|b| b.to_string()).zip(buckets).collect(),
    }
}

/// 0-based rank of `target` in `scores` (smaller is better; ties by item index, as `top_k`).
pub fn rank_of(scores: &[f32], target: ItemIndex) -> usize {
    let t = target as usize;
    let own = scores[t];
    scores
        .iter()
        .enumerate()
        .filter(|&(i, &s)| s < own || (s == own && i < t))
        .count()
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
        let scores = reps.distances(states.state(q), mode)?;
        if rank_of(&scores, target) < k {
            hits += 1;
        }
    }
    Ok(hits as f64 / queries.len().max(1) as f64)
}

/// A Markdown table of reports (R@K and N@K for every K).
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
        for v in r.overall.recall.iter().chain(&r.overall.ndcg) {
            out += &format!(" {v:.4} |");
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
