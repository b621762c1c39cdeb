//! Synthetic catalogs for scale benchmarks and tests: an L2D-G blob of any size for a given
//! model (its fingerprint and dimension, so `l2d recommend` and the browser load it as they
//! are), with vectors drawn to match a real blob's statistics (per-dimension mean and spread,
//! and the distribution of row norms) and titles made from a word list. Seeded: the same
//! arguments give the same bytes.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::catalog::{Catalog, Item};
use crate::error::{Error, Result};
use crate::latent::blob::{Blob, BlobKind};
use crate::latent::score::{DType, ItemMatrix};

/// Words synthetic titles are made of (common English title words; no real catalog's).
const WORDS: [&str; 64] = [
    "Night", "River", "Summer", "Shadow", "Garden", "Silver", "Winter", "Ocean", "Golden", "Storm",
    "Paper", "Stone", "Glass", "Forest", "Little", "Secret", "Last", "Long", "Blue", "Red", "Wild",
    "Quiet", "Broken", "Hidden", "City", "House", "Road", "Dream", "Light", "Fire", "Moon", "Star",
    "Heart", "Song", "Story", "Island", "Mountain", "Window", "Letter", "Train", "Bridge",
    "Harbor", "Valley", "Empire", "Kingdom", "Echo", "Mirror", "Signal", "Voyage", "Return",
    "Rise", "Fall", "North", "South", "Morning", "Evening", "Thunder", "Crystal", "Velvet", "Iron",
    "Paradise", "Journey", "Horizon", "Lantern",
];

/// Per-dimension mean and standard deviation of a real blob's rows, and its row norms: what
/// [`synth_blob`] draws from.
#[derive(Debug, Clone, PartialEq)]
pub struct RowStatistics {
    /// Mean of each dimension.
    pub mean: Vec<f32>,
    /// Standard deviation of each dimension.
    pub std: Vec<f32>,
    /// L2 norm of every valid row (sampled to scale synthetic rows).
    pub norms: Vec<f32>,
}

impl RowStatistics {
    /// The statistics of `matrix`'s valid rows (at least one is needed).
    pub fn of(matrix: &ItemMatrix) -> Result<Self> {
        let dim = matrix.dim();
        let (mut sum, mut sq) = (vec![0f64; dim], vec![0f64; dim]);
        let mut norms = Vec::new();
        let valid = matrix.valid();
        matrix.for_each_block(|rows, block| {
            for (_, row) in rows.zip(block.chunks_exact(dim)).filter(|&(r, _)| valid[r]) {
                for (d, &v) in row.iter().enumerate() {
                    sum[d] += f64::from(v);
                    sq[d] += f64::from(v) * f64::from(v);
                }
                norms.push(row.iter().map(|v| v * v).sum::<f32>().sqrt());
            }
        });
        if norms.is_empty() {
            return Err(Error::Empty {
                what: "reference blob".into(),
                detail: ": it has no valid row to take statistics from".into(),
            });
        }
        let n = norms.len() as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| ((q / n - (s / n) * (s / n)).max(0.0)).sqrt() as f32)
            .collect();
        Ok(RowStatistics { mean, std, norms })
    }
}

/// A standard normal draw (Box–Muller; `rand` without `rand_distr`).
fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// A title of two to four words and a year, e.g. `Silver River Letter (1987)`.
fn title(rng: &mut StdRng) -> String {
    let words = rng.random_range(2..=4);
    let mut t: Vec<&str> = (0..words)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect();
    t.dedup();
    format!("{} ({})", t.join(" "), rng.random_range(1930..2025))
}

/// An L2D-G blob of `items` synthetic items for the model with `fingerprint`: every row is
/// `mean + std ⊙ z` (z standard normal) rescaled to a norm drawn from `stats.norms`, stored as
/// `dtype`; ids `synth-0…`, titles from [`WORDS`], one memory state per item (no cold items).
pub fn synth_blob(
    items: usize,
    dtype: DType,
    fingerprint: [u8; 32],
    stats: &RowStatistics,
    seed: u64,
) -> Result<Blob> {
    if items == 0 {
        return Err(Error::invalid(
            "items",
            "0 (a catalog needs at least one item)",
        ));
    }
    let dim = stats.mean.len();
    if stats.std.len() != dim || stats.norms.is_empty() {
        return Err(Error::mismatch(
            "row statistics",
            format!("{dim} means, {dim} deviations and at least one norm"),
            format!(
                "{} deviations, {} norms",
                stats.std.len(),
                stats.norms.len()
            ),
        ));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(items * dim);
    let mut row = vec![0f32; dim];
    for _ in 0..items {
        for ((x, m), s) in row.iter_mut().zip(&stats.mean).zip(&stats.std) {
            *x = m + s * normal(&mut rng);
        }
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        let target = stats.norms[rng.random_range(0..stats.norms.len())];
        let scale = if norm > 0.0 { target / norm } else { 0.0 };
        values.extend(row.iter().map(|x| x * scale));
    }
    let catalog = Catalog::new(
        (0..items)
            .map(|i| Item {
                id: format!("synth-{i}"),
                title: title(&mut rng),
            })
            .collect(),
        "synthetic catalog",
    )?;
    let matrix = ItemMatrix::from_f32(values, dim, vec![true; items])?.to_dtype(dtype);
    Ok(Blob::new(
        BlobKind::Global,
        fingerprint,
        &catalog,
        vec![1; items],
        matrix,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> RowStatistics {
        RowStatistics {
            mean: vec![1.0, -2.0, 0.5, 0.0],
            std: vec![0.5, 0.1, 1.0, 0.2],
            norms: vec![3.0, 4.0],
        }
    }

    #[test]
    fn synthetic_rows_follow_the_statistics_and_the_seed() {
        let blob = synth_blob(2000, DType::F32, [3; 32], &stats(), 1).unwrap();
        assert_eq!(blob.items.len(), 2000);
        assert_eq!(blob.matrix.rows(), 2000);
        let got = RowStatistics::of(&blob.matrix).unwrap();
        for norm in &got.norms {
            assert!(
                (norm - 3.0).abs() < 1e-3 || (norm - 4.0).abs() < 1e-3,
                "{norm}"
            );
        }
        // Directions follow mean + std ⊙ z: the sign pattern of the mean survives rescaling.
        assert!(got.mean[0] > 0.0 && got.mean[1] < 0.0 && got.mean[2] > 0.0);
        let again = synth_blob(2000, DType::F32, [3; 32], &stats(), 1).unwrap();
        assert_eq!(blob.to_bytes(), again.to_bytes(), "same seed, same bytes");
        let other = synth_blob(2000, DType::F32, [3; 32], &stats(), 2).unwrap();
        assert_ne!(blob.to_bytes(), other.to_bytes());
        assert!(blob.items.iter().all(|i| !i.title.is_empty()));
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(synth_blob(0, DType::I8, [0; 32], &stats(), 0).is_err());
        let mut s = stats();
        s.norms.clear();
        assert!(synth_blob(10, DType::I8, [0; 32], &s, 0).is_err());
        let empty = ItemMatrix::from_f32(vec![0.0; 4], 4, vec![false]).unwrap();
        assert!(RowStatistics::of(&empty).is_err());
    }
}
