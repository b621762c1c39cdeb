//! The int8 product with relaxed SIMD's `i32x4.relaxed_dot_i8x16_i7x16_add` (sixteen byte
//! products and their accumulation in one instruction; one AVX-VNNI `vpdpbusd` where the CPU
//! has it). Its second operand must be 7 bits unsigned, so each activation `x` (at most
//! `ACTIVATION_LEVELS` = 63 in magnitude) is read as `x + 64`: `Σ w·x = Σ w·(x + 64) − 64·Σ w`,
//! an exact integer, so the sums (and the outputs' bits) equal every other kernel's. No pair of
//! byte products (at most 2 · 127²) reaches the 16-bit saturation of the instruction's
//! lowering on CPUs without VNNI.
use core::arch::wasm32::*;

/// Added to each activation so it is unsigned (7 bits).
const OFFSET: i32 = 64;
/// Bytes per vector.
const CHUNK: usize = 16;

/// Each activation of `values` plus `OFFSET`, as a byte (in `[1, 127]`).
pub fn unsigned(values: &[i16]) -> Vec<u8> {
    values
        .iter()
        .map(|&x| (i32::from(x) + OFFSET) as u8)
        .collect()
}

/// A weight's whole blocks of four rows as bytes: per block, chunk c of rows 0–3 side by
/// side (`CHUNK` bytes each), chunk c + 1, …, then the four rows' remainders past the last
/// whole chunk; and each row's sum (the offset's correction).
#[derive(Debug, Clone)]
pub struct Bytes {
    values: Vec<i8>,
    sums: Vec<i32>,
    inp: usize,
}

impl Bytes {
    /// The whole blocks of `values` (`out × inp`, each in `[-127, 127]`), and the rows past
    /// the last one, row-major.
    pub fn split(values: &[i16], inp: usize) -> (Bytes, Vec<i16>) {
        let chunks = inp / CHUNK;
        let tail = inp - chunks * CHUNK;
        let blocks = values.chunks_exact(4 * inp);
        let rest = blocks.remainder().to_vec();
        let mut bytes = Vec::with_capacity(values.len() - rest.len());
        for block in blocks {
            for c in 0..chunks {
                for j in 0..4 {
                    let at = j * inp + c * CHUNK;
                    bytes.extend(block[at..at + CHUNK].iter().map(|&v| v as i8));
                }
            }
            for j in 0..4 {
                let at = j * inp + chunks * CHUNK;
                bytes.extend(block[at..at + tail].iter().map(|&v| v as i8));
            }
        }
        let sums = values[..values.len() - rest.len()]
            .chunks_exact(inp)
            .map(|row| row.iter().map(|&v| i32::from(v)).sum())
            .collect();
        (
            Bytes {
                values: bytes,
                sums,
                inp,
            },
            rest,
        )
    }

    /// The blocks' integers, row-major.
    pub fn row_major(&self) -> Vec<i16> {
        let (inp, chunks) = (self.inp, self.inp / CHUNK);
        let tail = inp - chunks * CHUNK;
        let mut rows = vec![0i16; self.values.len()];
        for (block, packed) in rows
            .chunks_exact_mut(4 * inp)
            .zip(self.values.chunks_exact(4 * inp))
        {
            for (k, &v) in packed.iter().enumerate() {
                let (j, at) = if k < chunks * 4 * CHUNK {
                    let (c, j) = (k / (4 * CHUNK), k / CHUNK % 4);
                    (j, c * CHUNK + k % CHUNK)
                } else {
                    let k = k - chunks * 4 * CHUNK;
                    (k / tail, chunks * CHUNK + k % tail)
                };
                block[j * inp + at] = i16::from(v);
            }
        }
        rows
    }

    /// The exact dot products of `R` activation rows (their [`unsigned`] bytes) with the
    /// rows of block `b`, as `[row][weight]`.
    #[inline(always)]
    pub fn block_dots<const R: usize>(&self, b: usize, x: [&[u8]; R]) -> [[i32; 4]; R] {
        let inp = self.inp;
        let chunks = inp / CHUNK;
        let block = &self.values[b * 4 * inp..(b + 1) * 4 * inp];
        assert!(x.iter().all(|row| row.len() >= inp), "activation rows");
        let mut acc = [[i32x4_splat(0); 4]; R];
        let wp = block.as_ptr();
        for c in 0..chunks {
            // SAFETY: c < chunks: the 64 bytes from c · 64 lie inside the block (4 · inp
            // long), and the 16 from c · 16 inside each activation row (at least inp long,
            // asserted); v128_load has no alignment requirement.
            unsafe {
                let xv = x.map(|row| v128_load(row.as_ptr().add(c * CHUNK) as *const v128));
                let w = wp.add(c * 4 * CHUNK);
                let wv = [0, 1, 2, 3].map(|j| v128_load(w.add(j * CHUNK) as *const v128));
                for (a, &xr) in acc.iter_mut().zip(&xv) {
                    for (aj, &wj) in a.iter_mut().zip(&wv) {
                        *aj = i32x4_relaxed_dot_i8x16_i7x16_add(wj, xr, *aj);
                    }
                }
            }
        }
        let mut total = acc.map(super::sums4);
        let tail = inp - chunks * CHUNK;
        let tails = &block[chunks * 4 * CHUNK..];
        for (t, row) in total.iter_mut().zip(&x) {
            for (j, tj) in t.iter_mut().enumerate() {
                for (&w, &u) in tails[j * tail..(j + 1) * tail]
                    .iter()
                    .zip(&row[chunks * CHUNK..inp])
                {
                    *tj += i32::from(w) * i32::from(u);
                }
                *tj -= OFFSET * self.sums[b * 4 + j];
            }
        }
        total
    }
}
