//! Item representations from the memory.
//! - L2D-G ([`global_item_vectors`]): each item's vector is the mean of its memory states.
//! - L2D-L ([`LocalIndex`]): per query, each item's vector is the mean of its M states nearest
//!   to the query (all of them when it has ≤ M); items are ranked by distance to those.
//! - Density ([`Density`], beyond the paper): per query, each item is scored by a Gaussian
//!   kernel sum over its states around the query, with a tempered count term.
//!
//! Items without any memory state (cold start) are never dropped silently: they are counted
//! and rank last (+∞).
//! [`Geometry`] holds the optional latent-space treatments measured against the paper's plain L2.

use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::data::catalog::ItemIndex;
use crate::error::{Error, Result};
use crate::kernel::dot;
use crate::latent::memory::Memory;
use crate::latent::score::{Candidate, ItemMatrix};

/// Optional transforms applied to memory states and queries alike before aggregation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Subtract this mean (of the memory states) from every vector.
    pub center: Option<Vec<f32>>,
    /// Scale every vector to unit length (ranking by cosine instead of L2).
    pub normalize: bool,
}

impl Geometry {
    /// The plain L2 geometry of the paper.
    pub fn plain() -> Self {
        Geometry::default()
    }

    /// A geometry fitted on `memory`: optional centering on its mean, optional normalization.
    pub fn fit(memory: &Memory, center: bool, normalize: bool) -> Self {
        let center = center.then(|| {
            let mut mean = vec![0f32; memory.dim];
            for i in 0..memory.len() {
                for (m, v) in mean.iter_mut().zip(memory.state(i)) {
                    *m += v;
                }
            }
            mean.iter_mut()
                .for_each(|m| *m /= memory.len().max(1) as f32);
            mean
        });
        Geometry { center, normalize }
    }

    /// Whether this is the identity transform.
    pub fn is_plain(&self) -> bool {
        self.center.is_none() && !self.normalize
    }

    /// Applies the transform to one vector in place.
    pub fn apply(&self, v: &mut [f32]) {
        if let Some(mean) = &self.center {
            v.iter_mut().zip(mean).for_each(|(x, m)| *x -= m);
        }
        if self.normalize {
            let norm = dot(v, v).sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
    }

    /// The transformed memory (a copy; the identity returns an unchanged clone).
    pub fn apply_memory(&self, memory: &Memory) -> Memory {
        let mut out = memory.clone();
        if !self.is_plain() {
            for row in out.states.chunks_mut(memory.dim) {
                self.apply(row);
            }
        }
        out
    }
}

/// A decoding mode by name, as a manifest and the page's options spell it (`"global"`,
/// `"local"`, `"density"`); with local mode's `m` it makes a [`Mode`] ([`ModeKind::with_m`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeKind {
    #[default]
    Global,
    Local,
    Density,
}

impl ModeKind {
    /// The mode's name (`global`, `local`, `density`).
    pub fn name(self) -> &'static str {
        match self {
            ModeKind::Global => "global",
            ModeKind::Local => "local",
            ModeKind::Density => "density",
        }
    }

    /// The [`Mode`] of this kind with `m` neighbours for local mode (`m` ≥ 1 there).
    pub fn with_m(self, m: usize) -> Result<Mode> {
        match self {
            ModeKind::Global => Ok(Mode::Global),
            ModeKind::Local if m == 0 => Err(Error::invalid("m", "must be ≥ 1 for local mode")),
            ModeKind::Local => Ok(Mode::Local { m }),
            ModeKind::Density => Ok(Mode::Density),
        }
    }
}

impl std::str::FromStr for ModeKind {
    type Err = Error;
    /// The one parser of mode names for the CLI, the manifest and the browser.
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "global" => Ok(ModeKind::Global),
            "local" => Ok(ModeKind::Local),
            "density" => Ok(ModeKind::Density),
            other => Err(Error::invalid(
                "mode",
                format!("`{other}` (expected global, local or density)"),
            )),
        }
    }
}

/// Which latent-space decoding to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// L2D-G: distance to each item's mean state.
    Global,
    /// L2D-L: distance to the mean of each item's `m` states nearest to the query.
    Local { m: usize },
    /// Kernel density of each item's states around the query ([`Density`]; its parameters
    /// come with the representations' scoring options).
    Density,
}

impl Mode {
    /// `global`, `local` with `m` neighbours (`m` ≥ 1 for local) or `density`
    /// ([`ModeKind`]'s names).
    pub fn parse(name: &str, m: usize) -> Result<Self> {
        name.parse::<ModeKind>()?.with_m(m)
    }

    /// This mode's kind (its name without `m`).
    pub fn kind(self) -> ModeKind {
        match self {
            Mode::Global => ModeKind::Global,
            Mode::Local { .. } => ModeKind::Local,
            Mode::Density => ModeKind::Density,
        }
    }

    /// Whether this mode compares the query with memory states (local, density) rather than
    /// one vector per item (global).
    pub fn uses_states(self) -> bool {
        !matches!(self, Mode::Global)
    }
}

/// Density scoring, a generalisation of L2D-L: an item's score is
/// `−ln Σ_j exp(−d_j/bandwidth) + count_exponent · ln(states)` over its states' squared
/// distances `d_j` to the query (smaller is better; computed around the item's nearest state,
/// so no term underflows). A small bandwidth approaches
/// the nearest state (L2D-L with M = 1); a large one approaches the state count (popularity);
/// `count_exponent` 1 turns the sum into a mean (no count term). This is the Parzen-window
/// estimate of `p(item | query)`, with the item's share of the memory tempered.
///
/// A cold-start item (no state, one title vector at squared distance `d`) counts as
/// `cold_states` states at its vector: `d/bandwidth − (1 − count_exponent) · ln(cold_states)`.
/// At 1 (the default) its vector is one state and weighs against items with many states near
/// the query; a larger pseudo-count lets a new item compete (chosen on valid).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Density {
    /// Kernel bandwidth in squared-distance units (> 0).
    pub bandwidth: f32,
    /// Exponent of the count correction (0 = the plain kernel sum, 1 = the kernel mean).
    pub count_exponent: f32,
    /// States a cold-start item's title vector stands for (≥ 1; 1 = one state).
    #[serde(default = "one_state")]
    pub cold_states: f32,
}

fn one_state() -> f32 {
    1.0
}

/// How items are scored besides the mode: what a manifest's scoring sets on the
/// representations (one value, so one distance computation can serve many of them).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ScoreOptions {
    /// Popularity prior: rank by `‖h − r‖ − weight · ln(1 + states)` instead of the plain
    /// distance (0 = the paper's plain L2). Global and local modes.
    pub popularity_prior: f32,
    /// Adaptive local/global: in local mode, items with fewer memory states than this are
    /// scored by their global vector (0 or 1 = the paper's L2D-L for every item).
    pub local_min_states: u32,
    /// Parameters of density mode (required by it, unused by the others).
    pub density: Option<Density>,
    /// Weight λ of the follows term, `score − λ·ln(1 + Σ_k decay^k · W[h_k → j])`
    /// (`crate::latent::follows`; 0 = off). Every mode.
    pub follows: f32,
}

impl ScoreOptions {
    /// Whether global and local scores are adjusted distances (`‖h − r‖` less a prior or a
    /// follows term) rather than plain squared distances.
    pub fn adjusts_distance(&self) -> bool {
        self.popularity_prior != 0.0 || self.follows != 0.0
    }
}

impl Density {
    /// Density with `bandwidth` and `count_exponent`, a cold item counting as one state.
    pub fn new(bandwidth: f32, count_exponent: f32) -> Self {
        Density {
            bandwidth,
            count_exponent,
            cold_states: one_state(),
        }
    }

    /// The score of a cold-start item whose vector lies at squared distance `squared`.
    pub fn cold_score(&self, squared: f32) -> f32 {
        squared / self.bandwidth - (1.0 - self.count_exponent) * self.cold_states.ln()
    }

    /// Checks `bandwidth > 0`, a finite `count_exponent` in 0…1 and `cold_states ≥ 1`.
    pub fn validate(&self) -> Result<()> {
        if !(self.cold_states.is_finite() && self.cold_states >= 1.0) {
            return Err(Error::invalid(
                "density cold states",
                format!("{} (expected a finite number ≥ 1)", self.cold_states),
            ));
        }
        if !(self.bandwidth.is_finite() && self.bandwidth > 0.0) {
            return Err(Error::invalid(
                "density bandwidth",
                format!("{} (expected a finite number > 0)", self.bandwidth),
            ));
        }
        if !(0.0..=1.0).contains(&self.count_exponent) {
            return Err(Error::invalid(
                "density count exponent",
                format!("{} (expected 0 ≤ β ≤ 1)", self.count_exponent),
            ));
        }
        Ok(())
    }
}

/// How often each of `n_items` items occurs in `items` (memory targets, train targets).
pub fn item_counts(items: &[ItemIndex], n_items: usize) -> Result<Vec<u32>> {
    let mut counts = vec![0u32; n_items];
    for &item in items {
        *counts
            .get_mut(item as usize)
            .ok_or_else(|| Error::mismatch("item index", format!("< {n_items}"), item))? += 1;
    }
    Ok(counts)
}

/// Number of memory states of each of `n_items` items.
pub fn state_counts(memory: &Memory, n_items: usize) -> Result<Vec<u32>> {
    item_counts(&memory.items, n_items)
}

/// L2D-G: per-item mean of its memory states; items without a state are invalid rows.
pub fn global_item_vectors(memory: &Memory, n_items: usize) -> Result<ItemMatrix> {
    LocalIndex::new(memory, n_items)?.global_vectors()
}

/// Memory states grouped by item, for per-query local aggregation without copying memory.
#[derive(Debug, Clone)]
pub struct LocalIndex {
    /// States sorted by item.
    states: ItemMatrix,
    /// `offsets[i]..offsets[i+1]` are item i's rows.
    offsets: Vec<usize>,
}

impl LocalIndex {
    /// Groups `memory` by item (`n_items` catalog items).
    pub fn new(memory: &Memory, n_items: usize) -> Result<Self> {
        let counts = state_counts(memory, n_items)?;
        // Stable: an item's states keep their memory order.
        let mut order: Vec<usize> = (0..memory.len()).collect();
        order.sort_by_key(|&i| memory.items[i]);
        let grouped = memory.select(&order);
        let states = ItemMatrix::from_f32(grouped.states, memory.dim, vec![true; memory.len()])?;
        Self::from_grouped(states, &counts)
    }

    /// Builds from states already grouped by item (e.g. a memory blob) and per-item counts.
    pub fn from_grouped(states: ItemMatrix, counts: &[u32]) -> Result<Self> {
        let mut offsets = vec![0usize];
        for c in counts {
            offsets.push(offsets.last().expect("non-empty") + *c as usize);
        }
        if *offsets.last().expect("non-empty") != states.rows() {
            return Err(Error::mismatch(
                "memory rows (sum of item counts)",
                offsets.last().expect("non-empty"),
                states.rows(),
            ));
        }
        Ok(LocalIndex { states, offsets })
    }

    /// Number of items.
    pub fn n_items(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The grouped states (rows sorted by item).
    pub fn states(&self) -> &ItemMatrix {
        &self.states
    }

    /// L2D-G from the grouped states: each item's mean state (f64 sums, in memory order);
    /// items without a state are invalid rows.
    pub fn global_vectors(&self) -> Result<ItemMatrix> {
        let dim = self.states.dim();
        let n = self.n_items();
        let mut sums = vec![0f64; dim];
        let mut values = Vec::with_capacity(n * dim);
        // Items in catalog order, their states consecutive: an item's mean is written once
        // the rows reach its end (items without a state get zeros, marked invalid below).
        let mut item = 0;
        let mut close_items_before = |row: usize, sums: &mut [f64], values: &mut Vec<f32>| {
            while item < n && self.offsets[item + 1] <= row {
                let count = (self.offsets[item + 1] - self.offsets[item]) as f64;
                values.extend(
                    sums.iter()
                        .map(|&s| if count > 0.0 { (s / count) as f32 } else { 0.0 }),
                );
                sums.iter_mut().for_each(|s| *s = 0.0);
                item += 1;
            }
        };
        self.states.for_each_block(|rows, block| {
            for (r, row) in rows.zip(block.chunks_exact(dim)) {
                close_items_before(r, &mut sums, &mut values);
                for (s, &v) in sums.iter_mut().zip(row) {
                    *s += v as f64;
                }
            }
        });
        close_items_before(usize::MAX, &mut sums, &mut values);
        let valid = self.offsets.windows(2).map(|w| w[1] > w[0]).collect();
        ItemMatrix::from_f32(values, dim, valid)
    }

    /// Per-item state counts.
    pub fn counts(&self) -> Vec<u32> {
        self.offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as u32)
            .collect()
    }

    /// L2D-L: squared distance from `query` to each item's mean of its `m` nearest states
    /// (+∞ for items without states). One pass over memory, a bounded heap per item.
    pub fn distances(&self, query: &[f32], m: usize) -> Result<Vec<f32>> {
        let to_states = self.states.distances(query)?;
        self.distances_from_state_distances(query, &to_states, m)
    }

    /// [`Density`] scores given the query's squared distances to every (grouped) state (+∞ for
    /// items without states).
    pub fn density_scores(&self, to_states: &[f32], density: Density) -> Result<Vec<f32>> {
        density.validate()?;
        if to_states.len() != self.states.rows() {
            return Err(Error::mismatch(
                "state distances",
                self.states.rows(),
                to_states.len(),
            ));
        }
        let scale = 1.0 / density.bandwidth;
        Ok(self
            .offsets
            .windows(2)
            .map(|w| {
                let states = &to_states[w[0]..w[1]];
                // Log-sum-exp around the item's nearest state: its term is 1, nothing
                // underflows however small the bandwidth.
                let nearest = states
                    .iter()
                    .copied()
                    .fold(f32::INFINITY, crate::kernel::smaller);
                if !nearest.is_finite() {
                    return f32::INFINITY;
                }
                // Eight running sums, so the exponentials (kernel::exp, no library call) of a
                // chunk are computed side by side.
                let term = |d: f32| crate::kernel::exp((nearest - d) * scale);
                let mut lanes = [0f32; 8];
                let chunks = states.chunks_exact(8);
                let rest = chunks.remainder();
                for chunk in chunks {
                    for (lane, &d) in lanes.iter_mut().zip(chunk) {
                        *lane += term(d);
                    }
                }
                let mass = lanes.iter().sum::<f32>() + rest.iter().map(|&d| term(d)).sum::<f32>();
                let count = states.len() as f64;
                (f64::from(nearest) * f64::from(scale) - f64::from(mass).ln()
                    + f64::from(density.count_exponent) * count.ln()) as f32
            })
            .collect())
    }

    /// L2D-L given the query's squared distances to every (grouped) state, e.g. computed on
    /// the GPU.
    pub fn distances_from_state_distances(
        &self,
        query: &[f32],
        to_states: &[f32],
        m: usize,
    ) -> Result<Vec<f32>> {
        if m == 0 {
            return Err(Error::invalid(
                "m",
                "0 (L2D-L needs at least one neighbour per item)",
            ));
        }
        if to_states.len() != self.states.rows() || query.len() != self.states.dim() {
            return Err(Error::mismatch(
                "state distances",
                self.states.rows(),
                to_states.len(),
            ));
        }
        // No item has more states than the largest group: a larger m (even usize::MAX from a
        // caller's option) means "all of them" and must not size the heap.
        let largest = self.offsets.windows(2).map(|w| w[1] - w[0]).max();
        let m = m.min(largest.unwrap_or(0).max(1));
        let dim = self.states.dim();
        let mut scratch = vec![0f32; dim];
        let mut mean = vec![0f32; dim];
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(m + 1);
        let mut out = Vec::with_capacity(self.n_items());
        for w in self.offsets.windows(2) {
            let (start, end) = (w[0], w[1]);
            if start == end {
                out.push(f32::INFINITY);
                continue;
            }
            heap.clear();
            for (r, &d) in to_states.iter().enumerate().take(end).skip(start) {
                if heap.len() < m {
                    heap.push(Candidate(d, r as u32));
                } else if heap.peek().is_some_and(|top| Candidate(d, r as u32) < *top) {
                    heap.pop();
                    heap.push(Candidate(d, r as u32));
                }
            }
            mean.iter_mut().for_each(|x| *x = 0.0);
            let n = heap.len() as f32;
            for Candidate(_, r) in heap.iter() {
                let row = self.states.row_into(*r as usize, &mut scratch);
                mean.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            let mut dist = 0f32;
            for (a, q) in mean.iter().zip(query) {
                let diff = q - a / n;
                dist += diff * diff;
            }
            out.push(dist);
        }
        Ok(out)
    }
}
