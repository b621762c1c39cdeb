//! Numeric kernels shared by the model and scoring: the f32 dot product (vectorised natively,
//! `simd128` in wasm), the exact integer dot products of a query with int8 memory rows, and
//! the product of a few activation rows with a weight matrix, which
//! the forward pass of a short input (a click's new tokens, a beam step) uses instead of a
//! general matrix product: with a handful of rows, packing the weights for a blocked product
//! costs more than the product itself. Natively the int8 product has an AVX-512 VNNI path and
//! the element-wise kernels an AVX-512 build (`wide!`), chosen at run time; every path gives
//! the same bits as the plain and wasm ones.
//!
//! Split per instruction set, as candle's `cpu/`: `portable` (every target but wasm `simd128`),
//! `x86` (AVX2 and AVX-512, chosen at run time), `simd128` and `relaxed` (the two wasm builds),
//! `quant` (the quantized layouts and their products) and `nn` (element-wise and attention).
//! This file chooses by `cfg` and holds what every target shares.
//!
//! May import: `error`. Every other layer may import it.
//!
//! Module order: portable → x86 → simd128 → relaxed → quant → nn

/// The body of a function that calls `$body(args)` (an `#[inline(always)]` function), compiled
/// for AVX-512 when the CPU has it (sixteen f32 lanes where x86-64's baseline has four) and
/// as plain code otherwise. The operations are the same either way and Rust never fuses a
/// multiply with an add on its own, so both give the same bits, as the wasm build does.
macro_rules! wide {
    ($body:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
            unsafe fn run($($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
            {
                // SAFETY: the CPU has the features `run` is compiled for (checked just above).
                return unsafe { run($($arg),*) };
            }
        }
        $body($($arg),*)
    }};
}

mod nn;
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod portable;
mod quant;
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
mod relaxed;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use nn::*;
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub use portable::*;
pub use quant::*;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub use simd128::*;
#[cfg(target_arch = "x86_64")]
use x86::*;

/// `x · wᵀ (+ bias)` for `x` of `rows × inp` and `w` of `out × inp` (both row-major, the
/// layout of a Hugging Face linear layer's weight): returns `rows × out`. Four weight rows at a
/// time are multiplied with one input row ([`dot4`]: each input vector loaded once for four
/// products), and a block of weight rows is read once for all input rows.
pub fn linear_rows(x: &[f32], w: &[f32], bias: Option<&[f32]>, inp: usize) -> Vec<f32> {
    let rows = x.len() / inp.max(1);
    let out = w.len() / inp.max(1);
    let mut y = vec![0f32; rows * out];
    let blocks = out / 4;
    for blk in 0..blocks {
        let o = blk * 4;
        let ws = [0, 1, 2, 3].map(|j| &w[(o + j) * inp..(o + j + 1) * inp]);
        for (r, x_row) in x.chunks_exact(inp).enumerate() {
            let d = dot4(x_row, ws);
            for j in 0..4 {
                y[r * out + o + j] = d[j] + bias.map_or(0.0, |b| b[o + j]);
            }
        }
    }
    for o in blocks * 4..out {
        let w_row = &w[o * inp..(o + 1) * inp];
        for (r, x_row) in x.chunks_exact(inp).enumerate() {
            y[r * out + o] = dot(x_row, w_row) + bias.map_or(0.0, |b| b[o]);
        }
    }
    y
}

/// The larger of `a` and `b` (`a` when `b` is NaN) as a compare and select: `f32::max` is a
/// library call in wasm (its NaN rule differs from the instruction's).
#[inline(always)]
pub fn larger(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}

/// The smaller of `a` and `b` (`a` when `b` is NaN), as [`larger`].
#[inline(always)]
pub fn smaller(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// Exact integer dot product of two `i16` vectors (the caller bounds the sum to `i32`).
pub(crate) fn dot_i16(a: &[i16], b: &[i16]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: a plain triple loop in f64.
    fn naive(x: &[f32], w: &[f32], bias: Option<&[f32]>, inp: usize) -> Vec<f32> {
        let (rows, out) = (x.len() / inp, w.len() / inp);
        let mut y = Vec::with_capacity(rows * out);
        for r in 0..rows {
            for o in 0..out {
                let s: f64 = (0..inp)
                    .map(|i| f64::from(x[r * inp + i]) * f64::from(w[o * inp + i]))
                    .sum();
                y.push((s + bias.map_or(0.0, |b| f64::from(b[o]))) as f32);
            }
        }
        y
    }

    #[test]
    fn linear_rows_equals_the_naive_product() {
        // (rows, inp, out, bias): lengths with and without a remainder past the vector width.
        for (rows, inp, out, with_bias) in [
            (1, 192, 64, true),
            (6, 192, 768, false),
            (10, 768, 192, false),
            (3, 37, 5, true),
            (16, 7, 3, false),
        ] {
            let mut state = 0x2545_f491_u64 ^ (rows * 131 + inp * 7 + out) as u64;
            let mut next = || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            };
            let x: Vec<f32> = (0..rows * inp).map(|_| next()).collect();
            let w: Vec<f32> = (0..out * inp).map(|_| next()).collect();
            let b: Vec<f32> = (0..out).map(|_| next()).collect();
            let bias = with_bias.then_some(b.as_slice());
            let got = linear_rows(&x, &w, bias, inp);
            let want = naive(&x, &w, bias, inp);
            assert_eq!(got.len(), rows * out, "{rows}×{inp}→{out}");
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() < 1e-5,
                    "{rows}×{inp}→{out} at {i}: {g} vs {e}"
                );
            }
        }
    }

    /// Seeded values in [-0.5, 0.5).
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut state = 0x2545_f491_u64 ^ seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn the_quantized_product_is_the_exact_integer_sum_and_close_to_f32() {
        // (rows, inp, out, bias, zero weight row): the model's widths, remainders past the
        // vector width and the 4-row block, odd row counts (the single-row tail), a width
        // whose activation levels fall below i16's so the integer sum still fits, and a row
        // of zeros (scale 0).
        for (rows, inp, out, with_bias, zero_row) in [
            (1, 192, 64, true, false),
            (79, 192, 768, false, false),
            (10, 768, 192, true, false),
            (3, 37, 5, true, true),
            (16, 7, 3, false, false),
            (2, 5000, 4, false, false),
            (6, 33, 130, true, false),
            (9, 192, 17, true, true),
            (5, 1, 70, false, false),
        ] {
            let case = format!("{rows}×{inp}→{out}");
            let x = values((rows * 131 + inp) as u64, rows * inp);
            let mut w = values((out * 7 + inp) as u64, out * inp);
            if zero_row {
                w[..inp].iter_mut().for_each(|v| *v = 0.0);
            }
            let b = values(out as u64, out);
            let bias = with_bias.then_some(b.as_slice());
            let q = QuantRows::new(&w, inp);
            let got = linear_q(&x, &q, bias);
            assert_eq!(got.len(), rows * out, "{case}");
            let f32_product = linear_rows(&x, &w, bias, inp);
            let levels = activation_levels(inp);
            for r in 0..rows {
                let mut xq = vec![0i16; inp];
                let sx = quantize(&x[r * inp..(r + 1) * inp], levels, &mut xq);
                let xq: Vec<i64> = xq.into_iter().map(i64::from).collect();
                let xmax = x[r * inp..(r + 1) * inp]
                    .iter()
                    .fold(0f32, |m, v| m.max(v.abs()));
                for o in 0..out {
                    let exact: i64 = xq
                        .iter()
                        .zip(q.row(o))
                        .map(|(&a, &c)| a * i64::from(c))
                        .sum();
                    assert!(exact.abs() <= i64::from(i32::MAX), "{case}: sum fits i32");
                    let want =
                        exact as i32 as f32 * (sx * q.scales[o]) + bias.map_or(0.0, |b| b[o]);
                    let at = r * out + o;
                    assert_eq!(got[at].to_bits(), want.to_bits(), "{case} at ({r}, {o})");
                    let wmax = w[o * inp..(o + 1) * inp]
                        .iter()
                        .fold(0f32, |m, v| m.max(v.abs()));
                    let bound = inp as f32 * (xmax * q.scales[o] + wmax * sx) * 0.5 + 1e-5;
                    let err = (got[at] - f32_product[at]).abs();
                    assert!(err <= bound, "{case} at ({r}, {o}): error {err} > {bound}");
                }
            }
        }
    }

    /// Every native integer dot kernel this CPU can run gives [`dot_i16`]'s exact sums, for
    /// widths around each vector length (remainders included) and the model's widths, at the
    /// largest magnitudes the quantizers produce.
    /// int4 rows packed two per byte unpack to the values packed, their dot products equal
    /// the int8 ones (every width around a group of 32, the extremes −8 and 7, the largest
    /// query values), and a value outside [−8, 7] is refused.
    #[test]
    fn nibble_rows_round_trip_and_give_the_int8_dots() {
        for (dim, rows) in [
            (1, 3),
            (15, 2),
            (16, 4),
            (31, 1),
            (32, 5),
            (33, 3),
            (64, 2),
            (192, 7),
            (193, 2),
        ] {
            let values: Vec<i8> = (0..dim * rows)
                .map(|i| ((i * 7 + i / 5) % 16) as i8 - 8)
                .collect();
            let query: Vec<i16> = (0..dim)
                .map(|i| {
                    if i % 3 == 0 {
                        -32767
                    } else {
                        32767 - (i as i16) * 101
                    }
                })
                .collect();
            let packed = Nibbles::pack(&values, dim).unwrap();
            assert_eq!((packed.rows(), packed.dim()), (rows, dim));
            assert_eq!(packed.unpack_rows(0..rows), values, "dim {dim}");
            let (mut got, mut want) = (vec![0; rows], vec![0; rows]);
            packed.dots(&query, &mut got);
            i8_row_dots(&query, &values, &mut want);
            assert_eq!(got, want, "dim {dim}");
        }
        assert_eq!(Nibbles::pack(&[0, 8], 2), None);
        assert_eq!(Nibbles::pack(&[-9, 0], 2), None);
    }

    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    #[test]
    fn every_native_dot_kernel_gives_the_exact_integer_sums() {
        type Kernel2 = unsafe fn([&[i16]; 2], [&[i16]; 4]) -> [[i32; 4]; 2];
        type Kernel1 = unsafe fn([&[i16]; 1], [&[i16]; 4]) -> [[i32; 4]; 1];
        #[allow(unused_mut)]
        let mut kernels: Vec<(&str, Kernel2, Kernel1)> = vec![(
            "plain",
            dot_rows_x4_plain::<2> as Kernel2,
            dot_rows_x4_plain::<1> as Kernel1,
        )];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                kernels.push(("avx2", dot_rows_x4_avx2::<2>, dot_rows_x4_avx2::<1>));
            }
            if std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx512bw")
            {
                kernels.push(("vnni", dot_rows_x4_vnni::<2>, dot_rows_x4_vnni::<1>));
            }
        }
        for n in [1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 192, 768, 5000] {
            let levels = activation_levels(n) as i64;
            let ints = |seed: u64, len: usize, bound: i64| -> Vec<i16> {
                values(seed, len)
                    .iter()
                    .enumerate()
                    // Every other value at the bound, to reach the extreme sums.
                    .map(|(i, v)| {
                        let t = if i % 2 == 0 { v.signum() } else { *v };
                        (t.clamp(-1.0, 1.0) * bound as f32).round() as i16
                    })
                    .collect()
            };
            let x: Vec<Vec<i16>> = (0..2).map(|r| ints(r + 1, n, levels)).collect();
            let w: Vec<Vec<i16>> = (0..4).map(|j| ints(j + 10, n, 127)).collect();
            let ws = [0, 1, 2, 3].map(|j| w[j].as_slice());
            let want = [0, 1].map(|r| ws.map(|wr| dot_i16(&x[r], wr)));
            for (name, two, one) in &kernels {
                // SAFETY: each kernel is listed only when the CPU has its features.
                let got2 = unsafe { two([x[0].as_slice(), x[1].as_slice()], ws) };
                let got1 = unsafe { one([x[1].as_slice()], ws) };
                assert_eq!(got2, want, "{name}, width {n}, two rows");
                assert_eq!(got1, [want[1]], "{name}, width {n}, one row");
            }
        }
    }

    #[test]
    fn rms_norm_rows_gives_candles_bits() {
        // (rows, width): one row, candle's last row count without its thread pool, the first
        // with it, a prompt's, and a width off the vector lengths.
        for (rows, width) in [(1, 192), (32, 192), (33, 192), (71, 192), (5, 37)] {
            let x = values((rows * 3 + width) as u64, rows * width);
            let weight = values(width as u64 + 1, width);
            let want = candle_nn::ops::rms_norm(
                &candle_core::Tensor::from_vec(x.clone(), (rows, width), &candle_core::Device::Cpu)
                    .unwrap(),
                &candle_core::Tensor::new(weight.as_slice(), &candle_core::Device::Cpu).unwrap(),
                1e-6,
            )
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
            let (mut got, mut plain) = (x.clone(), x);
            rms_norm_rows(&mut got, &weight, 1e-6);
            rms_norm_rows_in(&mut plain, &weight, 1e-6);
            assert_eq!(bits(&got), bits(&want), "{rows}×{width}");
            assert_eq!(bits(&plain), bits(&want), "{rows}×{width}, plain");
        }
    }

    #[test]
    fn exp_silu_and_softmax_follow_their_definitions() {
        // exp: within 2 ulp (relative 2.4e-7) of f64's over the range, exact at the ends.
        for x in [
            0.0f32, 1.0, -1.0, 0.5, -0.3466, 0.3466, 10.0, -10.0, 20.5, -40.25, 80.0, -80.0, -87.0,
            88.0,
        ] {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            assert!(
                ((got - want) / want).abs() < 2.5e-7,
                "exp({x}) = {got}, expected {want}"
            );
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1e6), 0.0);
        assert!(exp(1e6).is_finite());
        // silu · up
        let gate = [-20.0f32, -1.0, 0.0, 0.7, 3.0, 30.0];
        let up = [1.0f32, 2.0, 3.0, -1.0, 0.5, 1.0];
        let mut gated = gate;
        silu_mul(&mut gated, &up);
        for (i, got) in gated.into_iter().enumerate() {
            let g = f64::from(gate[i]);
            let want = g / (1.0 + (-g).exp()) * f64::from(up[i]);
            assert!(
                (f64::from(got) - want).abs() < 1e-6,
                "silu at {i}: {got} vs {want}"
            );
        }
        // softmax rows, one with masked (−∞) entries
        let mut rows = vec![1.0f32, 2.0, 3.0, f32::NEG_INFINITY, 0.5, f32::NEG_INFINITY];
        softmax_rows(&mut rows, 3);
        let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
        let total: f64 = e.iter().sum();
        for (i, want) in e.iter().map(|v| v / total).enumerate() {
            assert!((f64::from(rows[i]) - want).abs() < 1e-6, "row 0 at {i}");
        }
        assert_eq!(&rows[3..], &[0.0, 1.0, 0.0]);
        // The wide build (AVX-512 where the CPU has it) gives the plain one's bits, over
        // lengths past the vector widths.
        let gate = values(5, 1000).iter().map(|v| v * 40.0).collect::<Vec<_>>();
        let up = values(6, 1000);
        let (mut wide, mut plain) = (gate.clone(), gate);
        silu_mul(&mut wide, &up);
        silu_mul_in(&mut plain, &up);
        assert_eq!(bits(&wide), bits(&plain), "silu, wide and plain");
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The reference: masked softmax attention in f64, one query at a time.
    fn naive_attention(
        q: &[f32],
        (k, v): (&[f32], &[f32]),
        layout: Heads,
        batch: usize,
        visible: &[usize],
        scale: f32,
    ) -> Vec<f64> {
        let Heads {
            heads,
            kv_heads,
            dim,
        } = layout;
        let queries = visible.len() / batch;
        let keys = k.len() / (batch * kv_heads * dim);
        let mut out = vec![0f64; batch * queries * heads * dim];
        for b in 0..batch {
            for h in 0..heads {
                let g = h / (heads / kv_heads);
                let at = |t: &[f32], j: usize, d: usize| {
                    f64::from(t[((b * kv_heads + g) * keys + j) * dim + d])
                };
                for i in 0..queries {
                    let n = visible[b * queries + i];
                    let qi = |d: usize| f64::from(q[((b * queries + i) * heads + h) * dim + d]);
                    let s: Vec<f64> = (0..n)
                        .map(|j| {
                            (0..dim).map(|d| qi(d) * at(k, j, d)).sum::<f64>() * f64::from(scale)
                        })
                        .collect();
                    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for d in 0..dim {
                        out[((b * queries + i) * heads + h) * dim + d] =
                            (0..n).map(|j| e[j] / total * at(v, j, d)).sum();
                    }
                }
            }
        }
        out
    }

    #[test]
    fn attention_reads_only_the_visible_keys_and_equals_the_masked_softmax() {
        // (batch, heads, kv_heads, dim, keys, visible per query): a causal prompt, a prompt
        // after cached keys, grouped heads, one selected query per batch row with padding
        // behind it, a single key, and a width past the vector lanes.
        let cases: [(usize, usize, usize, usize, usize, Vec<usize>); 6] = [
            (1, 4, 4, 48, 5, (1..=5).collect()),
            (1, 4, 4, 48, 9, (6..=9).collect()),
            (1, 4, 2, 8, 6, (1..=6).collect()),
            (3, 2, 2, 16, 7, vec![7, 3, 5]),
            (1, 1, 1, 4, 1, vec![1]),
            (2, 2, 1, 13, 4, vec![1, 2, 3, 4, 4, 4, 2, 1]),
        ];
        for (batch, heads, kv_heads, dim, keys, visible) in cases {
            let case = format!("{batch}×{heads}/{kv_heads}×{dim}, {keys} keys, {visible:?}");
            let layout = Heads {
                heads,
                kv_heads,
                dim,
            };
            let queries = visible.len() / batch;
            let q = values(dim as u64, batch * heads * queries * dim);
            let mut k = values(keys as u64 + 1, batch * kv_heads * keys * dim);
            let v = values(keys as u64 + 2, batch * kv_heads * keys * dim);
            let scale = 1.0 / (dim as f32).sqrt();
            let want = naive_attention(&q, (&k, &v), layout, batch, &visible, scale);
            // Keys nobody sees may hold anything (padding): NaN must not leak in.
            for b in 0..batch {
                let seen = visible[b * queries..(b + 1) * queries]
                    .iter()
                    .max()
                    .copied();
                for g in 0..kv_heads {
                    for j in seen.unwrap_or(0)..keys {
                        let at = ((b * kv_heads + g) * keys + j) * dim;
                        k[at..at + dim].iter_mut().for_each(|x| *x = f32::NAN);
                    }
                }
            }
            let got = attend(&q, (&k, &v), layout, batch, &visible, scale);
            assert_eq!(got.len(), want.len(), "{case}");
            let plain = attend_in(&q, (&k, &v), layout, batch, &visible, scale);
            assert_eq!(bits(&got), bits(&plain), "{case}: wide and plain");
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*g) - e).abs() < 1e-6,
                    "{case} at {i}: {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn rope_rotates_each_heads_halves_by_its_position() {
        // (sequences, positions, heads, dim): one head, several, two sequences of one length.
        for (sequences, positions, heads, dim) in [(1, 3, 1, 4), (1, 5, 4, 8), (2, 3, 2, 6)] {
            let half = dim / 2;
            let x = values(dim as u64, sequences * positions * heads * dim);
            let angles: Vec<f64> = (0..positions * half)
                .map(|i| (i / half) as f64 / 10f64.powf((i % half) as f64 / half as f64))
                .collect();
            let cos: Vec<f32> = angles.iter().map(|a| a.cos() as f32).collect();
            let sin: Vec<f32> = angles.iter().map(|a| a.sin() as f32).collect();
            let mut got = x.clone();
            rope(&mut got, heads, dim, (&cos, &sin));
            for (r, (row, out)) in x
                .chunks(heads * dim)
                .zip(got.chunks(heads * dim))
                .enumerate()
            {
                let p = r % positions;
                for h in 0..heads {
                    for i in 0..half {
                        let (a, b) = (row[h * dim + i] as f64, row[h * dim + half + i] as f64);
                        let (c, s) = (cos[p * half + i] as f64, sin[p * half + i] as f64);
                        let want = [a * c - b * s, a * s + b * c];
                        let have = [out[h * dim + i] as f64, out[h * dim + half + i] as f64];
                        for (w, g) in want.iter().zip(have) {
                            assert!(
                                (w - g).abs() < 1e-6,
                                "row {r} head {h} pair {i}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}
