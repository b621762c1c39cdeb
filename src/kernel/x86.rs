//! x86-64 kernels chosen at run time: AVX2 (`vpmaddwd`) and AVX-512 VNNI (`vpdpwssd`) integer
//! products and the weight layout VNNI reads without horizontal sums (`Interleaved`). Every one
//! gives the plain version's bits (a test runs each the CPU has against the plain sum).

#[allow(unused_imports)]
use super::*;

/// Outputs per 512-bit accumulator of [`Interleaved`]'s product: sixteen `i32` lanes.
pub(super) const LANES: usize = 16;

/// A weight's integers laid out for AVX-512 VNNI's `vpdpwssd` without horizontal sums: per
/// block of sixteen output rows and per pair of input columns `(2p, 2p + 1)`, the block's
/// sixteen pairs side by side (one 512-bit load). One activation pair broadcast to all lanes
/// then adds its products to sixteen outputs at once, each lane summing its own output. Blocks
/// past `out` and a last column past an odd `inp` are zeros, which add nothing.
#[derive(Debug, Clone)]
pub(super) struct Interleaved {
    pub(super) values: Vec<i16>,
    pub(super) out: usize,
    pub(super) inp: usize,
}

impl Interleaved {
    /// Whether this CPU runs [`Interleaved::times`].
    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512bw")
    }

    /// Interleaves row-major `values` (`out × inp`).
    pub(super) fn new(values: &[i16], inp: usize) -> Self {
        let out = values.len() / inp.max(1);
        let pairs = inp.div_ceil(2);
        let mut packed = vec![0i16; out.div_ceil(LANES) * pairs * 2 * LANES];
        for (o, row) in values.chunks_exact(inp.max(1)).enumerate() {
            let (block, lane) = (o / LANES, o % LANES);
            for (k, &v) in row.iter().enumerate() {
                packed[((block * pairs + k / 2) * LANES + lane) * 2 + k % 2] = v;
            }
        }
        Interleaved {
            values: packed,
            out,
            inp,
        }
    }

    /// [`QuantActs::times`] into `y` (`rows × out`, rows = `xs.len()`): the same exact integer
    /// sums and the same float operations in the same order, so the same bits. Tiles of up to
    /// four activation rows × four blocks (64 outputs) keep sixteen accumulators in registers;
    /// a block's weights are read once per four rows.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI ([`Interleaved::available`]); `x` holds
    /// `xs.len() × inp` values, `scales` and `bias` `out` each, `y` `xs.len() × out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn times(
        &self,
        x: &[i16],
        xs: &[f32],
        scales: &[f32],
        bias: &[f32],
        y: &mut [f32],
    ) {
        let rows = xs.len();
        assert!(
            x.len() >= rows * self.inp
                && scales.len() >= self.out
                && bias.len() >= self.out
                && y.len() >= rows * self.out,
            "interleaved product: operand lengths"
        );
        let blocks = self.out.div_ceil(LANES);
        let mut block = 0;
        while block < blocks {
            let take = (blocks - block).min(4);
            let mut row = 0;
            while row < rows {
                let n = (rows - row).min(4);
                let at = Tile {
                    row,
                    block,
                    x,
                    xs,
                    scales,
                    bias,
                };
                // SAFETY: the features are this function's; the tile lies inside the
                // operands (rows and blocks bounded above, lengths asserted).
                unsafe {
                    match (n, take) {
                        (4, 4) => self.tile::<4, 4>(&at, y),
                        (4, 3) => self.tile::<4, 3>(&at, y),
                        (4, 2) => self.tile::<4, 2>(&at, y),
                        (4, _) => self.tile::<4, 1>(&at, y),
                        (3, 4) => self.tile::<3, 4>(&at, y),
                        (3, 3) => self.tile::<3, 3>(&at, y),
                        (3, 2) => self.tile::<3, 2>(&at, y),
                        (3, _) => self.tile::<3, 1>(&at, y),
                        (2, 4) => self.tile::<2, 4>(&at, y),
                        (2, 3) => self.tile::<2, 3>(&at, y),
                        (2, 2) => self.tile::<2, 2>(&at, y),
                        (2, _) => self.tile::<2, 1>(&at, y),
                        (_, 4) => self.tile::<1, 4>(&at, y),
                        (_, 3) => self.tile::<1, 3>(&at, y),
                        (_, 2) => self.tile::<1, 2>(&at, y),
                        (_, _) => self.tile::<1, 1>(&at, y),
                    }
                }
                row += n;
            }
            block += take;
        }
    }

    /// Rows `at.row..at.row + R` × blocks `at.block..at.block + C`.
    ///
    /// # Safety
    /// As [`Interleaved::times`], with the tile inside the operands.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    // Index loops over the register arrays, as in the other kernels: each unrolls to straight
    // code, where iterator adaptors would put their closures outside the target features.
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn tile<const R: usize, const C: usize>(&self, at: &Tile<'_>, y: &mut [f32]) {
        use core::arch::x86_64::*;
        // Plain loops, no closures (see dot_rows_x4_avx2).
        let (inp, out) = (self.inp, self.out);
        let pairs = inp.div_ceil(2);
        let mut acc = [[_mm512_setzero_si512(); C]; R];
        let mut w = [_mm512_setzero_si512(); C];
        let mut x = [core::ptr::null::<i16>(); R];
        for r in 0..R {
            x[r] = at.x[(at.row + r) * inp..].as_ptr();
        }
        let base = self.values.as_ptr();
        for p in 0..inp / 2 {
            for c in 0..C {
                // SAFETY: block at.block + c < blocks and p < pairs: the 32 values at this
                // offset lie inside `values`; loadu has no alignment requirement.
                w[c] = unsafe {
                    _mm512_loadu_si512(
                        base.add(((at.block + c) * pairs + p) * 2 * LANES) as *const __m512i
                    )
                };
            }
            for r in 0..R {
                // SAFETY: 2p + 1 < inp: both values of the pair lie inside row r.
                let pair = unsafe { (x[r].add(2 * p) as *const i32).read_unaligned() };
                let xv = _mm512_set1_epi32(pair);
                for c in 0..C {
                    acc[r][c] = _mm512_dpwssd_epi32(acc[r][c], xv, w[c]);
                }
            }
        }
        if inp % 2 == 1 {
            // The last column alone, its pair's partner a zero.
            let p = pairs - 1;
            for c in 0..C {
                // SAFETY: as in the loop above.
                w[c] = unsafe {
                    _mm512_loadu_si512(
                        base.add(((at.block + c) * pairs + p) * 2 * LANES) as *const __m512i
                    )
                };
            }
            for r in 0..R {
                // SAFETY: inp - 1 is the row's last column.
                let last = unsafe { *x[r].add(inp - 1) };
                let xv = _mm512_set1_epi32(i32::from(last as u16));
                for c in 0..C {
                    acc[r][c] = _mm512_dpwssd_epi32(acc[r][c], xv, w[c]);
                }
            }
        }
        for c in 0..C {
            let o = (at.block + c) * LANES;
            let n = (out - o).min(LANES);
            let mask: __mmask16 = ((1u32 << n) - 1) as __mmask16;
            // SAFETY: masked loads and stores touch only the n outputs from o, all < out.
            let (scale, bias) = unsafe {
                (
                    _mm512_maskz_loadu_ps(mask, at.scales.as_ptr().add(o)),
                    _mm512_maskz_loadu_ps(mask, at.bias.as_ptr().add(o)),
                )
            };
            for r in 0..R {
                // dot as f32 × (row scale × weight scale) + bias, as QuantActs::times: two
                // roundings each, no fused multiply-add.
                let both = _mm512_mul_ps(_mm512_set1_ps(at.xs[at.row + r]), scale);
                let v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][c]), both), bias);
                // SAFETY: as above; row at.row + r < rows.
                unsafe {
                    _mm512_mask_storeu_ps(y.as_mut_ptr().add((at.row + r) * out + o), mask, v)
                };
            }
        }
    }
}

/// Where one tile of [`Interleaved::times`] starts, and the operands it reads.
pub(super) struct Tile<'a> {
    pub(super) row: usize,
    pub(super) block: usize,
    pub(super) x: &'a [i16],
    pub(super) xs: &'a [f32],
    pub(super) scales: &'a [f32],
    pub(super) bias: &'a [f32],
}

/// The plain loop compiled with AVX2 (sign-extend, multiply-add 16 lanes at a time).
#[target_feature(enable = "avx2")]
pub(super) fn i8_row_dots_avx2(query: &[i16], values: &[i8], dots: &mut [i32]) {
    i8_row_dots_plain(query, values, dots);
}

#[target_feature(enable = "avx2")]
pub(super) fn nibble_dots_avx2(
    query: &[i16],
    rows: std::slice::ChunksExact<'_, u8>,
    bias: i32,
    dots: &mut [i32],
) {
    nibble_dots_plain(query, rows, bias, dots);
}

/// [`dot_rows_x4_plain`] with AVX2's `vpmaddwd` (sixteen products per instruction, exact in
/// `i32`).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot_rows_x4_avx2<const R: usize>(
    x: [&[i16]; R],
    w: [&[i16]; 4],
) -> [[i32; 4]; R] {
    use core::arch::x86_64::*;
    // Plain loops, no closures: a closure does not inherit this function's target features,
    // so each load in one would become a call.
    let mut n = usize::MAX;
    for row in x.iter().chain(&w) {
        n = n.min(row.len());
    }
    let chunks = n / 16;
    let mut acc = [[_mm256_setzero_si256(); 4]; R];
    let mut xv = [_mm256_setzero_si256(); R];
    for c in 0..chunks {
        let i = c * 16;
        for r in 0..R {
            // SAFETY: i + 16 <= n, the length of every slice, so each 32-byte load at i stays
            // inside its slice; loadu has no alignment requirement.
            xv[r] = unsafe { _mm256_loadu_si256(x[r].as_ptr().add(i) as *const __m256i) };
        }
        for j in 0..4 {
            // SAFETY: as above.
            let wv = unsafe { _mm256_loadu_si256(w[j].as_ptr().add(i) as *const __m256i) };
            for r in 0..R {
                acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(xv[r], wv));
            }
        }
    }
    let mut out = [[0i32; 4]; R];
    for r in 0..R {
        for j in 0..4 {
            let mut lanes = [0i32; 8];
            // SAFETY: lanes holds exactly 32 bytes.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc[r][j]) };
            let mut sum = 0i32;
            for lane in lanes {
                sum += lane;
            }
            out[r][j] = sum + dot_i16(&x[r][chunks * 16..n], &w[j][chunks * 16..n]);
        }
    }
    out
}

/// [`dot_rows_x4_plain`] with AVX-512 VNNI's `vpdpwssd` (thirty-two products and their
/// accumulation in one instruction, exact in `i32` without saturation).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn dot_rows_x4_vnni<const R: usize>(
    x: [&[i16]; R],
    w: [&[i16]; 4],
) -> [[i32; 4]; R] {
    use core::arch::x86_64::*;
    // Plain loops, no closures (see dot_rows_x4_avx2).
    let mut n = usize::MAX;
    for row in x.iter().chain(&w) {
        n = n.min(row.len());
    }
    let chunks = n / 32;
    let mut acc = [[_mm512_setzero_si512(); 4]; R];
    let mut xv = [_mm512_setzero_si512(); R];
    for c in 0..chunks {
        let i = c * 32;
        for r in 0..R {
            // SAFETY: i + 32 <= n, the length of every slice, so each 64-byte load at i stays
            // inside its slice; loadu has no alignment requirement.
            xv[r] = unsafe { _mm512_loadu_si512(x[r].as_ptr().add(i) as *const __m512i) };
        }
        for j in 0..4 {
            // SAFETY: as above.
            let wv = unsafe { _mm512_loadu_si512(w[j].as_ptr().add(i) as *const __m512i) };
            for r in 0..R {
                acc[r][j] = _mm512_dpwssd_epi32(acc[r][j], xv[r], wv);
            }
        }
    }
    let mut out = [[0i32; 4]; R];
    for r in 0..R {
        // The four accumulators' lane sums at once: halve each to 128 bits, then two rounds of
        // pairwise horizontal sums give [Σ0, Σ1, Σ2, Σ3].
        let quarter = acc[r].map(|a| {
            let half =
                _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64::<1>(a));
            _mm_add_epi32(
                _mm256_castsi256_si128(half),
                _mm256_extracti128_si256::<1>(half),
            )
        });
        let sums = _mm_hadd_epi32(
            _mm_hadd_epi32(quarter[0], quarter[1]),
            _mm_hadd_epi32(quarter[2], quarter[3]),
        );
        let mut lanes = [0i32; 4];
        // SAFETY: lanes holds exactly 16 bytes.
        unsafe { _mm_storeu_si128(lanes.as_mut_ptr() as *mut __m128i, sums) };
        for j in 0..4 {
            out[r][j] = lanes[j] + dot_i16(&x[r][chunks * 32..n], &w[j][chunks * 32..n]);
        }
    }
    out
}
