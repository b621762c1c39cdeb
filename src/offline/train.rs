//! Generative fine-tuning (here: training from scratch) of the Qwen2 network on history → next
//! title, on the train split only. Next-token cross-entropy on target-title tokens and the end
//! marker after them; AdamW with warmup, then the learning-rate schedule of
//! [`crate::offline::schedule`] (stable until the probe stops improving, then a short decay),
//! global-norm gradient clipping; seeded; checkpoints every few minutes and resumes exactly where
//! it stopped.
//!
//! With the compact template, a prompt followed by its target *is* the prompt of the longer
//! history, so each user's train timeline is packed into windows of ≤ 11 items and one forward
//! pass trains every next-title position in the window. The hidden state L2D later reads (the
//! separator after the last history item) is exactly the position these losses predict from.
//! Only train-split targets enter a window; valid/test targets never appear in training input.
//!
//! Long because: the run is one resumable state machine (windows, augmentation, schedule,
//! evaluation and selection, checkpoints); its parts share the state a checkpoint restores.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::catalog::ItemIndex;
use crate::data::dataset::{Dataset, Sample, Split};
use crate::data::prompt::MAX_HISTORY;
use crate::data::prompt::{Template, PAD};
use crate::data::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::model::{
    check_probability, DropoutRates, Model, ModelConfig, ModelMeta, Noise, Pass, Qwen2,
    CONFIG_FILE, META_FILE, TOKENIZER_FILE, WEIGHTS_FILE,
};
use crate::offline::data_parallel::{Gradients, MicroLoss, StepTimes, Workers};
use crate::offline::schedule::{epoch_ceiling, Decay, Rates, Schedule};

/// Hyper-parameters of a training run (all recorded in the model directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate_size: usize,
    /// Epochs the run may last (with [`Schedule::StableDecay`] a ceiling: early stopping ends
    /// it sooner; with [`Schedule::Cosine`] the length of the decay).
    pub epochs: usize,
    /// Upper bound on padded tokens per batch (batch × longest sequence).
    pub batch_tokens: usize,
    pub learning_rate: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub clip_norm: f64,
    pub seed: u64,
    /// Evaluate valid loss every this many steps.
    pub eval_every: usize,
    /// Valid samples used for the periodic valid loss.
    pub eval_samples: usize,
    /// Save a resumable checkpoint every this many seconds.
    pub checkpoint_seconds: u64,
    /// Dropout in training passes (never at inference).
    #[serde(default)]
    pub dropout: DropoutRates,
    /// Label smoothing ε on target tokens: the loss mixes (1 − ε) × cross-entropy with ε × the
    /// mean negative log-probability over the vocabulary.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Probability that a train window (packed) or history (per-sample) is cropped to a random
    /// shorter length.
    #[serde(default)]
    pub history_crop: f64,
    /// Probability that each item of a train window or history is dropped from it.
    #[serde(default)]
    pub item_dropout: f64,
    /// What selects the exported weights at each evaluation.
    #[serde(default)]
    pub select: Selection,
    /// Fraction of train samples whose states form the memory of the in-training recall.
    #[serde(default = "default_select_fraction")]
    pub select_memory_fraction: f64,
    /// Valid samples (the first of the valid-loss subset) the in-training recall ranks for.
    #[serde(default = "default_select_samples")]
    pub select_samples: usize,
    /// After this many evaluations without a better selection metric (0 = never): the cosine
    /// schedule stops, the stable–decay schedule begins its decay.
    #[serde(default)]
    pub patience: usize,
    /// How the learning rate moves after warmup.
    #[serde(default)]
    pub schedule: Schedule,
}

impl TrainConfig {
    /// The recipe for a train split of `train_samples` samples: the defaults with the epoch
    /// ceiling that size gives ([`epoch_ceiling`]).
    pub fn recipe(train_samples: usize) -> TrainConfig {
        TrainConfig {
            epochs: epoch_ceiling(train_samples),
            ..TrainConfig::default()
        }
    }

    /// The rates the schedule reads.
    pub fn rates(&self) -> Rates {
        Rates {
            peak: self.learning_rate,
            min_ratio: self.min_lr_ratio,
            warmup_steps: self.warmup_steps,
        }
    }
}

fn default_select_fraction() -> f64 {
    0.1
}

fn default_select_samples() -> usize {
    1000
}

/// The metric that selects the exported weights. The recipe selects by [`Selection::L2dRecall`]
/// ([`TrainConfig::default`]); [`Selection::ValidLoss`] is what a `train.json` written before
/// the field existed meant, so it is the value serde fills in for a missing field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Lowest valid loss (next-title cross-entropy).
    #[default]
    ValidLoss,
    /// Highest L2D-L (M = [`SELECT_M`]) Recall@20 on the valid subset, with a memory from a
    /// seeded fraction of train samples: the metric that is shipped.
    L2dRecall,
    /// The last weights, no selection and no early stop: a refit on train + valid for the
    /// schedule a selected run chose (its valid split is in the training data, so it cannot
    /// select; the valid loss is still logged).
    Final,
}

impl std::str::FromStr for Selection {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "loss" | "valid_loss" => Ok(Selection::ValidLoss),
            "recall" | "l2d_recall" => Ok(Selection::L2dRecall),
            "final" => Ok(Selection::Final),
            other => Err(Error::invalid(
                "select",
                format!("`{other}` (expected loss, recall or final)"),
            )),
        }
    }
}

/// The probe's recall of `model`: L2D-L (M = [`SELECT_M`]) Recall@[`SELECT_K`] of `queries`
/// against a memory of `memory` (what selects weights during training, and `l2d probe`).
pub fn probe_recall(
    model: &Model,
    catalog: &crate::data::catalog::Catalog,
    memory: &[Sample],
    queries: &[Sample],
) -> Result<f64> {
    crate::offline::eval::l2d_recall(
        model,
        catalog,
        memory,
        queries,
        crate::serve::recommend::Mode::Local { m: SELECT_M },
        SELECT_K,
    )
}

/// M of the L2D-L recall that selects weights during training.
pub const SELECT_M: usize = 10;
/// Cut-off of the in-training recall.
pub const SELECT_K: usize = 20;

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden_size: 192,
            layers: 4,
            heads: 4,
            intermediate_size: 768,
            // The shipped model's cosine run (docs/results/ablations.md §1); the recipe's ceiling
            // comes from the data instead ([`TrainConfig::recipe`]).
            epochs: 8,
            batch_tokens: 2048,
            learning_rate: 2e-3,
            min_lr_ratio: 0.05,
            warmup_steps: 200,
            weight_decay: 0.05,
            clip_norm: 1.0,
            seed: 42,
            eval_every: 400,
            eval_samples: 2000,
            checkpoint_seconds: 120,
            // Off by default, chosen on valid: with the same schedule and augmentation,
            // dropout 0.1 at the four places gave valid loss 1.577 and in-training L2D recall
            // 0.029 against 1.469 and 0.056 without it (docs/results/ablations.md §1).
            dropout: DropoutRates::default(),
            // Off, as in the 8-epoch run that chose the recipe: smoothing is known to compact the
            // penultimate states L2D reads (docs/results/ablations.md §1).
            label_smoothing: 0.0,
            history_crop: 0.2,
            item_dropout: 0.1,
            select: Selection::L2dRecall,
            select_memory_fraction: default_select_fraction(),
            select_samples: default_select_samples(),
            patience: 3,
            schedule: Schedule::StableDecay,
        }
    }
}

/// One training sequence: token ids and, per position p ≥ 1, whether token p is a loss target
/// (predicted from position p − 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainSequence {
    pub ids: Vec<u32>,
    pub is_target: Vec<bool>,
}

/// Token ids of every catalog title rendered as a target (title + end marker).
pub fn target_ids(
    tokenizer: &Tokenizer,
    template: &Template,
    titles: &[&str],
) -> Result<Vec<Vec<u32>>> {
    titles
        .iter()
        .map(|t| tokenizer.encode(&template.target(t)))
        .collect()
}

/// Reconstructs each user's chronological train timeline from prefix samples: a sample whose
/// history continues the timeline appends its target; otherwise a new segment starts.
pub fn timelines(samples: &[Sample]) -> Vec<Vec<ItemIndex>> {
    let mut by_user: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        by_user
            .entry(&s.user)
            .or_insert_with(|| {
                order.push(&s.user);
                Vec::new()
            })
            .push(i);
    }
    let mut out = Vec::new();
    for user in order {
        let mut current: Vec<ItemIndex> = Vec::new();
        for &i in &by_user[user] {
            let s = &samples[i];
            let tail = &current[current.len().saturating_sub(s.history.len())..];
            if current.is_empty() || tail != s.history.as_slice() || s.history.is_empty() {
                if current.len() > 1 {
                    out.push(std::mem::take(&mut current));
                }
                current = s.history.clone();
            }
            current.push(s.target);
        }
        if current.len() > 1 {
            out.push(current);
        }
    }
    out
}

/// Cuts timelines into windows of ≤ `MAX_HISTORY + 1` items whose targets (every item but the
/// first of a window) partition each timeline's targets; a random first length varies where
/// cuts fall, and with probability `crop` a window is cut to a random shorter length (history
/// augmentation: the targets still partition the timeline).
fn windows(timelines: &[Vec<ItemIndex>], crop: f64, rng: &mut StdRng) -> Vec<Vec<ItemIndex>> {
    let mut out = Vec::new();
    for timeline in timelines {
        let first_len = MAX_HISTORY + 1 - rng.random_range(0..MAX_HISTORY);
        let mut start = 0;
        let mut len = first_len.min(timeline.len());
        while start + 1 < timeline.len() {
            if crop > 0.0 && len > 2 && rng.random_bool(crop) {
                len = rng.random_range(2..len);
            }
            out.push(timeline[start..start + len].to_vec());
            start += len - 1;
            len = (MAX_HISTORY + 1).min(timeline.len() - start);
        }
    }
    out
}

/// History augmentation: drops each item with probability `p`, keeping at least `min_len`
/// items (the sequence is kept whole when too few would remain).
fn drop_items(items: &[ItemIndex], p: f64, min_len: usize, rng: &mut StdRng) -> Vec<ItemIndex> {
    if p <= 0.0 {
        return items.to_vec();
    }
    let kept: Vec<ItemIndex> = items
        .iter()
        .copied()
        .filter(|_| !rng.random_bool(p))
        .collect();
    if kept.len() < min_len {
        items.to_vec()
    } else {
        kept
    }
}

/// History augmentation of one per-sample history: with probability `crop` only a random
/// number (≥ 1) of its latest items is kept, then items drop with probability `item_dropout`.
fn augment_history(
    history: &[ItemIndex],
    crop: f64,
    item_dropout: f64,
    rng: &mut StdRng,
) -> Vec<ItemIndex> {
    let mut h = history;
    if crop > 0.0 && h.len() > 1 && rng.random_bool(crop) {
        h = &h[h.len() - rng.random_range(1..h.len())..];
    }
    drop_items(h, item_dropout, 1.min(h.len()), rng)
}

/// The packed sequence of a window (compact template): BOS, then each title's target text;
/// every title but the first is a loss target.
fn packed_sequence(window: &[ItemIndex], bos: u32, targets: &[Vec<u32>]) -> TrainSequence {
    let mut ids = vec![bos];
    let mut is_target = vec![false];
    for (k, &item) in window.iter().enumerate() {
        let t = &targets[item as usize];
        ids.extend_from_slice(t);
        is_target.extend(std::iter::repeat_n(k > 0, t.len()));
    }
    TrainSequence { ids, is_target }
}

/// A per-sample sequence: prompt ids then target ids, loss on the target only.
fn sample_sequence(model_prompt: Vec<u32>, target: &[u32]) -> TrainSequence {
    let mut is_target = vec![false; model_prompt.len()];
    is_target.extend(std::iter::repeat_n(true, target.len()));
    let mut ids = model_prompt;
    ids.extend_from_slice(target);
    TrainSequence { ids, is_target }
}

/// Groups sequences of similar length into batches of ≤ `batch_tokens` padded tokens, in a
/// seeded random order.
fn batches(
    mut seqs: Vec<TrainSequence>,
    batch_tokens: usize,
    rng: &mut StdRng,
) -> Vec<Vec<TrainSequence>> {
    seqs.shuffle(rng);
    seqs.sort_by_key(|s| s.ids.len());
    let mut out: Vec<Vec<TrainSequence>> = Vec::new();
    let mut current: Vec<TrainSequence> = Vec::new();
    for s in seqs {
        let longest = s.ids.len().max(current.last().map_or(0, |c| c.ids.len()));
        if !current.is_empty() && longest * (current.len() + 1) > batch_tokens {
            out.push(std::mem::take(&mut current));
        }
        current.push(s);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out.shuffle(rng);
    out
}

/// Everything fixed for a run: tokenized titles and train timelines / samples.
struct Corpus {
    template: Template,
    tokenizer: Tokenizer,
    targets: Vec<Vec<u32>>,
    titles: Vec<String>,
    timelines: Vec<Vec<ItemIndex>>,
    train: Vec<Sample>,
    eval: Vec<TrainSequence>,
}

impl Corpus {
    fn epoch_sequences(&self, cfg: &TrainConfig, rng: &mut StdRng) -> Result<Vec<TrainSequence>> {
        match self.template {
            Template::Compact => {
                let bos = self.tokenizer.token_id(crate::data::prompt::BOS)?;
                Ok(windows(&self.timelines, cfg.history_crop, rng)
                    .iter()
                    .map(|w| {
                        let w = drop_items(w, cfg.item_dropout, 2, rng);
                        packed_sequence(&w, bos, &self.targets)
                    })
                    .collect())
            }
            Template::D3 { .. } => self
                .train
                .iter()
                .map(|s| {
                    let kept = augment_history(&s.history, cfg.history_crop, cfg.item_dropout, rng);
                    let history: Vec<&str> = kept
                        .iter()
                        .map(|&i| self.titles[i as usize].as_str())
                        .collect();
                    let prompt = self.tokenizer.encode(&self.template.prompt(&history))?;
                    Ok(sample_sequence(prompt, &self.targets[s.target as usize]))
                })
                .collect(),
        }
    }
}

/// The batch schedule of epoch `epoch` (a pure function of the seed and the corpus).
fn epoch_plan(corpus: &Corpus, cfg: &TrainConfig, epoch: usize) -> Result<Vec<Vec<TrainSequence>>> {
    let mut rng =
        StdRng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
    let seqs = corpus.epoch_sequences(cfg, &mut rng)?;
    Ok(batches(seqs, cfg.batch_tokens, &mut rng))
}

/// The fixed valid subset of a run (valid loss; its first `select_samples` are the recall
/// probe's queries).
fn valid_subset<'a>(valid: &'a [Sample], cfg: &TrainConfig) -> Vec<&'a Sample> {
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed);
    let mut samples: Vec<&Sample> = valid.iter().collect();
    samples.shuffle(&mut rng);
    samples.truncate(cfg.eval_samples);
    samples
}

/// The in-training recall probe's samples under `cfg`: the memory's seeded train fraction and
/// the valid queries. `l2d probe` uses the same to measure any model on a run's probe.
pub fn probe_samples(
    train: &[Sample],
    valid: &[Sample],
    cfg: &TrainConfig,
) -> Result<(Vec<Sample>, Vec<Sample>)> {
    let keep =
        crate::latent::memory::subset(train.len(), cfg.select_memory_fraction, cfg.seed ^ 0x3e3)?;
    let memory = keep.iter().map(|&i| train[i].clone()).collect();
    let queries = valid_subset(valid, cfg)
        .into_iter()
        .take(cfg.select_samples)
        .cloned()
        .collect();
    Ok((memory, queries))
}

/// Input/target tensors of a batch: inputs `(b, t-1)`, flat row indices of loss positions into
/// `(b·(t-1))`, and the target ids at those positions.
fn batch_tensors(batch: &[TrainSequence], pad: u32) -> Result<(Tensor, Tensor, Tensor, usize)> {
    let longest = batch.iter().map(|s| s.ids.len()).max().unwrap_or(1);
    let width = longest - 1;
    let mut inputs = Vec::with_capacity(batch.len() * width);
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (b, s) in batch.iter().enumerate() {
        for p in 0..width {
            inputs.push(s.ids.get(p).copied().unwrap_or(pad));
            if s.is_target.get(p + 1).copied().unwrap_or(false) {
                rows.push((b * width + p) as u32);
                labels.push(s.ids[p + 1]);
            }
        }
    }
    let n = rows.len();
    let dev = Device::Cpu;
    Ok((
        Tensor::from_vec(inputs, (batch.len(), width), &dev)?,
        Tensor::from_vec(rows, n, &dev)?,
        Tensor::from_vec(labels, n, &dev)?,
        n,
    ))
}

/// How a batch's loss is computed: a training pass (dropout, label smoothing) or the plain
/// inference loss.
enum LossPass<'a> {
    Train { noise: &'a Noise, smoothing: f64 },
    Infer,
}

/// Mean loss over the batch's loss positions (a differentiable scalar): cross-entropy, mixed
/// with the mean negative log-probability over the vocabulary under label smoothing.
/// Also returns the seconds spent padding the batch into tensors.
fn batch_loss(
    net: &Qwen2,
    batch: &[TrainSequence],
    pad: u32,
    pass: LossPass,
) -> Result<(Tensor, usize, f64)> {
    let started = Instant::now();
    let (inputs, rows, labels, n) = batch_tensors(batch, pad)?;
    let batching = started.elapsed().as_secs_f64();
    let hidden = match pass {
        LossPass::Train { noise, .. } => net.forward_train(&inputs, noise)?,
        LossPass::Infer => net.forward(&inputs, None, Pass::Infer)?,
    };
    let flat = hidden.reshape(((), net.config().hidden_size))?;
    let selected = flat.index_select(&rows, 0)?;
    let logits = net.logits(&selected)?;
    let loss = match pass {
        LossPass::Train { smoothing, .. } if smoothing > 0.0 => {
            smoothed_cross_entropy(&logits, &labels, smoothing)?
        }
        _ => candle_nn::loss::cross_entropy(&logits, &labels)?,
    };
    Ok((loss, n, batching))
}

/// Label-smoothed cross-entropy: (1 − ε)·NLL(label) + ε·mean over the vocabulary of −log p.
pub fn smoothed_cross_entropy(logits: &Tensor, labels: &Tensor, epsilon: f64) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?;
    let nll = candle_nn::loss::nll(&log_p, labels)?;
    let uniform = log_p.mean(candle_core::D::Minus1)?.neg()?.mean_all()?;
    Ok(((nll * (1.0 - epsilon))? + (uniform * epsilon)?)?)
}

/// Token-weighted mean loss of fixed sequences (valid loss), without gradients.
fn mean_loss(net: &Qwen2, seqs: &[TrainSequence], pad: u32, batch_tokens: usize) -> Result<f64> {
    let mut rng = StdRng::seed_from_u64(0);
    let (mut total, mut count) = (0.0, 0usize);
    for batch in batches(seqs.to_vec(), batch_tokens, &mut rng) {
        let (loss, n, _) = batch_loss(net, &batch, pad, LossPass::Infer)?;
        total += loss.to_scalar::<f32>()? as f64 * n as f64;
        count += n;
    }
    Ok(total / count.max(1) as f64)
}

/// Cross-entropy of a unigram model of train target tokens on `seqs`' target tokens: the
/// baseline a trained model's valid loss must beat clearly.
fn unigram_loss(train: &[TrainSequence], seqs: &[TrainSequence], vocab: usize) -> f64 {
    let mut counts = vec![1.0f64; vocab];
    for s in train {
        for (p, &id) in s.ids.iter().enumerate() {
            if s.is_target[p] {
                counts[id as usize] += 1.0;
            }
        }
    }
    let total: f64 = counts.iter().sum();
    let (mut nll, mut n) = (0.0, 0usize);
    for s in seqs {
        for (p, &id) in s.ids.iter().enumerate() {
            if s.is_target[p] {
                nll -= (counts[id as usize] / total).ln();
                n += 1;
            }
        }
    }
    nll / n.max(1) as f64
}

/// How one variable starts.
pub(crate) enum Init {
    Ones,
    Zeros,
    /// N(0, std²).
    Normal(f64),
}

/// Sets every variable of `varmap` from a generator seeded with `seed`, in name order, as
/// `rule(name)` says: independent of candle's global RNG, so runs are reproducible.
pub(crate) fn seeded_init(varmap: &VarMap, seed: u64, rule: impl Fn(&str) -> Init) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = StdRng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let n = var.elem_count();
        let values: Vec<f32> = match rule(name) {
            Init::Ones => vec![1.0; n],
            Init::Zeros => vec![0.0; n],
            Init::Normal(std) => (0..n).map(|_| (normal(&mut rng) * std) as f32).collect(),
        };
        var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// GPT-2 style initialisation: N(0, 0.02), residual projections scaled by 1/√(2L), biases 0,
/// norm weights 1.
fn initialise(varmap: &VarMap, layers: usize, seed: u64) -> Result<()> {
    seeded_init(varmap, seed, |name| {
        if name.ends_with("layernorm.weight") || name == "model.norm.weight" {
            Init::Ones
        } else if name.ends_with(".bias") {
            Init::Zeros
        } else if name.contains("o_proj") || name.contains("down_proj") {
            Init::Normal(0.02 / (2.0 * layers as f64).sqrt())
        } else {
            Init::Normal(0.02)
        }
    })
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// AdamW with decoupled weight decay on matrices; its moments are checkpointed.
struct AdamW {
    vars: Vec<(String, Var, Tensor, Tensor)>,
    step: usize,
}

impl AdamW {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.98;
    const EPS: f64 = 1e-8;

    fn new(varmap: &VarMap) -> Result<Self> {
        let data = varmap.data().lock().expect("varmap lock");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let vars = names
            .into_iter()
            .map(|name| {
                let var = data[name].clone();
                let zeros = var.zeros_like()?;
                Ok((name.clone(), var, zeros.clone(), zeros))
            })
            .collect::<Result<_>>()?;
        Ok(AdamW { vars, step: 0 })
    }

    /// The variables in the optimizer's (name) order: the order gradients are given in.
    fn variables(&self) -> Vec<Var> {
        self.vars.iter().map(|(_, var, _, _)| var.clone()).collect()
    }

    /// One update with `grads` (aligned with [`AdamW::variables`]) scaled by `grad_scale`
    /// (clipping); each variable is updated on its own thread of `workers`.
    fn step(
        &mut self,
        workers: &Workers,
        grads: &[Option<Tensor>],
        lr: f64,
        wd: f64,
        grad_scale: f64,
    ) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - Self::BETA1.powi(t), 1.0 - Self::BETA2.powi(t));
        let update = |(_, var, m, v): &mut (String, Var, Tensor, Tensor),
                      g: &Option<Tensor>|
         -> Result<()> {
            let Some(g) = g else {
                return Ok(());
            };
            let g = (g * grad_scale)?;
            *m = ((&*m * Self::BETA1)? + (&g * (1.0 - Self::BETA1))?)?;
            *v = ((&*v * Self::BETA2)? + (g.sqr()? * (1.0 - Self::BETA2))?)?;
            let update = ((&*m / c1)? / ((&*v / c2)?.sqrt()? + Self::EPS)?)?;
            let decayed = if var.rank() >= 2 {
                (var.as_tensor() * (1.0 - lr * wd))?
            } else {
                var.as_tensor().clone()
            };
            var.set(&(decayed - (update * lr)?)?)?;
            Ok(())
        };
        workers.install(|| {
            use rayon::prelude::*;
            self.vars
                .par_iter_mut()
                .zip(grads.par_iter())
                .try_for_each(|(entry, g)| update(entry, g))
        })
    }

    fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = HashMap::new();
        for (name, _, m, v) in &self.vars {
            tensors.insert(format!("{name}.m"), m.clone());
            tensors.insert(format!("{name}.v"), v.clone());
        }
        candle_core::safetensors::save(&tensors, path)?;
        Ok(())
    }

    fn load(&mut self, path: &Path, step: usize) -> Result<()> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        for (name, _, m, v) in &mut self.vars {
            let get = |suffix: &str| {
                tensors
                    .get(&format!("{name}.{suffix}"))
                    .cloned()
                    .ok_or_else(|| {
                        Error::mismatch(
                            format!("{}: optimizer state", path.display()),
                            format!("{name}.{suffix}"),
                            "nothing",
                        )
                    })
            };
            *m = get("m")?;
            *v = get("v")?;
        }
        self.step = step;
        Ok(())
    }
}

/// Where a run stands; written with each checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub config: TrainConfig,
    /// Optimizer steps done.
    pub step: usize,
    /// Total steps of the run.
    pub total_steps: usize,
    /// Target tokens trained on so far.
    pub tokens: u64,
    /// Seconds of training so far (over all resumed runs).
    pub seconds: f64,
    /// Best valid loss so far and the step it was reached at.
    pub best_valid_loss: Option<f64>,
    pub best_step: Option<usize>,
    /// Valid loss of a unigram model of train target tokens.
    pub unigram_valid_loss: f64,
    /// (step, train loss (recent mean), valid loss) at each evaluation.
    pub history: Vec<(usize, f64, f64)>,
    /// (step, new epoch count) each time a resumed run changed the number of epochs (the
    /// learning-rate schedule is then recomputed over the new total).
    #[serde(default)]
    pub epoch_changes: Vec<(usize, usize)>,
    /// (step, L2D-L Recall@20 on the valid subset) at each evaluation, when selecting by recall.
    #[serde(default)]
    pub valid_recall: Vec<(usize, f64)>,
    /// Best in-training recall and the step it was reached at (the exported weights).
    #[serde(default)]
    pub best_valid_recall: Option<f64>,
    /// The step at which the run ended before its ceiling: patience ran out (cosine) or the
    /// decay ended (stable–decay).
    #[serde(default)]
    pub stopped_early_at: Option<usize>,
    /// The stable–decay schedule's decay, once it has begun.
    #[serde(default)]
    pub decay: Option<Decay>,
    /// One record per invocation that trained (a resumed run adds one): threads and the
    /// seconds of its steps by piece.
    #[serde(default)]
    pub runs: Vec<RunRecord>,
}

/// What one invocation of [`train`] did: how many steps on how many threads, and where their
/// time went (evaluations and checkpoints are not in it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub threads: usize,
    pub steps: usize,
    pub target_tokens: u64,
    /// Sums over the steps.
    pub times: StepTimes,
}

impl RunRecord {
    /// Optimizer steps per second of step time.
    pub fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.times.step.max(1e-12)
    }

    /// One line: steps/s and the milliseconds per step of each piece.
    pub fn summary(&self) -> String {
        let per_step = |s: f64| 1e3 * s / self.steps.max(1) as f64;
        let t = &self.times;
        format!(
            "{} steps on {} threads: {:.3} steps/s, {:.0} target tokens/s; per step {:.1} ms: batching {:.1}, forward {:.1}, backward {:.1}, gradient sum {:.1}, optimizer {:.1} ms",
            self.steps,
            self.threads,
            self.steps_per_second(),
            self.target_tokens as f64 / t.step.max(1e-12),
            per_step(t.step),
            per_step(t.batching),
            per_step(t.forward),
            per_step(t.backward),
            per_step(t.gradient_sum),
            per_step(t.optimizer),
        )
    }
}

/// How an invocation of [`train`] runs; none of it changes what a step computes but for the
/// summation order of `threads` ([`crate::offline::data_parallel`]).
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Continue from `model_dir/checkpoint`.
    pub resume: bool,
    /// Stop (with a checkpoint) once this many steps are done, to resume later.
    pub until_step: Option<usize>,
    /// Threads of the data-parallel steps (micro-batches per step).
    pub threads: usize,
}

/// Loss positions of a batch (its target tokens).
fn loss_positions(batch: &[TrainSequence]) -> usize {
    batch
        .iter()
        .map(|s| s.is_target.iter().skip(1).filter(|&&t| t).count())
        .sum()
}

impl TrainState {
    /// Evaluations since the selected (best) step.
    fn evaluations_since_best(&self) -> usize {
        let best = self.best_step.unwrap_or(0);
        self.history.iter().filter(|h| h.0 > best).count()
    }
}

/// Progress reporting hook so the CLI can draw a progress bar.
pub trait Progress {
    /// Called after each step.
    fn step(&mut self, state: &TrainState, loss: f64, tokens_per_second: f64);
    /// Called with a message line (evaluations, checkpoints).
    fn message(&mut self, line: &str);
}

/// Trains the model in `model_dir` (which holds tokenizer.json and l2d.json) on `dataset`'s
/// train split; valid loss on a fixed valid subset selects the exported weights
/// (config.json + model.safetensors). `resume` continues from `model_dir/checkpoint`.
/// `until_step` stops (with a checkpoint) once that many steps are done, to resume later.
/// Each step runs data-parallel on `run.threads` threads.
pub fn train(
    dataset: &Dataset,
    model_dir: &Path,
    cfg: &TrainConfig,
    run: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<TrainState> {
    let RunOptions {
        resume, until_step, ..
    } = *run;
    let workers = Workers::new(run.threads)?;
    cfg.dropout.validate()?;
    check_probability("label_smoothing", cfg.label_smoothing)?;
    check_probability("history_crop", cfg.history_crop)?;
    check_probability("item_dropout", cfg.item_dropout)?;
    let tokenizer = Tokenizer::from_file(&model_dir.join(TOKENIZER_FILE))?;
    let meta_path = model_dir.join(META_FILE);
    let meta_bytes = std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
    let template = ModelMeta::from_json(&meta_bytes, &meta_path.display().to_string())?.template;
    let titles: Vec<String> = dataset
        .catalog
        .items()
        .map(|i| i.title.to_string())
        .collect();
    let title_refs: Vec<&str> = titles.iter().map(String::as_str).collect();
    let targets = target_ids(&tokenizer, &template, &title_refs)?;
    let train = dataset.split(Split::Train)?.to_vec();
    let valid = dataset.split(Split::Valid)?;
    let eval_samples = valid_subset(valid, cfg);
    let eval = eval_samples
        .iter()
        .map(|s| {
            let history: Vec<&str> = s.history.iter().map(|&i| title_refs[i as usize]).collect();
            Ok(sample_sequence(
                tokenizer.encode(&template.prompt(&history))?,
                &targets[s.target as usize],
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let corpus = Corpus {
        timelines: timelines(&train),
        template: template.clone(),
        tokenizer: tokenizer.clone(),
        targets,
        titles,
        train,
        eval,
    };
    let pad = tokenizer.token_id(PAD)?;
    let mut model_cfg = ModelConfig::small(
        tokenizer.vocab_size(),
        cfg.hidden_size,
        cfg.layers,
        cfg.heads,
        cfg.intermediate_size,
    );
    model_cfg.bos_token_id = tokenizer.token_id(crate::data::prompt::BOS).ok();
    model_cfg.eos_token_id = tokenizer.token_id(template.end_marker()).ok();

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = Qwen2::new(&model_cfg, vb.clone())?;
    initialise(&varmap, cfg.layers, cfg.seed)?;
    let mut optimizer = AdamW::new(&varmap)?;
    // The in-training recall reads the same variables through a second view of the network.
    let recall_probe = match cfg.select {
        Selection::ValidLoss | Selection::Final => None,
        Selection::L2dRecall => {
            let model = Model::new(
                Qwen2::new(&model_cfg, vb)?,
                tokenizer.clone(),
                template.clone(),
                [0; 32],
            );
            let (memory, queries) = probe_samples(&corpus.train, valid, cfg)?;
            Some((model, memory, queries))
        }
    };

    let plans_len: Vec<usize> = (0..cfg.epochs)
        .map(|e| epoch_plan(&corpus, cfg, e).map(|p| p.len()))
        .collect::<Result<_>>()?;
    let total_steps: usize = plans_len.iter().sum();
    let checkpoint_dir = model_dir.join("checkpoint");
    let mut state = TrainState {
        config: cfg.clone(),
        step: 0,
        total_steps,
        tokens: 0,
        seconds: 0.0,
        best_valid_loss: None,
        best_step: None,
        unigram_valid_loss: 0.0,
        history: Vec::new(),
        epoch_changes: Vec::new(),
        valid_recall: Vec::new(),
        best_valid_recall: None,
        stopped_early_at: None,
        decay: None,
        runs: Vec::new(),
    };
    if resume && checkpoint_dir.join("state.json").exists() {
        let path = checkpoint_dir.join("state.json");
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let saved: TrainState = serde_json::from_slice(&text).map_err(|e| Error::Json {
            file: path.display().to_string(),
            source: e,
        })?;
        let same_but_epochs = TrainConfig {
            epochs: cfg.epochs,
            ..saved.config.clone()
        };
        if same_but_epochs != *cfg {
            return Err(Error::mismatch(
                format!("{}: training configuration", path.display()),
                format!("{:?}", saved.config),
                format!("{cfg:?} (resume with the same options)"),
            ));
        }
        let weights = candle_core::safetensors::load(
            checkpoint_dir.join("weights.safetensors"),
            &Device::Cpu,
        )?;
        for (name, var) in varmap.data().lock().expect("varmap lock").iter() {
            let saved_tensor = weights
                .get(name)
                .ok_or_else(|| Error::mismatch("checkpoint weights", name.clone(), "nothing"))?;
            var.set(saved_tensor)?;
        }
        optimizer.load(&checkpoint_dir.join("optimizer.safetensors"), saved.step)?;
        let old_epochs = saved.config.epochs;
        state = saved;
        if old_epochs != cfg.epochs {
            if cfg.epochs * plans_len.first().copied().unwrap_or(1) < state.step {
                return Err(Error::invalid(
                    "epochs",
                    format!(
                        "{} epochs end before the checkpoint's step {}",
                        cfg.epochs, state.step
                    ),
                ));
            }
            progress.message(&format!("epochs changed from {old_epochs} to {}: schedule recomputed over {total_steps} steps", cfg.epochs));
            state.epoch_changes.push((state.step, cfg.epochs));
            state.config = cfg.clone();
            state.total_steps = total_steps;
        }
        progress.message(&format!(
            "resumed at step {}/{}",
            state.step, state.total_steps
        ));
    }
    let plain = TrainConfig {
        history_crop: 0.0,
        item_dropout: 0.0,
        ..cfg.clone()
    };
    if let Some(at) = state.stopped_early_at {
        progress.message(&format!(
            "nothing to do: the run stopped early at step {at}"
        ));
        return Ok(state);
    }
    state.unigram_valid_loss = unigram_loss(
        &corpus.epoch_sequences(&plain, &mut StdRng::seed_from_u64(cfg.seed))?,
        &corpus.eval,
        model_cfg.vocab_size,
    );
    progress.message(&format!(
        "{} train timelines, {total_steps} steps over {} epochs; unigram valid loss {:.4}",
        corpus.timelines.len(),
        cfg.epochs,
        state.unigram_valid_loss
    ));

    let save_checkpoint = |state: &TrainState, optimizer: &AdamW| -> Result<()> {
        std::fs::create_dir_all(&checkpoint_dir).map_err(|e| Error::io(&checkpoint_dir, e))?;
        varmap.save(checkpoint_dir.join("weights.safetensors.tmp"))?;
        optimizer.save(&checkpoint_dir.join("optimizer.safetensors.tmp"))?;
        for name in ["weights.safetensors", "optimizer.safetensors"] {
            let tmp = checkpoint_dir.join(format!("{name}.tmp"));
            std::fs::rename(&tmp, checkpoint_dir.join(name)).map_err(|e| Error::io(&tmp, e))?;
        }
        write_json(&checkpoint_dir.join("state.json"), state)
    };
    let export = |state: &TrainState| -> Result<()> {
        varmap.save(model_dir.join(WEIGHTS_FILE))?;
        write_json(&model_dir.join(CONFIG_FILE), &model_cfg)?;
        write_json(&model_dir.join("train.json"), state)
    };

    let variables = optimizer.variables();
    let run_index = state.runs.len();
    state.runs.push(RunRecord {
        threads: workers.threads(),
        ..RunRecord::default()
    });
    let mut step_in_run = 0usize;
    let mut global = 0usize;
    let mut recent: Vec<f64> = Vec::new();
    let mut last_checkpoint = Instant::now();
    let run_start = Instant::now();
    let seconds_before = state.seconds;
    let tokens_before = state.tokens;
    'epochs: for (epoch, &len) in plans_len.iter().enumerate() {
        if global + len <= state.step {
            global += len;
            continue;
        }
        let plan = epoch_plan(&corpus, cfg, epoch)?;
        for batch in plan {
            if global < state.step {
                global += 1;
                continue;
            }
            let lr = cfg
                .rates()
                .at(cfg.schedule, state.step, total_steps, state.decay);
            let started = Instant::now();
            let mut times = StepTimes::default();
            let grads = Gradients::of_batch(
                &workers,
                &batch,
                &variables,
                loss_positions,
                |micro, part| {
                    // Masks depend on the seed, the step and the micro-batch only, so a resumed
                    // run draws the same ones (micro-batch 0 draws the single-thread masks).
                    let noise = Noise::new(
                        cfg.dropout,
                        cfg.seed
                            .wrapping_mul(0x9e37_79b9)
                            .wrapping_add(state.step as u64)
                            .wrapping_add((micro as u64).wrapping_mul(0x6a09_e667_f3bc_c909)),
                    );
                    let pass = LossPass::Train {
                        noise: &noise,
                        smoothing: cfg.label_smoothing,
                    };
                    let (loss, positions, batching) = batch_loss(&net, part, pad, pass)?;
                    Ok((batching, MicroLoss { loss, positions }))
                },
                &mut times,
            )?;
            let scale = if grads.norm > cfg.clip_norm {
                cfg.clip_norm / grads.norm
            } else {
                1.0
            };
            let optimizing = Instant::now();
            optimizer.step(&workers, &grads.grads, lr, cfg.weight_decay, scale)?;
            times.optimizer = optimizing.elapsed().as_secs_f64();
            times.step = started.elapsed().as_secs_f64();
            let (loss_value, n) = (grads.loss, grads.positions);
            let record = &mut state.runs[run_index];
            record.steps += 1;
            record.target_tokens += n as u64;
            record.times.add(&times);
            if !loss_value.is_finite() {
                return Err(Error::invalid(
                    "training",
                    format!("loss became {loss_value} at step {}", state.step),
                ));
            }
            recent.push(loss_value);
            if recent.len() > 100 {
                recent.remove(0);
            }
            state.step += 1;
            global += 1;
            step_in_run += 1;
            state.tokens += n as u64;
            state.seconds = seconds_before + run_start.elapsed().as_secs_f64();
            let tps =
                (state.tokens - tokens_before) as f64 / run_start.elapsed().as_secs_f64().max(1e-9);
            progress.step(&state, loss_value, tps);
            // A stable–decay run still improving when the ceiling's last stretch begins decays.
            if cfg.schedule == Schedule::StableDecay
                && state.decay.is_none()
                && state.step >= Decay::latest_start(total_steps)
            {
                let decay = Decay::until(state.step, total_steps);
                state.decay = Some(begin_decay(
                    &state,
                    decay,
                    "the epoch ceiling is near",
                    progress,
                ));
            }
            let last = state.step
                == state
                    .decay
                    .map_or(total_steps, |d| d.end().min(total_steps));
            if state.step.is_multiple_of(cfg.eval_every) || last {
                let valid_loss = mean_loss(&net, &corpus.eval, pad, cfg.batch_tokens)?;
                let train_loss = recent.iter().sum::<f64>() / recent.len() as f64;
                state.history.push((state.step, train_loss, valid_loss));
                let recall = match &recall_probe {
                    None => None,
                    Some((model, memory, queries)) => {
                        let started = Instant::now();
                        let r = probe_recall(model, &dataset.catalog, memory, queries)?;
                        state.valid_recall.push((state.step, r));
                        progress.message(&format!(
                            "step {}: valid L2D-L (M={SELECT_M}) R@{SELECT_K} {r:.4} on {} samples, memory of {} train states ({:.0} s)",
                            state.step,
                            queries.len(),
                            memory.len(),
                            started.elapsed().as_secs_f64()
                        ));
                        Some(r)
                    }
                };
                let improved = match (cfg.select, recall) {
                    (Selection::Final, _) => true,
                    (_, Some(r)) => state.best_valid_recall.is_none_or(|b| r > b),
                    (_, None) => state.best_valid_loss.is_none_or(|b| valid_loss < b),
                };
                if state.best_valid_loss.is_none_or(|b| valid_loss < b) {
                    state.best_valid_loss = Some(valid_loss);
                }
                if improved {
                    state.best_valid_recall = recall;
                    state.best_step = Some(state.step);
                    export(&state)?;
                }
                progress.message(&format!(
                    "step {} epoch {}: train loss {train_loss:.4}, valid loss {valid_loss:.4}{} ({tps:.0} tok/s)",
                    state.step,
                    epoch + 1,
                    match (improved, cfg.select) {
                        (true, Selection::Final) => " (exported)",
                        (true, _) => " (best, exported)",
                        (false, _) => "",
                    }
                ));
                let patience_out = cfg.patience > 0
                    && cfg.select != Selection::Final
                    && state.evaluations_since_best() >= cfg.patience
                    && !last;
                if patience_out && cfg.schedule == Schedule::StableDecay {
                    if state.decay.is_none() {
                        let why = format!(
                            "{} evaluations without a better {} (best at step {})",
                            cfg.patience,
                            if recall.is_some() {
                                "valid recall"
                            } else {
                                "valid loss"
                            },
                            state.best_step.unwrap_or(0)
                        );
                        let decay = Decay::from(state.step);
                        state.decay = Some(begin_decay(&state, decay, &why, progress));
                    }
                } else if patience_out {
                    state.stopped_early_at = Some(state.step);
                    save_checkpoint(&state, &optimizer)?;
                    progress.message(&format!(
                        "stopped early at step {}: {} evaluations without a better {} (best at step {})",
                        state.step,
                        cfg.patience,
                        if recall.is_some() { "valid recall" } else { "valid loss" },
                        state.best_step.unwrap_or(0)
                    ));
                    break 'epochs;
                }
            }
            let stop = until_step.is_some_and(|s| state.step >= s);
            let decayed = last && state.step < total_steps;
            if decayed {
                state.stopped_early_at = Some(state.step);
            }
            if last || stop || last_checkpoint.elapsed().as_secs() >= cfg.checkpoint_seconds {
                save_checkpoint(&state, &optimizer)?;
                last_checkpoint = Instant::now();
            }
            if decayed {
                progress.message(&format!(
                    "the decay ended at step {} (ceiling {total_steps}); best at step {}",
                    state.step,
                    state.best_step.unwrap_or(0)
                ));
                break 'epochs;
            }
            if stop {
                progress.message(&format!(
                    "stopped at step {} as asked; continue with --resume",
                    state.step
                ));
                break 'epochs;
            }
        }
    }
    if step_in_run == 0 {
        state.runs.truncate(run_index);
        progress.message("nothing to do: the run is complete");
    } else {
        progress.message(&state.runs[run_index].summary());
    }
    write_json(&model_dir.join("train.json"), &state)?;
    Ok(state)
}

/// `decay`, which begins now, announced with why.
fn begin_decay(state: &TrainState, decay: Decay, why: &str, progress: &mut dyn Progress) -> Decay {
    progress.message(&format!(
        "step {}: {why}; the learning rate decays over {} steps, to step {}",
        state.step,
        decay.steps,
        decay.end()
    ));
    decay
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serializable") + "\n";
    crate::util::write_atomic(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(user: &str, history: &[u32], target: u32) -> Sample {
        Sample {
            user: user.into(),
            history: history.to_vec(),
            target,
            timestamp: None,
        }
    }

    #[test]
    fn timelines_rebuild_prefix_samples() {
        let samples = vec![
            sample("a", &[1], 2),
            sample("b", &[7], 8),
            sample("a", &[1, 2], 3),
            sample("a", &[1, 2, 3], 4),
        ];
        assert_eq!(timelines(&samples), vec![vec![1, 2, 3, 4], vec![7, 8]]);
    }

    #[test]
    fn windows_partition_targets() {
        let timeline: Vec<u32> = (0..37).collect();
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let ws = windows(std::slice::from_ref(&timeline), 0.5, &mut rng);
            let targets: Vec<u32> = ws.iter().flat_map(|w| w[1..].to_vec()).collect();
            assert_eq!(targets, (1..37).collect::<Vec<_>>());
            assert!(ws
                .iter()
                .all(|w| w.len() >= 2 && w.len() <= MAX_HISTORY + 1));
        }
    }

    #[test]
    fn cropped_windows_still_partition_targets() {
        let timeline: Vec<u32> = (0..53).collect();
        let mut shorter = 0;
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let ws = windows(std::slice::from_ref(&timeline), 0.5, &mut rng);
            let targets: Vec<u32> = ws.iter().flat_map(|w| w[1..].to_vec()).collect();
            assert_eq!(targets, (1..53).collect::<Vec<_>>());
            assert!(ws.iter().all(|w| w.len() >= 2));
            shorter += ws.iter().filter(|w| w.len() < MAX_HISTORY + 1).count();
        }
        assert!(
            shorter > 40,
            "cropping never shortened a window ({shorter})"
        );
    }

    #[test]
    fn item_dropout_keeps_order_and_a_minimum() {
        let items: Vec<u32> = (0..11).collect();
        let cases = [(0.0, 2), (0.3, 2), (0.9, 2), (0.5, 1)];
        for (p, min_len) in cases {
            for seed in 0..30 {
                let kept = drop_items(&items, p, min_len, &mut StdRng::seed_from_u64(seed));
                assert!(kept.len() >= min_len);
                assert!(kept.windows(2).all(|w| w[0] < w[1]), "order kept");
                if p == 0.0 {
                    assert_eq!(kept, items);
                }
            }
        }
        let a = drop_items(&items, 0.3, 2, &mut StdRng::seed_from_u64(5));
        let b = drop_items(&items, 0.3, 2, &mut StdRng::seed_from_u64(5));
        assert_eq!(a, b, "seeded");
        assert!(
            (0..30).any(|s| drop_items(&items, 0.3, 2, &mut StdRng::seed_from_u64(s)).len() < 11)
        );
    }

    #[test]
    fn augmented_histories_are_ordered_subsequences_of_a_suffix() {
        let history: Vec<u32> = (10..20).collect();
        for seed in 0..50 {
            let h = augment_history(&history, 0.5, 0.2, &mut StdRng::seed_from_u64(seed));
            assert!(!h.is_empty());
            assert!(h.windows(2).all(|w| w[0] < w[1]));
            assert!(h.iter().all(|i| history.contains(i)));
        }
        assert_eq!(
            augment_history(&history, 0.0, 0.0, &mut StdRng::seed_from_u64(1)),
            history
        );
    }

    #[test]
    fn label_smoothing_mixes_nll_with_the_uniform_term() {
        let logits = Tensor::new(&[[2.0f32, 0.5, -1.0], [0.1, 0.2, 3.0]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        let plain = candle_nn::loss::cross_entropy(&logits, &labels)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let at = |eps| {
            smoothed_cross_entropy(&logits, &labels, eps)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!((at(0.0) - plain).abs() < 1e-6);
        // By hand: mean over rows of (1-ε)·(−log p_label) + ε·mean_v(−log p_v).
        let rows = [[2.0f32, 0.5, -1.0], [0.1, 0.2, 3.0]];
        let mut expected = 0.0;
        for (row, label) in rows.iter().zip([0usize, 1]) {
            let lse = row.iter().map(|x| x.exp()).sum::<f32>().ln();
            let nll = lse - row[label];
            let uniform = row.iter().map(|x| lse - x).sum::<f32>() / 3.0;
            expected += (0.9 * nll + 0.1 * uniform) / 2.0;
        }
        assert!(
            (at(0.1) - expected).abs() < 1e-5,
            "{} vs {expected}",
            at(0.1)
        );
    }
}
