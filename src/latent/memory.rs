//! The L2D memory: for every training sample (or a seeded random fraction of them), the
//! model's last-prompt-token hidden state and the sample's target item.

#[cfg(not(target_arch = "wasm32"))]
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::catalog::{Catalog, ItemIndex};
use crate::data::dataset::Sample;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::util::Shard;

/// (hidden state, target item) pairs, states row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    /// State dimension (the model's hidden size).
    pub dim: usize,
    /// `len × dim` values.
    pub states: Vec<f32>,
    /// Target item of each state.
    pub items: Vec<ItemIndex>,
}

/// Indices `0..n` to keep for a seeded random `fraction` (sorted; all when fraction ≥ 1).
/// The one subsampling rule, shared by building and by sweeps over a full memory.
pub fn subset(n: usize, fraction: f64, seed: u64) -> Result<Vec<usize>> {
    let count = kept_count(n, fraction)?;
    let mut indices: Vec<usize> = (0..n).collect();
    if fraction < 1.0 {
        indices.shuffle(&mut StdRng::seed_from_u64(seed));
        indices.truncate(count);
        indices.sort_unstable();
    }
    Ok(indices)
}

/// How many of `n` states a `fraction` keeps (rounded), refusing a fraction outside (0, 1]:
/// the one check and count of every keep rule.
fn kept_count(n: usize, fraction: f64) -> Result<usize> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(Error::invalid(
            "memory fraction",
            format!("{fraction} (expected 0 < f ≤ 1)"),
        ));
    }
    Ok((((n as f64) * fraction).round() as usize).min(n))
}

/// Which states a memory fraction keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// A seeded random fraction ([`subset`]).
    Random { seed: u64 },
    /// The newest fraction: the last states in sample order, which is time order for a
    /// split built by the D3 protocol (samples sorted by target time). Under a download budget
    /// this keeps the interactions closest to the ones being predicted.
    Newest,
    /// Every item's newest states up to one cap, the largest the fraction allows (items with
    /// fewer states keep them all; the count left over goes to the capped items whose next
    /// state is newest): no item loses its last states to the global order.
    PerItem,
}

impl std::str::FromStr for Keep {
    type Err = Error;
    /// `newest`, `per-item` or `random` (seed 0 until [`Keep::with_seed`]): the one parser of
    /// rule names.
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "newest" => Ok(Keep::Newest),
            "per-item" => Ok(Keep::PerItem),
            "random" => Ok(Keep::Random { seed: 0 }),
            other => Err(Error::invalid(
                "keep",
                format!("`{other}` (expected newest, per-item or random)"),
            )),
        }
    }
}

impl Keep {
    /// The same rule with `seed` for a random one (the others have none).
    pub fn with_seed(self, seed: u64) -> Self {
        match self {
            Keep::Random { .. } => Keep::Random { seed },
            rule => rule,
        }
    }
}

/// Indices of the states (`items[i]` is state i's item, in sample order) that a `fraction` of
/// the memory keeps under `rule` (sorted; all when fraction ≥ 1).
pub fn kept(items: &[ItemIndex], fraction: f64, rule: Keep) -> Result<Vec<usize>> {
    let n = items.len();
    let count = kept_count(n, fraction)?;
    match rule {
        Keep::Random { seed } => subset(n, fraction, seed),
        Keep::Newest => Ok((n - count..n).collect()),
        Keep::PerItem => Ok(per_item_newest(items, count)),
    }
}

/// `count` states: every item's newest up to the largest cap `c` with Σ min(statesᵢ, c) ≤
/// `count`, then one more (its (c+1)-th newest) for the capped items whose next state is the
/// newest, until `count` are kept.
fn per_item_newest(items: &[ItemIndex], count: usize) -> Vec<usize> {
    // Each item's states, newest first.
    let mut by_item: std::collections::BTreeMap<ItemIndex, Vec<usize>> = Default::default();
    for (i, &item) in items.iter().enumerate().rev() {
        by_item.entry(item).or_default().push(i);
    }
    let total = |cap: usize| -> usize { by_item.values().map(|s| s.len().min(cap)).sum() };
    // The largest cap that fits, by bisection over 0..=the longest list.
    let (mut lo, mut hi) = (0, by_item.values().map(Vec::len).max().unwrap_or(0));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if total(mid) <= count {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let cap = lo;
    let mut keep: Vec<usize> = by_item
        .values()
        .flat_map(|s| s.iter().take(cap).copied())
        .collect();
    let mut next: Vec<usize> = by_item
        .values()
        .filter_map(|s| s.get(cap).copied())
        .collect();
    next.sort_unstable_by(|a, b| b.cmp(a));
    keep.extend(next.into_iter().take(count - keep.len()));
    keep.sort_unstable();
    keep
}

impl Memory {
    /// Number of states.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there is no state.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// State `i`.
    pub fn state(&self, i: usize) -> &[f32] {
        &self.states[i * self.dim..(i + 1) * self.dim]
    }

    /// Runs the model over `samples` (one forward pass each, batched by similar length) and
    /// keeps their hidden states; `progress(done, total)` is called after each batch.
    pub fn build(
        model: &Model,
        catalog: &Catalog,
        samples: &[&Sample],
        batch_size: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Memory> {
        // The whole job is its one shard: every sample, in sample order.
        let (memory, _) =
            Self::build_shard(model, catalog, samples, batch_size, Shard::WHOLE, progress)?;
        Ok(memory)
    }

    /// One shard of [`Memory::build`] (see [`Model::last_hidden_shard`]): the states of the
    /// samples it covers and, for [`Memory::merge`], their positions in `samples`.
    pub fn build_shard(
        model: &Model,
        catalog: &Catalog,
        samples: &[&Sample],
        batch_size: usize,
        shard: Shard,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Memory, Vec<u32>)> {
        let prompts = Self::prompts(model, catalog, samples)?;
        Self::shard_of_prompts(model, samples, &prompts, batch_size, shard, progress)
    }

    /// The prompt token ids of `samples`' histories, in sample order.
    pub fn prompts(model: &Model, catalog: &Catalog, samples: &[&Sample]) -> Result<Vec<Vec<u32>>> {
        samples
            .iter()
            .map(|s| model.history_prompt_ids(catalog, &s.history))
            .collect()
    }

    /// [`Memory::build_shard`] with the samples' [`Memory::prompts`] already made (the
    /// sub-shards of one job share them).
    pub fn shard_of_prompts(
        model: &Model,
        samples: &[&Sample],
        prompts: &[Vec<u32>],
        batch_size: usize,
        shard: Shard,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Memory, Vec<u32>)> {
        let (covered, states) = model.last_hidden_shard(prompts, batch_size, shard, progress)?;
        let memory = Memory {
            dim: model.hidden_size(),
            states,
            items: covered.iter().map(|&i| samples[i].target).collect(),
        };
        Ok((memory, covered.iter().map(|&i| i as u32).collect()))
    }

    /// Puts shards back together in sample order: the memory a single [`Memory::build`] over
    /// all samples gives. Every position `0..total` must be covered exactly once.
    pub fn merge(shards: &[(Memory, Vec<u32>)]) -> Result<Memory> {
        let total: usize = shards.iter().map(|(m, _)| m.len()).sum();
        let dim = shards.first().map_or(0, |(m, _)| m.dim);
        let mut states = vec![0f32; total * dim];
        let mut items = vec![0; total];
        let mut seen = vec![false; total];
        for (k, (memory, positions)) in shards.iter().enumerate() {
            if memory.dim != dim || positions.len() != memory.len() {
                return Err(Error::mismatch(
                    format!("shard {k}"),
                    format!("dimension {dim} and one position per state"),
                    format!(
                        "dimension {}, {} positions for {} states",
                        memory.dim,
                        positions.len(),
                        memory.len()
                    ),
                ));
            }
            for (row, &p) in positions.iter().enumerate() {
                let p = p as usize;
                if p >= total || std::mem::replace(&mut seen[p], true) {
                    return Err(Error::invalid(
                        format!("shard {k}"),
                        format!("sample position {p} is out of range or covered twice"),
                    ));
                }
                states[p * dim..(p + 1) * dim].copy_from_slice(memory.state(row));
                items[p] = memory.items[row];
            }
        }
        Ok(Memory { dim, states, items })
    }

    /// Appends `other`'s states after this memory's (an update: new samples after old).
    pub fn append(&mut self, other: Memory) -> Result<()> {
        if other.dim != self.dim && !other.is_empty() {
            return Err(Error::mismatch(
                "appended memory: state dimension",
                self.dim,
                other.dim,
            ));
        }
        self.states.extend(other.states);
        self.items.extend(other.items);
        Ok(())
    }

    /// The states at `indices` (see [`subset`]).
    pub fn select(&self, indices: &[usize]) -> Memory {
        let mut states = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            states.extend_from_slice(self.state(i));
        }
        Memory {
            dim: self.dim,
            states,
            items: indices.iter().map(|&i| self.items[i]).collect(),
        }
    }

    /// Saves as safetensors (`states`: len × dim f32, `items`: len u32).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        self.save_with_positions(path, None)
    }

    /// Saves a shard: the memory plus `positions` (u32, the samples' positions for
    /// [`Memory::merge`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_with_positions(
        &self,
        path: &std::path::Path,
        positions: Option<&[u32]>,
    ) -> Result<()> {
        let dev = Device::Cpu;
        let mut tensors = vec![
            (
                "states",
                Tensor::from_slice(&self.states, (self.len(), self.dim), &dev)?,
            ),
            ("items", Tensor::from_slice(&self.items, self.len(), &dev)?),
        ];
        if let Some(p) = positions {
            tensors.push(("positions", Tensor::from_slice(p, p.len(), &dev)?));
        }
        candle_core::safetensors::save(&tensors.into_iter().collect(), path)?;
        Ok(())
    }

    /// Loads a memory saved by [`Memory::save`] (a shard's positions are ignored).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path) -> Result<Memory> {
        Ok(Self::read(path)?.0)
    }

    /// Loads a shard written by [`Memory::save_with_positions`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_shard(path: &std::path::Path) -> Result<(Memory, Vec<u32>)> {
        let (memory, positions) = Self::read(path)?;
        let positions = positions.ok_or_else(|| {
            Error::mismatch(
                format!("{}: tensors", path.display()),
                "`positions` (a shard written by `l2d memory --shard`)",
                "nothing",
            )
        })?;
        Ok((memory, positions))
    }

    /// The memory in a safetensors file and its `positions`, when it has them (one read).
    #[cfg(not(target_arch = "wasm32"))]
    fn read(path: &std::path::Path) -> Result<(Memory, Option<Vec<u32>>)> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        let get = |name: &str| {
            tensors.get(name).ok_or_else(|| {
                Error::mismatch(
                    format!("{}: tensors", path.display()),
                    format!("`{name}`"),
                    "nothing",
                )
            })
        };
        let states = get("states")?;
        let (len, dim) = states.dims2()?;
        let items = get("items")?.to_vec1::<u32>()?;
        if items.len() != len {
            return Err(Error::mismatch(
                format!("{}: items", path.display()),
                len,
                items.len(),
            ));
        }
        let positions = tensors
            .get("positions")
            .map(|p| p.to_vec1::<u32>())
            .transpose()?;
        let memory = Memory {
            dim,
            states: states.flatten_all()?.to_vec1::<f32>()?,
            items,
        };
        Ok((memory, positions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (n, fraction, rule, expected indices).
    #[test]
    fn kept_states_follow_the_rule() {
        // Items of 10 states in sample (time) order: item 0 has six states, 1 three, 2 one.
        let items: Vec<ItemIndex> = vec![0, 1, 0, 0, 2, 0, 1, 0, 1, 0];
        let cases: [(usize, f64, Keep, Vec<usize>); 8] = [
            (10, 1.0, Keep::Newest, (0..10).collect()),
            (10, 0.3, Keep::Newest, vec![7, 8, 9]),
            (
                10,
                0.3,
                Keep::Random { seed: 5 },
                subset(10, 0.3, 5).unwrap(),
            ),
            (0, 0.5, Keep::Newest, vec![]),
            (10, 1.0, Keep::PerItem, (0..10).collect()),
            // 3 states: cap 1 (one each, the newest of every item).
            (10, 0.3, Keep::PerItem, vec![4, 8, 9]),
            // 5 states: cap 1 fits 3, cap 2 needs 5: items 0 and 1 keep two, item 2 one.
            (10, 0.5, Keep::PerItem, vec![4, 6, 7, 8, 9]),
            // 6 states: cap 2 (5) plus the newest third state among items 0 (5) and 1 (1).
            (10, 0.6, Keep::PerItem, vec![4, 5, 6, 7, 8, 9]),
        ];
        for (n, fraction, rule, expected) in cases {
            assert_eq!(
                kept(&items[..n], fraction, rule).unwrap(),
                expected,
                "{n} {fraction} {rule:?}"
            );
        }
        let many = vec![0; 1000];
        let random = kept(&many, 0.5, Keep::Random { seed: 1 }).unwrap();
        assert_eq!(random.len(), 500);
        assert!(random.windows(2).all(|w| w[0] < w[1]), "sorted");
        for bad in [0.0, -1.0, 1.5, f64::NAN] {
            assert!(kept(&items, bad, Keep::Newest).is_err(), "{bad}");
        }
        let parse = |name: &str, seed| name.parse::<Keep>().map(|k| k.with_seed(seed));
        assert_eq!(parse("per-item", 3).unwrap(), Keep::PerItem);
        assert_eq!(parse("newest", 3).unwrap(), Keep::Newest);
        assert_eq!(parse("random", 3).unwrap(), Keep::Random { seed: 3 });
        assert!(parse("oldest", 0)
            .unwrap_err()
            .to_string()
            .contains("oldest"));
    }
}
