//! The kernels' plain versions, for every target but wasm `simd128`: loops written so the
//! compiler vectorises them (eight f32 accumulators; integer sums in any order).

#[allow(unused_imports)]
use super::*;

/// Dot product written so the compiler vectorises it (8 independent accumulators); on wasm32
/// with `simd128` an explicit f32x4 version.
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

/// The dot products of `x` with four rows of its length: four [`dot`]s natively, where they
/// measured faster than one four-row loop (`cargo bench`).
pub(super) fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    w.map(|row| dot(x, row))
}

#[inline(always)]
pub(super) fn i8_row_dots_plain(query: &[i16], values: &[i8], dots: &mut [i32]) {
    for (d, row) in dots.iter_mut().zip(values.chunks_exact(query.len().max(1))) {
        *d = dot_i16_i8(query, row);
    }
}

/// The unsigned nibbles (value + 8) of a row's groups times the query, summed exactly.
#[inline(always)]
pub(super) fn nibble_dots_plain(
    query: &[i16],
    rows: std::slice::ChunksExact<'_, u8>,
    bias: i32,
    dots: &mut [i32],
) {
    let full = query.len() / 32;
    for (d, row) in dots.iter_mut().zip(rows) {
        let mut sum = 0i32;
        for (q, packed) in query.chunks_exact(32).zip(row.chunks_exact(16)) {
            let (low, high) = q.split_at(16);
            for k in 0..16 {
                sum += i32::from(packed[k] & 0x0f) * i32::from(low[k])
                    + i32::from(packed[k] >> 4) * i32::from(high[k]);
            }
        }
        *d = sum + nibble_tail(&query[full * 32..], &row[full * 16..]) - bias;
    }
}

/// The dot products of `R` activation rows with four weight rows (all of one length), as
/// `[row][weight]`. Natively the same sums through [`dot_i16`] (vectorised by the compiler; with
/// AVX-512 VNNI or AVX2 when the CPU has them).
pub(super) fn dot_rows_x4<const R: usize>(x: [&[i16]; R], w: [&[i16]; 4]) -> [[i32; 4]; R] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU has AVX-512 VNNI and BW (checked just above).
            return unsafe { dot_rows_x4_vnni(x, w) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { dot_rows_x4_avx2(x, w) };
        }
    }
    dot_rows_x4_plain(x, w)
}

#[inline(always)]
pub(super) fn dot_rows_x4_plain<const R: usize>(x: [&[i16]; R], w: [&[i16]; 4]) -> [[i32; 4]; R] {
    x.map(|xr| w.map(|wr| dot_i16(xr, wr)))
}
