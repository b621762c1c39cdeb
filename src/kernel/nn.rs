//! Element-wise and attention kernels of the forward pass at inference: `exp`, `silu_mul`,
//! `rms_norm_rows` (candle's RMSNorm in its order of operations), `softmax_rows`, `rope` and
//! causal `attend` (each query scored against the keys it sees only).

#[allow(unused_imports)]
use super::*;

/// `eˣ` in f32 without a library call or a branch, so a loop of it vectorises (`simd128` in
/// wasm, where `f32::exp` is a scalar call per element): `2ⁿ · p(r)` with `n = round(x·log₂e)`,
/// `r = x − n·ln 2` (in two parts) and Cephes' degree-6 polynomial for `eʳ` on |r| ≤ ln 2 / 2.
/// Within 2 ulp of `f64::exp` rounded to f32; `x` is clamped to [−88, 88], so −∞ (a masked
/// attention score) gives exactly 0 and no input overflows.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-88.0, 88.0);
    let n = rounded_integer(x * LOG2E);
    let nf = n as f32;
    let r = x - nf * LN2_HI - nf * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2ⁿ from its exponent bits; n = −127 (x near −88) gives the bits of 0.
    let scale = f32::from_bits(((n + 127).max(0) as u32) << 23);
    y * scale
}

/// `silu(gate) · up` element by element (`silu(g) = g / (1 + e⁻ᵍ)`), written over `gate`: the
/// gated activation of the MLP at inference.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    wide!(silu_mul_in(gate: &mut [f32], up: &[f32]))
}

#[inline(always)]
pub(super) fn silu_mul_in(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// RMSNorm of each row of `width` values (`x / √(mean(x²) + eps) · weight`) in place, in the
/// order of operations of `candle_nn::ops::rms_norm` (a sequential f32 sum of squares), so the
/// same bits, without the thread-pool hand-off candle makes above 32 rows.
pub fn rms_norm_rows(x: &mut [f32], weight: &[f32], eps: f32) {
    wide!(rms_norm_rows_in(x: &mut [f32], weight: &[f32], eps: f32))
}

#[inline(always)]
pub(super) fn rms_norm_rows_in(x: &mut [f32], weight: &[f32], eps: f32) {
    let width = weight.len().max(1);
    for row in x.chunks_exact_mut(width) {
        let sum2: f32 = row.iter().map(|&v| v * v).sum();
        let m = (sum2 / width as f32 + eps).sqrt();
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = *v / m * w;
        }
    }
}

/// Softmax of each row of `width` values in place (rows of masked scores hold −∞, which
/// become exactly 0). The exponentials are one loop of their own and the max and sum run
/// eight lanes: a running float sum in the same loop would keep every `exp` scalar.
pub fn softmax_rows(values: &mut [f32], width: usize) {
    for row in values.chunks_exact_mut(width.max(1)) {
        let max = lanes8(row, f32::NEG_INFINITY, larger);
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        let inv = 1.0 / lanes8(row, 0.0, |a, b| a + b);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// `values` folded with `f` in eight interleaved lanes (lane `l` takes every eighth value from
/// `l`), then the lanes and the remainder folded in order: the same result as one fold for an
/// associative `f` (max), a different rounding order for a float sum. Vectorises where one
/// sequential fold cannot.
#[inline(always)]
pub(super) fn lanes8(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, v);
        }
    }
    lanes.into_iter().chain(rest.iter().copied()).fold(init, &f)
}

/// Rotary position embedding in place, in Qwen2's layout (each head's first and second halves
/// rotated as pairs, as `candle_nn::rotary_emb::rope`): `x` holds rows of `heads × dim` values,
/// row `r` at position `r % positions` of its sequence; `cos` and `sin` are
/// `positions × dim / 2`.
pub fn rope(x: &mut [f32], heads: usize, dim: usize, (cos, sin): (&[f32], &[f32])) {
    let half = dim / 2;
    let positions = cos.len() / half.max(1);
    if half == 0 || positions == 0 {
        return;
    }
    for (r, row) in x.chunks_exact_mut(heads * dim).enumerate() {
        let p = r % positions;
        let (c, s) = (
            &cos[p * half..(p + 1) * half],
            &sin[p * half..(p + 1) * half],
        );
        for head in row.chunks_exact_mut(dim) {
            let (x1, x2) = head.split_at_mut(half);
            for (((a, b), &c), &s) in x1.iter_mut().zip(x2.iter_mut()).zip(c).zip(s) {
                let (u, v) = (*a, *b);
                *a = u * c - v * s;
                *b = u * s + v * c;
            }
        }
    }
}

/// Head layout of [`attend`]: `heads` query heads in groups sharing `kv_heads` key/value
/// heads, each `dim` wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub dim: usize,
}

/// Causal softmax attention at inference, without a general matrix product: query `i` of
/// batch row `b` (`q`: `(batch, queries, heads, dim)`, the projection's layout, with
/// `queries = visible.len() / batch`) attends to the first `visible[b · queries + i]` keys of
/// its group's head (`k`, `v`: `(batch, kv_heads, keys, dim)`, the cache's layout), with scores
/// `q · k · scale`. Keys past that count (the causal mask, padding) are never read, so no
/// score is spent on them. Returns `(batch, queries, heads · dim)`: the layout the output
/// projection reads.
pub fn attend(
    q: &[f32],
    kv: (&[f32], &[f32]),
    layout: Heads,
    batch: usize,
    visible: &[usize],
    scale: f32,
) -> Vec<f32> {
    wide!(attend_in(
        q: &[f32],
        kv: (&[f32], &[f32]),
        layout: Heads,
        batch: usize,
        visible: &[usize],
        scale: f32,
    ) -> Vec<f32>)
}

/// [`attend`]'s body, inlined into each of its compiled versions.
#[inline(always)]
pub(super) fn attend_in(
    q: &[f32],
    (k, v): (&[f32], &[f32]),
    layout: Heads,
    batch: usize,
    visible: &[usize],
    scale: f32,
) -> Vec<f32> {
    let Heads {
        heads,
        kv_heads,
        dim,
    } = layout;
    let batch = batch.max(1);
    let queries = visible.len() / batch;
    let keys = k.len() / (batch * kv_heads * dim).max(1);
    let groups = (heads / kv_heads.max(1)).max(1);
    let mut out = vec![0f32; batch * queries * heads * dim];
    let mut scores = vec![0f32; keys];
    for b in 0..batch {
        for h in 0..heads {
            let head = (b * kv_heads + h / groups) * keys * dim;
            let (kh, vh) = (&k[head..head + keys * dim], &v[head..head + keys * dim]);
            for i in 0..queries {
                let n = visible[b * queries + i].min(keys);
                let qi = &q[((b * queries + i) * heads + h) * dim..][..dim];
                let s = &mut scores[..n];
                let key = |j: usize| &kh[j * dim..(j + 1) * dim];
                let quads = n / 4;
                for (c, sc) in s.chunks_exact_mut(4).enumerate() {
                    let j = c * 4;
                    let d = dot4(qi, [key(j), key(j + 1), key(j + 2), key(j + 3)]);
                    for (sj, dj) in sc.iter_mut().zip(d) {
                        *sj = dj * scale;
                    }
                }
                for (j, sj) in s.iter_mut().enumerate().skip(quads * 4) {
                    *sj = dot(qi, key(j)) * scale;
                }
                softmax_rows(s, n);
                // Four value rows per pass over the output row.
                let o = &mut out[((b * queries + i) * heads + h) * dim..][..dim];
                let value = |j: usize| &vh[j * dim..(j + 1) * dim];
                for (c, w) in s.chunks_exact(4).enumerate() {
                    let j = c * 4;
                    let (v0, v1, v2, v3) = (value(j), value(j + 1), value(j + 2), value(j + 3));
                    for d in 0..dim {
                        o[d] += w[0] * v0[d] + w[1] * v1[d] + w[2] * v2[d] + w[3] * v3[d];
                    }
                }
                for (j, &w) in s.iter().enumerate().skip(quads * 4) {
                    for (od, &vd) in o.iter_mut().zip(value(j)) {
                        *od += w * vd;
                    }
                }
            }
        }
    }
    out
}
