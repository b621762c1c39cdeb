//! The L2D memory: for every training sample (or a seeded random fraction of them), the
//! model's last-prompt-token hidden state and the sample's target item.

#[cfg(not(target_arch = "wasm32"))]
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::catalog::{Catalog, ItemIndex};
use crate::dataset::Sample;
use crate::error::{Error, Result};
use crate::model::Model;

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
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(Error::invalid(
            "memory fraction",
            format!("{fraction} (expected 0 < f ≤ 1)"),
        ));
    }
    let mut indices: Vec<usize> = (0..n).collect();
    if fraction < 1.0 {
        indices.shuffle(&mut StdRng::seed_from_u64(seed));
        indices.truncate(((n as f64) * fraction).round() as usize);
        indices.sort_unstable();
    }
    Ok(indices)
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
        let prompts = samples
            .iter()
            .map(|s| model.history_prompt_ids(catalog, &s.history))
            .collect::<Result<Vec<_>>>()?;
        Ok(Memory {
            dim: model.hidden_size(),
            states: model.last_hidden_many(&prompts, batch_size, progress)?,
            items: samples.iter().map(|s| s.target).collect(),
        })
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
        let dev = Device::Cpu;
        let tensors = [
            (
                "states",
                Tensor::from_slice(&self.states, (self.len(), self.dim), &dev)?,
            ),
            ("items", Tensor::from_slice(&self.items, self.len(), &dev)?),
        ];
        candle_core::safetensors::save(&tensors.into_iter().collect(), path)?;
        Ok(())
    }

    /// Loads a memory saved by [`Memory::save`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path) -> Result<Memory> {
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
        Ok(Memory {
            dim,
            states: states.flatten_all()?.to_vec1::<f32>()?,
            items,
        })
    }
}
