//! Numeric kernels shared by the model and scoring: the f32 dot product (vectorised natively,
//! `simd128` in wasm), the exact integer dot products of a query with int8 memory rows, and
//! the product of a few activation rows with a weight matrix, which
//! the forward pass of a short input (a click's new tokens, a beam step) uses instead of a
//! general matrix product: with a handful of rows, packing the weights for a blocked product
//! costs more than the product itself. Natively the int8 product has an AVX-512 VNNI path and
//! the element-wise kernels an AVX-512 build (`wide!`), chosen at run time; every path gives
//! the same bits as the plain and wasm ones.

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

/// Dot product with wasm `simd128` (two f32x4 accumulators: the native loop's eight).
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
    let mut sum = eight_lanes_sum(acc0, acc1);
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
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn eight_lanes_sum(a0: core::arch::wasm32::v128, a1: core::arch::wasm32::v128) -> f32 {
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
    /// The same integers interleaved for AVX-512 VNNI ([`Interleaved`]), when the CPU has it.
    #[cfg(target_arch = "x86_64")]
    interleaved: Option<Interleaved>,
    /// With relaxed SIMD, the whole blocks of four rows as bytes ([`relaxed::Bytes`]);
    /// `values` then keeps only the rows past the last block.
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    bytes: relaxed::Bytes,
}

/// Largest weight integer: symmetric int8.
const WEIGHT_LEVELS: f32 = 127.0;

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
    fn block_dots<const R: usize>(&self, o: usize, x: [&[i16]; R]) -> [[i32; 4]; R] {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return dot_rows_quad(x, &self.values[o * self.inp..(o + 4) * self.inp]);
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        dot_rows_x4(x, [0, 1, 2, 3].map(|j| self.row(o + j)))
    }

    /// The same with relaxed SIMD, from the block's [`relaxed::Bytes`] and the activation
    /// rows' [`relaxed::unsigned`] bytes.
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    #[inline(always)]
    fn block_dots<const R: usize>(&self, o: usize, x: [&[u8]; R]) -> [[i32; 4]; R] {
        self.bytes.block_dots(o / 4, x)
    }

    /// Row `o`: any row natively; in wasm a row past the last whole block of four, which
    /// [`quads`] leaves in place (and relaxed SIMD's layout keeps alone in `values`).
    fn row(&self, o: usize) -> &[i16] {
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
fn quantize(v: &[f32], levels: f32, out: &mut [i16]) -> f32 {
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

/// `v` rounded to the nearest integer, ties to even, for |v| ≤ 2²²: adding 1.5 · 2²³ leaves
/// no fraction bits, so the float addition itself rounds (IEEE default mode), and the integer
/// is the sum's low mantissa bits. The same value as `f32::round_ties_even`, without the
/// library call it becomes on x86-64's baseline (no SSE4.1) or a float-to-int conversion.
#[inline(always)]
fn rounded_integer(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// Largest activation integer: 63, so that `x + 64` fits 7 bits unsigned, the operand width of
/// relaxed SIMD's byte dot product (`relaxed`). Every build quantizes activations to these
/// levels, so every kernel sums the same integers and every build gives the same bits.
const ACTIVATION_LEVELS: usize = 63;

/// Activation levels for input width `inp`: [`ACTIVATION_LEVELS`], or fewer where a whole
/// row's sum of `activation × weight` products (each at most `levels × 127`) would not fit an
/// `i32` (so every kernel sums exactly, in any order).
fn activation_levels(inp: usize) -> f32 {
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
    values: Vec<i16>,
    scales: Vec<f32>,
    inp: usize,
    /// With relaxed SIMD, the integers plus 64, as bytes ([`relaxed::unsigned`]).
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    bytes: Vec<u8>,
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
fn scale4(dots: [i32; 4], x_scale: f32, scales: &[f32], bias: &[f32], dst: &mut [f32]) {
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

/// Outputs per 512-bit accumulator of [`Interleaved`]'s product: sixteen `i32` lanes.
#[cfg(target_arch = "x86_64")]
const LANES: usize = 16;

/// A weight's integers laid out for AVX-512 VNNI's `vpdpwssd` without horizontal sums: per
/// block of sixteen output rows and per pair of input columns `(2p, 2p + 1)`, the block's
/// sixteen pairs side by side (one 512-bit load). One activation pair broadcast to all lanes
/// then adds its products to sixteen outputs at once, each lane summing its own output. Blocks
/// past `out` and a last column past an odd `inp` are zeros, which add nothing.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone)]
struct Interleaved {
    values: Vec<i16>,
    out: usize,
    inp: usize,
}

#[cfg(target_arch = "x86_64")]
impl Interleaved {
    /// Whether this CPU runs [`Interleaved::times`].
    fn available() -> bool {
        std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512bw")
    }

    /// Interleaves row-major `values` (`out × inp`).
    fn new(values: &[i16], inp: usize) -> Self {
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
    unsafe fn times(&self, x: &[i16], xs: &[f32], scales: &[f32], bias: &[f32], y: &mut [f32]) {
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
    unsafe fn tile<const R: usize, const C: usize>(&self, at: &Tile<'_>, y: &mut [f32]) {
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
#[cfg(target_arch = "x86_64")]
struct Tile<'a> {
    row: usize,
    block: usize,
    x: &'a [i16],
    xs: &'a [f32],
    scales: &'a [f32],
    bias: &'a [f32],
}

/// [`quantize`] of each row of `inp` values of `x` into `out`; the rows' scales.
fn quantize_rows(x: &[f32], levels: f32, out: &mut [i16], inp: usize) -> Vec<f32> {
    wide!(quantize_rows_in(x: &[f32], levels: f32, out: &mut [i16], inp: usize) -> Vec<f32>)
}

#[inline(always)]
fn quantize_rows_in(x: &[f32], levels: f32, out: &mut [i16], inp: usize) -> Vec<f32> {
    x.chunks_exact(inp)
        .zip(out.chunks_exact_mut(inp))
        .map(|(row, q)| quantize(row, levels, q))
        .collect()
}

/// Exact integer dot product of two `i16` vectors (the caller bounds the sum to `i32`).
fn dot_i16(a: &[i16], b: &[i16]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
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

/// The plain loop compiled with AVX2 (sign-extend, multiply-add 16 lanes at a time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn i8_row_dots_avx2(query: &[i16], values: &[i8], dots: &mut [i32]) {
    i8_row_dots_plain(query, values, dots);
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn i8_row_dots_plain(query: &[i16], values: &[i8], dots: &mut [i32]) {
    for (d, row) in dots.iter_mut().zip(values.chunks_exact(query.len().max(1))) {
        *d = dot_i16_i8(query, row);
    }
}

/// Integer dot product of an i16 and an i8 slice; integer sums are associative, so the
/// compiler vectorises it freely.
#[inline(always)]
fn dot_i16_i8(query: &[i16], row: &[i8]) -> i32 {
    query
        .iter()
        .zip(row)
        .map(|(&q, &v)| i32::from(q) * i32::from(v))
        .sum()
}

/// [`i8_row_dots`] with wasm `simd128`: each row's 16 i8 values at a time widened to i16 and
/// multiplied by the query with `i32x4.dot_i16x8_s`. (Four rows sharing each load of the
/// query measured no faster in V8: `node scripts/bench-ab.mjs --mode density`.)
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn i8_row_dots_simd(query: &[i16], values: &[i8], dots: &mut [i32]) {
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

/// int4 rows (integers in [−8, 7]) held two per byte in the layout their dot products read:
/// each row is `dim.div_ceil(32)` groups of sixteen bytes, byte k of group g holding value
/// 32g + k in its low four bits and value 32g + 16 + k in its high four, each plus 8 (so
/// 0…15); values past `dim` are 0. Half the bytes of int8 rows, and half the memory traffic of
/// a query's scan over them, which is what bounds that scan in wasm
/// (`node scripts/bench-ab.mjs --mode density`).
#[derive(Debug, Clone, PartialEq)]
pub struct Nibbles {
    bytes: Vec<u8>,
    dim: usize,
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn nibble_dots_avx2(
    query: &[i16],
    rows: std::slice::ChunksExact<'_, u8>,
    bias: i32,
    dots: &mut [i32],
) {
    nibble_dots_plain(query, rows, bias, dots);
}

/// The unsigned nibbles (value + 8) of a row's groups times the query, summed exactly.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn nibble_dots_plain(
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

/// Value `i` (0…31) of a group of sixteen [`Nibbles`] bytes, unsigned (value + 8): the low
/// halves hold values 0–15, the high halves 16–31.
#[inline(always)]
fn nibble(packed: &[u8], i: usize) -> u8 {
    let byte = packed[i % 16];
    if i < 16 {
        byte & 0x0f
    } else {
        byte >> 4
    }
}

/// The unsigned nibbles of a row's last, partial group times the query's last values.
#[inline(always)]
fn nibble_tail(query: &[i16], packed: &[u8]) -> i32 {
    query
        .iter()
        .enumerate()
        .map(|(i, &q)| i32::from(nibble(packed, i)) * i32::from(q))
        .sum()
}

/// [`Nibbles::dots`] with wasm `simd128`: a group's sixteen bytes split into low and high
/// nibbles (and, shift), each widened to i16 and multiplied by the query with
/// `i32x4.dot_i16x8_s`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn nibble_dots_simd(
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

/// The dot products of `R` activation rows with four weight rows (all of one length), as
/// `[row][weight]`. Natively the same sums through [`dot_i16`] (vectorised by the compiler; with
/// AVX-512 VNNI or AVX2 when the CPU has them).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot_rows_x4<const R: usize>(x: [&[i16]; R], w: [&[i16]; 4]) -> [[i32; 4]; R] {
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
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot_rows_x4_vnni<const R: usize>(x: [&[i16]; R], w: [&[i16]; 4]) -> [[i32; 4]; R] {
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

/// A weight's integers as wasm's product reads them: each block of four rows (`out × inp`,
/// row-major in `values`) with their chunks of eight side by side — chunk c of rows 0–3, then
/// chunk c + 1, … — then the four rows' remainders past the last whole chunk; rows past the
/// last whole block stay as they are, in place. The product then loads four weight vectors
/// from one pointer: fewer instructions per step, which is what bounds it in V8
/// (`scripts/bench-ab.mjs`: a click's encoding 1.47 → 1.24 ms, a fresh history's 8.3 → 8.1).
#[cfg(all(
    target_arch = "wasm32",
    target_feature = "simd128",
    not(target_feature = "relaxed-simd")
))]
fn quads(values: &[i16], inp: usize) -> Vec<i16> {
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
fn dot_rows_quad<const R: usize>(x: [&[i16]; R], block: &[i16]) -> [[i32; 4]; R] {
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

/// The int8 product with relaxed SIMD's `i32x4.relaxed_dot_i8x16_i7x16_add` (sixteen byte
/// products and their accumulation in one instruction; one AVX-VNNI `vpdpbusd` where the CPU
/// has it, `scripts/probe-relaxed-simd.sh`). Its second operand must be 7 bits unsigned, so
/// each activation `x` (at most [`ACTIVATION_LEVELS`] = 63 in magnitude) is read as `x + 64`:
/// `Σ w·x = Σ w·(x + 64) − 64·Σ w`, an exact integer, so the sums (and the outputs' bits) equal
/// every other kernel's. No pair of byte products (at most 2 · 127²) reaches the 16-bit
/// saturation of the instruction's lowering on CPUs without VNNI.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
mod relaxed {
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
}

/// The sum of an `i32x4`'s four lanes (the memory rows' dot products).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn lane_sum(v: core::arch::wasm32::v128) -> i32 {
    use core::arch::wasm32::*;
    i32x4_extract_lane::<0>(v)
        + i32x4_extract_lane::<1>(v)
        + i32x4_extract_lane::<2>(v)
        + i32x4_extract_lane::<3>(v)
}

/// The lane sums of four `i32x4` accumulators, `[Σa, Σb, Σc, Σd]`, with shuffles (two rounds
/// of pairwise sums) rather than sixteen lane extractions.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn sums4([a, b, c, d]: [core::arch::wasm32::v128; 4]) -> [i32; 4] {
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
fn silu_mul_in(gate: &mut [f32], up: &[f32]) {
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
fn rms_norm_rows_in(x: &mut [f32], weight: &[f32], eps: f32) {
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
fn lanes8(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
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
fn attend_in(
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
