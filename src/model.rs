//! The language model: a Qwen2-architecture causal LM (Hugging Face weight names and config),
//! its tokenizer and prompt template. Two operations matter for L2D:
//! - [`Model::last_hidden_batch`]: the final-norm hidden state at the last prompt token, one
//!   forward pass per prompt — the user representation;
//! - [`Qwen2::forward`] with a [`KvCache`] + [`Qwen2::logits`]: next-token logits for the
//!   autoregressive baseline.
//!
//! One implementation serves training and inference: `Pass::Train` uses differentiable
//! composite ops (candle's fused RMSNorm/RoPE/softmax have no backward), `Pass::Infer` the fused
//! kernels. A test proves the network equals `candle_transformers::models::qwen2::Model`.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::int8_file::{Int8Weights, INT8_WEIGHTS_FILE};
use crate::kernel::{
    attend, linear_rows, rms_norm_rows, rope, silu_mul, softmax_rows, Heads, QuantActs, QuantRows,
};
use crate::prompt::Template;
use crate::tokenizer::Tokenizer;

/// Hugging Face `config.json` of a Qwen2 model (the fields l2d reads and writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Always `["Qwen2ForCausalLM"]` for models l2d writes.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `"qwen2"`.
    #[serde(default)]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default)]
    pub torch_dtype: Option<String>,
}

fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}

impl ModelConfig {
    /// A config for a small from-scratch model.
    pub fn small(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        intermediate: usize,
    ) -> Self {
        ModelConfig {
            architectures: vec!["Qwen2ForCausalLM".into()],
            model_type: "qwen2".into(),
            vocab_size,
            hidden_size: hidden,
            intermediate_size: intermediate,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: heads,
            max_position_embeddings: 1024,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: true,
            hidden_act: "silu".into(),
            use_sliding_window: false,
            sliding_window: Some(1024),
            max_window_layers: Some(layers),
            bos_token_id: None,
            eos_token_id: None,
            torch_dtype: Some("float32".into()),
        }
    }

    /// Parses and validates `config.json` text.
    pub fn from_json(text: &[u8], source: &str) -> Result<Self> {
        let cfg: ModelConfig = serde_json::from_slice(text).map_err(|e| Error::Json {
            file: source.into(),
            source: e,
        })?;
        cfg.validate(source)?;
        Ok(cfg)
    }

    /// Checks the invariants the network relies on.
    pub fn validate(&self, source: &str) -> Result<()> {
        let bad = |field: &str, expected: String, found: String| {
            Err(Error::mismatch(
                format!("{source}: {field}"),
                expected,
                found,
            ))
        };
        if !self.architectures.is_empty()
            && !self.architectures.iter().any(|a| a == "Qwen2ForCausalLM")
        {
            return bad(
                "architectures",
                "[\"Qwen2ForCausalLM\"]".into(),
                format!("{:?}", self.architectures),
            );
        }
        if self.hidden_act != "silu" {
            return bad(
                "hidden_act",
                "\"silu\"".into(),
                format!("{:?}", self.hidden_act),
            );
        }
        let limits = [
            ("vocab_size", self.vocab_size, 1 << 20),
            ("hidden_size", self.hidden_size, 1 << 15),
            ("intermediate_size", self.intermediate_size, 1 << 17),
            ("num_hidden_layers", self.num_hidden_layers, 512),
            ("num_attention_heads", self.num_attention_heads, 1024),
            ("num_key_value_heads", self.num_key_value_heads, 1024),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 20,
            ),
        ];
        for (field, value, max) in limits {
            if value == 0 || value > max {
                return bad(field, format!("1..={max}"), value.to_string());
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads)
            || !(self.hidden_size / self.num_attention_heads).is_multiple_of(2)
        {
            return bad(
                "hidden_size / num_attention_heads",
                "an even whole head dimension".into(),
                format!("{} / {}", self.hidden_size, self.num_attention_heads),
            );
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(
                "num_key_value_heads",
                format!(
                    "a divisor of num_attention_heads ({})",
                    self.num_attention_heads
                ),
                self.num_key_value_heads.to_string(),
            );
        }
        Ok(())
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// `l2d.json` next to the model files: which prompt template the model was trained with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Prompt template; every consumer renders prompts with it.
    pub template: Template,
}

impl ModelMeta {
    /// Metadata for a model trained with `template`.
    pub fn new(template: Template) -> Self {
        ModelMeta { template }
    }

    /// Parses `l2d.json` text.
    pub fn from_json(text: &[u8], source: &str) -> Result<Self> {
        serde_json::from_slice(text).map_err(|e| Error::Json {
            file: source.into(),
            source: e,
        })
    }

    /// Writes `dir/l2d.json`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(META_FILE);
        let text = serde_json::to_string_pretty(self).expect("meta serializes") + "\n";
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }
}

/// File names of a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// Weights, safetensors.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Hugging Face tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// l2d's own metadata (template).
pub const META_FILE: &str = "l2d.json";
/// The files that define a model, in fingerprint order.
pub const MODEL_FILES: [&str; 4] = [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, META_FILE];

/// sha256 of one file's bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hexadecimal of `bytes` (how digests are written in manifests and errors).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The model fingerprint: sha256 over the four model files' sha256 values in [`MODEL_FILES`]
/// order (for an int8 weights file, the sha256 of the `model.safetensors` it was made from:
/// one model, one fingerprint). A blob records it so it is never used with another model.
pub fn model_fingerprint(files: &ModelFiles) -> [u8; 32] {
    let [config, weights, tokenizer, meta] = files.in_order();
    let mut hasher = Sha256::new();
    hasher.update(Sha256::digest(config));
    hasher.update(crate::int8_file::fingerprint_digest(weights));
    hasher.update(Sha256::digest(tokenizer));
    hasher.update(Sha256::digest(meta));
    hasher.finalize().into()
}

/// The raw bytes of a model directory's files (how the browser hands them over).
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub config: Vec<u8>,
    pub weights: Vec<u8>,
    pub tokenizer: Vec<u8>,
    pub meta: Vec<u8>,
}

impl ModelFiles {
    /// Reads the four files of `dir`.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| Error::io(&path, e))
        };
        Ok(ModelFiles {
            config: read(CONFIG_FILE)?,
            weights: read(WEIGHTS_FILE)?,
            tokenizer: read(TOKENIZER_FILE)?,
            meta: read(META_FILE)?,
        })
    }

    fn in_order(&self) -> [&[u8]; 4] {
        [&self.config, &self.weights, &self.tokenizer, &self.meta]
    }
}

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
    rates: DropoutRates,
    rng: std::cell::RefCell<rand::rngs::StdRng>,
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
fn dropout(
    xs: Tensor,
    noise: Option<&Noise>,
    pick: impl Fn(&DropoutRates) -> f32,
) -> Result<Tensor> {
    match noise {
        Some(n) => n.apply(&xs, pick(&n.rates)),
        None => Ok(xs),
    }
}

/// Which ops a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Differentiable composite ops (training).
    Train,
    /// Fused kernels (inference).
    Infer,
}

/// Per-layer key/value cache for incremental decoding (a prompt, then appended tokens).
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> Self {
        KvCache {
            layers: vec![None; layers],
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        match self.layers.first() {
            Some(Some((k, _))) => k.dim(2).unwrap_or(0),
            _ => 0,
        }
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Attention {
    q_proj: Proj,
    k_proj: Proj,
    v_proj: Proj,
    o_proj: Proj,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

struct Mlp {
    gate_proj: Proj,
    up_proj: Proj,
    down_proj: Proj,
}

struct Layer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: Tensor,
    post_attention_layernorm: Tensor,
}

/// The Qwen2 network (Hugging Face tensor names: `model.embed_tokens.weight`,
/// `model.layers.N.self_attn.{q,k,v,o}_proj`, `…mlp.{gate,up,down}_proj`, `…input_layernorm`,
/// `…post_attention_layernorm`, `model.norm.weight`, `lm_head.weight` unless tied).
pub struct Qwen2 {
    cfg: ModelConfig,
    embed_tokens: Tensor,
    lm_head: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    cos: Tensor,
    sin: Tensor,
    eps: f64,
    weights: Weights,
}

/// Linear layer `name` of `vb`: its weight from the int8 weights when the file holds them,
/// else as a tensor.
fn linear(
    vb: &VarBuilder,
    name: &str,
    (inp, out): (usize, usize),
    bias: bool,
    int8: &mut Option<Int8Weights>,
) -> Result<Proj> {
    let vb = vb.pp(name);
    let bias = if bias {
        Some(vb.get(out, "bias")?)
    } else {
        None
    };
    let (weight, quant) = match int8 {
        Some(file) => (
            None,
            Some(file.take(&format!("{}.weight", vb.prefix()), out, inp)?),
        ),
        None => (Some(vb.get((out, inp), "weight")?), None),
    };
    Ok(Proj {
        weight,
        bias,
        quant,
    })
}

/// How the linear layers' weights are multiplied at inference. The model files are the same
/// either way (Hugging Face safetensors); the manifest says which the browser runs, and
/// `l2d eval --shipped` runs the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    /// The weights as loaded, in f32.
    #[default]
    F32,
    /// Each weight row quantized to int8 with one scale at load (`kernel::QuantRows`), the
    /// activations to 63 levels per row: an exact integer product (`kernel::linear_q`),
    /// the same bits natively and in wasm.
    Int8,
}

impl Weights {
    /// The name used in the manifest and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Weights::F32 => "f32",
            Weights::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for Weights {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "f32" => Ok(Weights::F32),
            "int8" => Ok(Weights::Int8),
            other => Err(Error::mismatch("weights", "f32 or int8", other)),
        }
    }
}

/// Inputs of at most this many rows (tokens × batch) go through [`linear_rows`] at inference.
pub const SMALL_ROWS: usize = 16;

/// A linear layer. At inference with [`Weights::Int8`] every input goes through
/// [`linear_q`]; with f32 weights an input of a few rows (a click's new tokens, a beam step)
/// goes through [`linear_rows`] instead of candle's blocked product, which in wasm costs more
/// than the product itself at that size (a click's encoding 4.0 → 2.6 ms, beam 10 about
/// 120 → 75 ms in headless Chromium; natively the two are within noise of each other).
/// Training (weights that are variables) and longer f32 inputs use candle's product. A model
/// loaded from an int8 weights file has only the integer weight.
struct Proj {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    quant: Option<QuantRows>,
}

impl Proj {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.product(xs, &mut None)
    }

    /// The products of one input with several layers (a layer's query, key and value; the
    /// MLP's gate and up). With int8 weights the input is quantized once for all of them
    /// (`kernel::QuantActs`): the same bits as one [`Proj::forward`] each.
    fn forward_shared<const N: usize>(projs: [&Proj; N], xs: &Tensor) -> Result<[Tensor; N]> {
        let mut acts = None;
        let ys = projs.map(|p| p.product(xs, &mut acts));
        ys.into_iter()
            .collect::<Result<Vec<_>>>()?
            .try_into()
            .map_err(|_| Error::invalid("projections", "one product per layer"))
    }

    /// `xs · wᵀ (+ bias)`; `acts` holds `xs` quantized once an int8 product needed it.
    fn product(&self, xs: &Tensor, acts: &mut Option<QuantActs>) -> Result<Tensor> {
        let Some((y, out)) = self.product_values(xs, acts)? else {
            return self.candle_product(xs);
        };
        output_tensor(y, xs, out)
    }

    /// The product through candle.
    fn candle_product(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(Linear::new(self.f32_weight()?.clone(), self.bias.clone()).forward(xs)?)
    }

    /// The f32 weight, which a model loaded from an int8 weights file does not have.
    fn f32_weight(&self) -> Result<&Tensor> {
        self.weight.as_ref().ok_or_else(|| {
            Error::invalid(
                "weights",
                format!(
                    "f32 weights are needed, but the model was loaded from {INT8_WEIGHTS_FILE} (int8 only): load {WEIGHTS_FILE}"
                ),
            )
        })
    }

    /// The product as values (`rows × out`, and `out`) whichever path serves it.
    fn values(&self, xs: &Tensor, acts: &mut Option<QuantActs>) -> Result<(Vec<f32>, usize)> {
        if let Some(y) = self.product_values(xs, acts)? {
            return Ok(y);
        }
        let y = self.candle_product(xs)?;
        let out = y.dims().last().copied().unwrap_or(0);
        Ok((y.flatten_all()?.to_vec1::<f32>()?, out))
    }

    /// The product as values (`rows × out`, and `out`) when one of the inference paths serves
    /// it (int8 weights; a few rows with f32 weights), `None` when candle's product does.
    fn product_values(
        &self,
        xs: &Tensor,
        acts: &mut Option<QuantActs>,
    ) -> Result<Option<(Vec<f32>, usize)>> {
        let inp = xs.dims().last().copied().unwrap_or(0);
        let rows = xs.elem_count().checked_div(inp).unwrap_or(0);
        // The bias read where it lies: `Err` when it is not contiguous f32 in CPU memory, and
        // then candle's product serves.
        let bias_storage = self.bias.as_ref().map(Tensor::storage_and_layout);
        let bias = match bias_storage.as_ref().map(|(s, l)| cpu_f32(s, l)) {
            None => Ok(None),
            Some(Some(b)) => Ok(Some(b)),
            Some(None) => Err(()),
        };
        let y = match (&self.quant, bias, &self.weight) {
            (Some(q), Ok(bias), _) if is_cpu_f32(xs) && q.inp() == inp => {
                let acts = match acts {
                    Some(a) => a,
                    None => acts.insert(QuantActs::new(&xs.flatten_all()?.to_vec1::<f32>()?, inp)),
                };
                Some((acts.times(q, bias), q.out()))
            }
            (_, Ok(bias), Some(weight))
                if rows <= SMALL_ROWS
                    && is_cpu_f32(xs)
                    && !weight.is_variable()
                    && weight.dtype() == DType::F32 =>
            {
                // The weight too is read where it lies.
                let (w_storage, w_layout) = weight.storage_and_layout();
                match cpu_f32(&w_storage, w_layout) {
                    Some(w) => {
                        let x = xs.flatten_all()?.to_vec1::<f32>()?;
                        Some((linear_rows(&x, w, bias, inp), w.len() / inp.max(1)))
                    }
                    None => None,
                }
            }
            _ => None,
        };
        Ok(y)
    }

    /// Holds the weight as [`Weights`] says from now on (a weight loaded as int8 stays so).
    fn set_weights(&mut self, weights: Weights) -> Result<()> {
        if self.weight.is_none() && weights == Weights::Int8 {
            return Ok(());
        }
        let weight = self.f32_weight()?;
        self.quant = match weights {
            Weights::F32 => None,
            Weights::Int8 => {
                let inp = weight.dims().last().copied().unwrap_or(0);
                let values = weight
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                Some(QuantRows::new(&values, inp))
            }
        };
        Ok(())
    }
}

/// The f32 values of a tensor's storage when they lie contiguous in CPU memory.
fn cpu_f32<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> Option<&'a [f32]> {
    let candle_core::Storage::Cpu(cpu) = storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    cpu.as_slice::<f32>().ok().map(|values| &values[start..end])
}

impl Qwen2 {
    /// Builds the network from a var builder (safetensors, or a VarMap when training).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, vb, None)
    }

    /// Builds the network from a var builder, the linear layers' weights from `int8` when
    /// given (an int8 weights file: [`Weights::Int8`] from the start, no f32 copies).
    fn build(cfg: &ModelConfig, vb: VarBuilder, mut int8: Option<Int8Weights>) -> Result<Self> {
        let weights = if int8.is_some() {
            Weights::Int8
        } else {
            Weights::F32
        };
        cfg.validate("config.json")?;
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let kv = cfg.num_key_value_heads * cfg.head_dim();
        let vbm = vb.pp("model");
        let embed_tokens = vbm.pp("embed_tokens").get((cfg.vocab_size, h), "weight")?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let vl = vbm.pp("layers").pp(i);
            let va = vl.pp("self_attn");
            let vm = vl.pp("mlp");
            layers.push(Layer {
                self_attn: Attention {
                    q_proj: linear(&va, "q_proj", (h, h), true, &mut int8)?,
                    k_proj: linear(&va, "k_proj", (h, kv), true, &mut int8)?,
                    v_proj: linear(&va, "v_proj", (h, kv), true, &mut int8)?,
                    o_proj: linear(&va, "o_proj", (h, h), false, &mut int8)?,
                    heads: cfg.num_attention_heads,
                    kv_heads: cfg.num_key_value_heads,
                    head_dim: cfg.head_dim(),
                },
                mlp: Mlp {
                    gate_proj: linear(&vm, "gate_proj", (h, inter), false, &mut int8)?,
                    up_proj: linear(&vm, "up_proj", (h, inter), false, &mut int8)?,
                    down_proj: linear(&vm, "down_proj", (inter, h), false, &mut int8)?,
                },
                input_layernorm: vl.pp("input_layernorm").get(h, "weight")?,
                post_attention_layernorm: vl.pp("post_attention_layernorm").get(h, "weight")?,
            });
        }
        let norm = vbm.pp("norm").get(h, "weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            embed_tokens.clone()
        } else {
            vb.pp("lm_head").get((cfg.vocab_size, h), "weight")?
        };
        let (cos, sin) = rope_tables(cfg, vb.device())?;
        Ok(Qwen2 {
            cfg: cfg.clone(),
            embed_tokens,
            lm_head,
            layers,
            norm,
            cos,
            sin,
            eps: cfg.rms_norm_eps,
            weights,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Multiplies every linear layer's weight as `weights` says from now on (the embedding
    /// table and the language-model head stay f32).
    pub fn set_weights(&mut self, weights: Weights) -> Result<()> {
        for layer in &mut self.layers {
            let a = &mut layer.self_attn;
            let m = &mut layer.mlp;
            for proj in [
                &mut a.q_proj,
                &mut a.k_proj,
                &mut a.v_proj,
                &mut a.o_proj,
                &mut m.gate_proj,
                &mut m.up_proj,
                &mut m.down_proj,
            ] {
                proj.set_weights(weights)?;
            }
        }
        self.weights = weights;
        Ok(())
    }

    /// How the linear layers' weights are multiplied.
    pub fn weights(&self) -> Weights {
        self.weights
    }

    /// A fresh cache for this network.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Final-norm hidden states `(batch, seq, hidden)` for token ids `(batch, seq)` that follow
    /// the `cache`'s positions (appending to it), or start at position 0 without a cache.
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut KvCache>, pass: Pass) -> Result<Tensor> {
        self.run(ids, cache, pass, None, None)
    }

    /// The training forward ([`Pass::Train`]) with dropout from `noise`: every call draws new
    /// masks. With all rates 0 it equals `forward(ids, None, Pass::Train)`.
    pub fn forward_train(&self, ids: &Tensor, noise: &Noise) -> Result<Tensor> {
        self.run(ids, None, Pass::Train, None, Some(noise))
    }

    /// Final-norm hidden state `(batch, 1, hidden)` of one position per batch row (`rows[b]`,
    /// counted within `ids`), e.g. each prompt's last token. Equal to selecting those rows of
    /// [`Qwen2::forward`], but the last layer computes keys and values for every position and
    /// queries, attention output and MLP only for the selected ones: the L2D representation and
    /// a beam search's first logits need nothing else. The cache still receives every position.
    pub fn forward_rows(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        rows: &[usize],
    ) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        if rows.len() != batch {
            return Err(Error::mismatch(
                "selected rows",
                format!("one per batch row ({batch})"),
                rows.len(),
            ));
        }
        if let Some(&row) = rows.iter().find(|&&r| r >= seq) {
            return Err(Error::mismatch(
                "selected row",
                format!("below the sequence length {seq}"),
                row,
            ));
        }
        self.run(ids, cache, Pass::Infer, Some(rows), None)
    }

    fn run(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        pass: Pass,
        rows: Option<&[usize]>,
        noise: Option<&Noise>,
    ) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let mut cache = cache;
        let offset = cache.as_ref().map_or(0, |c| c.len());
        if offset + seq > positions(&self.cfg) {
            return Err(Error::mismatch(
                "sequence length",
                format!("at most {} positions", positions(&self.cfg)),
                offset + seq,
            ));
        }
        let device = ids.device();
        let cos = self.cos.narrow(0, offset, seq)?;
        let sin = self.sin.narrow(0, offset, seq)?;
        let embedded =
            self.embed_tokens
                .embedding(&ids.flatten_all()?)?
                .reshape((batch, seq, ()))?;
        // The values path counts the keys each query sees instead of reading a mask.
        let mask = if seq > 1 && !on_values_path(pass, &embedded) {
            Some(causal_mask(seq, offset, device)?)
        } else {
            None
        };
        let selected = rows
            .map(|rows| Selection::new(rows, offset, seq, device))
            .transpose()?;
        let mut xs = dropout(embedded, noise, |r| r.embedding)?;
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_mut().map(|c| &mut c.layers[i]);
            let select = selected.as_ref().filter(|_| i == last);
            let normed = rms_norm(&xs, &layer.input_layernorm, self.eps, pass)?;
            let attn = match select {
                None => layer.self_attn.forward(
                    &normed,
                    (&cos, &sin),
                    mask.as_ref(),
                    slot,
                    (pass, noise),
                    None,
                )?,
                Some(sel) => {
                    xs = sel.gather(&xs, 1)?;
                    layer.self_attn.forward(
                        &normed,
                        (&cos, &sin),
                        Some(&sel.mask),
                        slot,
                        (pass, noise),
                        Some(sel),
                    )?
                }
            };
            xs = (xs + dropout(attn, noise, |r| r.residual)?)?;
            xs = self.mlp_block(layer, xs, pass, noise)?;
        }
        rms_norm(&xs, &self.norm, self.eps, pass)
    }

    /// A layer's second half: `xs + MLP(norm(xs))`.
    fn mlp_block(
        &self,
        layer: &Layer,
        xs: Tensor,
        pass: Pass,
        noise: Option<&Noise>,
    ) -> Result<Tensor> {
        let normed = rms_norm(&xs, &layer.post_attention_layernorm, self.eps, pass)?;
        let mlp = &layer.mlp;
        let gated = match pass {
            Pass::Infer if is_cpu_f32(&normed) => {
                // Gate and up as values (one quantized input for both with int8 weights), the
                // gated activation written over the gate's.
                let mut acts = None;
                let (mut gate, out) = mlp.gate_proj.values(&normed, &mut acts)?;
                let (up, _) = mlp.up_proj.values(&normed, &mut acts)?;
                silu_mul(&mut gate, &up);
                output_tensor(gate, &normed, out)?
            }
            _ => {
                let [gate, up] = Proj::forward_shared([&mlp.gate_proj, &mlp.up_proj], &normed)?;
                (candle_nn::ops::silu(&gate)? * up)?
            }
        };
        let gated = dropout(gated, noise, |r| r.mlp)?;
        Ok((xs + dropout(mlp.down_proj.forward(&gated)?, noise, |r| r.residual)?)?)
    }

    /// One decoding step for every beam of a beam search: `tokens[b]` extends beam `b`.
    /// The beams share the prompt's keys and values (`prompt`, batch 1, never copied: all
    /// beams attend to it as the rows of one matrix product) and keep their generated tokens'
    /// keys and values in `beams`, written in place. Returns the final-norm hidden states
    /// `(beams, 1, hidden)`; equal to [`Qwen2::forward`] on each beam's full sequence.
    pub fn forward_beams(
        &self,
        tokens: &[u32],
        prompt: &KvCache,
        beams: &mut BeamCache,
    ) -> Result<Tensor> {
        let b = tokens.len();
        if b != beams.rows {
            return Err(Error::mismatch("beam tokens", beams.rows, b));
        }
        let t = beams.len;
        if t >= beams.capacity {
            return Err(Error::mismatch(
                "generated tokens",
                format!("at most {}", beams.capacity),
                t + 1,
            ));
        }
        let offset = prompt.len() + t;
        if offset >= positions(&self.cfg) {
            return Err(Error::mismatch(
                "sequence length",
                format!("at most {} positions", positions(&self.cfg)),
                offset + 1,
            ));
        }
        let device = &Device::Cpu;
        let cos = self.cos.narrow(0, offset, 1)?;
        let sin = self.sin.narrow(0, offset, 1)?;
        let ids = Tensor::new(tokens, device)?.unsqueeze(1)?;
        let mut xs = self
            .embed_tokens
            .embedding(&ids.flatten_all()?)?
            .reshape((b, 1, ()))?;
        for (i, layer) in self.layers.iter().enumerate() {
            let Some((pk, pv)) = &prompt.layers[i] else {
                return Err(Error::invalid("beam search", "an empty prompt cache"));
            };
            let normed = rms_norm(&xs, &layer.input_layernorm, self.eps, Pass::Infer)?;
            let (gk, gv) = &beams.layers[i];
            let attn =
                layer
                    .self_attn
                    .forward_beams(&normed, (&cos, &sin), (pk, pv), (gk, gv), t)?;
            xs = (xs + attn)?;
            xs = self.mlp_block(layer, xs, Pass::Infer, None)?;
        }
        beams.len += 1;
        rms_norm(&xs, &self.norm, self.eps, Pass::Infer)
    }

    /// Next-token logits for hidden states of shape `(.., hidden)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let dims = hidden.dims().to_vec();
        let flat = hidden.reshape(((), self.cfg.hidden_size))?;
        let logits = flat.matmul(&self.lm_head.t()?)?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("hidden has a last dim") = self.cfg.vocab_size;
        Ok(logits.reshape(out_dims)?)
    }
}

impl Attention {
    fn forward(
        &self,
        xs: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        (pass, noise): (Pass, Option<&Noise>),
        select: Option<&Selection>,
    ) -> Result<Tensor> {
        if on_values_path(pass, xs) {
            return self.forward_values(xs, (cos, sin), cache, select);
        }
        let (b, seq, hidden) = xs.dims3()?;
        let split = |t: Tensor, heads: usize| -> Result<Tensor> {
            Ok(t.reshape((b, seq, heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let [q, k, v] = Proj::forward_shared([&self.q_proj, &self.k_proj, &self.v_proj], xs)?;
        let q = split(q, self.heads)?;
        let k = split(k, self.kv_heads)?;
        let v = split(v, self.kv_heads)?;
        let (q, k) = match pass {
            Pass::Train => (
                candle_nn::rotary_emb::rope_slow(&q, cos, sin)?,
                candle_nn::rotary_emb::rope_slow(&k, cos, sin)?,
            ),
            Pass::Infer => (
                candle_nn::rotary_emb::rope(&q, cos, sin)?,
                candle_nn::rotary_emb::rope(&k, cos, sin)?,
            ),
        };
        // Only the selected positions ask (keys and values still cover every position).
        let (q, seq) = match select {
            None => (q, seq),
            Some(sel) => (sel.gather(&q, 2)?, 1),
        };
        let (k, v) = append_cache(cache, k, v)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let groups = self.heads / self.kv_heads;
        let k = candle_transformers::utils::repeat_kv(k, groups)?.contiguous()?;
        let v = candle_transformers::utils::repeat_kv(v, groups)?.contiguous()?;
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let weights = match pass {
            Pass::Train => candle_nn::ops::softmax(&scores, D::Minus1)?,
            Pass::Infer => softmax_infer(&scores)?,
        };
        let weights = dropout(weights, noise, |r| r.attention)?;
        let out = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, seq, hidden))?;
        self.o_proj.forward(&out)
    }

    /// [`Attention::forward`] at inference on the CPU, in plain values: the projections (one
    /// quantized input for all three with int8 weights), RoPE in place ([`rope`]), keys and
    /// values appended to the cache in its `(batch, kv_heads, positions, dim)` layout, and
    /// [`attend`] reading the queries in the projection's layout and the cache where it lies,
    /// with the causal rule as counts of visible keys. No transposes of the queries, no
    /// matrix product set up for a few rows, no score for a masked key.
    fn forward_values(
        &self,
        xs: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        select: Option<&Selection>,
    ) -> Result<Tensor> {
        let (b, seq, hidden) = xs.dims3()?;
        let dim = self.head_dim;
        let mut acts = None;
        let (mut k, _) = self.k_proj.values(xs, &mut acts)?;
        let (v, _) = self.v_proj.values(xs, &mut acts)?;
        let angles = (
            cos.flatten_all()?.to_vec1::<f32>()?,
            sin.flatten_all()?.to_vec1::<f32>()?,
        );
        rope(&mut k, self.kv_heads, dim, (&angles.0, &angles.1));
        let cache_layout = |t: &[f32]| -> Result<Tensor> {
            let t = heads_first(t, (b, seq, self.kv_heads, dim));
            Ok(Tensor::from_vec(
                t,
                (b, self.kv_heads, seq, dim),
                xs.device(),
            )?)
        };
        let (k, v) = append_cache(cache, cache_layout(&k)?, cache_layout(&v)?)?;
        let offset = k.dim(2)? - seq;
        // Only the selected positions ask: their rows alone are projected to queries and
        // rotated, each by its position's angles (keys and values still cover every position).
        let (q, visible) = match select {
            Some(sel) => {
                let (mut q, _) = self.q_proj.values(&sel.gather(xs, 1)?, &mut None)?;
                let half = angles.0.len() / seq.max(1);
                let at = |t: &[f32]| -> Vec<f32> {
                    sel.positions
                        .iter()
                        .flat_map(|&p| &t[p * half..(p + 1) * half])
                        .copied()
                        .collect()
                };
                rope(&mut q, self.heads, dim, (&at(&angles.0), &at(&angles.1)));
                let visible = sel.positions.iter().map(|&p| visible_keys(offset, p));
                (q, visible.collect::<Vec<_>>())
            }
            None => {
                let (mut q, _) = self.q_proj.values(xs, &mut acts)?;
                rope(&mut q, self.heads, dim, (&angles.0, &angles.1));
                let visible = (0..b).flat_map(|_| (0..seq).map(|p| visible_keys(offset, p)));
                (q, visible.collect())
            }
        };
        let queries = visible.len() / b.max(1);
        let (k_storage, k_layout) = k.storage_and_layout();
        let (v_storage, v_layout) = v.storage_and_layout();
        let (Some(keys), Some(values)) =
            (cpu_f32(&k_storage, k_layout), cpu_f32(&v_storage, v_layout))
        else {
            return Err(Error::invalid(
                "key/value cache",
                "not contiguous f32 in CPU memory",
            ));
        };
        let layout = Heads {
            heads: self.heads,
            kv_heads: self.kv_heads,
            dim,
        };
        let scale = 1.0 / (dim as f32).sqrt();
        let out = attend(&q, (keys, values), layout, b, &visible, scale);
        self.o_proj
            .forward(&Tensor::from_vec(out, (b, queries, hidden), xs.device())?)
    }

    /// Attention of one new token per beam over the shared prompt keys/values `(1, kv, P, d)`
    /// and the beam's own generated ones (buffers `(beams, kv, capacity, d)`, the new token
    /// written at `t`): the scores over both parts share one softmax.
    fn forward_beams(
        &self,
        xs: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        (pk, pv): (&Tensor, &Tensor),
        (gk, gv): (&Tensor, &Tensor),
        t: usize,
    ) -> Result<Tensor> {
        let (b, _, hidden) = xs.dims3()?;
        let split = |t: Tensor, heads: usize| -> Result<Tensor> {
            Ok(t.reshape((b, 1, heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let [q, k, v] = Proj::forward_shared([&self.q_proj, &self.k_proj, &self.v_proj], xs)?;
        let q = candle_nn::rotary_emb::rope(&split(q, self.heads)?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&split(k, self.kv_heads)?, cos, sin)?;
        let v = split(v, self.kv_heads)?;
        gk.slice_set(&k, 2, t)?;
        gv.slice_set(&v, 2, t)?;
        let groups = self.heads / self.kv_heads;
        let repeat = |t: Tensor| -> Result<Tensor> {
            Ok(candle_transformers::utils::repeat_kv(t, groups)?.contiguous()?)
        };
        let prompt_len = pk.dim(2)?;
        let (pk, pv) = (repeat(pk.clone())?, repeat(pv.clone())?);
        let (gk, gv) = (
            repeat(gk.narrow(2, 0, t + 1)?)?,
            repeat(gv.narrow(2, 0, t + 1)?)?,
        );
        // The beams as the query rows of one product with the prompt: (1, heads, beams, d).
        let rows = q.transpose(0, 2)?.contiguous()?;
        let to_prompt = rows.matmul(&pk.t()?)?.transpose(0, 2)?; // (beams, heads, 1, P)
        let to_generated = q.matmul(&gk.t()?)?; // (beams, heads, 1, t + 1)
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (Tensor::cat(&[&to_prompt, &to_generated], 3)? * scale)?;
        let weights = softmax_infer(&scores)?;
        let from_prompt = weights
            .narrow(3, 0, prompt_len)?
            .transpose(0, 2)?
            .contiguous()?
            .matmul(&pv)?
            .transpose(0, 2)?; // (beams, heads, 1, d)
        let from_generated = weights
            .narrow(3, prompt_len, t + 1)?
            .contiguous()?
            .matmul(&gv)?;
        let out = (from_prompt + from_generated)?
            .transpose(1, 2)?
            .reshape((b, 1, hidden))?;
        self.o_proj.forward(&out)
    }
}

/// The generated tokens' keys and values of every beam in a beam search, preallocated for
/// `capacity` tokens and written in place ([`Qwen2::forward_beams`]); the prompt's are kept
/// once, apart, in a [`KvCache`].
pub struct BeamCache {
    /// Per layer, keys and values `(rows, kv_heads, capacity, head_dim)`.
    layers: Vec<(Tensor, Tensor)>,
    /// Buffers of the same shapes that a reordering writes into (allocated on first use).
    spare: Vec<(Tensor, Tensor)>,
    rows: usize,
    len: usize,
    capacity: usize,
}

impl BeamCache {
    /// An empty cache for `rows` beams of up to `capacity` generated tokens.
    pub fn new(net: &Qwen2, rows: usize, capacity: usize) -> Result<Self> {
        let cfg = &net.cfg;
        let shape = (rows, cfg.num_key_value_heads, capacity, cfg.head_dim());
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, DType::F32, &Device::Cpu)?,
                    Tensor::zeros(shape, DType::F32, &Device::Cpu)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(BeamCache {
            layers,
            spare: Vec::new(),
            rows,
            len: 0,
            capacity,
        })
    }

    /// Generated tokens so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Beam `i` continues old beam `parents[i]`: copies only the generated tokens (into the
    /// spare buffers, which then swap in), and nothing when the beams keep their order.
    pub fn reorder(&mut self, parents: &[u32]) -> Result<()> {
        let unchanged =
            parents.len() == self.rows && parents.iter().enumerate().all(|(i, &p)| p as usize == i);
        if unchanged {
            return Ok(());
        }
        // A new beam count: buffers of the new shape now, and the old ones are no spares.
        let resized = parents.len() != self.rows;
        if resized {
            self.spare.clear();
        }
        let index = Tensor::new(parents, &Device::Cpu)?;
        for (i, (k, v)) in self.layers.iter_mut().enumerate() {
            let (_, heads, capacity, dim) = k.dims4()?;
            let shape = (parents.len(), heads, capacity, dim);
            if self.spare.len() <= i {
                let zeros = || Tensor::zeros(shape, DType::F32, &Device::Cpu);
                self.spare.push((zeros()?, zeros()?));
            }
            let (sk, sv) = &mut self.spare[i];
            for (buffer, spare) in [(&mut *k, &mut *sk), (&mut *v, &mut *sv)] {
                if self.len > 0 {
                    let generated = buffer.narrow(2, 0, self.len)?.contiguous()?;
                    spare.slice_set(&generated.index_select(&index, 0)?, 2, 0)?;
                }
                std::mem::swap(buffer, spare);
            }
        }
        if resized {
            self.spare.clear();
        }
        self.rows = parents.len();
        Ok(())
    }
}

/// One position per batch row, selected for the last layer of [`Qwen2::forward_rows`].
struct Selection {
    /// Row index per batch row, shape `(batch, 1)`.
    rows: Tensor,
    /// The same indices.
    positions: Vec<usize>,
    /// Additive mask `(batch, 1, 1, offset + seq)`: each selected position sees itself and
    /// earlier positions only.
    mask: Tensor,
}

impl Selection {
    fn new(rows: &[usize], offset: usize, seq: usize, device: &Device) -> Result<Self> {
        let total = offset + seq;
        let mask = causal_rows(rows.iter().copied(), offset, total);
        let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        Ok(Selection {
            rows: Tensor::from_vec(index, (rows.len(), 1), device)?,
            positions: rows.to_vec(),
            mask: Tensor::from_vec(mask, (rows.len(), 1, 1, total), device)?,
        })
    }

    /// The selected row of each batch element of `t`, whose batch is dim 0 and positions dim
    /// `dim`; the result keeps `dim` with size 1.
    fn gather(&self, t: &Tensor, dim: usize) -> Result<Tensor> {
        let mut shape = t.dims().to_vec();
        shape[dim] = 1;
        let mut index_shape = vec![1; shape.len()];
        index_shape[0] = shape[0];
        let index = self
            .rows
            .reshape(index_shape)?
            .broadcast_as(shape)?
            .contiguous()?;
        Ok(t.contiguous()?.gather(&index, dim)?)
    }
}

/// A layer's output values as a tensor shaped like its input `xs` with `out` features.
fn output_tensor(values: Vec<f32>, xs: &Tensor, out: usize) -> Result<Tensor> {
    let mut shape = xs.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    Ok(Tensor::from_vec(values, shape, xs.device())?)
}

/// True for a tensor in CPU memory holding f32.
fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// Whether attention on hidden states `xs` takes [`Attention::forward_values`] (inference on
/// CPU f32), which needs no mask tensor.
fn on_values_path(pass: Pass, xs: &Tensor) -> bool {
    pass == Pass::Infer && is_cpu_f32(xs)
}

/// Softmax over the last dimension at inference: [`softmax_rows`] (vectorised exp) on CPU f32,
/// candle's elsewhere. In wasm candle's calls a scalar `exp` per score.
fn softmax_infer(scores: &Tensor) -> Result<Tensor> {
    if !is_cpu_f32(scores) {
        return Ok(candle_nn::ops::softmax_last_dim(scores)?);
    }
    let width = scores.dims().last().copied().unwrap_or(1);
    let mut values = scores.flatten_all()?.to_vec1::<f32>()?;
    softmax_rows(&mut values, width);
    Ok(Tensor::from_vec(values, scores.shape(), scores.device())?)
}

fn rms_norm(xs: &Tensor, weight: &Tensor, eps: f64, pass: Pass) -> Result<Tensor> {
    Ok(match pass {
        Pass::Train => {
            let mean_sq = xs.sqr()?.mean_keepdim(D::Minus1)?;
            xs.broadcast_div(&(mean_sq + eps)?.sqrt()?)?
                .broadcast_mul(weight)?
        }
        Pass::Infer if is_cpu_f32(xs) && is_cpu_f32(weight) => {
            let mut values = xs.flatten_all()?.to_vec1::<f32>()?;
            rms_norm_rows(&mut values, &weight.to_vec1::<f32>()?, eps as f32);
            Tensor::from_vec(values, xs.shape(), xs.device())?
        }
        Pass::Infer => candle_nn::ops::rms_norm(&xs.contiguous()?, weight, eps as f32)?,
    })
}

/// Most positions a forward pass supports (prompts here are a few hundred tokens). The RoPE
/// tables cover `min(max_position_embeddings, ROPE_POSITIONS)`, so a config claiming millions of
/// positions cannot make loading allocate gigabytes.
pub const ROPE_POSITIONS: usize = 4096;

fn positions(cfg: &ModelConfig) -> usize {
    cfg.max_position_embeddings.min(ROPE_POSITIONS)
}

fn rope_tables(cfg: &ModelConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let dim = cfg.head_dim();
    let n = positions(cfg);
    let inv_freq: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1f32 / cfg.rope_theta.powf(i as f64 / dim as f64) as f32)
        .collect();
    // Each angle is the f32 product position × frequency; its cosine and sine are taken in f64
    // and rounded to f32, so the tables are the same bits natively and in wasm (their f32
    // `cos`/`sin` are different libraries, which disagree in the last bit for some angles).
    let angles: Vec<f32> = (0..n)
        .flat_map(|p| inv_freq.iter().map(move |&f| p as f32 * f))
        .collect();
    let table = |f: fn(f64) -> f64| -> Result<Tensor> {
        let values = angles.iter().map(|&a| f(f64::from(a)) as f32).collect();
        Ok(Tensor::from_vec(values, (n, dim / 2), device)?)
    };
    Ok((table(f64::cos)?, table(f64::sin)?))
}

/// Keys and values `(batch, kv_heads, seq, dim)` after the `cache`'s (which then holds them
/// all); without a cache, the new ones alone.
fn append_cache(
    cache: Option<&mut Option<(Tensor, Tensor)>>,
    k: Tensor,
    v: Tensor,
) -> Result<(Tensor, Tensor)> {
    let Some(slot) = cache else {
        return Ok((k, v));
    };
    let (k, v) = match slot.take() {
        None => (k, v),
        Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
    };
    *slot = Some((k.clone(), v.clone()));
    Ok((k, v))
}

/// Values `(batch, seq, heads, dim)` (a projection's rows) as `(batch, heads, seq, dim)`.
fn heads_first(t: &[f32], (batch, seq, heads, dim): (usize, usize, usize, usize)) -> Vec<f32> {
    let mut out = vec![0f32; t.len()];
    for b in 0..batch {
        for s in 0..seq {
            for h in 0..heads {
                let from = ((b * seq + s) * heads + h) * dim;
                let to = ((b * heads + h) * seq + s) * dim;
                out[to..to + dim].copy_from_slice(&t[from..from + dim]);
            }
        }
    }
    out
}

/// The causal rule: the query at position `p` (counted after `offset` cached positions) sees
/// the keys before `visible_keys(offset, p)`, itself included.
fn visible_keys(offset: usize, p: usize) -> usize {
    offset + p + 1
}

/// [`visible_keys`] as an additive mask, one row per query position: 0 where visible, −∞
/// elsewhere.
fn causal_rows(positions: impl Iterator<Item = usize>, offset: usize, total: usize) -> Vec<f32> {
    positions
        .flat_map(|p| {
            (0..total).map(move |j| {
                if j >= visible_keys(offset, p) {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect()
}

fn causal_mask(seq: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let total = seq + offset;
    let values = causal_rows(0..seq, offset, total);
    Ok(Tensor::from_vec(values, (seq, total), device)?)
}

/// Shard `index` of `count` (0-based) of a job split across processes or machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole job as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

impl std::str::FromStr for Shard {
    type Err = Error;
    /// `i/n` with 0 ≤ i < n.
    fn from_str(text: &str) -> Result<Self> {
        let parsed = text
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Shard { index, count }),
            _ => Err(Error::invalid(
                "shard",
                format!("`{text}` (expected i/n with 0 ≤ i < n)"),
            )),
        }
    }
}

/// A loaded model: network, tokenizer, template, and its fingerprint.
pub struct Model {
    /// The network.
    pub net: Qwen2,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The prompt template the model was trained with.
    pub template: Template,
    /// [`model_fingerprint`] of the files it was loaded from.
    pub fingerprint: [u8; 32],
    /// Token ids of each title's prompt segment, tokenized once (see [`Model::prompt_ids`]).
    segments: std::sync::Mutex<Segments>,
}

/// The prompt prefix's ids and each title segment's, filled on first use.
#[derive(Default)]
struct Segments {
    prefix: Option<Vec<u32>>,
    titles: std::collections::HashMap<String, Vec<u32>>,
}

impl Model {
    /// Loads a model from its files' bytes (natively read from disk, in the browser fetched).
    pub fn from_files(files: &ModelFiles) -> Result<Self> {
        let cfg = ModelConfig::from_json(&files.config, CONFIG_FILE)?;
        let meta = ModelMeta::from_json(&files.meta, META_FILE)?;
        let tokenizer = Tokenizer::from_bytes(&files.tokenizer, TOKENIZER_FILE)?;
        if tokenizer.vocab_size() > cfg.vocab_size {
            return Err(Error::mismatch(
                "tokenizer.json vocabulary",
                format!("at most config.json vocab_size = {}", cfg.vocab_size),
                tokenizer.vocab_size(),
            ));
        }
        let int8 = Int8Weights::parse(&files.weights)?;
        let vb =
            VarBuilder::from_buffered_safetensors(files.weights.clone(), DType::F32, &Device::Cpu)?;
        let net = Qwen2::build(&cfg, vb, int8)?;
        Ok(Model::new(
            net,
            tokenizer,
            meta.template,
            model_fingerprint(files),
        ))
    }

    /// A model from its parts.
    pub fn new(
        net: Qwen2,
        tokenizer: Tokenizer,
        template: Template,
        fingerprint: [u8; 32],
    ) -> Self {
        Model {
            net,
            tokenizer,
            template,
            fingerprint,
            segments: Default::default(),
        }
    }

    /// Loads the model in directory `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        Self::from_files(&ModelFiles::read_dir(dir)?)
    }

    /// Token ids of the prompt for `history` (titles, oldest first, already truncated).
    ///
    /// With the compact template they are assembled, not tokenized: its special tokens split
    /// the text before pre-tokenization, so the prompt's ids are the prefix's followed by each
    /// title segment's (`title<|sep|>`), and each title is tokenized once and kept (equal to
    /// the tokenizer's ids; tested on every catalog title and on histories). Other templates
    /// join titles with plain text and go through the tokenizer.
    pub fn prompt_ids<S: AsRef<str>>(&self, history: &[S]) -> Result<Vec<u32>> {
        if self.template != Template::Compact {
            return self.tokenizer_prompt_ids(history);
        }
        let mut segments = self
            .segments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ids = match &segments.prefix {
            Some(prefix) => prefix.clone(),
            None => {
                let prefix = self.tokenizer.encode(&self.template.fixed_text())?;
                segments.prefix = Some(prefix.clone());
                prefix
            }
        };
        for title in history {
            let title = title.as_ref();
            if let Some(segment) = segments.titles.get(title) {
                ids.extend_from_slice(segment);
                continue;
            }
            let segment = self.tokenizer.encode(&self.template.target(title))?;
            ids.extend_from_slice(&segment);
            segments.titles.insert(title.to_string(), segment);
        }
        Ok(ids)
    }

    /// [`Model::prompt_ids`] through the tokenizer, whatever the template (the reference the
    /// assembled ids are tested against).
    pub fn tokenizer_prompt_ids<S: AsRef<str>>(&self, history: &[S]) -> Result<Vec<u32>> {
        self.tokenizer.encode(&self.template.prompt(history))
    }

    /// Token ids of the prompt for a history of catalog items (truncated as in training).
    pub fn history_prompt_ids(
        &self,
        catalog: &crate::catalog::Catalog,
        history: &[crate::catalog::ItemIndex],
    ) -> Result<Vec<u32>> {
        self.prompt_ids(&crate::prompt::history_titles(catalog, history))
    }

    /// Hidden size (dimension of L2D representations).
    pub fn hidden_size(&self) -> usize {
        self.net.cfg.hidden_size
    }

    /// Last-token final-norm hidden state of each prompt, in one batched forward pass.
    /// Prompts are right-padded: causal attention keeps real positions unaffected.
    pub fn last_hidden_batch(&self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        if prompts.iter().any(Vec::is_empty) {
            return Err(Error::invalid("prompt", "empty token sequence"));
        }
        let mut ids = Vec::with_capacity(prompts.len() * longest);
        for p in prompts {
            ids.extend_from_slice(p);
            ids.extend(std::iter::repeat_n(0u32, longest - p.len()));
        }
        let ids = Tensor::from_vec(ids, (prompts.len(), longest), &Device::Cpu)?;
        let last: Vec<usize> = prompts.iter().map(|p| p.len() - 1).collect();
        let hidden = self.net.forward_rows(&ids, None, &last)?;
        (0..prompts.len())
            .map(|row| Ok(hidden.i((row, 0))?.to_vec1::<f32>()?))
            .collect()
    }

    /// Last-token hidden states of many prompts, row-major (`prompts.len()` × hidden size), in
    /// batches of `batch_size` prompts of similar length (little padding); `progress(done,
    /// total)` is called after each batch.
    pub fn last_hidden_many(
        &self,
        prompts: &[Vec<u32>],
        batch_size: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        let (_, states) = self.last_hidden_shard(prompts, batch_size, Shard::WHOLE, progress)?;
        Ok(states)
    }

    /// The part of [`Model::last_hidden_many`] that `shard` computes: the length-sorted batches
    /// of the whole run are dealt round-robin to the shards, so every prompt is computed in
    /// exactly the batch a single run puts it in (bit-identical states). Returns the prompt
    /// indices covered (ascending) and their states, row-major in that order.
    pub fn last_hidden_shard(
        &self,
        prompts: &[Vec<u32>],
        batch_size: usize,
        shard: Shard,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Vec<usize>, Vec<f32>)> {
        let dim = self.hidden_size();
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| prompts[i].len());
        let mine: Vec<&[usize]> = order
            .chunks(batch_size.max(1))
            .enumerate()
            .filter(|(b, _)| b % shard.count == shard.index)
            .map(|(_, c)| c)
            .collect();
        let mut covered: Vec<usize> = mine.iter().flat_map(|c| c.iter().copied()).collect();
        covered.sort_unstable();
        let total = covered.len();
        let mut row_of = vec![usize::MAX; prompts.len()];
        for (row, &i) in covered.iter().enumerate() {
            row_of[i] = row;
        }
        let mut states = vec![0f32; total * dim];
        let mut done = 0;
        for chunk in mine {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            let hidden = self.last_hidden_batch(&batch)?;
            for (&i, h) in chunk.iter().zip(hidden) {
                let row = row_of[i];
                states[row * dim..(row + 1) * dim].copy_from_slice(&h);
            }
            done += chunk.len();
            progress(done, total);
        }
        Ok((covered, states))
    }

    /// The L2D representation of one history of titles.
    pub fn last_hidden<S: AsRef<str>>(&self, history: &[S]) -> Result<Vec<f32>> {
        let ids = self.prompt_ids(history)?;
        Ok(self.last_hidden_batch(&[ids])?.remove(0))
    }
}

/// How [`QueryEncoder::encode`] obtained a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// The same prompt was encoded recently: its state, no forward pass.
    Memo,
    /// The previous prompt is a prefix of this one (a history grown by appended items whose
    /// window has not slid): its keys and values were reused and only these new tokens run.
    Extended { new_tokens: usize },
    /// A full forward pass.
    Full,
}

/// The query encoder of one visitor's session: a history that grows by a click keeps its
/// prompt as a prefix (compact template, window not slid), so the previous prompt's key/value
/// cache is reused and only the new title's tokens run — exact, since attention is causal. The
/// last [`QueryEncoder::MEMO`] prompts' states are kept, so asking again costs nothing. Memory
/// is bounded: one cache (at most the model's positions) and `MEMO` states.
#[derive(Debug, Default)]
pub struct QueryEncoder {
    last: Option<(Vec<u32>, KvCache)>,
    memo: std::collections::VecDeque<(Vec<u32>, Vec<f32>)>,
}

impl QueryEncoder {
    /// Prompts whose states are memoized.
    pub const MEMO: usize = 32;

    /// An encoder with nothing cached.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last-token final-norm hidden state of `ids` (equal to
    /// [`Model::last_hidden_batch`] of it within float rounding), and how it was obtained.
    pub fn encode(&mut self, model: &Model, ids: &[u32]) -> Result<(Vec<f32>, Reuse)> {
        if ids.is_empty() {
            return Err(Error::invalid("prompt", "empty token sequence"));
        }
        if let Some(at) = self.memo.iter().position(|(p, _)| p == ids) {
            let entry = self.memo.remove(at).expect("found");
            let state = entry.1.clone();
            self.memo.push_back(entry);
            return Ok((state, Reuse::Memo));
        }
        let extend = self
            .last
            .take()
            .filter(|(prev, cache)| {
                prev.len() < ids.len() && ids.starts_with(prev) && cache.len() == prev.len()
            })
            .map(|(_, cache)| cache);
        let (mut cache, start, reuse) = match extend {
            Some(cache) => {
                let start = cache.len();
                let reuse = Reuse::Extended {
                    new_tokens: ids.len() - start,
                };
                (cache, start, reuse)
            }
            None => (model.net.new_cache(), 0, Reuse::Full),
        };
        let new = &ids[start..];
        let tensor = Tensor::new(new, &Device::Cpu)?.unsqueeze(0)?;
        let hidden = model
            .net
            .forward_rows(&tensor, Some(&mut cache), &[new.len() - 1])?;
        let state = hidden.i((0, 0))?.to_vec1::<f32>()?;
        self.last = Some((ids.to_vec(), cache));
        if self.memo.len() == Self::MEMO {
            self.memo.pop_front();
        }
        self.memo.push_back((ids.to_vec(), state.clone()));
        Ok((state, reuse))
    }
}
