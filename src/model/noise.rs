//! The randomness of a training pass: dropout rates and a seeded generator.

#[allow(unused_imports)]
use super::*;

/// Dropout rates of a training pass (all 0 = no dropout). Inference never drops anything, so
/// nothing of it is exported with the weights.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DropoutRates {
    /// On the token embeddings entering the first layer.
    pub embedding: f32,
    /// On the attention probabilities.
    pub attention: f32,
    /// On each residual branch's output (attention and MLP) before it is added.
    pub residual: f32,
    /// On the MLP's gated hidden activations.
    pub mlp: f32,
}

impl DropoutRates {
    /// Checks every rate lies in [0, 1).
    pub fn validate(&self) -> Result<()> {
        check_probability("dropout.embedding", self.embedding)?;
        check_probability("dropout.attention", self.attention)?;
        check_probability("dropout.residual", self.residual)?;
        check_probability("dropout.mlp", self.mlp)
    }
}

/// The one rule for a training probability (dropout, smoothing, augmentation): 0 ≤ p < 1.
pub fn check_probability<P: Into<f64> + std::fmt::Display + Copy>(name: &str, p: P) -> Result<()> {
    if (0.0..1.0).contains(&p.into()) {
        Ok(())
    } else {
        Err(Error::invalid(name, format!("{p} (expected 0 ≤ p < 1)")))
    }
}

/// The randomness of a training pass: dropout rates and a seeded generator for the masks
/// (candle's own random tensors are not seedable on the CPU).
pub struct Noise {
    pub(super) rates: DropoutRates,
    pub(super) rng: std::cell::RefCell<rand::rngs::StdRng>,
}

impl Noise {
    /// Dropout with `rates`, masks drawn from a generator seeded with `seed`.
    pub fn new(rates: DropoutRates, seed: u64) -> Self {
        use rand::SeedableRng;
        Noise {
            rates,
            rng: std::cell::RefCell::new(rand::rngs::StdRng::seed_from_u64(seed)),
        }
    }

    /// Inverted dropout: zeroes each element with probability `p` and scales the rest by
    /// 1 / (1 − p), so expectations match inference.
    pub fn apply(&self, xs: &Tensor, p: f32) -> Result<Tensor> {
        use rand::Rng;
        if p <= 0.0 {
            return Ok(xs.clone());
        }
        let keep = 1.0 / (1.0 - p);
        let mut rng = self.rng.borrow_mut();
        let mask: Vec<f32> = (0..xs.elem_count())
            .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
            .collect();
        Ok((xs * Tensor::from_vec(mask, xs.shape(), xs.device())?)?)
    }
}

/// Applies `noise`'s dropout at rate `pick(rates)`, or nothing without noise.
pub(super) fn dropout(
    xs: Tensor,
    noise: Option<&Noise>,
    pick: impl Fn(&DropoutRates) -> f32,
) -> Result<Tensor> {
    match noise {
        Some(n) => n.apply(&xs, pick(&n.rates)),
        None => Ok(xs),
    }
}
