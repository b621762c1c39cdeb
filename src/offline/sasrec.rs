//! SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018), the
//! conventional baseline, trained and evaluated in the same harness as L2D: the same split, the
//! same samples (history ≤ 10 items → next item), the same metrics, full ranking, history not
//! masked. Item-ID embeddings, learned positions, causal self-attention blocks (post-norm, as in
//! RecBole's implementation), dropout, cross-entropy over all items; Adam; early stopping on
//! valid Recall@20. Seeded: initialisation, batch order and dropout masks. A finished run can
//! be kept on disk ([`train`]'s `cache`) and is then loaded, not trained again, by any later
//! evaluation of the same samples and configuration.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::catalog::ItemIndex;
use crate::data::dataset::Sample;
use crate::data::prompt::MAX_HISTORY;
use crate::error::{Error, Result};
use crate::model::{DropoutRates, Noise};
use crate::offline::data_parallel::{Gradients, MicroLoss, StepTimes, Workers};
use crate::offline::eval::top_items;
use crate::offline::train::Init;

/// Hyper-parameters (defaults: RecBole 1.2.1's SASRec with the D3 history cap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SasRecConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub inner: usize,
    /// Dropout on embeddings, attention probabilities and block outputs.
    pub dropout: f32,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Epochs without a better valid Recall@20 before stopping.
    pub patience: usize,
    /// Wall-clock cap on training, in minutes: a guard against a run that never ends, not a
    /// stopping rule (a capped run says so, see [`SasRecRun::stop`]).
    pub max_minutes: f64,
    pub seed: u64,
}

impl Default for SasRecConfig {
    fn default() -> Self {
        SasRecConfig {
            hidden: 64,
            layers: 2,
            heads: 2,
            inner: 256,
            dropout: 0.5,
            learning_rate: 1e-3,
            batch_size: 256,
            max_epochs: 200,
            patience: 10,
            max_minutes: 240.0,
            seed: 2020,
        }
    }
}

struct Block {
    q: candle_nn::Linear,
    k: candle_nn::Linear,
    v: candle_nn::Linear,
    out: candle_nn::Linear,
    norm1: (Tensor, Tensor),
    up: candle_nn::Linear,
    down: candle_nn::Linear,
    norm2: (Tensor, Tensor),
}

/// A SASRec network over `items` catalog items (embedding row 0 is padding).
pub struct SasRec {
    cfg: SasRecConfig,
    items: Tensor,
    positions: Tensor,
    norm: (Tensor, Tensor),
    blocks: Vec<Block>,
}

fn layer_norm(xs: &Tensor, (w, b): &(Tensor, Tensor)) -> Result<Tensor> {
    let mean = xs.mean_keepdim(D::Minus1)?;
    let centered = xs.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(centered
        .broadcast_div(&(var + 1e-12)?.sqrt()?)?
        .broadcast_mul(w)?
        .broadcast_add(b)?)
}

fn norm_params(vb: &VarBuilder, name: &str, d: usize) -> Result<(Tensor, Tensor)> {
    let vb = vb.pp(name);
    Ok((vb.get(d, "weight")?, vb.get(d, "bias")?))
}

fn linear(vb: &VarBuilder, name: &str, inp: usize, out: usize) -> Result<candle_nn::Linear> {
    let vb = vb.pp(name);
    Ok(candle_nn::Linear::new(
        vb.get((out, inp), "weight")?,
        Some(vb.get(out, "bias")?),
    ))
}

impl SasRec {
    /// Builds the network's variables in `vb` for a catalog of `n_items` items.
    pub fn new(cfg: &SasRecConfig, n_items: usize, vb: VarBuilder) -> Result<Self> {
        if cfg.hidden == 0 || cfg.heads == 0 || !cfg.hidden.is_multiple_of(cfg.heads) {
            return Err(Error::invalid(
                "sasrec hidden / heads",
                format!("{} / {} (a whole head size)", cfg.hidden, cfg.heads),
            ));
        }
        let d = cfg.hidden;
        let blocks = (0..cfg.layers)
            .map(|i| {
                let vb = vb.pp(format!("blocks.{i}"));
                Ok(Block {
                    q: linear(&vb, "q", d, d)?,
                    k: linear(&vb, "k", d, d)?,
                    v: linear(&vb, "v", d, d)?,
                    out: linear(&vb, "out", d, d)?,
                    norm1: norm_params(&vb, "norm1", d)?,
                    up: linear(&vb, "up", d, cfg.inner)?,
                    down: linear(&vb, "down", cfg.inner, d)?,
                    norm2: norm_params(&vb, "norm2", d)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(SasRec {
            cfg: cfg.clone(),
            items: vb.pp("items").get((n_items + 1, d), "weight")?,
            positions: vb.pp("positions").get((MAX_HISTORY, d), "weight")?,
            norm: norm_params(&vb, "norm", d)?,
            blocks,
        })
    }

    /// Final hidden state of the last position for left-padded histories `(b, MAX_HISTORY)`
    /// of item ids + 1 (0 = padding); dropout when `noise` is given.
    fn forward(&self, ids: &Tensor, noise: Option<&Noise>) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let d = self.cfg.hidden;
        let heads = self.cfg.heads;
        let hd = d / heads;
        let drop = |x: Tensor| -> Result<Tensor> {
            match noise {
                Some(n) => n.apply(&x, self.cfg.dropout),
                None => Ok(x),
            }
        };
        let emb = self
            .items
            .embedding(&ids.flatten_all()?)?
            .reshape((b, t, d))?;
        let mut xs = emb.broadcast_add(&self.positions.narrow(0, MAX_HISTORY - t, t)?)?;
        xs = drop(layer_norm(&xs, &self.norm)?)?;
        // Causal mask plus padded keys, as large negatives (a padded query row stays finite).
        let ids_v = ids.to_vec2::<u32>()?;
        let mut mask = vec![0f32; b * t * t];
        for (r, row) in ids_v.iter().enumerate() {
            for i in 0..t {
                for j in 0..t {
                    if j > i || row[j] == 0 {
                        mask[(r * t + i) * t + j] = -1e9;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, t, t), ids.device())?;
        let split = |x: Tensor| -> Result<Tensor> {
            Ok(x.reshape((b, t, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        for block in &self.blocks {
            use candle_core::Module;
            let q = split(block.q.forward(&xs)?)?;
            let k = split(block.k.forward(&xs)?)?;
            let v = split(block.v.forward(&xs)?)?;
            let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(&mask)?;
            let weights = drop(candle_nn::ops::softmax(&scores, D::Minus1)?)?;
            let attn = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
            let attn = drop(block.out.forward(&attn)?)?;
            xs = layer_norm(&(xs + attn)?, &block.norm1)?;
            let ff = drop(block.down.forward(&block.up.forward(&xs)?.gelu_erf()?)?)?;
            xs = layer_norm(&(xs + ff)?, &block.norm2)?;
        }
        Ok(xs.narrow(1, t - 1, 1)?.squeeze(1)?)
    }

    /// Scores `(b, n_items)` over the catalog (padding row dropped).
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let n = self.items.dim(0)? - 1;
        Ok(hidden.matmul(&self.items.narrow(0, 1, n)?.t()?)?)
    }

    /// Top-[`crate::offline::eval::EVAL_DEPTH`] rankings of `samples`' next items, in batches.
    pub fn rankings(&self, samples: &[&Sample]) -> Result<Vec<Vec<ItemIndex>>> {
        let mut out = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(512) {
            let ids = history_tensor(chunk.iter().map(|s| s.history.as_slice()))?;
            let logits = self.logits(&self.forward(&ids, None)?)?.to_vec2::<f32>()?;
            for row in logits {
                let negated: Vec<f32> = row.iter().map(|x| -x).collect();
                out.push(top_items(&negated));
            }
        }
        Ok(out)
    }
}

/// Left-padded `(b, MAX_HISTORY)` ids + 1 of the histories' last items.
fn history_tensor<'a>(histories: impl Iterator<Item = &'a [ItemIndex]>) -> Result<Tensor> {
    let mut ids = Vec::new();
    let mut rows = 0;
    for h in histories {
        let h = crate::data::prompt::truncate_history(h);
        ids.extend(std::iter::repeat_n(0u32, MAX_HISTORY - h.len()));
        ids.extend(h.iter().map(|&i| i + 1));
        rows += 1;
    }
    Ok(Tensor::from_vec(ids, (rows, MAX_HISTORY), &Device::Cpu)?)
}

/// Seeded initialisation: N(0, 0.02) weights, zero biases, unit norm weights (RecBole's).
fn initialise(varmap: &VarMap, seed: u64) -> Result<()> {
    crate::offline::train::seeded_init(varmap, seed, |name| {
        if name.contains("norm") && name.ends_with("weight") {
            Init::Ones
        } else if name.ends_with("bias") {
            Init::Zeros
        } else {
            Init::Normal(0.02)
        }
    })
}

/// What a training run did.
#[derive(Debug, Clone, Serialize)]
pub struct SasRecRun {
    pub config: SasRecConfig,
    /// Why training ended.
    pub stop: Stop,
    pub epochs: usize,
    pub best_epoch: usize,
    pub best_valid_recall: f64,
    pub seconds: f64,
    /// (epoch, mean train loss, valid Recall@20).
    pub history: Vec<(usize, f64, f64)>,
}

/// Why a SASRec run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stop {
    /// `patience` epochs without a better valid Recall@20: the run found its stopping point.
    Patience,
    /// `max_epochs` reached (or, without valid samples, the epochs asked for).
    MaxEpochs,
    /// The wall-clock cap `max_minutes` cut it short: valid recall may still have been rising.
    TimeCap,
}

impl Stop {
    /// What a report says about a run that ended this way (empty when it found its own
    /// stopping point).
    pub fn warning(self, cfg: &SasRecConfig, epochs: usize) -> Option<String> {
        (self == Stop::TimeCap).then(|| {
            format!(
                "SASRec stopped by the {}-minute cap at epoch {epochs}, before its early stopping: \
                 it may be undertrained (raise the cap)",
                cfg.max_minutes
            )
        })
    }
}

/// Trains on `train` with early stopping on `valid` Recall@20; returns the network with the
/// best valid weights. `progress` receives one line per epoch. With `cache` (a directory), a
/// run of the same configuration, catalog size and samples finished before is loaded from it
/// instead ([`cached_run`]), and a new one is kept there.
pub fn train(
    cfg: &SasRecConfig,
    n_items: usize,
    train: &[&Sample],
    valid: &[&Sample],
    cache: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<(SasRec, SasRecRun)> {
    if valid.is_empty() {
        return Err(Error::invalid("sasrec", "needs valid samples"));
    }
    cached_run(cfg, n_items, train, Some(valid), cache, progress)
}

/// The refit protocol: after [`train`] chose its epoch count on valid, a new network (same
/// seed) trained on `train` (e.g. train + valid) for exactly `epochs` epochs, no selection
/// and no time cap — the comparison for a model whose memory holds the valid interactions.
pub fn refit(
    cfg: &SasRecConfig,
    n_items: usize,
    train: &[&Sample],
    epochs: usize,
    cache: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<(SasRec, SasRecRun)> {
    let cfg = SasRecConfig {
        max_epochs: epochs,
        max_minutes: f64::INFINITY,
        ..cfg.clone()
    };
    cached_run(&cfg, n_items, train, None, cache, progress)
}

/// [`run`] through the cache directory `cache`: the run lives in `cache/KEY/` (`weights.safetensors`,
/// the kept weights, and `run.json`), KEY the sha256 of everything the run depends on — the
/// configuration, the catalog size, and every train and valid sample's history and target —
/// so any change to them trains anew and nothing stale is ever loaded. The files are written
/// once training has finished, and only for a run that ended by its own rule (early stopping or
/// its epochs): a run the wall-clock cap cut short is not kept, so a later run, perhaps on a
/// faster machine, trains again rather than inheriting the cut. The cap is thus no part of the
/// key.
fn cached_run(
    cfg: &SasRecConfig,
    n_items: usize,
    train: &[&Sample],
    valid: Option<&[&Sample]>,
    cache: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<(SasRec, SasRecRun)> {
    let Some(cache) = cache else {
        return run(cfg, n_items, train, valid, progress).map(|(net, run, _)| (net, run));
    };
    let dir = cache.join(run_key(cfg, n_items, train, valid));
    let (weights, record) = (dir.join("weights.safetensors"), dir.join("run.json"));
    if weights.is_file() && record.is_file() {
        let text = std::fs::read_to_string(&record).map_err(|e| Error::io(&record, e))?;
        let kept: KeptRun = serde_json::from_str(&text).map_err(|e| Error::Json {
            file: record.display().to_string(),
            source: e,
        })?;
        let mut varmap = VarMap::new();
        let net = SasRec::new(
            cfg,
            n_items,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )?;
        varmap.load(&weights)?;
        progress(&format!(
            "sasrec: loaded the run trained before on these samples from {}",
            dir.display()
        ));
        return Ok((net, kept.into_run(cfg)));
    }
    let (net, run, varmap) = run(cfg, n_items, train, valid, progress)?;
    if run.stop == Stop::TimeCap {
        progress("sasrec: not kept for later runs (the time cap cut it short)");
        return Ok((net, run));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    varmap.save(&weights)?;
    let text = serde_json::to_string_pretty(&KeptRun::from_run(&run)).map_err(|e| Error::Json {
        file: record.display().to_string(),
        source: e,
    })?;
    std::fs::write(&record, text).map_err(|e| Error::io(&record, e))?;
    Ok((net, run))
}

/// The cache key of a run: sha256 (hex) of the configuration but its time cap, the catalog
/// size and the samples.
fn run_key(
    cfg: &SasRecConfig,
    n_items: usize,
    train: &[&Sample],
    valid: Option<&[&Sample]>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let uncapped = SasRecConfig {
        max_minutes: 0.0,
        ..cfg.clone()
    };
    h.update(format!("sasrec run v1 {uncapped:?} items {n_items}").as_bytes());
    for (name, samples) in [("train", Some(train)), ("valid", valid)] {
        let Some(samples) = samples else { continue };
        h.update(format!("{name} {}", samples.len()).as_bytes());
        for s in samples {
            h.update((s.history.len() as u32).to_le_bytes());
            for &i in s.history.iter().chain([&s.target]) {
                h.update(i.to_le_bytes());
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A [`SasRecRun`] as kept on disk: JSON has no NaN (a run without valid samples has no
/// valid recall), so those are `null`; the configuration is the key's.
#[derive(Serialize, Deserialize)]
struct KeptRun {
    stop: Stop,
    epochs: usize,
    best_epoch: usize,
    best_valid_recall: Option<f64>,
    seconds: f64,
    history: Vec<(usize, f64, Option<f64>)>,
}

impl KeptRun {
    fn from_run(run: &SasRecRun) -> Self {
        let finite = |v: f64| v.is_finite().then_some(v);
        KeptRun {
            stop: run.stop,
            epochs: run.epochs,
            best_epoch: run.best_epoch,
            best_valid_recall: finite(run.best_valid_recall),
            seconds: run.seconds,
            history: run
                .history
                .iter()
                .map(|&(e, loss, recall)| (e, loss, finite(recall)))
                .collect(),
        }
    }

    fn into_run(self, cfg: &SasRecConfig) -> SasRecRun {
        SasRecRun {
            config: cfg.clone(),
            stop: self.stop,
            epochs: self.epochs,
            best_epoch: self.best_epoch,
            best_valid_recall: self.best_valid_recall.unwrap_or(f64::NAN),
            seconds: self.seconds,
            history: self
                .history
                .into_iter()
                .map(|(e, loss, recall)| (e, loss, recall.unwrap_or(f64::NAN)))
                .collect(),
        }
    }
}

/// The epoch loop: with `valid`, early stopping and the best valid weights; without, every
/// epoch of `cfg.max_epochs` and the last weights. Each step runs data-parallel on every core
/// (`offline::data_parallel`: one micro-batch per thread, gradients summed in order).
fn run(
    cfg: &SasRecConfig,
    n_items: usize,
    train: &[&Sample],
    valid: Option<&[&Sample]>,
    progress: &mut dyn FnMut(&str),
) -> Result<(SasRec, SasRecRun, VarMap)> {
    if train.is_empty() {
        return Err(Error::invalid("sasrec", "needs train samples"));
    }
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = SasRec::new(cfg, n_items, vb)?;
    initialise(&varmap, cfg.seed)?;
    let vars: Vec<Var> = varmap.all_vars();
    let workers = Workers::every_core()?;
    let mut optimizer = candle_nn::AdamW::new(
        vars.clone(),
        candle_nn::ParamsAdamW {
            lr: cfg.learning_rate,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let recall_at_20 = |net: &SasRec| -> Result<f64> {
        let Some(valid) = valid else {
            return Ok(f64::NAN);
        };
        let rankings = net.rankings(valid)?;
        let hits = rankings
            .iter()
            .zip(valid)
            .filter(|(r, s)| r.iter().take(20).any(|&i| i == s.target))
            .count();
        Ok(hits as f64 / valid.len() as f64)
    };
    let started = Instant::now();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut best: Option<(f64, usize, Vec<Tensor>)> = None;
    let mut stop = Stop::MaxEpochs;
    let mut history = Vec::new();
    let rates = DropoutRates::default();
    let mut step = 0u64;
    for epoch in 1..=cfg.max_epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut batches = 0usize;
        for chunk in order.chunks(cfg.batch_size) {
            step += 1;
            let grads = Gradients::of_batch(
                &workers,
                chunk,
                &vars,
                <[usize]>::len,
                |micro, part| {
                    let started = Instant::now();
                    let ids = history_tensor(part.iter().map(|&i| train[i].history.as_slice()))?;
                    let labels: Vec<u32> = part.iter().map(|&i| train[i].target).collect();
                    let labels = Tensor::from_vec(labels, part.len(), &Device::Cpu)?;
                    let batching = started.elapsed().as_secs_f64();
                    // Micro-batch 0 draws the single-thread masks.
                    let seed = cfg.seed.wrapping_mul(0x5a5e).wrapping_add(step);
                    let noise = Noise::new(
                        rates,
                        seed.wrapping_add((micro as u64).wrapping_mul(0x6a09_e667_f3bc_c909)),
                    );
                    let logits = net.logits(&net.forward(&ids, Some(&noise))?)?;
                    let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
                    Ok((
                        batching,
                        MicroLoss {
                            loss,
                            positions: part.len(),
                        },
                    ))
                },
                &mut StepTimes::default(),
            )?;
            optimizer.step(&grads.store(&vars))?;
            loss_sum += grads.loss;
            batches += 1;
        }
        let recall = recall_at_20(&net)?;
        let loss = loss_sum / batches.max(1) as f64;
        history.push((epoch, loss, recall));
        // Without valid samples every epoch is the latest, and so the one kept.
        let improved = valid.is_none() || best.as_ref().is_none_or(|b| recall > b.0);
        if improved {
            let weights = vars
                .iter()
                .map(|v| v.as_tensor().copy())
                .collect::<candle_core::Result<_>>()?;
            best = Some((recall, epoch, weights));
        }
        let minutes = started.elapsed().as_secs_f64() / 60.0;
        let selection = match (valid, improved) {
            (None, _) => String::new(),
            (Some(_), true) => format!(", valid R@20 {recall:.4} (best)"),
            (Some(_), false) => format!(", valid R@20 {recall:.4}"),
        };
        progress(&format!(
            "sasrec epoch {epoch} of at most {}: train loss {loss:.4}{selection} ({minutes:.1} min)",
            cfg.max_epochs
        ));
        let since = epoch - best.as_ref().map_or(epoch, |b| b.1);
        if since >= cfg.patience {
            stop = Stop::Patience;
            break;
        }
        if minutes >= cfg.max_minutes {
            stop = Stop::TimeCap;
            break;
        }
    }
    let (best_recall, best_epoch, weights) = best.expect("at least one epoch");
    for (var, w) in vars.iter().zip(&weights) {
        var.set(w)?;
    }
    let run = SasRecRun {
        config: cfg.clone(),
        stop,
        epochs: history.len(),
        best_epoch,
        best_valid_recall: best_recall,
        seconds: started.elapsed().as_secs_f64(),
        history,
    };
    Ok((net, run, varmap))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 24 samples over 6 items (the first 20 to train on, the rest to validate).
    fn tiny_samples() -> Vec<Sample> {
        (0..24)
            .map(|i| Sample {
                user: format!("u{}", i % 4),
                history: vec![i % 6, (i + 1) % 6],
                target: (i + 2) % 6,
                timestamp: None,
            })
            .collect()
    }

    /// A network small enough to train in milliseconds.
    fn tiny_config() -> SasRecConfig {
        SasRecConfig {
            hidden: 8,
            heads: 1,
            inner: 16,
            batch_size: 8,
            ..Default::default()
        }
    }

    /// Each way a run ends: (patience, minutes cap, max epochs) → why it stopped, and whether
    /// a report warns about it.
    #[test]
    fn a_run_says_why_it_stopped() {
        let samples = tiny_samples();
        let refs: Vec<&Sample> = samples.iter().collect();
        let (train, valid) = refs.split_at(20);
        let cases = [
            (0, f64::INFINITY, 5, Stop::Patience, false),
            (100, 0.0, 5, Stop::TimeCap, true),
            (100, f64::INFINITY, 2, Stop::MaxEpochs, false),
        ];
        for (patience, max_minutes, max_epochs, expected, warns) in cases {
            let cfg = SasRecConfig {
                patience,
                max_minutes,
                max_epochs,
                ..tiny_config()
            };
            let (_, run) = super::train(&cfg, 6, train, valid, None, &mut |_| {}).unwrap();
            assert_eq!(run.stop, expected, "{patience} {max_minutes} {max_epochs}");
            assert_eq!(run.stop.warning(&cfg, run.epochs).is_some(), warns);
        }
    }

    /// A finished run is kept and loaded back (same rankings, same record, no training); a
    /// changed sample, configuration or the refit protocol is another run; another time cap
    /// is the same run; a run the time cap cut short is not kept.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_kept_run_is_loaded_and_any_change_trains_anew() {
        let samples = tiny_samples();
        let refs: Vec<&Sample> = samples.iter().collect();
        let (train, valid) = refs.split_at(20);
        let cfg = SasRecConfig {
            max_epochs: 3,
            ..tiny_config()
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = Some(dir.path());
        let mut lines = Vec::new();
        let (first, run) = super::train(&cfg, 6, train, valid, cache, &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        assert!(lines.iter().all(|l| !l.contains("loaded")), "{lines:?}");
        lines.clear();
        let (again, kept) = super::train(&cfg, 6, train, valid, cache, &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        assert_eq!(lines.len(), 1, "no epoch trained: {lines:?}");
        assert!(lines[0].contains("loaded"), "{lines:?}");
        assert_eq!(
            again.rankings(valid).unwrap(),
            first.rankings(valid).unwrap()
        );
        assert_eq!(
            (kept.epochs, kept.best_epoch, kept.stop, kept.history.len()),
            (run.epochs, run.best_epoch, run.stop, run.history.len())
        );
        assert_eq!(kept.best_valid_recall, run.best_valid_recall);
        // The refit has no valid recall (NaN in memory, null on disk) and reads back as NaN.
        let (_, refit) = super::refit(&cfg, 6, train, 2, cache, &mut |_| {}).unwrap();
        let (_, refit_kept) = super::refit(&cfg, 6, train, 2, cache, &mut |_| {}).unwrap();
        assert!(refit.best_valid_recall.is_nan() && refit_kept.best_valid_recall.is_nan());
        assert_eq!(refit_kept.epochs, 2);
        let runs = || std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(runs(), 2, "the run and its refit");
        // (what changed, the run's inputs)
        let mut moved = samples.clone();
        moved[3].target = 5 - moved[3].target;
        let moved_refs: Vec<&Sample> = moved.iter().collect();
        let other_cfg = SasRecConfig {
            seed: 7,
            ..cfg.clone()
        };
        let cases: [(&str, &SasRecConfig, &[&Sample]); 2] = [
            ("one train target", &cfg, &moved_refs[..20]),
            ("the seed", &other_cfg, train),
        ];
        for (i, (what, cfg, train)) in cases.into_iter().enumerate() {
            let mut trained = 0;
            super::train(cfg, 6, train, valid, cache, &mut |l| {
                trained += usize::from(l.contains("epoch"));
            })
            .unwrap();
            assert!(trained > 0, "{what}: trained anew");
            assert_eq!(runs(), 3 + i, "{what}: kept as another run");
        }
        // Another time cap is the same run, loaded; a run the cap cuts short is not kept (a
        // cap of 0 minutes stops after the first epoch), so it trains again next time.
        let recapped = SasRecConfig {
            max_minutes: 60.0,
            ..cfg.clone()
        };
        let mut loaded = false;
        super::train(&recapped, 6, train, valid, cache, &mut |l| {
            loaded |= l.contains("loaded")
        })
        .unwrap();
        assert!(loaded, "a different cap loads the finished run");
        let capped = SasRecConfig {
            max_minutes: 0.0,
            seed: 11,
            ..cfg.clone()
        };
        for _ in 0..2 {
            let mut trained = 0;
            let (_, run) = super::train(&capped, 6, train, valid, cache, &mut |l| {
                trained += usize::from(l.contains("epoch"));
            })
            .unwrap();
            assert_eq!(
                (run.stop, trained),
                (Stop::TimeCap, 1),
                "capped: trained again"
            );
            assert_eq!(runs(), 4, "a capped run is not kept");
        }
    }
}
