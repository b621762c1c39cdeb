//! Latency measurement for `l2d bench`: the online paths (L2D-G, L2D-L, beam) timed on the
//! same histories, taking turns per history, and the scoring kernels' throughput. Speed goals
//! are benchmarks, never timed tests: this module measures, it asserts nothing.

use std::time::Instant;

use crate::data::catalog::{Catalog, ItemIndex};
use crate::error::Result;
use crate::latent::score::{top_k, ItemMatrix};
use crate::model::{Model, QueryEncoder};
use crate::serve::decode::{beam_search, ranking, TitleTrie, MAX_TITLE_TOKENS};
use crate::serve::recommend::{query_state, rank, Mode, Representations};

/// One timed path: history → top-K, returning how many items it ranked.
pub type Path<'a> = Box<dyn Fn(&[ItemIndex]) -> Result<usize> + 'a>;

/// Median and 90th percentile of one path's per-history times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median, milliseconds.
    pub median_ms: f64,
    /// 90th percentile, milliseconds.
    pub p90_ms: f64,
}

impl Latency {
    /// Median and p90 of per-run times in milliseconds (any order).
    pub fn of(mut times_ms: Vec<f64>) -> Self {
        times_ms.sort_by(f64::total_cmp);
        Latency {
            median_ms: percentile(&times_ms, 0.5),
            p90_ms: percentile(&times_ms, 0.9),
        }
    }
}

/// The nearest-rank percentile `p` (0…1) of sorted values (the one percentile rule here).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}

/// L2D on `reps` in `mode`: one forward pass, distances, top-`k`.
pub fn l2d_path<'a>(
    model: &'a Model,
    catalog: &'a Catalog,
    reps: &'a Representations,
    mode: Mode,
    k: usize,
) -> Path<'a> {
    Box::new(move |h: &[ItemIndex]| {
        let q = query_state(model, catalog, h)?;
        Ok(rank(reps, &q, mode, k, (h, h))?.len())
    })
}

/// L2D on `reps` in `mode` for each history grown by its last item, as after a click: a
/// [`QueryEncoder`] has encoded the history without that item (untimed), and the timed call
/// assembles the prompt, reuses that prompt's key/value cache for the new tokens, scores and
/// ranks. Histories shorter than two items are skipped.
pub fn grown_by_one_latency(
    model: &Model,
    catalog: &Catalog,
    reps: &Representations,
    mode: Mode,
    k: usize,
    histories: &[&[ItemIndex]],
) -> Result<Latency> {
    let mut times = Vec::with_capacity(histories.len());
    for h in histories {
        let h = crate::data::prompt::truncate_history(h);
        if h.len() < 2 {
            continue;
        }
        let mut encoder = QueryEncoder::new();
        encoder.encode(
            model,
            &model.history_prompt_ids(catalog, &h[..h.len() - 1])?,
        )?;
        let start = Instant::now();
        let (q, _) = encoder.encode(model, &model.history_prompt_ids(catalog, h)?)?;
        std::hint::black_box(rank(reps, &q, mode, k, (h, h))?);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Latency::of(times))
}

/// The language-space baseline: constrained beam search of `width` over `trie`.
pub fn beam_path<'a>(
    model: &'a Model,
    catalog: &'a Catalog,
    trie: &'a TitleTrie,
    width: usize,
) -> Path<'a> {
    Box::new(move |h: &[ItemIndex]| {
        let ids = model.history_prompt_ids(catalog, h)?;
        Ok(ranking(&beam_search(model, trie, &ids, width, MAX_TITLE_TOKENS)?).len())
    })
}

/// Times every path on every history after one warm-up call each. The paths take turns on
/// each history, so a load change on a shared machine hits all of them alike instead of
/// whichever ran at that moment. One [`Latency`] per path, in order.
pub fn round_robin(paths: &[Path<'_>], histories: &[&[ItemIndex]]) -> Result<Vec<Latency>> {
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(histories.len()); paths.len()];
    if let Some(first) = histories.first() {
        for path in paths {
            path(first)?;
        }
    }
    for h in histories {
        for (path, times) in paths.iter().zip(&mut times) {
            let start = Instant::now();
            path(h)?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times.into_iter().map(Latency::of).collect())
}

/// Mean seconds of distances + top-`k` of `query` against `matrix`, over `rounds` runs.
pub fn scoring_seconds(matrix: &ItemMatrix, query: &[f32], k: usize, rounds: usize) -> Result<f64> {
    let rounds = rounds.max(1);
    let start = Instant::now();
    for _ in 0..rounds {
        let d = matrix.distances(query)?;
        std::hint::black_box(top_k(&d, k, &[]));
    }
    Ok(start.elapsed().as_secs_f64() / rounds as f64)
}

/// Per-query latency of distances + top-`k` against `matrix`, one query after another (each
/// query once, after one warm-up).
pub fn scoring_latency(matrix: &ItemMatrix, queries: &[Vec<f32>], k: usize) -> Result<Latency> {
    if let Some(q) = queries.first() {
        std::hint::black_box(top_k(&matrix.distances(q)?, k, &[]));
    }
    let mut times = Vec::with_capacity(queries.len());
    for q in queries {
        let start = Instant::now();
        std::hint::black_box(top_k(&matrix.distances(q)?, k, &[]));
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Latency::of(times))
}

/// This machine's sequential memory-read bandwidth in bytes/s: the best of `rounds` sums over
/// a `bytes`-sized buffer (large enough to miss every cache), on one thread. The ceiling any
/// scan of catalog rows can reach.
pub fn read_bandwidth(bytes: usize, rounds: usize) -> f64 {
    let words = vec![1u64; (bytes / 8).max(1)];
    let mut best = f64::INFINITY;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        // Four accumulators: the adds are not the bottleneck, the loads are.
        let mut acc = [0u64; 4];
        for chunk in words.chunks_exact(4) {
            for (a, w) in acc.iter_mut().zip(chunk) {
                *a = a.wrapping_add(*w);
            }
        }
        std::hint::black_box(acc);
        best = best.min(start.elapsed().as_secs_f64());
    }
    (words.len() * 8) as f64 / best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let cases: [(&[f64], f64, f64); 5] = [
            (&[1.0], 0.5, 1.0),
            (&[1.0, 2.0, 3.0], 0.5, 2.0),
            (
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
                0.9,
                9.0,
            ),
            (&[1.0, 2.0], 0.0, 1.0),
            (&[1.0, 2.0], 1.0, 2.0),
        ];
        for (values, p, expected) in cases {
            assert_eq!(percentile(values, p), expected, "{values:?} at {p}");
        }
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn round_robin_times_every_path_on_every_history() {
        let calls = std::cell::RefCell::new(Vec::new());
        let paths: Vec<Path> = (0..2)
            .map(|p| -> Path {
                let calls = &calls;
                Box::new(move |h: &[ItemIndex]| {
                    calls.borrow_mut().push((p, h[0]));
                    Ok(1)
                })
            })
            .collect();
        let histories: [&[ItemIndex]; 3] = [&[7], &[8], &[9]];
        let latencies = round_robin(&paths, &histories).unwrap();
        assert_eq!(latencies.len(), 2);
        drop(paths);
        // Warm-up on the first history, then turns per history.
        assert_eq!(
            calls.into_inner(),
            vec![
                (0, 7),
                (1, 7),
                (0, 7),
                (1, 7),
                (0, 8),
                (1, 8),
                (0, 9),
                (1, 9)
            ]
        );
    }
}
