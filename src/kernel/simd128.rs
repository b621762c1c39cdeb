//! wasm `simd128` kernels: the f32 dot products (their lanes summed in the native order), the
//! int8 and int4 memory-row scans and the int8 product over `quads` (the simd128 build without
//! relaxed SIMD).

#[allow(unused_imports)]
use super::*;

/// Dot product with wasm `simd128` (two f32x4 accumulators: the native loop's eight).
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
    let mut sum = eight_lanes_sum(acc0, acc1);
    for i in chunks * 8..n {
        sum += a[i] * b[i];
    }
    sum
}

/// The dot products of `x` with four rows of its length, with wasm `simd128`.
pub(super) fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    use core::arch::wasm32::*;
    let n = w.iter().fold(x.len(), |n, row| n.min(row.len()));
    let chunks = n / 8;
    let mut acc = [[f32x4_splat(0.0); 2]; 4];
    for c in 0..chunks {
        let i = c * 8;
        // SAFETY: i + 8 <= n, the length of every slice, so each 16-byte load at i and i + 4
        // stays inside its slice; v128_load has no alignment requirement.
        unsafe {
            let x0 = v128_load(x.as_ptr().add(i) as *const v128);
            let x1 = v128_load(x.as_ptr().add(i + 4) as *const v128);
            for (a, row) in acc.iter_mut().zip(&w) {
                let w0 = v128_load(row.as_ptr().add(i) as *const v128);
                let w1 = v128_load(row.as_ptr().add(i + 4) as *const v128);
                a[0] = f32x4_add(a[0], f32x4_mul(x0, w0));
                a[1] = f32x4_add(a[1], f32x4_mul(x1, w1));
            }
        }
    }
    let mut out = acc.map(|[a0, a1]| eight_lanes_sum(a0, a1));
    for i in chunks * 8..n {
        for (o, row) in out.iter_mut().zip(&w) {
            *o += x[i] * row[i];
        }
    }
    out
}

/// The eight lanes of two f32x4 accumulators (lanes 0–3, then 4–7) summed in order, as the
/// native [`dot`] sums its eight accumulators: so [`dot`] and [`dot4`] give the same bits in
/// wasm as natively (attention scores feed the int8 activations, whose rounding a last-bit
/// difference can move by a level).
#[inline(always)]
pub(super) fn eight_lanes_sum(a0: core::arch::wasm32::v128, a1: core::arch::wasm32::v128) -> f32 {
    use core::arch::wasm32::*;
    [
        f32x4_extract_lane::<0>(a0),
        f32x4_extract_lane::<1>(a0),
        f32x4_extract_lane::<2>(a0),
        f32x4_extract_lane::<3>(a0),
        f32x4_extract_lane::<0>(a1),
        f32x4_extract_lane::<1>(a1),
        f32x4_extract_lane::<2>(a1),
        f32x4_extract_lane::<3>(a1),
    ]
    .iter()
    .sum()
}

/// [`i8_row_dots`] with wasm `simd128`: each row's 16 i8 values at a time widened to i16 and
/// multiplied by the query with `i32x4.dot_i16x8_s`. (Four rows sharing each load of the
/// query measured no faster in V8: `node scripts/bench-ab.mjs --mode density`.)
pub(super) fn i8_row_dots_simd(query: &[i16], values: &[i8], dots: &mut [i32]) {
    use core::arch::wasm32::*;
    let dim = query.len();
    if dim == 0 {
        dots.fill(0);
        return;
    }
    let full = dim / 16 * 16;
    for (d, row) in dots.iter_mut().zip(values.chunks_exact(dim)) {
        let mut acc0 = i32x4_splat(0);
        let mut acc1 = i32x4_splat(0);
        for i in (0..full).step_by(16) {
            // SAFETY: i + 16 <= full <= dim, the length of the row and of the query, so the
            // 16-byte load of the row at i and the two of the query at i and i + 8 stay
            // inside both; v128_load has no alignment requirement.
            unsafe {
                let v = v128_load(row.as_ptr().add(i) as *const v128);
                let q0 = v128_load(query.as_ptr().add(i) as *const v128);
                let q1 = v128_load(query.as_ptr().add(i + 8) as *const v128);
                acc0 = i32x4_add(acc0, i32x4_dot_i16x8(i16x8_extend_low_i8x16(v), q0));
                acc1 = i32x4_add(acc1, i32x4_dot_i16x8(i16x8_extend_high_i8x16(v), q1));
            }
        }
        *d = lane_sum(i32x4_add(acc0, acc1)) + dot_i16_i8(&query[full..], &row[full..]);
    }
}

/// [`Nibbles::dots`] with wasm `simd128`: a group's sixteen bytes split into low and high
/// nibbles (and, shift), each widened to i16 and multiplied by the query with
/// `i32x4.dot_i16x8_s`.
pub(super) fn nibble_dots_simd(
    query: &[i16],
    rows: std::slice::ChunksExact<'_, u8>,
    bias: i32,
    dots: &mut [i32],
) {
    use core::arch::wasm32::*;
    let full = query.len() / 32;
    let mask = u8x16_splat(0x0f);
    for (d, row) in dots.iter_mut().zip(rows) {
        let mut acc0 = i32x4_splat(0);
        let mut acc1 = i32x4_splat(0);
        for g in 0..full {
            // SAFETY: g < full: the group's 16 bytes lie inside the row (full · 16 ≤ its
            // length) and its 32 query values inside the query (full · 32 ≤ its length);
            // v128_load has no alignment requirement.
            unsafe {
                let v = v128_load(row.as_ptr().add(g * 16) as *const v128);
                let q = query.as_ptr().add(g * 32);
                let (low, high) = (v128_and(v, mask), u8x16_shr(v, 4));
                let q0 = v128_load(q as *const v128);
                let q1 = v128_load(q.add(8) as *const v128);
                let q2 = v128_load(q.add(16) as *const v128);
                let q3 = v128_load(q.add(24) as *const v128);
                acc0 = i32x4_add(acc0, i32x4_dot_i16x8(u16x8_extend_low_u8x16(low), q0));
                acc1 = i32x4_add(acc1, i32x4_dot_i16x8(u16x8_extend_high_u8x16(low), q1));
                acc0 = i32x4_add(acc0, i32x4_dot_i16x8(u16x8_extend_low_u8x16(high), q2));
                acc1 = i32x4_add(acc1, i32x4_dot_i16x8(u16x8_extend_high_u8x16(high), q3));
            }
        }
        *d = lane_sum(i32x4_add(acc0, acc1)) + nibble_tail(&query[full * 32..], &row[full * 16..])
            - bias;
    }
}

/// A weight's integers as wasm's product reads them: each block of four rows (`out × inp`,
/// row-major in `values`) with their chunks of eight side by side — chunk c of rows 0–3, then
/// chunk c + 1, … — then the four rows' remainders past the last whole chunk; rows past the
/// last whole block stay as they are, in place. The product then loads four weight vectors
/// from one pointer: fewer instructions per step, which is what bounds it in V8
/// (measured with `scripts/bench-ab.mjs`).
#[cfg(all(
    target_arch = "wasm32",
    target_feature = "simd128",
    not(target_feature = "relaxed-simd")
))]
pub(super) fn quads(values: &[i16], inp: usize) -> Vec<i16> {
    let chunks = inp / 8;
    let mut out = Vec::with_capacity(values.len());
    let blocks = values.chunks_exact(4 * inp);
    let rest = blocks.remainder();
    for block in blocks {
        for c in 0..chunks {
            for j in 0..4 {
                out.extend_from_slice(&block[j * inp + c * 8..j * inp + c * 8 + 8]);
            }
        }
        for j in 0..4 {
            out.extend_from_slice(&block[j * inp + chunks * 8..(j + 1) * inp]);
        }
    }
    out.extend_from_slice(rest);
    out
}

/// The dot products of `R` activation rows with one block of [`quads`] (four weight rows),
/// as `[row][weight]`, with wasm `simd128`'s `i32x4.dot_i16x8_s` (eight products per
/// instruction, exact in `i32`).
#[cfg(all(
    target_arch = "wasm32",
    target_feature = "simd128",
    not(target_feature = "relaxed-simd")
))]
pub(super) fn dot_rows_quad<const R: usize>(x: [&[i16]; R], block: &[i16]) -> [[i32; 4]; R] {
    use core::arch::wasm32::*;
    let inp = block.len() / 4;
    let chunks = inp / 8;
    assert!(x.iter().all(|row| row.len() >= inp), "activation rows");
    let mut acc = [[i32x4_splat(0); 4]; R];
    let wp = block.as_ptr();
    for c in 0..chunks {
        // SAFETY: c < chunks: the 32 values from c · 32 lie inside the block (4 · inp long),
        // and the 8 from c · 8 inside each activation row (at least inp long, asserted).
        unsafe {
            let xv = x.map(|row| v128_load(row.as_ptr().add(c * 8) as *const v128));
            let w = wp.add(c * 32);
            let wv = [0, 8, 16, 24].map(|k| v128_load(w.add(k) as *const v128));
            for (a, &xr) in acc.iter_mut().zip(&xv) {
                for (aj, &wj) in a.iter_mut().zip(&wv) {
                    *aj = i32x4_add(*aj, i32x4_dot_i16x8(xr, wj));
                }
            }
        }
    }
    let mut out = acc.map(sums4);
    let tail = inp - chunks * 8;
    let tails = &block[chunks * 32..];
    for (o, xr) in out.iter_mut().zip(&x) {
        for (j, v) in o.iter_mut().enumerate() {
            *v += dot_i16(&xr[chunks * 8..inp], &tails[j * tail..(j + 1) * tail]);
        }
    }
    out
}

/// The sum of an `i32x4`'s four lanes (the memory rows' dot products).
#[inline(always)]
pub(super) fn lane_sum(v: core::arch::wasm32::v128) -> i32 {
    use core::arch::wasm32::*;
    i32x4_extract_lane::<0>(v)
        + i32x4_extract_lane::<1>(v)
        + i32x4_extract_lane::<2>(v)
        + i32x4_extract_lane::<3>(v)
}

/// The lane sums of four `i32x4` accumulators, `[Σa, Σb, Σc, Σd]`, with shuffles (two rounds
/// of pairwise sums) rather than sixteen lane extractions.
#[inline(always)]
pub(super) fn sums4([a, b, c, d]: [core::arch::wasm32::v128; 4]) -> [i32; 4] {
    use core::arch::wasm32::*;
    let ab = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(a, b),
        i32x4_shuffle::<2, 6, 3, 7>(a, b),
    );
    let cd = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(c, d),
        i32x4_shuffle::<2, 6, 3, 7>(c, d),
    );
    let sums = i32x4_add(
        i32x4_shuffle::<0, 1, 4, 5>(ab, cd),
        i32x4_shuffle::<2, 3, 6, 7>(ab, cd),
    );
    [
        i32x4_extract_lane::<0>(sums),
        i32x4_extract_lane::<1>(sums),
        i32x4_extract_lane::<2>(sums),
        i32x4_extract_lane::<3>(sums),
    ]
}
