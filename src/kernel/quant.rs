//! Quantized layouts and their exact integer products: a linear layer's weight as int8 rows
//! (`QuantRows`), activation rows quantized once per input (`QuantActs`), the int8 product
//! (`linear_q`), and memory rows as int8 or int4 nibbles (`i8_row_dots`, `Nibbles`).

#[allow(unused_imports)]
use super::*;

/// A linear layer's weight quantized for inference: each output row as integers in
/// `[-127, 127]` (kept as `i16`, the operand width of the integer dot product) times one f32
/// scale per row (its largest magnitude / 127). Half the bytes of the f32 weight; the product
/// with activations ([`linear_q`]) is an exact integer sum, so it gives the same bits natively
/// and in wasm.
#[derive(Debug, Clone)]
pub struct QuantRows {
    pub(super) values: Vec<i16>,
    pub(super) scales: Vec<f32>,
    pub(super) inp: usize,
    /// The same integers interleaved for AVX-512 VNNI ([`Interleaved`]), when the CPU has it.
    #[cfg(target_arch = "x86_64")]
    pub(super) interleaved: Option<Interleaved>,
    /// With relaxed SIMD, the whole blocks of four rows as bytes ([`relaxed::Bytes`]);
    /// `values` then keeps only the rows past the last block.
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    pub(super) bytes: relaxed::Bytes,
}

/// Largest weight integer: symmetric int8.
pub(super) const WEIGHT_LEVELS: f32 = 127.0;

impl QuantRows {
    /// Quantizes `w` (`out × inp`, row-major): per row, `round(w / scale)` with
    /// `scale = max |w| / 127` (an all-zero row keeps scale 0).
    pub fn new(w: &[f32], inp: usize) -> Self {
        let inp = inp.max(1);
        let mut values = vec![0; w.len() / inp * inp];
        let mut scales = Vec::with_capacity(w.len() / inp);
        for (row, q) in w.chunks_exact(inp).zip(values.chunks_exact_mut(inp)) {
            scales.push(quantize(row, WEIGHT_LEVELS, q));
        }
        Self::from_parts(values, scales, inp)
    }

    /// Rows already quantized (an int8 weights file's): `values` (`out × inp`, each in
    /// `[-127, 127]`) and one scale per row.
    pub fn from_parts(values: Vec<i16>, scales: Vec<f32>, inp: usize) -> Self {
        let inp = inp.max(1);
        debug_assert_eq!(values.len(), scales.len() * inp, "one scale per row");
        debug_assert!(values.iter().all(|v| v.abs() <= WEIGHT_LEVELS as i16));
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        let (bytes, values) = relaxed::Bytes::split(&values, inp);
        QuantRows {
            #[cfg(target_arch = "x86_64")]
            interleaved: Interleaved::available().then(|| Interleaved::new(&values, inp)),
            #[cfg(all(
                target_arch = "wasm32",
                target_feature = "simd128",
                not(target_feature = "relaxed-simd")
            ))]
            values: quads(&values, inp),
            #[cfg(not(all(
                target_arch = "wasm32",
                target_feature = "simd128",
                not(target_feature = "relaxed-simd")
            )))]
            values,
            scales,
            inp,
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            bytes,
        }
    }

    /// The integers, row-major (`out × inp`). In wasm they are held as [`quads`] (or, with
    /// relaxed SIMD, as [`relaxed::Bytes`]) and put back in row order here.
    pub fn row_major(&self) -> Vec<i16> {
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        {
            let mut rows = self.bytes.row_major();
            rows.extend_from_slice(&self.values);
            rows
        }
        #[cfg(all(
            target_arch = "wasm32",
            target_feature = "simd128",
            not(target_feature = "relaxed-simd")
        ))]
        {
            let (inp, chunks) = (self.inp, self.inp / 8);
            let mut rows = self.values.clone();
            for (block, packed) in rows
                .chunks_exact_mut(4 * inp)
                .zip(self.values.chunks_exact(4 * inp))
            {
                for c in 0..chunks {
                    for j in 0..4 {
                        block[j * inp + c * 8..j * inp + c * 8 + 8]
                            .copy_from_slice(&packed[(c * 4 + j) * 8..(c * 4 + j + 1) * 8]);
                    }
                }
                let tail = inp - chunks * 8;
                for j in 0..4 {
                    block[j * inp + chunks * 8..(j + 1) * inp].copy_from_slice(
                        &packed[chunks * 32 + j * tail..chunks * 32 + (j + 1) * tail],
                    );
                }
            }
            rows
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        self.values.clone()
    }

    /// One scale per row.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Output rows.
    pub fn out(&self) -> usize {
        self.scales.len()
    }

    /// Input width.
    pub fn inp(&self) -> usize {
        self.inp
    }

    /// The dot products of `R` activation rows with weight rows `o..o + 4` (a whole block), as
    /// `[row][weight]`: in wasm from the block's [`quads`], natively from the four rows.
    #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
    #[inline(always)]
    pub(super) fn block_dots<const R: usize>(&self, o: usize, x: [&[i16]; R]) -> [[i32; 4]; R] {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return dot_rows_quad(x, &self.values[o * self.inp..(o + 4) * self.inp]);
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        dot_rows_x4(x, [0, 1, 2, 3].map(|j| self.row(o + j)))
    }

    /// The same with relaxed SIMD, from the block's [`relaxed::Bytes`] and the activation
    /// rows' [`relaxed::unsigned`] bytes.
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    #[inline(always)]
    pub(super) fn block_dots<const R: usize>(&self, o: usize, x: [&[u8]; R]) -> [[i32; 4]; R] {
        self.bytes.block_dots(o / 4, x)
    }

    /// Row `o`: any row natively; in wasm a row past the last whole block of four, which
    /// [`quads`] leaves in place (and relaxed SIMD's layout keeps alone in `values`).
    pub(super) fn row(&self, o: usize) -> &[i16] {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        debug_assert!(o >= self.out() / 4 * 4, "a row inside a block of quads");
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        let o = o - self.out() / 4 * 4;
        &self.values[o * self.inp..(o + 1) * self.inp]
    }
}

/// Writes `round(v / scale)` into `out` and returns `scale = max |v| / levels` (0 for an
/// all-zero `v`, whose integers are then 0; a NaN becomes 0). Branch-free per element, so it
/// vectorises: in wasm `f32::max` and `f32::round_ties_even` would be calls.
pub(super) fn quantize(v: &[f32], levels: f32, out: &mut [i16]) -> f32 {
    let max = lanes8(v, 0.0, |m, x| larger(m, x.abs()));
    let scale = if max > 0.0 && max.is_finite() {
        max / levels
    } else {
        0.0
    };
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (q, &x) in out.iter_mut().zip(v) {
        let t = (x * inv).clamp(-levels, levels);
        let t = if t.is_nan() { 0.0 } else { t };
        *q = rounded_integer(t) as i16;
    }
    scale
}

/// `v` rounded to the nearest integer, ties to even, for |v| ≤ 2²²: adding 1.5 · 2²³ leaves
/// no fraction bits, so the float addition itself rounds (IEEE default mode), and the integer
/// is the sum's low mantissa bits. The same value as `f32::round_ties_even`, without the
/// library call it becomes on x86-64's baseline (no SSE4.1) or a float-to-int conversion.
#[inline(always)]
pub(super) fn rounded_integer(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// Largest activation integer: 63, so that `x + 64` fits 7 bits unsigned, the operand width of
/// relaxed SIMD's byte dot product (`relaxed`). Every build quantizes activations to these
/// levels, so every kernel sums the same integers and every build gives the same bits.
pub(super) const ACTIVATION_LEVELS: usize = 63;

/// Activation levels for input width `inp`: [`ACTIVATION_LEVELS`], or fewer where a whole
/// row's sum of `activation × weight` products (each at most `levels × 127`) would not fit an
/// `i32` (so every kernel sums exactly, in any order).
pub(super) fn activation_levels(inp: usize) -> f32 {
    let bound = i32::MAX as usize / (WEIGHT_LEVELS as usize * inp.max(1));
    bound.clamp(1, ACTIVATION_LEVELS) as f32
}

/// `x · wᵀ (+ bias)` with a quantized weight: [`QuantActs::new`] then [`QuantActs::times`].
/// Returns `rows × out`.
pub fn linear_q(x: &[f32], w: &QuantRows, bias: Option<&[f32]>) -> Vec<f32> {
    QuantActs::new(x, w.inp).times(w, bias)
}

/// Activation rows quantized for [`QuantRows`] products: each row to integers (scale = row max
/// / [`activation_levels`], 63 levels for the model's widths). Quantized once, they serve every
/// product with the same input (a layer's query, key and value projections; the MLP's gate
/// and up projections).
#[derive(Debug, Clone)]
pub struct QuantActs {
    pub(super) values: Vec<i16>,
    pub(super) scales: Vec<f32>,
    pub(super) inp: usize,
    /// With relaxed SIMD, the integers plus 64, as bytes ([`relaxed::unsigned`]).
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    pub(super) bytes: Vec<u8>,
}

impl QuantActs {
    /// Quantizes `x` (`rows × inp`, row-major).
    pub fn new(x: &[f32], inp: usize) -> Self {
        let inp = inp.max(1);
        let levels = activation_levels(inp);
        let mut values = vec![0i16; x.len() / inp * inp];
        let scales = quantize_rows(x, levels, &mut values, inp);
        QuantActs {
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            bytes: relaxed::unsigned(&values),
            values,
            scales,
            inp,
        }
    }

    /// `x · wᵀ (+ bias)` for a weight of this input width: each output is the exact integer
    /// dot product times both scales. With AVX-512 VNNI through the weight's [`Interleaved`]
    /// copy; otherwise rows are taken two at a time against four weight rows (each load used
    /// for several products). Every path gives the same bits. Returns `rows × out`.
    pub fn times(&self, w: &QuantRows, bias: Option<&[f32]>) -> Vec<f32> {
        let inp = self.inp;
        debug_assert_eq!(inp, w.inp, "activation and weight widths");
        let out = w.out();
        let rows = self.scales.len();
        let xs = &self.scales;
        // No bias adds 0, as before there was a zero bias: the same bits either way.
        let zeros;
        let bias = match bias {
            Some(b) => b,
            None => {
                zeros = vec![0f32; out];
                &zeros
            }
        };
        let mut y = vec![0f32; rows * out];
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = &w.interleaved {
            // SAFETY: `interleaved` exists only when the CPU has AVX-512 VNNI and BW
            // (`Interleaved::available`); the widths were checked above.
            unsafe { packed.times(&self.values, xs, &w.scales, bias, &mut y) };
            return y;
        }
        // Four outputs of row `r` from `o` at once (fixed-length slices: one vector each).
        let mut put4 = |r: usize, o: usize, dots: [i32; 4]| {
            let (scales, bias) = (&w.scales[o..o + 4], &bias[o..o + 4]);
            let dst = &mut y[r * out + o..r * out + o + 4];
            scale4(dots, xs[r], scales, bias, dst);
        };
        let x_row = |r: usize| &self.values[r * inp..(r + 1) * inp];
        // What the blocks' product reads of row `r`: with relaxed SIMD its unsigned bytes.
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        let block_row = |r: usize| &self.bytes[r * inp..(r + 1) * inp];
        #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
        let block_row = x_row;
        let blocks = out / 4;
        for blk in 0..blocks {
            let o = blk * 4;
            let mut r = 0;
            while r + 2 <= rows {
                let [d0, d1] = w.block_dots(o, [block_row(r), block_row(r + 1)]);
                put4(r, o, d0);
                put4(r + 1, o, d1);
                r += 2;
            }
            if r < rows {
                let [d] = w.block_dots(o, [block_row(r)]);
                put4(r, o, d);
            }
        }
        for o in blocks * 4..out {
            for r in 0..rows {
                let dot = dot_i16(x_row(r), w.row(o));
                y[r * out + o] = dot as f32 * (xs[r] * w.scales[o]) + bias[o];
            }
        }
        y
    }
}

/// `dst[j] = dots[j] · (x_scale · scales[j]) + bias[j]` for four outputs: in wasm one
/// `simd128` vector per operation (the same operations lane by lane, so the same bits as the
/// plain loop, which the compiler vectorises natively).
#[inline(always)]
pub(super) fn scale4(dots: [i32; 4], x_scale: f32, scales: &[f32], bias: &[f32], dst: &mut [f32]) {
    let (scales, bias, dst) = (&scales[..4], &bias[..4], &mut dst[..4]);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use core::arch::wasm32::*;
        // SAFETY: the three slices are four f32 long (sliced just above); v128_load and
        // v128_store have no alignment requirement.
        unsafe {
            let scale = f32x4_mul(
                f32x4_splat(x_scale),
                v128_load(scales.as_ptr() as *const v128),
            );
            let dots = f32x4_convert_i32x4(i32x4(dots[0], dots[1], dots[2], dots[3]));
            let y = f32x4_add(
                f32x4_mul(dots, scale),
                v128_load(bias.as_ptr() as *const v128),
            );
            v128_store(dst.as_mut_ptr() as *mut v128, y);
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    for j in 0..4 {
        dst[j] = dots[j] as f32 * (x_scale * scales[j]) + bias[j];
    }
}

/// [`quantize`] of each row of `inp` values of `x` into `out`; the rows' scales.
pub(super) fn quantize_rows(x: &[f32], levels: f32, out: &mut [i16], inp: usize) -> Vec<f32> {
    wide!(quantize_rows_in(x: &[f32], levels: f32, out: &mut [i16], inp: usize) -> Vec<f32>)
}

#[inline(always)]
pub(super) fn quantize_rows_in(x: &[f32], levels: f32, out: &mut [i16], inp: usize) -> Vec<f32> {
    x.chunks_exact(inp)
        .zip(out.chunks_exact_mut(inp))
        .map(|(row, q)| quantize(row, levels, q))
        .collect()
}

/// `dots[r]` = `query` · row r of `values` (row-major, `query.len()` i8 values per row), exact
/// in `i32` for the i16 queries `score` prepares: the distances to int8 (and int4) memory rows.
/// Natively the plain loop (compiled with AVX2 when the CPU has it); in wasm explicit
/// `simd128`.
pub fn i8_row_dots(query: &[i16], values: &[i8], dots: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above), the only requirement of the call.
        unsafe { i8_row_dots_avx2(query, values, dots) };
        return;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        i8_row_dots_simd(query, values, dots);
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    i8_row_dots_plain(query, values, dots);
}

/// Integer dot product of an i16 and an i8 slice; integer sums are associative, so the
/// compiler vectorises it freely.
#[inline(always)]
pub(super) fn dot_i16_i8(query: &[i16], row: &[i8]) -> i32 {
    query
        .iter()
        .zip(row)
        .map(|(&q, &v)| i32::from(q) * i32::from(v))
        .sum()
}

/// int4 rows (integers in [−8, 7]) held two per byte in the layout their dot products read:
/// each row is `dim.div_ceil(32)` groups of sixteen bytes, byte k of group g holding value
/// 32g + k in its low four bits and value 32g + 16 + k in its high four, each plus 8 (so
/// 0…15); values past `dim` are 0. Half the bytes of int8 rows, and half the memory traffic of
/// a query's scan over them, which is what bounds that scan in wasm
/// (`node scripts/bench-ab.mjs --mode density`).
#[derive(Debug, Clone, PartialEq)]
pub struct Nibbles {
    pub(super) bytes: Vec<u8>,
    pub(super) dim: usize,
}

impl Nibbles {
    /// Bytes one row of `dim` values takes.
    pub fn row_bytes(dim: usize) -> usize {
        dim.div_ceil(32) * 16
    }

    /// No rows yet, room for `rows` rows of `dim` values.
    pub fn with_capacity(dim: usize, rows: usize) -> Self {
        Nibbles {
            bytes: Vec::with_capacity(rows * Self::row_bytes(dim)),
            dim,
        }
    }

    /// Packs row-major int8 rows of `dim` values; `None` when a value lies outside [−8, 7].
    pub fn pack(values: &[i8], dim: usize) -> Option<Self> {
        let mut packed = Self::with_capacity(dim, values.len() / dim.max(1));
        packed.push_rows(values)?;
        Some(packed)
    }

    /// Appends row-major rows of `dim` values; `None` (nothing appended) when a value lies
    /// outside [−8, 7].
    pub fn push_rows(&mut self, values: &[i8]) -> Option<()> {
        if values.iter().any(|v| !(-8..=7).contains(v)) {
            return None;
        }
        let dim = self.dim.max(1);
        for row in values.chunks_exact(dim) {
            for group in row.chunks(32) {
                let nibble = |i: usize| group.get(i).map_or(8, |&v| (v + 8) as u8);
                self.bytes
                    .extend((0..16).map(|k| nibble(k) | (nibble(16 + k) << 4)));
            }
        }
        Some(())
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.bytes.len() / Self::row_bytes(self.dim).max(1)
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `r`'s values into `out` (`dim` long).
    pub fn unpack_row(&self, r: usize, out: &mut [i8]) {
        let width = Self::row_bytes(self.dim);
        let bytes = &self.bytes[r * width..(r + 1) * width];
        for (group, packed) in out.chunks_mut(32).zip(bytes.chunks_exact(16)) {
            for (i, v) in group.iter_mut().enumerate() {
                *v = nibble(packed, i) as i8 - 8;
            }
        }
    }

    /// Rows `rows` as row-major int8 values.
    pub fn unpack_rows(&self, rows: std::ops::Range<usize>) -> Vec<i8> {
        let mut out = vec![0i8; rows.len() * self.dim];
        for (r, row) in rows.zip(out.chunks_exact_mut(self.dim.max(1))) {
            self.unpack_row(r, row);
        }
        out
    }

    /// `dots[r]` = `query` · row r, exact in `i32` for the queries `score` prepares (as
    /// [`i8_row_dots`] on the unpacked rows: `Σ (v + 8)·q − 8·Σq`). In wasm with `simd128`
    /// (a group's sixteen bytes in one load, split into low and high nibbles); natively the
    /// plain loop, compiled with AVX2 when the CPU has it.
    pub fn dots(&self, query: &[i16], dots: &mut [i32]) {
        assert_eq!(query.len(), self.dim, "query and row widths");
        let bias = 8 * query.iter().map(|&q| i32::from(q)).sum::<i32>();
        let width = Self::row_bytes(self.dim);
        let rows = self.bytes.chunks_exact(width.max(1));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above), the only requirement of the call.
            unsafe { nibble_dots_avx2(query, rows, bias, dots) };
            return;
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            nibble_dots_simd(query, rows, bias, dots);
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        nibble_dots_plain(query, rows, bias, dots);
    }
}

/// Value `i` (0…31) of a group of sixteen [`Nibbles`] bytes, unsigned (value + 8): the low
/// halves hold values 0–15, the high halves 16–31.
#[inline(always)]
pub(super) fn nibble(packed: &[u8], i: usize) -> u8 {
    let byte = packed[i % 16];
    if i < 16 {
        byte & 0x0f
    } else {
        byte >> 4
    }
}

/// The unsigned nibbles of a row's last, partial group times the query's last values.
#[inline(always)]
pub(super) fn nibble_tail(query: &[i16], packed: &[u8]) -> i32 {
    query
        .iter()
        .enumerate()
        .map(|(i, &q)| i32::from(nibble(packed, i)) * i32::from(q))
        .sum()
}
