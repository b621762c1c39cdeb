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
}
