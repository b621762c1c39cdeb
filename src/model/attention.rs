//! Attention: its forward passes, the key/value caches of decoding and beam search, the rotary
//! tables and the causal rule.

#[allow(unused_imports)]
use super::*;

impl Attention {
    pub(super) fn forward(
        &self,
        xs: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        (pass, noise): (Pass, Option<&Noise>),
        select: Option<&LastPositions>,
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
    pub(super) fn forward_values(
        &self,
        xs: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        select: Option<&LastPositions>,
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
    pub(super) fn forward_beams(
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
    pub(super) layers: Vec<(Tensor, Tensor)>,
    /// Buffers of the same shapes that a reordering writes into (allocated on first use).
    pub(super) spare: Vec<(Tensor, Tensor)>,
    pub(super) rows: usize,
    pub(super) len: usize,
    pub(super) capacity: usize,
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
pub(super) struct LastPositions {
    /// Row index per batch row, shape `(batch, 1)`.
    pub(super) rows: Tensor,
    /// The same indices.
    pub(super) positions: Vec<usize>,
    /// Additive mask `(batch, 1, 1, offset + seq)`: each selected position sees itself and
    /// earlier positions only.
    pub(super) mask: Tensor,
}

impl LastPositions {
    pub(super) fn new(rows: &[usize], offset: usize, seq: usize, device: &Device) -> Result<Self> {
        let total = offset + seq;
        let mask = causal_rows(rows.iter().copied(), offset, total);
        let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        Ok(LastPositions {
            rows: Tensor::from_vec(index, (rows.len(), 1), device)?,
            positions: rows.to_vec(),
            mask: Tensor::from_vec(mask, (rows.len(), 1, 1, total), device)?,
        })
    }

    /// The selected row of each batch element of `t`, whose batch is dim 0 and positions dim
    /// `dim`; the result keeps `dim` with size 1.
    pub(super) fn gather(&self, t: &Tensor, dim: usize) -> Result<Tensor> {
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
pub(super) fn output_tensor(values: Vec<f32>, xs: &Tensor, out: usize) -> Result<Tensor> {
    let mut shape = xs.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    Ok(Tensor::from_vec(values, shape, xs.device())?)
}

/// True for a tensor in CPU memory holding f32.
pub(super) fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// Whether attention on hidden states `xs` takes [`Attention::forward_values`] (inference on
/// CPU f32), which needs no mask tensor.
pub(super) fn on_values_path(pass: Pass, xs: &Tensor) -> bool {
    pass == Pass::Infer && is_cpu_f32(xs)
}

/// Softmax over the last dimension at inference: [`softmax_rows`] (vectorised exp) on CPU f32,
/// candle's elsewhere. In wasm candle's calls a scalar `exp` per score.
pub(super) fn softmax_infer(scores: &Tensor) -> Result<Tensor> {
    if !is_cpu_f32(scores) {
        return Ok(candle_nn::ops::softmax_last_dim(scores)?);
    }
    let width = scores.dims().last().copied().unwrap_or(1);
    let mut values = scores.flatten_all()?.to_vec1::<f32>()?;
    softmax_rows(&mut values, width);
    Ok(Tensor::from_vec(values, scores.shape(), scores.device())?)
}

pub(super) fn rms_norm(xs: &Tensor, weight: &Tensor, eps: f64, pass: Pass) -> Result<Tensor> {
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

pub(super) fn positions(cfg: &ModelConfig) -> usize {
    cfg.max_position_embeddings.min(ROPE_POSITIONS)
}

pub(super) fn rope_tables(cfg: &ModelConfig, device: &Device) -> Result<(Tensor, Tensor)> {
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
pub(super) fn append_cache(
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
pub(super) fn heads_first(
    t: &[f32],
    (batch, seq, heads, dim): (usize, usize, usize, usize),
) -> Vec<f32> {
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
pub(super) fn visible_keys(offset: usize, p: usize) -> usize {
    offset + p + 1
}

/// [`visible_keys`] as an additive mask, one row per query position: 0 where visible, −∞
/// elsewhere.
pub(super) fn causal_rows(
    positions: impl Iterator<Item = usize>,
    offset: usize,
    total: usize,
) -> Vec<f32> {
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

pub(super) fn causal_mask(seq: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let total = seq + offset;
    let values = causal_rows(0..seq, offset, total);
    Ok(Tensor::from_vec(values, (seq, total), device)?)
}
