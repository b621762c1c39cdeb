//! Scoring against brute-force references: L2D-G, L2D-L and density (`latent::aggregate`,
//! `latent::score`), rankings of f16, int8 and int4 rows against f32 on the shipped model, the
//! cold-start rule, candidate scorings and the choice on valid (`offline::choose`), and the
//! blob recipe's byte budget (`offline::recipe`).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use l2d::data::catalog::{Catalog, Item, ItemIndex};
use l2d::latent::aggregate::{global_item_vectors, Density, LocalIndex};
use l2d::latent::blob::{Blob, BlobKind};
use l2d::latent::memory::Memory;
use l2d::latent::score::{top_k, DType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_memory(rng: &mut StdRng, n_items: usize, states: usize, dim: usize) -> Memory {
    Memory {
        dim,
        states: (0..states * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect(),
        // Item 0 never appears: a cold-start item.
        items: (0..states)
            .map(|_| rng.random_range(1..n_items as u32))
            .collect(),
    }
}

fn brute_force_global(memory: &Memory, n_items: usize, query: &[f32], k: usize) -> Vec<ItemIndex> {
    let mut scored: Vec<(f64, ItemIndex)> = (0..n_items as ItemIndex)
        .filter_map(|item| {
            let rows: Vec<usize> = (0..memory.len())
                .filter(|&i| memory.items[i] == item)
                .collect();
            if rows.is_empty() {
                return None;
            }
            let dist: f64 = (0..memory.dim)
                .map(|d| {
                    let mean = rows.iter().map(|&r| memory.state(r)[d] as f64).sum::<f64>()
                        / rows.len() as f64;
                    (query[d] as f64 - mean).powi(2)
                })
                .sum();
            Some((dist, item))
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

#[test]
fn global_top_k_equals_brute_force() {
    let mut rng = StdRng::seed_from_u64(1);
    for trial in 0..5 {
        let (n_items, dim) = (40, 16 + trial);
        let memory = random_memory(&mut rng, n_items, 300, dim);
        let matrix = global_item_vectors(&memory, n_items).unwrap();
        for _ in 0..10 {
            let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let got: Vec<ItemIndex> = top_k(&matrix.distances(&query).unwrap(), 10, &[])
                .into_iter()
                .map(|(i, _)| i)
                .collect();
            assert_eq!(got, brute_force_global(&memory, n_items, &query, 10));
        }
        // The cold-start item ranks last rather than disappearing.
        let all = top_k(&matrix.distances(&vec![0.0; dim]).unwrap(), n_items, &[]);
        assert_eq!(all.len(), n_items);
        assert_eq!(all.last().unwrap().0, 0);
        assert!(all.last().unwrap().1.is_infinite());
    }
}

/// Whole-matrix passes (all values as f32, squared norms, L2D-G means) convert a block of
/// rows at a time: each must equal the row-by-row reading in every storage, for row counts
/// below, at and across block boundaries, with items whose states straddle a boundary and
/// items without a state first, between and last.
#[test]
fn whole_matrix_passes_equal_row_by_row_reading() {
    use l2d::latent::score::{ItemMatrix, BLOCK_ROWS};
    let dim = 7;
    for rows in [1, BLOCK_ROWS, BLOCK_ROWS + 1, 2 * BLOCK_ROWS + 300] {
        // Item counts: 0 first, then groups of 3, 500 and 0 repeated, the rest last, then 0.
        let mut counts = vec![0u32];
        let mut left = rows as u32;
        for &c in [3u32, 500, 0].iter().cycle() {
            if left == 0 {
                break;
            }
            counts.push(c.min(left));
            left -= c.min(left);
        }
        counts.push(0);
        let values: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * (1.0 + (i % 3) as f32))
            .collect();
        let f32_rows = ItemMatrix::from_f32(values, dim, vec![true; rows]).unwrap();
        for dtype in [DType::F32, DType::F16, DType::I8, DType::I4] {
            let m = f32_rows.to_dtype(dtype);
            let case = format!("{rows} rows, {dtype:?}");
            let mut scratch = vec![0f32; dim];
            let by_row: Vec<f32> = (0..rows)
                .flat_map(|r| m.row_into(r, &mut scratch).to_vec())
                .collect();
            assert_eq!(m.to_f32_values(), by_row, "{case}: values");
            let norms: Vec<f32> = by_row
                .chunks(dim)
                .map(|r| r.iter().map(|v| v * v).sum())
                .collect();
            for (r, (got, want)) in m.norms().iter().zip(&norms).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-4 * want.max(1.0),
                    "{case}: norm {r}"
                );
            }
            let global = LocalIndex::from_grouped(m.clone(), &counts)
                .unwrap()
                .global_vectors()
                .unwrap();
            assert_eq!(global.rows(), counts.len(), "{case}: one vector per item");
            let mut start = 0;
            for (item, &c) in counts.iter().enumerate() {
                let c = c as usize;
                assert_eq!(global.valid()[item], c > 0, "{case}: item {item} valid");
                let got = global.row_into(item, &mut scratch).to_vec();
                for d in 0..dim {
                    let want = if c == 0 {
                        0.0
                    } else {
                        (by_row[start * dim..(start + c) * dim]
                            .chunks(dim)
                            .map(|r| f64::from(r[d]))
                            .sum::<f64>()
                            / c as f64) as f32
                    };
                    assert_eq!(got[d], want, "{case}: item {item} dim {d}");
                }
                start += c;
            }
        }
    }
}

#[test]
fn local_with_large_m_equals_global_and_small_m_uses_nearest_states() {
    let mut rng = StdRng::seed_from_u64(2);
    let (n_items, dim) = (30, 12);
    let memory = random_memory(&mut rng, n_items, 400, dim);
    let global = global_item_vectors(&memory, n_items).unwrap();
    let local = LocalIndex::new(&memory, n_items).unwrap();
    let max_count = *local.counts().iter().max().unwrap() as usize;
    for _ in 0..10 {
        let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let g = global.distances(&query).unwrap();
        // Any M ≥ the largest count, up to usize::MAX (a caller's unbounded option), is "all".
        for m in [max_count, 1 << 40, usize::MAX] {
            let l = local.distances(&query, m).unwrap();
            assert_eq!(g.len(), l.len());
            for (a, b) in g.iter().zip(&l) {
                assert!(
                    (a.is_infinite() && b.is_infinite()) || (a - b).abs() < 1e-4,
                    "m={m}: {a} vs {b}"
                );
            }
        }
        // M = 1: distance to the single nearest state of each item.
        let l1 = local.distances(&query, 1).unwrap();
        for (item, &d) in l1.iter().enumerate().skip(1) {
            let nearest = (0..memory.len())
                .filter(|&r| memory.items[r] == item as u32)
                .map(|r| {
                    memory
                        .state(r)
                        .iter()
                        .zip(&query)
                        .map(|(s, q)| (s - q).powi(2))
                        .sum::<f32>()
                })
                .fold(f32::INFINITY, f32::min);
            assert!((d - nearest).abs() < 1e-3 || (d.is_infinite() && nearest.is_infinite()));
        }
    }
}

fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum()
}

/// Density scores equal a brute-force Parzen sum per item, and the two limits hold: a tiny
/// bandwidth ranks by the nearest state (L2D-L with M = 1), a huge one with exponent 0 by the
/// state count (popularity), exponent 1 by nothing but the mean kernel.
#[test]
fn density_equals_brute_force_and_its_limits() {
    let mut rng = StdRng::seed_from_u64(4);
    let (n_items, dim) = (25, 10);
    let memory = random_memory(&mut rng, n_items, 300, dim);
    let local = LocalIndex::new(&memory, n_items).unwrap();
    let counts = local.counts();
    let states_of = |item: usize| -> Vec<usize> {
        (0..memory.len())
            .filter(|&r| memory.items[r] == item as u32)
            .collect()
    };
    for _ in 0..5 {
        let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let to_states = local.states().distances(&query).unwrap();
        let cases = [(0.5f32, 0.0f32), (2.0, 0.25), (8.0, 1.0)];
        for (bandwidth, count_exponent) in cases {
            let density = Density::new(bandwidth, count_exponent);
            let got = local.density_scores(&to_states, density).unwrap();
            assert_eq!(got.len(), n_items);
            for (item, &score) in got.iter().enumerate() {
                let rows = states_of(item);
                if rows.is_empty() {
                    assert!(score.is_infinite(), "item {item} has no state");
                    continue;
                }
                let mass: f64 = rows
                    .iter()
                    .map(|&r| {
                        let d = squared_distance(memory.state(r), &query);
                        (-f64::from(d) / f64::from(bandwidth)).exp()
                    })
                    .sum();
                let expected = -mass.ln() + f64::from(count_exponent) * (rows.len() as f64).ln();
                assert!(
                    (f64::from(score) - expected).abs() < 1e-3,
                    "item {item}, {density:?}: {score} vs {expected}"
                );
            }
        }
        // Tiny bandwidth: the order of the nearest state's distance (L2D-L, M = 1).
        let tiny = Density::new(1e-3, 0.0);
        let by_density: Vec<ItemIndex> =
            top_k(&local.density_scores(&to_states, tiny).unwrap(), 5, &[])
                .into_iter()
                .map(|(i, _)| i)
                .collect();
        let by_nearest: Vec<ItemIndex> = top_k(&local.distances(&query, 1).unwrap(), 5, &[])
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(by_density, by_nearest);
        // Huge bandwidth, exponent 0: every state weighs ~1, so the most states rank first.
        let huge = Density::new(1e9, 0.0);
        let scores = local.density_scores(&to_states, huge).unwrap();
        for (item, &score) in scores.iter().enumerate().filter(|(i, _)| counts[*i] > 0) {
            assert!((score + (counts[item] as f32).ln()).abs() < 1e-3);
        }
    }
    // Bad parameters are refused, naming them.
    for (bandwidth, count_exponent, field) in [
        (0.0, 0.0, "bandwidth"),
        (f32::NAN, 0.0, "bandwidth"),
        (1.0, -0.5, "count exponent"),
        (1.0, 1.5, "count exponent"),
    ] {
        let to_states = vec![0.0; memory.len()];
        let err = local
            .density_scores(&to_states, Density::new(bandwidth, count_exponent))
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{err}");
    }
}

/// A cold-start vector in density mode stands for `cold_states` states at its place:
/// `d/bandwidth − (1 − β)·ln(cold_states)`; warm items are untouched; a pseudo-count below 1
/// is refused.
#[test]
fn density_weighs_a_cold_vector_as_its_pseudo_count() {
    use l2d::latent::aggregate::Geometry;
    use l2d::latent::aggregate::ScoreOptions;
    use l2d::serve::recommend::{Mode, Representations};
    let mut rng = StdRng::seed_from_u64(6);
    let (n_items, dim) = (12, 8);
    let memory = random_memory(&mut rng, n_items, 100, dim);
    let mut reps = Representations::from_memory(&memory, n_items, Geometry::plain()).unwrap();
    let vector: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    reps.set_cold(&[0], &vector).unwrap();
    let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let q = reps.prepared_query(&query);
    let to_states = reps.rows(Mode::Density).unwrap().distances(&q).unwrap();
    let d = squared_distance(&vector, &q);
    let score = |density: Density| {
        let options = ScoreOptions {
            density: Some(density),
            ..ScoreOptions::default()
        };
        reps.scores_with(&q, to_states.clone(), Mode::Density, &options, &[])
    };
    let one = score(Density::new(4.0, 0.25)).unwrap();
    for (cold_states, count_exponent, expected) in [
        (1.0f32, 0.25f32, d / 4.0),
        (8.0, 0.0, d / 4.0 - 8f32.ln()),
        (8.0, 0.5, d / 4.0 - 0.5 * 8f32.ln()),
        (8.0, 1.0, d / 4.0),
    ] {
        let got = score(Density {
            cold_states,
            ..Density::new(4.0, count_exponent)
        })
        .unwrap();
        assert!(
            (got[0] - expected).abs() < 1e-4,
            "cold_states {cold_states}, β {count_exponent}: {} vs {expected}",
            got[0]
        );
        if count_exponent == 0.25 {
            assert_eq!(
                got[1..],
                one[1..],
                "warm items do not depend on the pseudo-count"
            );
        }
    }
    for bad in [0.5f32, f32::NAN, f32::INFINITY] {
        let err = score(Density {
            cold_states: bad,
            ..Density::new(4.0, 0.0)
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("cold states"), "{bad}: {err}");
    }
}

#[test]
fn f16_int8_and_int4_rankings_agree_with_f32_on_the_default_model() {
    let model = common::default_model();
    let blob = common::default_blob("memory.blob");
    blob.check_model(&model.fingerprint, model.hidden_size())
        .unwrap();
    let reps = l2d::serve::recommend::Representations::from_blob(blob.clone()).unwrap();
    let catalog = Catalog::from_texts(blob.items.clone(), "memory.blob").unwrap();
    let f32_matrix = reps.global.to_dtype(DType::F32);
    let mut rng = StdRng::seed_from_u64(4);
    let histories: Vec<Vec<ItemIndex>> = (0..30)
        .map(|_| {
            (0..10)
                .map(|_| rng.random_range(0..catalog.len() as u32))
                .collect()
        })
        .collect();
    let top20 = |matrix: &l2d::latent::score::ItemMatrix, query: &[f32]| -> Vec<ItemIndex> {
        top_k(&matrix.distances(query).unwrap(), 20, &[])
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    };
    // The floor per dtype. int8 is centred on the rows' per-dimension mean (one scale per row
    // around it): without the offset, vectors that differ little from their common mean kept
    // only 93.3 % of the top-20.
    for (dtype, floor) in [(DType::F16, 0.99), (DType::I8, 0.99), (DType::I4, 0.88)] {
        let matrix = reps.global.to_dtype(dtype);
        let (mut agree, mut total) = (0usize, 0usize);
        for history in &histories {
            let query = l2d::serve::recommend::query_state(&model, &catalog, history).unwrap();
            let (a, b) = (top20(&f32_matrix, &query), top20(&matrix, &query));
            assert_eq!((a.len(), b.len()), (20, 20));
            agree += a.iter().filter(|i| b.contains(i)).count();
            total += 20;
        }
        let share = agree as f64 / total as f64;
        eprintln!("{dtype:?} keeps {share:.4} of f32's top-20 items");
        assert!(
            share >= floor,
            "{dtype:?} keeps {share:.4} of f32's top-20 items"
        );
    }
}

#[test]
fn cold_start_by_title_fills_exactly_the_cold_items() {
    let model = common::default_model();
    let shipped = common::default_blob("memory.blob");
    // The shipped blob carries cold-start vectors; start from the paper's rule without them.
    assert_eq!(
        shipped.cold.as_ref().map(|c| c.rows()),
        Some(shipped.cold_items().len())
    );
    let blob = Blob {
        cold: None,
        ..shipped
    };
    let (catalog, plain) =
        l2d::serve::recommend::load_blob(&model, blob.clone(), "memory.blob").unwrap();
    let cold: Vec<usize> = (0..catalog.len())
        .filter(|&i| plain.counts[i] == 0)
        .collect();
    assert!(!cold.is_empty(), "the shipped memory has cold items");
    let mut filled = plain.clone();
    assert_eq!(
        filled.fill_cold_from_titles(&model, &catalog).unwrap(),
        cold.len()
    );

    let (before, after) = (plain.global.to_f32_values(), filled.global.to_f32_values());
    let dim = model.hidden_size();
    let row = |v: &[f32], i: usize| v[i * dim..(i + 1) * dim].to_vec();
    // Warm rows are untouched; the mean offset is recovered from any cold row and its title.
    let offset: Vec<f32> = {
        let i = cold[0];
        let title = model.last_hidden(&[catalog.item(i as u32).title]).unwrap();
        row(&after, i)
            .iter()
            .zip(&title)
            .map(|(a, t)| a - t)
            .collect()
    };
    let warm: Vec<usize> = (0..catalog.len())
        .filter(|&i| plain.counts[i] > 0)
        .collect();
    let prompts: Vec<Vec<u32>> = warm
        .iter()
        .map(|&i| model.prompt_ids(&[catalog.item(i as u32).title]).unwrap())
        .collect();
    let titles: Vec<Vec<f32>> = prompts
        .chunks(256)
        .flat_map(|c| model.last_hidden_batch(c).unwrap())
        .collect();
    let mut mean = vec![0f64; dim];
    for (&i, title) in warm.iter().zip(&titles) {
        assert_eq!(row(&before, i), row(&after, i), "warm item {i} changed");
        for d in 0..dim {
            mean[d] += f64::from(before[i * dim + d] - title[d]) / warm.len() as f64;
        }
    }
    let gap = mean
        .iter()
        .zip(&offset)
        .map(|(m, o)| (*m as f32 - o).abs())
        .fold(0f32, f32::max);
    assert!(gap < 1e-3, "offset differs from the warm mean by {gap}");

    // Cold items now get finite scores in both modes (before: infinite, ranked last).
    let query = model
        .last_hidden(&["Toy Story (1995)", "Heat (1995)"])
        .unwrap();
    for mode in [
        l2d::serve::recommend::Mode::Global,
        l2d::serve::recommend::Mode::Local { m: 10 },
    ] {
        let old = plain.distances(&query, mode, &[]).unwrap();
        let new = filled.distances(&query, mode, &[]).unwrap();
        for &i in &cold {
            assert!(
                old[i].is_infinite() && new[i].is_finite(),
                "{mode:?} item {i}"
            );
        }
        for &i in &warm {
            assert_eq!(old[i], new[i], "{mode:?} warm item {i}");
        }
    }

    // Stored in the blob and read back, as the browser loads it: the same scores (cold rows
    // rounded to the blob's element type like every other row: a step of 1/127 of the row's
    // largest value in int8, 1/7 in int4).
    let vectors = filled.cold_vectors().unwrap().unwrap();
    let stored = blob.clone().with_cold(&vectors).unwrap();
    let back = l2d::serve::recommend::Representations::from_blob(
        Blob::from_bytes(&stored.to_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(back.cold_filled, filled.cold_filled);
    for mode in [
        l2d::serve::recommend::Mode::Global,
        l2d::serve::recommend::Mode::Local { m: 10 },
    ] {
        let want = filled.distances(&query, mode, &[]).unwrap();
        let got = back.distances(&query, mode, &[]).unwrap();
        assert_eq!(want.len(), got.len());
        // The worst seen on the shipped int4 blob: 0.048.
        let tolerance = match blob.matrix.dtype() {
            DType::I4 => 0.08,
            _ => 0.02,
        };
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert!(
                (w - g).abs() <= tolerance * w.abs().max(1.0),
                "{mode:?} item {i}: {w} vs {g}"
            );
        }
    }
}

/// One pass over the queries for many scorings gives each scoring the report a separate
/// ranking pass gives (mode, M, prior, adaptive threshold and density parameters as cases).
#[test]
fn candidate_scorings_in_one_pass_equal_separate_rankings() {
    use l2d::latent::aggregate::Geometry;
    use l2d::offline::choose::score_candidates;
    use l2d::offline::eval::{evaluate, rank_queries};
    use l2d::serve::manifest::Scoring;
    use l2d::serve::recommend::Representations;
    let mut rng = StdRng::seed_from_u64(9);
    let (n_items, dim) = (150, 8);
    let memory = random_memory(&mut rng, n_items, 900, dim);
    let queries = random_memory(&mut rng, n_items, 60, dim);
    let mut reps = Representations::from_memory(&memory, n_items, Geometry::plain()).unwrap();
    let (histories, follows) = random_follows(&mut rng, n_items, queries.len());
    reps.follows = Some(follows);
    let histories: Vec<&[ItemIndex]> = histories.iter().map(Vec::as_slice).collect();
    let counts = vec![1u32; n_items];
    let local = |m, popularity_prior, local_min_states| Scoring {
        mode: l2d::latent::aggregate::ModeKind::Local,
        m,
        popularity_prior,
        local_min_states,
        density: None,
        follows: 0.0,
        weights: Default::default(),
    };
    let follows = |follows, scoring: Scoring| Scoring { follows, ..scoring };
    let density = |bandwidth, count_exponent| Scoring {
        mode: l2d::latent::aggregate::ModeKind::Density,
        density: Some(Density::new(bandwidth, count_exponent)),
        ..Scoring::default()
    };
    let candidates = vec![
        Scoring::default(),
        Scoring {
            popularity_prior: 0.5,
            ..Scoring::default()
        },
        local(3, 0.0, 0),
        local(10, 1.0, 0),
        local(3, 0.0, 8),
        density(0.5, 0.0),
        density(2.0, 0.25),
        follows(0.5, Scoring::default()),
        follows(2.0, local(10, 1.0, 0)),
        follows(1.0, density(2.0, 0.25)),
    ];
    let got = score_candidates(
        &reps,
        &candidates,
        (&queries, &histories),
        &queries.items,
        &counts,
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(got.len(), candidates.len());
    // The follows term moves the rankings (or this test would not check it).
    let recall = |label: &str| {
        got.iter()
            .find(|r| r.method == label)
            .unwrap()
            .overall
            .recall_at(20)
    };
    assert_ne!(
        recall(&candidates[0].label()),
        recall(&candidates[7].label())
    );
    for (c, report) in candidates.iter().zip(&got) {
        let mut one = reps.clone();
        one.apply_scoring(c).unwrap();
        let rankings = rank_queries(&one, &queries, &histories, c.mode().unwrap()).unwrap();
        let want = evaluate(&c.label(), &rankings, &queries.items, &counts);
        assert_eq!(report.overall, want.overall, "{}", c.label());
    }
}

/// Random histories of `queries` and follow weights of as many random samples, each item
/// followed by its neighbours in index order (so the term moves rankings).
fn random_follows(
    rng: &mut StdRng,
    n_items: usize,
    queries: usize,
) -> (Vec<Vec<ItemIndex>>, l2d::latent::follows::Follows) {
    let history = |rng: &mut StdRng| -> Vec<ItemIndex> {
        let len = rng.random_range(1..=12);
        (0..len)
            .map(|_| rng.random_range(0..n_items as u32))
            .collect()
    };
    let samples: Vec<(Vec<ItemIndex>, ItemIndex)> = (0..n_items * 4)
        .map(|_| {
            let h = history(rng);
            let target = (h[h.len() - 1] + rng.random_range(1..4)) % n_items as u32;
            (h, target)
        })
        .collect();
    let follows = l2d::latent::follows::Follows::from_samples(
        samples.iter().map(|(h, t)| (h.as_slice(), *t)),
        n_items,
    )
    .unwrap();
    ((0..queries).map(|_| history(rng)).collect(), follows)
}

/// A byte budget keeps the largest memory fraction that fits; a global blob that cannot fit is
/// an error naming the budget (cases: no budget, a budget under the full size, an impossible one).
#[test]
fn a_memory_blob_shrinks_to_its_byte_budget() {
    use l2d::offline::recipe::{build_blob, BlobSpec};
    let mut rng = StdRng::seed_from_u64(4);
    let n_items = 20;
    let catalog = Catalog::new(
        (0..n_items)
            .map(|i| Item {
                id: format!("i{i}"),
                title: format!("Title {i}"),
            })
            .collect(),
        "test",
    )
    .unwrap();
    let memory = random_memory(&mut rng, n_items, 500, 16);
    let spec = |kind, max_bytes| BlobSpec {
        kind,
        dtype: DType::I8,
        fraction: 1.0,
        keep: l2d::latent::memory::Keep::Random { seed: 0 },
        max_bytes,
        follows: None,
    };
    let (full, f) = build_blob(
        &memory,
        &catalog,
        [1; 32],
        None,
        &spec(BlobKind::Memory, None),
    )
    .unwrap();
    assert_eq!(f, 1.0);
    // The budget counts the blob and its items parts: a first visit fetches both.
    let items = |b: &Blob| b.items_parts().iter().map(Vec::len).sum::<usize>();
    let full_size = (full.to_bytes().len() + items(&full)) as u64;
    let budget = full_size * 6 / 10;
    let (small, f) = build_blob(
        &memory,
        &catalog,
        [1; 32],
        None,
        &spec(BlobKind::Memory, Some(budget)),
    )
    .unwrap();
    let size = (small.to_bytes().len() + items(&small)) as u64;
    assert!(
        size <= budget && size > budget * 9 / 10,
        "{size} for a budget of {budget}"
    );
    assert!(f < 0.7 && f > 0.4, "fraction {f}");
    let err = build_blob(
        &memory,
        &catalog,
        [1; 32],
        None,
        &spec(BlobKind::Global, Some(100)),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("100 bytes"), "{err}");
}

/// `choose_scoring` tries every density bandwidth (multiples of the median nearest-state
/// distance, checked against a brute-force median) and count exponent, and returns the best
/// Recall@20 among everything it tried.
#[test]
fn choose_tries_density_around_the_nearest_state_scale() {
    use l2d::latent::aggregate::Geometry;
    use l2d::offline::choose::{
        choose_scoring, nearest_state_scale, CHOOSE_BANDWIDTH, CHOOSE_COUNT_EXPONENT,
        CHOOSE_FOLLOWS,
    };
    use l2d::serve::recommend::Representations;
    let mut rng = StdRng::seed_from_u64(12);
    let (n_items, dim) = (60, 8);
    let memory = random_memory(&mut rng, n_items, 600, dim);
    let queries = random_memory(&mut rng, n_items, 80, dim);
    let mut reps = Representations::from_memory(&memory, n_items, Geometry::plain()).unwrap();
    let (histories, follows) = random_follows(&mut rng, n_items, queries.len());
    reps.follows = Some(follows);
    // Item 0 has no states: a cold-start vector, as the title rule gives it.
    let cold: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    reps.set_cold(&[0], &cold).unwrap();
    let histories: Vec<&[ItemIndex]> = histories.iter().map(Vec::as_slice).collect();
    let mut nearest: Vec<f32> = (0..queries.len())
        .map(|q| {
            (0..memory.len())
                .map(|r| squared_distance(memory.state(r), queries.state(q)))
                .fold(f32::INFINITY, f32::min)
        })
        .collect();
    nearest.sort_by(f32::total_cmp);
    let scale = nearest_state_scale(&reps, &queries).unwrap();
    assert!((scale - nearest[nearest.len() / 2]).abs() < 1e-4 * scale.max(1.0));
    // Train-target counts: the memory is the whole train split.
    let counts = reps.counts.clone();
    let (chosen, reports) = choose_scoring(
        &reps,
        (&queries, &histories),
        &queries.items,
        &counts,
        &mut |_| {},
        &|_, _| {},
    )
    .unwrap();
    let density_rows = reports
        .iter()
        .filter(|r| {
            r.method.starts_with("density")
                && !r.method.contains("follows=")
                && !r.method.contains("cold=")
        })
        .count();
    assert_eq!(
        density_rows,
        CHOOSE_BANDWIDTH.len() * CHOOSE_COUNT_EXPONENT.len()
    );
    // Then every follows weight on what led (the blob stores follow weights).
    let follows_rows: Vec<&str> = reports
        .iter()
        .map(|r| r.method.as_str())
        .filter(|m| m.contains("follows=") && !m.contains("cold="))
        .take(CHOOSE_FOLLOWS.len())
        .collect();
    assert_eq!(follows_rows.len(), CHOOSE_FOLLOWS.len(), "{follows_rows:?}");
    // Last, the cold-start pseudo-counts, after the follows weight and with the one that led
    // before them (a cold item has no follow weights: its weight is weighed against theirs).
    let first_cold = reports
        .iter()
        .position(|r| r.method.contains("cold="))
        .expect("cold rows");
    let leader = reports[..first_cold]
        .iter()
        .fold(None::<&l2d::offline::eval::Report>, |best, r| match best {
            Some(b)
                if (r.overall.recall_at(20), r.overall.ndcg[2])
                    <= (b.overall.recall_at(20), b.overall.ndcg[2]) =>
            {
                Some(b)
            }
            _ => Some(r),
        })
        .unwrap();
    let follows_of = |label: &str| {
        label
            .split("follows=")
            .nth(1)
            .map(|w| w.split([',', ']']).next().unwrap().to_string())
    };
    let cold_rows: Vec<&str> = reports[first_cold..]
        .iter()
        .map(|r| r.method.as_str())
        .filter(|m| m.contains("cold="))
        .collect();
    assert!(!cold_rows.is_empty());
    for row in &cold_rows {
        assert!(row.starts_with("density"), "{row}");
        assert_eq!(
            follows_of(row),
            follows_of(&leader.method),
            "{row} after {}",
            leader.method
        );
    }
    chosen.validate().unwrap();
    // The chosen row is the best Recall@20, or one cheaper to serve whose paired interval
    // against the best reaches 0 (every other row carries its difference to the best).
    let best = reports
        .iter()
        .map(|r| r.overall.recall_at(20))
        .fold(f64::MIN, f64::max);
    let chosen_report = reports.iter().find(|r| r.method == chosen.label()).unwrap();
    match &chosen_report.versus {
        None => assert_eq!(chosen_report.overall.recall_at(20), best),
        Some(p) => assert!(p.recall[2].high >= 0.0, "{p:?}"),
    }
}

/// `choose` refuses a memory with more states for an item than it has train targets: the
/// memory then holds other samples (an updated memory holds valid's).
#[test]
fn choosing_needs_a_train_only_memory() {
    use l2d::offline::choose::check_train_only;
    // (case, memory states per item, train targets per item, a part of the error)
    type Case = (
        &'static str,
        &'static [u32],
        &'static [u32],
        Option<&'static str>,
    );
    let cases: [Case; 4] = [
        ("the full train memory", &[3, 0, 5], &[3, 0, 5], None),
        ("a fraction of it", &[1, 0, 2], &[3, 0, 5], None),
        (
            "an updated memory",
            &[3, 1, 5],
            &[3, 0, 5],
            Some("item #1 has 1 memory states but 0 train targets"),
        ),
        (
            "more states than targets",
            &[4, 0, 5],
            &[3, 0, 5],
            Some("item #0 has 4"),
        ),
    ];
    for (name, counts, train, expected) in cases {
        match (check_train_only(counts, train), expected) {
            (Ok(()), None) => {}
            (Err(e), Some(part)) => {
                let e = e.to_string();
                assert!(e.contains(part) && e.contains("train split"), "{name}: {e}");
            }
            (got, _) => panic!("{name}: {got:?}"),
        }
    }
}

/// The cold-start pseudo-count is chosen last for unseen targets: among the variants that
/// differ from the choice only in it and are within noise of the best overall, the one whose
/// unseen targets rank best.
#[test]
fn the_cold_pseudo_count_serves_unseen_targets_within_noise() {
    use l2d::offline::choose::{best_for_cold, cheapest_within_noise};
    use l2d::offline::eval::evaluate_ranks;
    use l2d::serve::manifest::Scoring;
    let n = 400usize;
    // Targets 0..40 are item 1 (never a train target: unseen), the rest item 0 (frequent).
    let targets: Vec<ItemIndex> = (0..n).map(|i| u32::from(i < 40)).collect();
    let train_counts = [100u32, 0];
    let indices: Vec<u32> = (0..n as u32).collect();
    let density = |cold_states: f32, follows: f32| Scoring {
        mode: "density".parse().unwrap(),
        density: Some(Density {
            cold_states,
            ..Density::new(1.0, 0.5)
        }),
        follows,
        ..Scoring::default()
    };
    // A variant's rank per sample: hits on its first unseen and first warm targets.
    let ranks = |unseen_hits: usize, warm_hits: usize| -> Vec<Option<u32>> {
        (0..n)
            .map(|i| (i < unseen_hits || (40..40 + warm_hits).contains(&i)).then_some(0))
            .collect()
    };
    // A variant: its scoring, its hits among the unseen targets and among the others.
    type Variant = (Scoring, usize, usize);
    // (case, variants, expected choice)
    let cases: [(&str, Vec<Variant>, usize); 4] = [
        (
            "a larger pseudo-count within noise: chosen for its unseen hits",
            vec![(density(1.0, 2.0), 0, 100), (density(8.0, 2.0), 6, 90)],
            1,
        ),
        (
            "far worse overall: kept out",
            vec![(density(1.0, 2.0), 0, 100), (density(64.0, 2.0), 30, 30)],
            0,
        ),
        (
            "another follows weight is not a pseudo-count of the choice",
            vec![(density(1.0, 2.0), 0, 100), (density(8.0, 1.0), 6, 90)],
            0,
        ),
        (
            "no unseen hit anywhere: the best overall",
            vec![(density(2.0, 2.0), 0, 100), (density(8.0, 2.0), 0, 99)],
            0,
        ),
    ];
    for (case, variants, expected) in cases {
        let scorings: Vec<Scoring> = variants.iter().map(|v| v.0.clone()).collect();
        let mut reports: Vec<_> = variants
            .iter()
            .enumerate()
            .map(|(i, (_, unseen, warm))| {
                let label = format!("variant {i}");
                evaluate_ranks(
                    &label,
                    &ranks(*unseen, *warm),
                    &targets,
                    &indices,
                    &train_counts,
                )
            })
            .collect();
        let chosen = cheapest_within_noise(&scorings, &mut reports, 0).unwrap();
        assert_eq!(
            best_for_cold(&scorings, &reports, chosen, 0),
            expected,
            "{case}"
        );
    }
}

/// `cheapest_within_noise`: the best Recall@20 unless a mode cheaper to serve (global <
/// density < local) is not significantly worse on the same samples; then the cheapest such.
#[test]
fn choice_prefers_the_cheaper_mode_only_within_noise() {
    use l2d::offline::choose::cheapest_within_noise;
    use l2d::offline::eval::evaluate_ranks;
    use l2d::serve::manifest::Scoring;
    let n = 400usize;
    let scoring = |mode: &str| Scoring {
        mode: mode.parse().unwrap(),
        density: (mode == "density").then(|| Density::new(1.0, 0.0)),
        ..Scoring::default()
    };
    // A variant's rank per sample: a hit (rank 0) on `hits` samples starting at `from`.
    let ranks = |from: usize, hits: usize| -> Vec<Option<u32>> {
        (0..n)
            .map(|i| ((from..from + hits).contains(&i)).then_some(0))
            .collect()
    };
    // A variant: (mode, first hit, hits).
    type Variant = (&'static str, usize, usize);
    // (case, variants, index of the best, expected choice)
    let cases: [(&str, Vec<Variant>, usize, usize); 5] = [
        (
            "equal: the cheapest",
            vec![("local", 0, 80), ("global", 0, 80)],
            0,
            1,
        ),
        (
            "global far worse: local",
            vec![("local", 0, 120), ("global", 0, 20)],
            0,
            0,
        ),
        (
            "density 2 hits fewer: density",
            vec![("local", 0, 80), ("density", 2, 78), ("global", 0, 10)],
            0,
            1,
        ),
        (
            "two ties: the cheaper of them",
            vec![("local", 0, 80), ("density", 0, 79), ("global", 0, 78)],
            0,
            2,
        ),
        (
            "the best is the cheapest",
            vec![("global", 0, 90), ("local", 0, 90)],
            0,
            0,
        ),
    ];
    let targets = vec![0 as ItemIndex; n];
    let indices: Vec<u32> = (0..n as u32).collect();
    for (case, variants, best, expected) in cases {
        let scorings: Vec<Scoring> = variants.iter().map(|v| scoring(v.0)).collect();
        let mut reports: Vec<_> = variants
            .iter()
            .enumerate()
            .map(|(i, &(mode, from, hits))| {
                let label = format!("{mode} {i}");
                evaluate_ranks(&label, &ranks(from, hits), &targets, &indices, &[1])
            })
            .collect();
        let chosen = cheapest_within_noise(&scorings, &mut reports, best).unwrap();
        assert_eq!(chosen, expected, "{case}");
    }
    let err = cheapest_within_noise(&[scoring("global")], &mut [], 0).unwrap_err();
    assert!(err.to_string().contains("1 scorings, 0 reports"), "{err}");
}
