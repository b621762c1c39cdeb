//! Numeric kernels shared by the model and scoring: the f32 dot product (vectorised natively,
//! `simd128` in wasm) and the product of a few activation rows with a weight matrix, which
//! the forward pass of a short input (a click's new tokens, a beam step) uses instead of a
//! general matrix product: with a handful of rows, packing the weights for a blocked product
//! costs more than the product itself.

/// Dot product written so the compiler vectorises it (8 independent accumulators); on wasm32
/// with `simd128` an explicit f32x4 version.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for i in chunks * 8..n {
        sum += a[i] * b[i];
    }
    sum
}

/// Dot product with wasm `simd128` (two f32x4 accumulators).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    use core::arch::wasm32::*;
    let n = a.len().min(b.len());
    let chunks = n / 8;
    let mut acc0 = f32x4_splat(0.0);
    let mut acc1 = f32x4_splat(0.0);
    for c in 0..chunks {
        let i = c * 8;
        // SAFETY: i + 8 <= n, so both 16-byte loads at i and i + 4 stay inside a and b;
        // v128_load has no alignment requirement.
        unsafe {
            let x0 = v128_load(a.as_ptr().add(i) as *const v128);
            let y0 = v128_load(b.as_ptr().add(i) as *const v128);
            let x1 = v128_load(a.as_ptr().add(i + 4) as *const v128);
            let y1 = v128_load(b.as_ptr().add(i + 4) as *const v128);
            acc0 = f32x4_add(acc0, f32x4_mul(x0, y0));
            acc1 = f32x4_add(acc1, f32x4_mul(x1, y1));
        }
    }
    let acc = f32x4_add(acc0, acc1);
    let mut sum = f32x4_extract_lane::<0>(acc)
        + f32x4_extract_lane::<1>(acc)
        + f32x4_extract_lane::<2>(acc)
        + f32x4_extract_lane::<3>(acc);
    for i in chunks * 8..n {
        sum += a[i] * b[i];
    }
    sum
}

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

/// The dot products of `x` with four rows of its length: four [`dot`]s natively, where they
/// measured faster than one four-row loop (`cargo bench`).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    w.map(|row| dot(x, row))
}

/// The dot products of `x` with four rows of its length, with wasm `simd128`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    use core::arch::wasm32::*;
    let n = w.iter().fold(x.len(), |n, row| n.min(row.len()));
    let chunks = n / 4;
    let mut acc = [f32x4_splat(0.0); 4];
    for c in 0..chunks {
        let i = c * 4;
        // SAFETY: i + 4 <= n, the length of every slice, so each 16-byte load at i stays
        // inside its slice; v128_load has no alignment requirement.
        unsafe {
            let xv = v128_load(x.as_ptr().add(i) as *const v128);
            for (a, row) in acc.iter_mut().zip(&w) {
                let wv = v128_load(row.as_ptr().add(i) as *const v128);
                *a = f32x4_add(*a, f32x4_mul(xv, wv));
            }
        }
    }
    let mut out = acc.map(|a| {
        f32x4_extract_lane::<0>(a)
            + f32x4_extract_lane::<1>(a)
            + f32x4_extract_lane::<2>(a)
            + f32x4_extract_lane::<3>(a)
    });
    for i in chunks * 4..n {
        for (o, row) in out.iter_mut().zip(&w) {
            *o += x[i] * row[i];
        }
    }
    out
}

/// A linear layer's weight quantized for inference: each output row as integers in
/// `[-127, 127]` (kept as `i16`, the operand width of the integer dot product) times one f32
/// scale per row (its largest magnitude / 127). Half the bytes of the f32 weight; the product
/// with activations ([`linear_q`]) is an exact integer sum, so it gives the same bits natively
/// and in wasm.
#[derive(Debug, Clone)]
pub struct QuantRows {
    values: Vec<i16>,
    scales: Vec<f32>,
    inp: usize,
}

/// Largest weight integer: symmetric int8.
const WEIGHT_LEVELS: f32 = 127.0;

impl QuantRows {
    /// Quantizes `w` (`out × inp`, row-major): per row, `round(w / scale)` with
    /// `scale = max |w| / 127` (an all-zero row keeps scale 0).
    pub fn new(w: &[f32], inp: usize) -> Self {
        let inp = inp.max(1);
        let mut values = Vec::with_capacity(w.len());
        let mut scales = Vec::with_capacity(w.len() / inp);
        for row in w.chunks_exact(inp) {
            let (scale, q) = quantize(row, WEIGHT_LEVELS);
            scales.push(scale);
            values.extend(q);
        }
        QuantRows {
            values,
            scales,
            inp,
        }
    }

    /// Output rows.
    pub fn out(&self) -> usize {
        self.scales.len()
    }

    /// Input width.
    pub fn inp(&self) -> usize {
        self.inp
    }

    fn row(&self, o: usize) -> &[i16] {
        &self.values[o * self.inp..(o + 1) * self.inp]
    }
}

/// `(scale, round(v / scale))` with `scale = max |v| / levels` (0 for an all-zero `v`).
fn quantize(v: &[f32], levels: f32) -> (f32, impl Iterator<Item = i16> + '_) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 && max.is_finite() {
        max / levels
    } else {
        0.0
    };
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    let q = v
        .iter()
        .map(move |x| (x * inv).round_ties_even().clamp(-levels, levels) as i16);
    (scale, q)
}

/// Activation levels for input width `inp`: as fine as `i16` allows while a whole row's sum of
/// `activation × weight` products (each at most `levels × 127`) still fits an `i32`, in any
/// order of summation (so every kernel sums exactly).
fn activation_levels(inp: usize) -> f32 {
    let bound = i32::MAX as usize / (WEIGHT_LEVELS as usize * inp.max(1));
    bound.clamp(1, i16::MAX as usize) as f32
}

/// `x · wᵀ (+ bias)` with a quantized weight: `x` (`rows × inp`) is quantized per row to
/// integers (scale = row max / [`activation_levels`], 15 bits for the model's widths), each
/// output is the exact integer dot product times both scales. Rows are taken two at a time
/// against four weight rows (each load used for several products). Returns `rows × out`.
pub fn linear_q(x: &[f32], w: &QuantRows, bias: Option<&[f32]>) -> Vec<f32> {
    let inp = w.inp;
    let out = w.out();
    let rows = x.len() / inp;
    let levels = activation_levels(inp);
    let mut xq = Vec::with_capacity(rows * inp);
    let mut xs = Vec::with_capacity(rows);
    for row in x.chunks_exact(inp) {
        let (scale, q) = quantize(row, levels);
        xs.push(scale);
        xq.extend(q);
    }
    let mut y = vec![0f32; rows * out];
    let mut put = |r: usize, o: usize, dot: i32| {
        y[r * out + o] = dot as f32 * (xs[r] * w.scales[o]) + bias.map_or(0.0, |b| b[o]);
    };
    let x_row = |r: usize| &xq[r * inp..(r + 1) * inp];
    let blocks = out / 4;
    for blk in 0..blocks {
        let o = blk * 4;
        let ws = [0, 1, 2, 3].map(|j| w.row(o + j));
        let mut r = 0;
        while r + 2 <= rows {
            let d = dot_rows_x4([x_row(r), x_row(r + 1)], ws);
            for (i, dr) in d.iter().enumerate() {
                for (j, &v) in dr.iter().enumerate() {
                    put(r + i, o + j, v);
                }
            }
            r += 2;
        }
        if r < rows {
            let [d] = dot_rows_x4([x_row(r)], ws);
            for (j, &v) in d.iter().enumerate() {
                put(r, o + j, v);
            }
        }
    }
    for o in blocks * 4..out {
        for r in 0..rows {
            put(r, o, dot_i16(x_row(r), w.row(o)));
        }
    }
    y
}

/// Exact integer dot product of two `i16` vectors (the caller bounds the sum to `i32`).
fn dot_i16(a: &[i16], b: &[i16]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// The dot products of `R` activation rows with four weight rows (all of one length), as
/// `[row][weight]`. Natively the same sums through [`dot_i16`] (vectorised by the compiler; with
/// AVX2 when the CPU has it).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot_rows_x4<const R: usize>(x: [&[i16]; R], w: [&[i16]; 4]) -> [[i32; 4]; R] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { dot_rows_x4_avx2(x, w) };
        }
    }
    dot_rows_x4_plain(x, w)
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn dot_rows_x4_plain<const R: usize>(x: [&[i16]; R], w: [&[i16]; 4]) -> [[i32; 4]; R] {
    x.map(|xr| w.map(|wr| dot_i16(xr, wr)))
}

/// [`dot_rows_x4_plain`] with AVX2's `vpmaddwd` (sixteen products per instruction, exact in
/// `i32`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_rows_x4_avx2<const R: usize>(x: [&[i16]; R], w: [&[i16]; 4]) -> [[i32; 4]; R] {
    use core::arch::x86_64::*;
    let n = x
        .iter()
        .chain(&w)
        .fold(usize::MAX, |n, row| n.min(row.len()));
    let chunks = n / 16;
    let mut acc = [[_mm256_setzero_si256(); 4]; R];
    for c in 0..chunks {
        let i = c * 16;
        // SAFETY: i + 16 <= n, the length of every slice, so each 32-byte load at i stays
        // inside its slice; loadu has no alignment requirement.
        let xv = x.map(|row| unsafe { _mm256_loadu_si256(row.as_ptr().add(i) as *const __m256i) });
        for (j, row) in w.iter().enumerate() {
            // SAFETY: as above.
            let wv = unsafe { _mm256_loadu_si256(row.as_ptr().add(i) as *const __m256i) };
            for (a, &xr) in acc.iter_mut().zip(&xv) {
                a[j] = _mm256_add_epi32(a[j], _mm256_madd_epi16(xr, wv));
            }
        }
    }
    let mut out = acc.map(|a| {
        a.map(|v| {
            let mut lanes = [0i32; 8];
            // SAFETY: lanes holds exactly 32 bytes.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, v) };
            lanes.iter().sum::<i32>()
        })
    });
    for (o, xr) in out.iter_mut().zip(&x) {
        for (v, wr) in o.iter_mut().zip(&w) {
            *v += dot_i16(&xr[chunks * 16..n], &wr[chunks * 16..n]);
        }
    }
    out
}

/// The dot products of `R` activation rows with four weight rows, with wasm `simd128`'s
/// `i32x4.dot_i16x8_s` (eight products per instruction, exact in `i32`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot_rows_x4<const R: usize>(x: [&[i16]; R], w: [&[i16]; 4]) -> [[i32; 4]; R] {
    use core::arch::wasm32::*;
    let n = x
        .iter()
        .chain(&w)
        .fold(usize::MAX, |n, row| n.min(row.len()));
    let chunks = n / 8;
    let mut acc = [[i32x4_splat(0); 4]; R];
    for c in 0..chunks {
        let i = c * 8;
        // SAFETY: i + 8 <= n, the length of every slice, so each 16-byte load at i stays
        // inside its slice; v128_load has no alignment requirement.
        unsafe {
            let xv = x.map(|row| v128_load(row.as_ptr().add(i) as *const v128));
            for (j, row) in w.iter().enumerate() {
                let wv = v128_load(row.as_ptr().add(i) as *const v128);
                for (a, &xr) in acc.iter_mut().zip(&xv) {
                    a[j] = i32x4_add(a[j], i32x4_dot_i16x8(xr, wv));
                }
            }
        }
    }
    let mut out = acc.map(|a| {
        a.map(|v| {
            i32x4_extract_lane::<0>(v)
                + i32x4_extract_lane::<1>(v)
                + i32x4_extract_lane::<2>(v)
                + i32x4_extract_lane::<3>(v)
        })
    });
    for (o, xr) in out.iter_mut().zip(&x) {
        for (v, wr) in o.iter_mut().zip(&w) {
            *v += dot_i16(&xr[chunks * 8..n], &wr[chunks * 8..n]);
        }
    }
    out
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
                let (sx, xq) = quantize(&x[r * inp..(r + 1) * inp], levels);
                let xq: Vec<i64> = xq.map(i64::from).collect();
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
}
