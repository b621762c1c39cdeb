//! The Qwen2 network: layers, linear projections (f32, int8) and the forward passes.

#[allow(unused_imports)]
use super::*;

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
    pub(super) layers: Vec<Option<(Tensor, Tensor)>>,
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

pub(super) struct Attention {
    pub(super) q_proj: Proj,
    pub(super) k_proj: Proj,
    pub(super) v_proj: Proj,
    pub(super) o_proj: Proj,
    pub(super) heads: usize,
    pub(super) kv_heads: usize,
    pub(super) head_dim: usize,
}

pub(super) struct Mlp {
    pub(super) gate_proj: Proj,
    pub(super) up_proj: Proj,
    pub(super) down_proj: Proj,
}

pub(super) struct Layer {
    pub(super) self_attn: Attention,
    pub(super) mlp: Mlp,
    pub(super) input_layernorm: Tensor,
    pub(super) post_attention_layernorm: Tensor,
}

/// The Qwen2 network (Hugging Face tensor names: `model.embed_tokens.weight`,
/// `model.layers.N.self_attn.{q,k,v,o}_proj`, `…mlp.{gate,up,down}_proj`, `…input_layernorm`,
/// `…post_attention_layernorm`, `model.norm.weight`, `lm_head.weight` unless tied).
pub struct Qwen2 {
    pub(super) cfg: ModelConfig,
    pub(super) embed_tokens: Tensor,
    pub(super) lm_head: Tensor,
    pub(super) layers: Vec<Layer>,
    pub(super) norm: Tensor,
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
    pub(super) eps: f64,
    pub(super) weights: Weights,
}

/// Linear layer `name` of `vb`: its weight from the int8 weights when the file holds them,
/// else as a tensor.
pub(super) fn linear(
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
/// than the product itself at that size (measured with `scripts/bench-ab.mjs`; the figures are
/// in docs/results/).
/// Training (weights that are variables) and longer f32 inputs use candle's product. A model
/// loaded from an int8 weights file has only the integer weight.
pub(super) struct Proj {
    pub(super) weight: Option<Tensor>,
    pub(super) bias: Option<Tensor>,
    pub(super) quant: Option<QuantRows>,
}

impl Proj {
    pub(super) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.product(xs, &mut None)
    }

    /// The products of one input with several layers (a layer's query, key and value; the
    /// MLP's gate and up). With int8 weights the input is quantized once for all of them
    /// (`kernel::QuantActs`): the same bits as one [`Proj::forward`] each.
    pub(super) fn forward_shared<const N: usize>(
        projs: [&Proj; N],
        xs: &Tensor,
    ) -> Result<[Tensor; N]> {
        let mut acts = None;
        let ys = projs.map(|p| p.product(xs, &mut acts));
        ys.into_iter()
            .collect::<Result<Vec<_>>>()?
            .try_into()
            .map_err(|_| Error::invalid("projections", "one product per layer"))
    }

    /// `xs · wᵀ (+ bias)`; `acts` holds `xs` quantized once an int8 product needed it.
    pub(super) fn product(&self, xs: &Tensor, acts: &mut Option<QuantActs>) -> Result<Tensor> {
        let Some((y, out)) = self.product_values(xs, acts)? else {
            return self.candle_product(xs);
        };
        output_tensor(y, xs, out)
    }

    /// The product through candle.
    pub(super) fn candle_product(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(Linear::new(self.f32_weight()?.clone(), self.bias.clone()).forward(xs)?)
    }

    /// The f32 weight, which a model loaded from an int8 weights file does not have.
    pub(super) fn f32_weight(&self) -> Result<&Tensor> {
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
    pub(super) fn values(
        &self,
        xs: &Tensor,
        acts: &mut Option<QuantActs>,
    ) -> Result<(Vec<f32>, usize)> {
        if let Some(y) = self.product_values(xs, acts)? {
            return Ok(y);
        }
        let y = self.candle_product(xs)?;
        let out = y.dims().last().copied().unwrap_or(0);
        Ok((y.flatten_all()?.to_vec1::<f32>()?, out))
    }

    /// The product as values (`rows × out`, and `out`) when one of the inference paths serves
    /// it (int8 weights; a few rows with f32 weights), `None` when candle's product does.
    pub(super) fn product_values(
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
    pub(super) fn set_weights(&mut self, weights: Weights) -> Result<()> {
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
pub(super) fn cpu_f32<'a>(
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
    pub(super) fn build(
        cfg: &ModelConfig,
        vb: VarBuilder,
        mut int8: Option<Int8Weights>,
    ) -> Result<Self> {
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

    pub(super) fn run(
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
            .map(|rows| LastPositions::new(rows, offset, seq, device))
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
    pub(super) fn mlp_block(
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
