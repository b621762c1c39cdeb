//! The browser's scoring and weights, chosen on valid (`l2d choose`): a coordinate search over
//! fixed grids on the shipped blob itself (mode and M, prior, density bandwidth and count
//! exponent, adaptive threshold, the follows weight, then the cold-start pseudo-count), the
//! cheapest to serve among the variants within noise of the best (then, among its cold-start
//! pseudo-counts within noise, the one unseen targets rank best under), and int8 weights unless they
//! cost more than [`INT8_TOLERANCE`] valid Recall@20.

use rayon::prelude::*;

use crate::data::catalog::ItemIndex;
use crate::error::{Error, Result};
use crate::latent::aggregate::{Density, ModeKind, ScoreOptions};
use crate::latent::memory::Memory;
use crate::model::Weights;
use crate::offline::eval::{check_histories, compare, evaluate_ranks, rank_of, Report, EVAL_DEPTH};
use crate::serve::manifest::Scoring;
use crate::serve::recommend::{Mode, Representations};

/// Most valid Recall@20 (absolute) that int8 weights may cost against f32 and still be
/// chosen: the quality guard of the faster product, the same for every dataset.
pub const INT8_TOLERANCE: f64 = 0.002;

/// The weights the browser runs, chosen on valid after the scoring: int8 (faster
/// in wasm) unless its Recall@20 with `scoring` falls more than [`INT8_TOLERANCE`] below
/// f32's. `f32_report` is the chosen scoring's row from [`choose_scoring`] (f32 query states);
/// `int8_states` are the query states under int8 weights, scored the same way (the memory
/// stays the one built with f32). Returns the choice and the int8 report.
pub fn choose_weights(
    base: &Representations,
    (scoring, f32_report): (&Scoring, &Report),
    (int8_states, histories): (&Memory, &[&[ItemIndex]]),
    (targets, train_counts): (&[ItemIndex], &[u32]),
    progress: QueryProgress,
) -> Result<(Weights, Report)> {
    let candidate = Scoring {
        weights: Weights::Int8,
        ..scoring.clone()
    };
    let report = score_candidates(
        base,
        std::slice::from_ref(&candidate),
        (int8_states, histories),
        targets,
        train_counts,
        progress,
    )?
    .pop()
    .ok_or_else(|| Error::invalid("int8 weights", "no report for the chosen scoring"))?;
    let chosen =
        if report.overall.recall_at(20) >= f32_report.overall.recall_at(20) - INT8_TOLERANCE {
            Weights::Int8
        } else {
            Weights::F32
        };
    Ok((chosen, report))
}

/// Neighbour counts tried for L2D-L when choosing the shipped scoring.
pub const CHOOSE_M: [usize; 5] = [5, 10, 20, 50, 100];
/// Popularity-prior weights tried (0 = plain L2).
pub const CHOOSE_PRIOR: [f32; 6] = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0];
/// Density bandwidths tried, as multiples of the median squared distance from a valid query
/// to its nearest memory state (so the grid follows the data's scale, not one dataset's).
pub const CHOOSE_BANDWIDTH: [f32; 5] = [0.5, 0.75, 1.0, 1.5, 2.0];
/// Density count exponents tried (0 = kernel sum, 1 = kernel mean).
pub const CHOOSE_COUNT_EXPONENT: [f32; 4] = [0.0, 0.25, 0.5, 1.0];
/// Cold-start pseudo-counts tried in density mode, as shares of the mean state count of the
/// items that have states (1 state, the default, is always a candidate). Up to 8 times the
/// mean: the follows weight lifts warm items that a cold item, without follow weights, must
/// be weighed against.
pub const CHOOSE_COLD_SHARE: [f64; 7] = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0];
/// Queries the density bandwidth's scale is measured on (the first of the split, seeded order).
const SCALE_QUERIES: usize = 500;

/// The median squared distance from a query to its nearest memory state, over the first
/// [`SCALE_QUERIES`] queries: the unit of [`CHOOSE_BANDWIDTH`].
pub fn nearest_state_scale(base: &Representations, queries: &Memory) -> Result<f32> {
    let states = base.rows(Mode::Density)?;
    let mut nearest: Vec<f32> = (0..queries.len().min(SCALE_QUERIES))
        .into_par_iter()
        .map(|i| {
            let d = states.distances(&base.prepared_query(queries.state(i)))?;
            Ok(d.into_iter().fold(f32::INFINITY, f32::min))
        })
        .collect::<Result<_>>()?;
    nearest.retain(|d| d.is_finite());
    nearest.sort_by(f32::total_cmp);
    nearest
        .get(nearest.len() / 2)
        .copied()
        .filter(|&d| d > 0.0)
        .ok_or_else(|| {
            Error::invalid(
                "density scale",
                "no query has a nearest memory state at a distance > 0",
            )
        })
}

/// Follows-term weights tried (`crate::latent::follows`; the 0 of every earlier stage is the off
/// state), in the scores' own units: nats for density, distances for the other modes.
pub const CHOOSE_FOLLOWS: [f32; 6] = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0];

/// Adaptive thresholds tried for local mode (0 = every item local).
pub const CHOOSE_LOCAL_MIN: [u32; 6] = [0, 2, 3, 5, 10, 20];

/// Called with (queries done, total) while a pass over the queries runs (from any thread).
pub type QueryProgress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Reports for several scorings of the same representations in one pass over the queries
/// (states of `histories`, the follows term's input): each query's distances to the memory
/// states (and item vectors) are computed once and every candidate is aggregated from them;
/// `progress` hears every 64th query and the last.
pub fn score_candidates(
    base: &Representations,
    candidates: &[Scoring],
    (queries, histories): (&Memory, &[&[ItemIndex]]),
    targets: &[ItemIndex],
    train_counts: &[u32],
    progress: QueryProgress,
) -> Result<Vec<Report>> {
    let done = std::sync::atomic::AtomicUsize::new(0);
    assert_eq!(queries.len(), targets.len(), "one target per query");
    let follows = candidates.iter().any(|c| c.follows != 0.0);
    check_histories(follows, histories, queries.len())?;
    // Each candidate's mode and options, validated once (not per query).
    let (modes, options): (Vec<Mode>, Vec<ScoreOptions>) = candidates
        .iter()
        .map(|c| Ok((c.mode()?, c.options()?)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    // One representative per kind of rows; each kind's distances are computed once per query.
    let global = modes.iter().copied().find(|m| *m == Mode::Global);
    let local = modes.iter().copied().find(|m| m.uses_states());
    let ranks: Vec<Vec<Option<u32>>> = (0..queries.len())
        .into_par_iter()
        .map(|i| {
            let q = base.prepared_query(queries.state(i));
            let distances = |mode: Option<Mode>| -> Result<Option<Vec<f32>>> {
                mode.map(|m| base.rows(m)?.distances(&q)).transpose()
            };
            let (to_global, to_states) = (distances(global)?, distances(local)?);
            modes
                .iter()
                .zip(&options)
                .map(|(&mode, options)| {
                    let rows = if mode.uses_states() {
                        to_states.clone()
                    } else {
                        to_global.clone()
                    }
                    .expect("computed for every mode among the candidates");
                    let history = histories.get(i).copied().unwrap_or_default();
                    let scores = base.scores_with(&q, rows, mode, options, history)?;
                    let rank = rank_of(&scores, targets[i]);
                    Ok((rank < EVAL_DEPTH).then_some(rank as u32))
                })
                .collect::<Result<Vec<_>>>()
                .inspect(|_| {
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n.is_multiple_of(64) || n == queries.len() {
                        progress(n, queries.len());
                    }
                })
        })
        .collect::<Result<_>>()?;
    let indices: Vec<u32> = (0..targets.len() as u32).collect();
    Ok(candidates
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let column: Vec<Option<u32>> = ranks.iter().map(|r| r[j]).collect();
            evaluate_ranks(&c.label(), &column, targets, &indices, train_counts)
        })
        .collect())
}

/// The order `l2d choose` ranks variants by: Recall@20, then NDCG@20.
fn by_recall(a: &Report, b: &Report) -> std::cmp::Ordering {
    a.overall
        .recall_at(20)
        .total_cmp(&b.overall.recall_at(20))
        .then(a.overall.ndcg[2].total_cmp(&b.overall.ndcg[2]))
}

/// What serving a scoring costs the browser per query, in order: `global` scores one row per
/// item; `density` every memory state in one pass; `local` every state, then the mean of each
/// item's M nearest (the browser bench page's score times, in the README).
pub fn serving_cost(scoring: &Scoring) -> u8 {
    match scoring.mode() {
        Ok(Mode::Global) => 0,
        Ok(Mode::Density) => 1,
        _ => 2,
    }
}

/// The choice among evaluated variants (`scorings[i]` evaluated as `reports[i]`): the best
/// Recall@20 (`best`), unless a variant cheaper to serve ([`serving_cost`]) is not
/// significantly worse, i.e. its paired 95 % interval of ΔRecall@20 against the best reaches
/// 0; then the cheapest such, by Recall@20, then NDCG@20. Fills every other report's paired
/// difference against the best. Returns the chosen index.
pub fn cheapest_within_noise(
    scorings: &[Scoring],
    reports: &mut [Report],
    best: usize,
) -> Result<usize> {
    if scorings.len() != reports.len() || best >= reports.len() {
        return Err(Error::invalid(
            "cheapest_within_noise",
            format!(
                "{} scorings, {} reports, best {best}",
                scorings.len(),
                reports.len()
            ),
        ));
    }
    let reference = reports[best].method.clone();
    compare(reports, &reference)?;
    let tied = |i: usize| {
        i == best
            || reports[i]
                .versus
                .as_ref()
                .is_some_and(|p| p.recall[2].high >= 0.0)
    };
    Ok((0..reports.len())
        .filter(|&i| tied(i) && serving_cost(&scorings[i]) <= serving_cost(&scorings[best]))
        .max_by(|&a, &b| {
            serving_cost(&scorings[b])
                .cmp(&serving_cost(&scorings[a]))
                .then(by_recall(&reports[a], &reports[b]))
        })
        .unwrap_or(best))
}

/// Chooses the scoring the browser ships, on a validation split, from the shipped blob's own
/// representations (`base`, as `load_blob` gives them): coordinate search over mode and M,
/// then the popularity prior, then (local mode) the adaptive threshold, then (when the blob
/// stores follow weights; `histories` are the queries') the follows weight, then (when the blob
/// has cold-start vectors) their pseudo-count with that follows weight, each stage keeping
/// the best Recall@20 (ties: NDCG@20); last, [`cheapest_within_noise`] among everything evaluated
/// (the browser serves a cheaper scoring when valid cannot tell it from the best), and
/// [`best_for_cold`] among its pseudo-counts within noise. The grids
/// are fixed above, not tuned to one dataset. `progress` hears each report, `queries_done` the
/// passes over the queries. Returns the choice and every evaluated variant.
pub fn choose_scoring(
    base: &Representations,
    (queries, histories): (&Memory, &[&[ItemIndex]]),
    targets: &[ItemIndex],
    train_counts: &[u32],
    progress: &mut dyn FnMut(&Report),
    queries_done: QueryProgress,
) -> Result<(Scoring, Vec<Report>)> {
    check_train_only(&base.counts, train_counts)?;
    // Every evaluated variant, in order; the best so far is an index into it.
    let mut evaluated: Vec<(Scoring, Report)> = Vec::new();
    let mut stage = |candidates: Vec<Scoring>, evaluated: &mut Vec<(Scoring, Report)>| {
        let stage_reports = score_candidates(
            base,
            &candidates,
            (queries, histories),
            targets,
            train_counts,
            queries_done,
        )?;
        for (c, r) in candidates.into_iter().zip(stage_reports) {
            progress(&r);
            evaluated.push((c, r));
        }
        Ok::<_, Error>(())
    };
    let best_of = |evaluated: &[(Scoring, Report)], mode: Option<ModeKind>| {
        let mut best: Option<usize> = None;
        for (i, (s, r)) in evaluated.iter().enumerate() {
            if mode.is_some_and(|m| s.mode != m) {
                continue;
            }
            if best.is_none_or(|b| by_recall(r, &evaluated[b].1).is_gt()) {
                best = Some(i);
            }
        }
        best
    };
    let mut modes = vec![Scoring::default()];
    if base.local.is_some() {
        modes.extend(CHOOSE_M.map(|m| Scoring {
            mode: ModeKind::Local,
            m,
            ..Scoring::default()
        }));
        // Bandwidths rounded to 3 significant digits: the manifest carries a readable number.
        let scale = nearest_state_scale(base, queries)?;
        for factor in CHOOSE_BANDWIDTH {
            for count_exponent in CHOOSE_COUNT_EXPONENT {
                modes.push(Scoring {
                    mode: ModeKind::Density,
                    density: Some(Density::new(
                        round_significant(factor * scale, 3),
                        count_exponent,
                    )),
                    ..Scoring::default()
                });
            }
        }
    }
    stage(modes, &mut evaluated)?;
    let chosen = evaluated[best_of(&evaluated, None).expect("a candidate")]
        .0
        .clone();
    if chosen.mode != ModeKind::Density {
        let priors = CHOOSE_PRIOR
            .into_iter()
            .filter(|&p| p != 0.0)
            .map(|popularity_prior| Scoring {
                popularity_prior,
                ..chosen.clone()
            })
            .collect();
        stage(priors, &mut evaluated)?;
        let chosen = evaluated[best_of(&evaluated, None).expect("a candidate")]
            .0
            .clone();
        if chosen.mode == ModeKind::Local {
            let thresholds = CHOOSE_LOCAL_MIN
                .into_iter()
                .filter(|&t| t > 1)
                .map(|local_min_states| Scoring {
                    local_min_states,
                    ..chosen.clone()
                })
                .collect();
            stage(thresholds, &mut evaluated)?;
        }
    }
    // Last, the follows term, on whatever leads, when the blob stores follow weights.
    if base.follows.is_some() {
        let chosen = evaluated[best_of(&evaluated, None).expect("a candidate")]
            .0
            .clone();
        let weights = CHOOSE_FOLLOWS
            .into_iter()
            .map(|follows| Scoring {
                follows,
                ..chosen.clone()
            })
            .collect();
        stage(weights, &mut evaluated)?;
    }
    // Density's count exponent is its prior, and it has no local/global threshold; what is
    // left is the weight of cold-start vectors, when the blob has them. Last, because a cold
    // item has no follow weights of its own: the follows weight lifts every warm item that
    // follows the history, and the pseudo-count must be weighed against that lift, not without
    // it. Tried on the best density variant with the leader's follows weight, whichever mode
    // leads, so the cheaper mode is tuned when compared.
    let leader = evaluated[best_of(&evaluated, None).expect("a candidate")]
        .0
        .clone();
    let density = best_of(&evaluated, Some(ModeKind::Density))
        .and_then(|i| evaluated[i].0.density.map(|d| (evaluated[i].0.clone(), d)));
    if let (Some((chosen, density)), false) = (density, base.cold_filled.is_empty()) {
        let warm: Vec<u32> = base.counts.iter().copied().filter(|&c| c > 0).collect();
        let mean = warm.iter().map(|&c| f64::from(c)).sum::<f64>() / warm.len().max(1) as f64;
        let with_follows = Scoring {
            follows: leader.follows,
            ..chosen
        };
        let mut candidates: Vec<Scoring> = CHOOSE_COLD_SHARE
            .into_iter()
            .map(|share| round_significant((share * mean).max(1.0) as f32, 3))
            .filter(|&cold_states| cold_states > 1.0)
            .map(|cold_states| Scoring {
                density: Some(Density {
                    cold_states,
                    ..density
                }),
                ..with_follows.clone()
            })
            .collect();
        // The leader's follows weight on the density variant, at the default pseudo-count,
        // unless it was evaluated already.
        if !evaluated.iter().any(|(s, _)| *s == with_follows) {
            candidates.insert(0, with_follows);
        }
        stage(candidates, &mut evaluated)?;
    }
    let best = best_of(&evaluated, None).expect("a candidate");
    let (scorings, mut reports): (Vec<Scoring>, Vec<Report>) = evaluated.into_iter().unzip();
    let chosen = cheapest_within_noise(&scorings, &mut reports, best)?;
    let chosen = best_for_cold(&scorings, &reports, chosen, best);
    Ok((scorings[chosen].clone(), reports))
}

/// The cold-start pseudo-count, last: among the variants that differ from `chosen` only in
/// it and are not significantly worse than the best (their paired 95 % interval of ΔR@20
/// against `best`, filled by [`cheapest_within_noise`], reaches 0), the one under which unseen
/// targets (the first frequency bucket) rank best at R@20, then by Recall@20 and NDCG@20.
/// Overall recall alone cannot see what the pseudo-count does: unseen targets are few, and the
/// follows weight lifts the warm items a cold item competes with.
pub fn best_for_cold(
    scorings: &[Scoring],
    reports: &[Report],
    chosen: usize,
    best: usize,
) -> usize {
    let same_but_cold = |s: &Scoring| match (s.density, scorings[chosen].density) {
        (Some(a), Some(b)) => {
            Scoring {
                density: Some(Density {
                    cold_states: b.cold_states,
                    ..a
                }),
                ..s.clone()
            } == scorings[chosen]
        }
        _ => false,
    };
    let within = |i: usize| {
        i == best
            || reports[i]
                .versus
                .as_ref()
                .is_some_and(|p| p.recall[2].high >= 0.0)
    };
    let unseen = |i: usize| {
        reports[i]
            .by_frequency
            .first()
            .map_or(0.0, |(_, m)| m.recall_at(20))
    };
    (0..scorings.len().min(reports.len()))
        .filter(|&i| i == chosen || (same_but_cold(&scorings[i]) && within(i)))
        .max_by(|&a, &b| {
            unseen(a)
                .total_cmp(&unseen(b))
                .then(by_recall(&reports[a], &reports[b]))
                .then(b.cmp(&a))
        })
        .unwrap_or(chosen)
}

/// Refuses a memory that holds samples outside the train split: each memory state is one
/// train sample's, so an item cannot have more states (`counts`) than train targets
/// (`train_counts`). A memory updated with the valid interactions (`l2d update`, what a
/// deployed model ships) breaks this, and choosing on valid with it would score valid's own
/// states.
pub fn check_train_only(counts: &[u32], train_counts: &[u32]) -> Result<()> {
    let over = counts
        .iter()
        .zip(train_counts)
        .enumerate()
        .find(|(_, (states, targets))| states > targets);
    match over {
        Some((item, (states, targets))) => Err(Error::invalid(
            "memory blob",
            format!(
                "item #{item} has {states} memory states but {targets} train targets: the blob \
                 holds states of samples outside the train split (a memory updated with \
                 `l2d update`?); choose on the train-only memory"
            ),
        )),
        None => Ok(()),
    }
}

/// `x` rounded to `digits` significant digits.
fn round_significant(x: f32, digits: i32) -> f32 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - f64::from(x.abs()).log10().floor() as i32);
    ((f64::from(x) * scale).round() / scale) as f32
}
