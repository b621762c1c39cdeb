//! CPU scoring: squared L2 distances `‖h‖² − 2h·r + ‖r‖²` between a query and every row of an
//! item matrix (f32, f16, or int8 with a per-row scale), and a deterministic top-K.
//! The same code runs natively and in wasm32 (where `simd128` is used for the dot product).

use std::borrow::Cow;
use std::ops::Range;

use half::f16;

use crate::data::catalog::ItemIndex;
use crate::error::{Error, Result};
use crate::kernel::{dot, larger, Nibbles};

/// Rows converted to f32 at a time by whole-matrix passes ([`ItemMatrix::for_each_block`]):
/// large enough to amortize the call, small enough (0.75 MB at dim 192) to stay in cache.
pub const BLOCK_ROWS: usize = 1024;

/// Storage of an item matrix's rows.
#[derive(Debug, Clone, PartialEq)]
pub enum RowData {
    /// 32-bit floats, row-major.
    F32(Vec<f32>),
    /// 16-bit floats, row-major (half the bytes; converted per row when scoring).
    F16(Vec<f16>),
    /// int8 per row around a per-dimension offset: value = offset[d] + q · scale[row]
    /// (without an offset, symmetric around 0). Centring on the rows' mean spends the 8 bits
    /// on how rows differ, not on the large component they share.
    I8 {
        values: Vec<i8>,
        scales: Vec<f32>,
        offset: Option<Vec<f32>>,
    },
    /// int4 rows ([`DType::I4`]), like `I8` but with integers in [−8, 7] held two per byte
    /// ([`Nibbles`]): half the memory, and half the bytes a query's scan reads.
    I4 {
        values: Nibbles,
        scales: Vec<f32>,
        offset: Option<Vec<f32>>,
    },
}

impl RowData {
    /// The per-row scales of integer rows.
    pub fn scales(&self) -> Option<&[f32]> {
        match self {
            RowData::I8 { scales, .. } | RowData::I4 { scales, .. } => Some(scales),
            _ => None,
        }
    }

    /// The per-dimension offset of integer rows that have one.
    pub fn offset(&self) -> Option<&[f32]> {
        match self {
            RowData::I8 { offset, .. } | RowData::I4 { offset, .. } => offset.as_deref(),
            _ => None,
        }
    }

    /// The integers of rows `rows` (`dim` per row) of integer rows: borrowed for int8, unpacked
    /// for int4.
    pub fn integers(&self, rows: Range<usize>, dim: usize) -> Option<Cow<'_, [i8]>> {
        match self {
            RowData::I8 { values, .. } => {
                Some(Cow::Borrowed(&values[rows.start * dim..rows.end * dim]))
            }
            RowData::I4 { values, .. } => Some(Cow::Owned(values.unpack_rows(rows))),
            _ => None,
        }
    }
}

/// Element type of an item matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    I8,
    /// Integer rows on the 4-bit levels [−7, 7] (one scale per row, max / 7), two values
    /// per byte in memory ([`RowData::I4`]) and in a blob; int8 on the GPU.
    I4,
}

impl std::str::FromStr for DType {
    type Err = Error;
    /// `f32`, `f16`, `i8` (or `int8`), `i4` (or `int4`).
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            "i8" | "int8" => Ok(DType::I8),
            "i4" | "int4" => Ok(DType::I4),
            other => Err(Error::invalid(
                "dtype",
                format!("`{other}` (expected f32, f16, i8 or i4)"),
            )),
        }
    }
}

impl DType {
    /// Largest integer level of the integer types.
    fn levels(self) -> f32 {
        match self {
            DType::I4 => 7.0,
            _ => 127.0,
        }
    }
}

/// Rows of representation vectors (items, or memory states) with precomputed squared norms.
/// A row marked invalid (an item without any memory state) scores +∞ (ranked last).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemMatrix {
    dim: usize,
    rows: usize,
    data: RowData,
    norms: Vec<f32>,
    /// For int8 rows, `‖r − offset‖² = s²·Σv²` (what [`ItemMatrix::int8_distances`] adds);
    /// empty otherwise.
    centred_norms: Vec<f32>,
    valid: Vec<bool>,
}

impl ItemMatrix {
    /// Builds an f32 matrix from row-major values; `valid[i] = false` marks rows to rank last.
    pub fn from_f32(values: Vec<f32>, dim: usize, valid: Vec<bool>) -> Result<Self> {
        if dim == 0 || !values.len().is_multiple_of(dim) || values.len() / dim != valid.len() {
            return Err(Error::mismatch(
                "item matrix",
                format!("{} rows × {dim}", valid.len()),
                format!("{} values", values.len()),
            ));
        }
        let matrix = ItemMatrix {
            dim,
            rows: valid.len(),
            norms: Vec::new(),
            centred_norms: Vec::new(),
            data: RowData::F32(values),
            valid,
        };
        Ok(matrix.with_norms())
    }

    /// Builds a matrix from storage already in its element type (blob reading).
    pub fn from_data(data: RowData, dim: usize, valid: Vec<bool>) -> Result<Self> {
        let values = match &data {
            RowData::F32(v) => v.len(),
            RowData::F16(v) => v.len(),
            RowData::I8 { values, .. } => values.len(),
            RowData::I4 { values, .. } if values.dim() != dim => {
                return Err(Error::mismatch("int4 row width", dim, values.dim()));
            }
            RowData::I4 { values, .. } => values.rows() * dim,
        };
        if let Some(scales) = data.scales().filter(|s| s.len() != valid.len()) {
            return Err(Error::mismatch("int8 scales", valid.len(), scales.len()));
        }
        if let Some(offset) = data.offset().filter(|o| o.len() != dim) {
            return Err(Error::mismatch("int8 offset", dim, offset.len()));
        }
        if dim == 0 || values != dim * valid.len() {
            return Err(Error::mismatch(
                "item matrix",
                format!("{} rows × {dim}", valid.len()),
                format!("{values} values"),
            ));
        }
        Ok(ItemMatrix {
            dim,
            rows: valid.len(),
            norms: Vec::new(),
            centred_norms: Vec::new(),
            data,
            valid,
        }
        .with_norms())
    }

    fn with_norms(mut self) -> Self {
        let dim = self.dim;
        let mut norms = Vec::with_capacity(self.rows);
        let mut centred = Vec::new();
        let scales = self.data.scales();
        self.for_each_block(|rows, block| {
            norms.extend(block.chunks_exact(dim).map(|row| dot(row, row)));
            if let Some(scales) = scales {
                let values = self.data.integers(rows.clone(), dim);
                let values = values.expect("integer rows have integers");
                centred.extend(values.chunks_exact(dim).zip(&scales[rows]).map(|(v, s)| {
                    s * s * v.iter().map(|&x| x as i32 * x as i32).sum::<i32>() as f32
                }));
            }
        });
        self.norms = norms;
        self.centred_norms = centred;
        self
    }

    /// Calls `f` with every block of up to [`BLOCK_ROWS`] consecutive rows, in order, as f32
    /// (row-major; borrowed for f32 storage, converted a block at a time otherwise): whole-
    /// matrix passes convert once per block, and int4 rows are never all unpacked at once.
    pub fn for_each_block(&self, mut f: impl FnMut(Range<usize>, &[f32])) {
        let mut scratch = match self.data {
            RowData::F32(_) => Vec::new(),
            _ => vec![0f32; BLOCK_ROWS.min(self.rows) * self.dim],
        };
        for start in (0..self.rows).step_by(BLOCK_ROWS) {
            let rows = start..(start + BLOCK_ROWS).min(self.rows);
            f(rows.clone(), self.rows_into(rows, &mut scratch));
        }
    }

    /// Converts to another element type (the ranking changes only by rounding); int8 is
    /// centred on the valid rows' per-dimension mean.
    pub fn to_dtype(&self, dtype: DType) -> Self {
        let values = self.to_f32_values();
        let offset = matches!(dtype, DType::I8 | DType::I4)
            .then(|| self.valid_mean(&values))
            .flatten();
        self.stored_as(values, dtype, offset)
    }

    /// Converts to the element type of `layout`, around its int8 offset if it has one (rows
    /// stored next to `layout`'s, such as a blob's cold-start vectors, share its layout).
    pub fn to_layout_of(&self, layout: &ItemMatrix) -> Self {
        let offset = layout.data().offset().map(<[f32]>::to_vec);
        self.stored_as(self.to_f32_values(), layout.dtype(), offset)
    }

    fn stored_as(&self, values: Vec<f32>, dtype: DType, offset: Option<Vec<f32>>) -> Self {
        let data = match dtype {
            DType::F32 => RowData::F32(values),
            DType::F16 => RowData::F16(values.iter().map(|&v| f16::from_f32(v)).collect()),
            DType::I8 | DType::I4 => {
                let levels = dtype.levels();
                let centre = offset.clone().unwrap_or_else(|| vec![0.0; self.dim]);
                let mut scales = Vec::with_capacity(self.rows);
                let mut q = Vec::with_capacity(values.len());
                for row in values.chunks(self.dim) {
                    let max = row
                        .iter()
                        .zip(&centre)
                        .fold(0f32, |m, (v, c)| m.max((v - c).abs()));
                    let scale = if max > 0.0 { max / levels } else { 1.0 };
                    scales.push(scale);
                    q.extend(
                        row.iter()
                            .zip(&centre)
                            .map(|(v, c)| ((v - c) / scale).round().clamp(-levels, levels) as i8),
                    );
                }
                if dtype == DType::I4 {
                    RowData::I4 {
                        values: Nibbles::pack(&q, self.dim).expect("clamped to [-7, 7]"),
                        scales,
                        offset,
                    }
                } else {
                    RowData::I8 {
                        values: q,
                        scales,
                        offset,
                    }
                }
            }
        };
        ItemMatrix {
            dim: self.dim,
            rows: self.rows,
            norms: Vec::new(),
            centred_norms: Vec::new(),
            data,
            valid: self.valid.clone(),
        }
        .with_norms()
    }

    /// Per-dimension mean of the valid rows of `values` (row-major), `None` without one.
    fn valid_mean(&self, values: &[f32]) -> Option<Vec<f32>> {
        let mut sum = vec![0f64; self.dim];
        let mut n = 0usize;
        for (row, _) in values
            .chunks(self.dim)
            .zip(&self.valid)
            .filter(|(_, &valid)| valid)
        {
            n += 1;
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v as f64;
            }
        }
        (n > 0).then(|| sum.iter().map(|s| (s / n as f64) as f32).collect())
    }

    /// All values as f32, row-major.
    pub fn to_f32_values(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.dim);
        self.for_each_block(|_, block| out.extend_from_slice(block));
        out
    }

    /// Row `r` as f32 (borrowed for f32 storage, converted into `scratch` otherwise).
    pub fn row_into<'a>(&'a self, r: usize, scratch: &'a mut [f32]) -> &'a [f32] {
        self.rows_into(r..r + 1, scratch)
    }

    /// Rows `rows` as f32, row-major (borrowed for f32 storage, converted into the front of
    /// `scratch` otherwise, which must hold `rows.len() × dim` values).
    pub fn rows_into<'a>(&'a self, rows: Range<usize>, scratch: &'a mut [f32]) -> &'a [f32] {
        let span = rows.start * self.dim..rows.end * self.dim;
        // f32 rows are borrowed; only the others need (and size) the scratch.
        let out = match &self.data {
            RowData::F32(v) => return &v[span],
            _ => &mut scratch[..span.len()],
        };
        match &self.data {
            RowData::F32(_) => {}
            RowData::F16(v) => {
                // Vectorised where the CPU converts halves in hardware (F16C on x86).
                half::slice::HalfFloatSliceExt::convert_to_f32_slice(&v[span], out);
            }
            RowData::I8 { .. } | RowData::I4 { .. } => {
                let (values, scales, offset) = (
                    self.data
                        .integers(rows.clone(), self.dim)
                        .expect("integer rows"),
                    self.data.scales().expect("integer rows"),
                    self.data.offset(),
                );
                let quantized = values.chunks_exact(self.dim);
                for ((o, q), &scale) in out
                    .chunks_exact_mut(self.dim)
                    .zip(quantized)
                    .zip(&scales[rows])
                {
                    match offset {
                        Some(offset) => {
                            for ((s, &q), &c) in o.iter_mut().zip(q).zip(offset) {
                                *s = c + q as f32 * scale;
                            }
                        }
                        None => {
                            for (s, &q) in o.iter_mut().zip(q) {
                                *s = q as f32 * scale;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        match self.data {
            RowData::F32(_) => DType::F32,
            RowData::F16(_) => DType::F16,
            RowData::I8 { .. } => DType::I8,
            RowData::I4 { .. } => DType::I4,
        }
    }

    /// The storage.
    pub fn data(&self) -> &RowData {
        &self.data
    }

    /// Whether each row has a representation.
    pub fn valid(&self) -> &[bool] {
        &self.valid
    }

    /// Squared norms of the rows.
    pub fn norms(&self) -> &[f32] {
        &self.norms
    }

    /// Squared L2 distance from `query` to every row (+∞ for invalid rows).
    pub fn distances(&self, query: &[f32]) -> Result<Vec<f32>> {
        if query.len() != self.dim {
            return Err(Error::mismatch("query dimension", self.dim, query.len()));
        }
        if let (Some(scales), offset) = (self.data.scales(), self.data.offset()) {
            let q = Int8Query::new(query, offset);
            let mut dots = vec![0i32; self.rows];
            match &self.data {
                RowData::I4 { values, .. } => values.dots(&q.values, &mut dots),
                RowData::I8 { values, .. } => {
                    crate::kernel::i8_row_dots(&q.values, values, &mut dots)
                }
                _ => unreachable!("only integer rows have scales"),
            }
            return Ok(self.int8_distances(&q, &dots, scales));
        }
        let q_norm = dot(query, query);
        // Converted a block of rows at a time: one conversion call per block, not per row.
        const BLOCK: usize = 256;
        let mut scratch = vec![0f32; BLOCK.min(self.rows) * self.dim];
        let mut out = Vec::with_capacity(self.rows);
        for start in (0..self.rows).step_by(BLOCK) {
            let end = (start + BLOCK).min(self.rows);
            let block = self.rows_into(start..end, &mut scratch);
            for (r, row) in (start..end).zip(block.chunks_exact(self.dim)) {
                out.push(if self.valid[r] {
                    larger(0.0, q_norm - 2.0 * dot(query, row) + self.norms[r])
                } else {
                    f32::INFINITY
                });
            }
        }
        Ok(out)
    }

    /// Distances to int8 (or int4) rows without dequantizing them: with row = offset + s·v
    /// and c = q − offset, `‖q − r‖² = ‖c‖² − 2s·(c·v) + s²‖v‖²`, where `c·v` (`dots`) is
    /// an exact integer dot product of c quantized to i16 ([`Int8Query`]) with the row's
    /// integers. Centring first keeps the terms small (no cancellation of the shared offset).
    fn int8_distances(&self, q: &Int8Query, dots: &[i32], scales: &[f32]) -> Vec<f32> {
        let base = q.centred_norm;
        dots.iter()
            .zip(scales)
            .zip(&self.centred_norms)
            .zip(&self.valid)
            .map(|(((&dot, &scale), &norm), &valid)| {
                if valid {
                    larger(0.0, base - 2.0 * (scale * q.scale) * dot as f32 + norm)
                } else {
                    f32::INFINITY
                }
            })
            .collect()
    }
}

/// A query prepared for int8 rows: c = `q − offset` as i16 with one scale, as fine as an
/// i32 sum over the row allows (|c| ≤ 32767 and |c|·128·dim < 2³¹), so a dot product with
/// i8 values is exact integer arithmetic: the same on every target and in any summation order.
struct Int8Query {
    values: Vec<i16>,
    scale: f32,
    /// ‖c‖² in f32.
    centred_norm: f32,
}

impl Int8Query {
    fn new(query: &[f32], offset: Option<&[f32]>) -> Self {
        let centred: Vec<f32> = match offset {
            Some(o) => query.iter().zip(o).map(|(q, o)| q - o).collect(),
            None => query.to_vec(),
        };
        let limit = (i32::MAX as usize / (128 * query.len().max(1))).min(i16::MAX as usize) as f32;
        let max = centred.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / limit } else { 1.0 };
        Int8Query {
            values: centred
                .iter()
                .map(|v| (v / scale).round().clamp(-limit, limit) as i16)
                .collect(),
            scale,
            centred_norm: dot(&centred, &centred),
        }
    }
}

/// `mask[i]` is true for the items of `exclude` (ids past `n` are ignored): one pass, however
/// long the excluded list (a visitor's whole history) is.
pub fn exclusion_mask(n: usize, exclude: &[ItemIndex]) -> Vec<bool> {
    let mut mask = vec![false; n];
    for &i in exclude {
        if let Some(m) = mask.get_mut(i as usize) {
            *m = true;
        }
    }
    mask
}

/// Orders (distance, item): smaller distance first, NaN as +∞, ties by item index.
fn closer(a: (f32, ItemIndex), b: (f32, ItemIndex)) -> std::cmp::Ordering {
    let key = |d: f32| if d.is_nan() { f32::INFINITY } else { d };
    key(a.0).total_cmp(&key(b.0)).then(a.1.cmp(&b.1))
}

/// A (distance, index) candidate ordered by [`closer`] (NaN as +∞, ties by index): in a
/// max-heap the worst kept one is on top. Top-K over items and L2D-L's M nearest states use it.
#[derive(Clone, Copy)]
pub(crate) struct Candidate(pub(crate) f32, pub(crate) u32);

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        closer((self.0, self.1), (other.0, other.1))
    }
}

/// The `k` items with the smallest distances, closest first, ties broken by item index;
/// `exclude` items are left out (e.g. the history). One pass with a bounded heap of `k`
/// entries: besides the distances themselves, the work and memory per query grow with `k` and
/// the exclusion list, not with the catalog (an exclusion is looked up only for an item that
/// would enter the heap).
pub fn top_k(distances: &[f32], k: usize, exclude: &[ItemIndex]) -> Vec<(ItemIndex, f32)> {
    top_k_of(
        distances
            .iter()
            .enumerate()
            .map(|(i, &d)| (i as ItemIndex, d)),
        k,
        exclude,
    )
}

/// [`top_k`] over (item, distance) pairs in any order, e.g. candidates a GPU selected: the
/// same order and ties, over the pairs given.
pub fn top_k_of(
    candidates: impl ExactSizeIterator<Item = (ItemIndex, f32)>,
    k: usize,
    exclude: &[ItemIndex],
) -> Vec<(ItemIndex, f32)> {
    let k = k.min(candidates.len());
    if k == 0 {
        return Vec::new();
    }
    let mut excluded = exclude.to_vec();
    excluded.sort_unstable();
    excluded.dedup();
    let mut heap: std::collections::BinaryHeap<Candidate> =
        std::collections::BinaryHeap::with_capacity(k + 1);
    for (i, d) in candidates {
        let candidate = Candidate(d, i);
        if heap.len() == k && heap.peek().is_some_and(|worst| candidate >= *worst) {
            continue;
        }
        if excluded.binary_search(&i).is_ok() {
            continue;
        }
        heap.push(candidate);
        if heap.len() > k {
            heap.pop();
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|Candidate(d, i)| (i, d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_direct_computation() {
        let m =
            ItemMatrix::from_f32(vec![0., 0., 3., 4., 1., 1.], 2, vec![true, true, false]).unwrap();
        let d = m.distances(&[0., 0.]).unwrap();
        assert_eq!(d[..2], [0., 25.]);
        assert!(d[2].is_infinite());
    }

    #[test]
    fn top_k_breaks_ties_by_index_and_excludes() {
        let d = [1.0, 0.5, 0.5, f32::NAN, 0.1];
        assert_eq!(top_k(&d, 3, &[]), vec![(4, 0.1), (1, 0.5), (2, 0.5)]);
        assert_eq!(top_k(&d, 2, &[4]), vec![(1, 0.5), (2, 0.5)]);
        assert_eq!(top_k(&d, 10, &[]).len(), 5);
        assert!(top_k(&d, 0, &[]).is_empty());
    }

    /// The heap selection equals sorting everything (NaN as +∞, ties by index), for random
    /// distances with ties and NaNs, several k and exclusion lists.
    #[test]
    fn bounded_heap_equals_a_full_sort() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for trial in 0..50 {
            let n = 1 + trial * 7;
            let d: Vec<f32> = (0..n)
                .map(|_| match rng.random_range(0..10) {
                    0 => f32::NAN,
                    1 => 0.5,
                    _ => rng.random_range(0.0..2.0),
                })
                .collect();
            let exclude: Vec<ItemIndex> = (0..rng.random_range(0..5))
                .map(|_| rng.random_range(0..n as u32 + 3))
                .collect();
            let mut all: Vec<(f32, ItemIndex)> = (0..n)
                .filter(|i| !exclude.contains(&(*i as ItemIndex)))
                .map(|i| (d[i], i as ItemIndex))
                .collect();
            all.sort_by(|a, b| closer(*a, *b));
            for k in [1, 3, 20, n + 5] {
                let want: Vec<ItemIndex> = all.iter().take(k).map(|c| c.1).collect();
                let got: Vec<ItemIndex> = top_k(&d, k, &exclude).iter().map(|c| c.0).collect();
                assert_eq!(got, want, "n={n} k={k}");
            }
        }
    }

    #[test]
    fn a_huge_exclusion_list_costs_its_length_not_items_times_history() {
        let d: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        // A million entries: repeats, every item but the last three, and ids past the catalog.
        let exclude: Vec<ItemIndex> = (0..1_000_000u32).map(|i| i % 997).chain([5000]).collect();
        assert_eq!(top_k(&d, 2, &exclude), vec![(997, 997.0), (998, 998.0)]);
        assert_eq!(exclusion_mask(3, &[1, 7]), vec![false, true, false]);
    }

    /// int8 and int4 distances (integer dot products on a quantized query) equal the f32
    /// distances to the dequantized rows, with and without an offset, for dimensions off the
    /// 16-lane width, and with invalid rows; the vectorised kernel equals the plain one exactly.
    #[test]
    fn int8_distances_equal_dequantized_f32() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for (dim, rows, centre) in [
            (16, 9, true),
            (192, 50, true),
            (7, 5, false),
            (33, 20, true),
        ] {
            let values: Vec<f32> = (0..dim * rows)
                .map(|i| 3.0 * (i % dim) as f32 / dim as f32 + rng.random_range(-1.0..1.0))
                .collect();
            let valid: Vec<bool> = (0..rows).map(|r| r % 4 != 1).collect();
            let f32_rows = ItemMatrix::from_f32(values, dim, valid).unwrap();
            let int8 = if centre {
                f32_rows.to_dtype(DType::I8)
            } else {
                let RowData::I8 { values, scales, .. } = f32_rows.to_dtype(DType::I8).data else {
                    unreachable!()
                };
                let data = RowData::I8 {
                    values,
                    scales,
                    offset: None,
                };
                ItemMatrix::from_data(data, dim, f32_rows.valid().to_vec()).unwrap()
            };
            let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-2.0..4.0)).collect();
            // The int8 rows, and the same rows on int4 levels, packed.
            for (what, rows) in [("int8", &int8), ("int4", &f32_rows.to_dtype(DType::I4))] {
                let dequantized =
                    ItemMatrix::from_f32(rows.to_f32_values(), dim, rows.valid().to_vec()).unwrap();
                let (got, want) = (
                    rows.distances(&query).unwrap(),
                    dequantized.distances(&query).unwrap(),
                );
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g.is_infinite() && w.is_infinite()) || (g - w).abs() <= 1e-4 * w.max(1.0),
                        "{what}, dim {dim}: {g} vs {w}"
                    );
                }
            }
            let RowData::I8 { values, .. } = int8.data() else {
                unreachable!()
            };
            let q = Int8Query::new(&query, None);
            let mut fast = vec![0; rows];
            crate::kernel::i8_row_dots(&q.values, values, &mut fast);
            let plain: Vec<i32> = values
                .chunks_exact(dim)
                .map(|row| {
                    row.iter()
                        .zip(&q.values)
                        .map(|(&v, &c)| v as i32 * c as i32)
                        .sum()
                })
                .collect();
            assert_eq!(fast, plain, "dim {dim}");
        }
    }

    #[test]
    fn quantized_rows_stay_close() {
        let values: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let m = ItemMatrix::from_f32(values.clone(), 16, vec![true; 4]).unwrap();
        for dtype in [DType::F16, DType::I8] {
            let q = m.to_dtype(dtype).to_f32_values();
            let err = q
                .iter()
                .zip(&values)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 0.01, "{dtype:?} error {err}");
        }
    }
}
