//! The item-representation blob: the file the browser fetches next to the model.
//!
//! Layout (little-endian; spec also in ARCHITECTURE.md):
//! ```text
//! header (96 bytes)
//!   0  magic            8 bytes  "L2DBLOB\0"
//!   8  version          u32      1
//!  12  kind             u8       0 = global item vectors, 1 = memory (states grouped by item)
//!  13  dtype            u8       0 = f32, 1 = f16, 2 = int8 with one f32 scale per row,
//!                                3 = int8 around a per-dimension f32 offset (the rows' mean)
//!  14  flags            u16      bit 0: titles present; bit 1: cold-start vectors present
//!  16  items            u32      catalog size
//!  20  rows             u32      matrix rows (= items for global, = states for memory)
//!  24  dim              u32      vector dimension (= the model's hidden size)
//!  28  payload length   u32      bytes after the header
//!  32  model            32 bytes model fingerprint (sha256, see model::model_fingerprint)
//!  64  payload sha256   32 bytes over everything after the header
//! payload
//!   per item: u32 id length + UTF-8 id; if titles: u32 title length + UTF-8 title
//!   per item: u32 memory-state count (0 = no representation; memory rows are grouped by
//!             item in catalog order, so counts give each item's row range)
//!   dtype 3 only: dim × f32 offset
//!   int8 only: rows × f32 scale
//!   rows × dim values of dtype
//!   if bit 1: one vector per item whose count is 0, in catalog order, in the same dtype
//!             (int8: their offset for dtype 3, scales, then values) — the cold-start
//!             rule's item vectors
//! ```
//! Reading checks every length against the bytes actually present before allocating.

use half::f16;
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, ItemTexts};
use crate::model::hex;
use crate::score::{DType, ItemMatrix, RowData};

/// Magic bytes at offset 0.
pub const MAGIC: &[u8; 8] = b"L2DBLOB\0";
/// Current format version.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 96;
/// Largest accepted vector dimension.
pub const MAX_DIM: usize = 1 << 16;
/// Largest accepted id or title length in bytes.
pub const MAX_TEXT: usize = 1 << 16;

/// What a blob's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// One L2D-G vector per item.
    Global,
    /// Every memory state, grouped by item (for L2D-L in the browser).
    Memory,
}

/// Why a blob was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("bad magic: not an l2d blob (first bytes {found:02x?})")]
    BadMagic { found: Vec<u8> },
    #[error("unsupported format version {found} (this build reads {VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("unknown {field} code {found}")]
    UnknownCode { field: &'static str, found: u8 },
    #[error("truncated: {what} needs {needed} bytes at offset {offset}, only {available} remain")]
    Truncated {
        what: String,
        offset: usize,
        needed: u64,
        available: usize,
    },
    #[error("{extra} unexpected bytes after the payload")]
    TrailingBytes { extra: usize },
    #[error("{field} = {found} is out of range (expected {expected})")]
    OutOfRange {
        field: &'static str,
        found: u64,
        expected: String,
    },
    #[error("payload checksum mismatch: header says {expected}, payload hashes to {found}")]
    ChecksumMismatch { expected: String, found: String },
    #[error("built for another model: blob has model fingerprint {found}, the loaded model is {expected}")]
    ModelMismatch { expected: String, found: String },
    #[error("dimension mismatch: blob vectors have {found} dimensions, the model's hidden size is {expected}")]
    DimensionMismatch { expected: usize, found: usize },
    #[error("{field} #{index} is not valid UTF-8")]
    BadUtf8 { field: &'static str, index: usize },
    #[error("memory counts sum to {found} but the blob has {expected} rows")]
    CountMismatch { expected: u64, found: u64 },
    #[error("{0}")]
    Invalid(String),
}

/// A parsed blob.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    /// Global vectors or memory states.
    pub kind: BlobKind,
    /// Fingerprint of the model files the representations came from.
    pub model_fingerprint: [u8; 32],
    /// The catalog's ids and titles (titles empty when the blob carries none), in one buffer.
    pub items: ItemTexts,
    /// Whether titles were stored.
    pub has_titles: bool,
    /// Memory states per item (train-target frequency in the memory).
    pub counts: Vec<u32>,
    /// The rows: one per item (global) or one per state, grouped by item (memory).
    pub matrix: ItemMatrix,
    /// Vectors for the items whose count is 0, in catalog order (the cold-start rule of
    /// `Representations::fill_cold_from_titles`); `None` = such items are ranked last.
    pub cold: Option<ItemMatrix>,
}

impl Blob {
    /// Assembles a blob; `matrix` rows must follow `kind` (see the module docs).
    pub fn new(
        kind: BlobKind,
        model_fingerprint: [u8; 32],
        catalog: &Catalog,
        with_titles: bool,
        counts: Vec<u32>,
        matrix: ItemMatrix,
    ) -> Result<Self, BlobError> {
        let blob = Blob {
            kind,
            model_fingerprint,
            items: if with_titles {
                catalog.texts().clone()
            } else {
                let mut ids = ItemTexts::with_capacity(catalog.len(), 0);
                for item in catalog.items() {
                    ids.push(item.id, "")
                        .map_err(|e| BlobError::Invalid(e.to_string()))?;
                }
                ids
            },
            has_titles: with_titles,
            counts,
            matrix,
            cold: None,
        };
        blob.check_shape()?;
        Ok(blob)
    }

    /// The blob of a memory: per-item mean vectors ([`BlobKind::Global`], L2D-G) or the states
    /// grouped by item ([`BlobKind::Memory`], serving L2D-G and L2D-L), in `dtype`.
    pub fn from_memory(
        kind: BlobKind,
        model_fingerprint: [u8; 32],
        catalog: &Catalog,
        with_titles: bool,
        memory: &crate::memory::Memory,
        dtype: DType,
    ) -> crate::error::Result<Self> {
        let local = crate::aggregate::LocalIndex::new(memory, catalog.len())?;
        let matrix = match kind {
            BlobKind::Global => local.global_vectors()?,
            BlobKind::Memory => local.states().clone(),
        };
        Ok(Blob::new(
            kind,
            model_fingerprint,
            catalog,
            with_titles,
            local.counts(),
            matrix.to_dtype(dtype),
        )?)
    }

    /// Bytes one row takes in this blob's element type (how a size budget maps to rows).
    pub fn row_bytes(&self) -> u64 {
        row_bytes(self.matrix.dtype(), self.matrix.dim())
    }

    /// Adds cold-start vectors: one row per item with count 0, in catalog order, stored in the
    /// main matrix's element type and int8 offset.
    pub fn with_cold(mut self, cold: &ItemMatrix) -> Result<Self, BlobError> {
        self.cold = Some(cold.to_layout_of(&self.matrix));
        self.check_shape()?;
        Ok(self)
    }

    /// Items whose count is 0, in catalog order (the rows of [`Blob::cold`]).
    pub fn cold_items(&self) -> Vec<crate::catalog::ItemIndex> {
        crate::catalog::stateless_items(&self.counts)
    }

    fn check_shape(&self) -> Result<(), BlobError> {
        if self.counts.len() != self.items.len() {
            return Err(BlobError::Invalid(format!(
                "{} counts for {} items",
                self.counts.len(),
                self.items.len()
            )));
        }
        let expected_rows = match self.kind {
            BlobKind::Global => self.items.len() as u64,
            BlobKind::Memory => self.counts.iter().map(|&c| c as u64).sum(),
        };
        if expected_rows != self.matrix.rows() as u64 {
            return Err(BlobError::CountMismatch {
                expected: self.matrix.rows() as u64,
                found: expected_rows,
            });
        }
        if let Some(cold) = &self.cold {
            let zero = self.cold_items().len();
            if cold.rows() != zero || cold.dim() != self.matrix.dim() {
                return Err(BlobError::Invalid(format!(
                    "{} cold-start vectors of dimension {} for {zero} items without states of dimension {}",
                    cold.rows(),
                    cold.dim(),
                    self.matrix.dim()
                )));
            }
        }
        Ok(())
    }

    /// Checks that the blob belongs to a model with this fingerprint and hidden size.
    pub fn check_model(&self, fingerprint: &[u8; 32], hidden_size: usize) -> Result<(), BlobError> {
        if &self.model_fingerprint != fingerprint {
            return Err(BlobError::ModelMismatch {
                expected: hex(fingerprint),
                found: hex(&self.model_fingerprint),
            });
        }
        if self.matrix.dim() != hidden_size {
            return Err(BlobError::DimensionMismatch {
                expected: hidden_size,
                found: self.matrix.dim(),
            });
        }
        Ok(())
    }

    /// Serializes to the documented layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        for item in self.items.iter() {
            put_text(&mut payload, item.id);
            if self.has_titles {
                put_text(&mut payload, item.title);
            }
        }
        for c in &self.counts {
            payload.extend_from_slice(&c.to_le_bytes());
        }
        // Dtype 3 when any section has an int8 offset (a section without one stores zeros), so
        // no offset is ever dropped, whichever section carries it.
        let centred = std::iter::once(&self.matrix).chain(&self.cold).any(|m| {
            matches!(
                m.data(),
                RowData::I8 {
                    offset: Some(_),
                    ..
                }
            )
        });
        put_rows(&mut payload, &self.matrix, centred);
        if let Some(cold) = &self.cold {
            put_rows(&mut payload, cold, centred);
        }
        let flags = self.has_titles as u16 | (self.cold.is_some() as u16) << 1;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(match self.kind {
            BlobKind::Global => 0,
            BlobKind::Memory => 1,
        });
        out.push(match self.matrix.dtype() {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::I8 if centred => 3,
            DType::I8 => 2,
        });
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(self.items.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.matrix.rows() as u32).to_le_bytes());
        out.extend_from_slice(&(self.matrix.dim() as u32).to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.model_fingerprint);
        out.extend_from_slice(&Sha256::digest(&payload));
        out.extend_from_slice(&payload);
        out
    }

    /// Parses and validates a blob from bytes (a file, or a buffer the browser fetched).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BlobError> {
        Self::from_source(bytes)
    }

    /// Parses and validates a blob read range by range from `source`, so the whole file never
    /// needs to sit in this process's memory next to what is parsed from it (the browser keeps
    /// the download outside wasm memory; int8 rows are copied straight into their matrix).
    pub fn from_source<S: BlobSource + ?Sized>(source: &S) -> Result<Self, BlobError> {
        let total = source.len();
        let mut magic = vec![0u8; total.min(8)];
        source.read_into(0, &mut magic);
        if magic != MAGIC {
            return Err(BlobError::BadMagic { found: magic });
        }
        let mut r = Reader::new(source, 8);
        let version = r.u32("version")?;
        if version != VERSION {
            return Err(BlobError::UnsupportedVersion { found: version });
        }
        let kind = match r.u8("kind")? {
            0 => BlobKind::Global,
            1 => BlobKind::Memory,
            found => {
                return Err(BlobError::UnknownCode {
                    field: "kind",
                    found,
                })
            }
        };
        let code = r.u8("dtype")?;
        let centred = code == 3;
        let dtype = match code {
            0 => DType::F32,
            1 => DType::F16,
            2 | 3 => DType::I8,
            found => {
                return Err(BlobError::UnknownCode {
                    field: "dtype",
                    found,
                })
            }
        };
        let flags = r.u16("flags")?;
        if flags > 3 {
            return Err(BlobError::OutOfRange {
                field: "flags",
                found: flags as u64,
                expected: "0..=3 (bit 0 titles, bit 1 cold-start vectors)".into(),
            });
        }
        let has_titles = flags & 1 == 1;
        let has_cold = flags & 2 == 2;
        let n_items = r.u32("items")? as usize;
        let rows = r.u32("rows")? as usize;
        let dim = r.u32("dim")? as usize;
        let payload_len = r.u32("payload length")? as usize;
        if dim == 0 || dim > MAX_DIM {
            return Err(BlobError::OutOfRange {
                field: "dim",
                found: dim as u64,
                expected: format!("1..={MAX_DIM}"),
            });
        }
        let model_fingerprint: [u8; 32] = r
            .take(32, "model fingerprint")?
            .try_into()
            .expect("32 bytes");
        let checksum: [u8; 32] = r
            .take(32, "payload checksum")?
            .try_into()
            .expect("32 bytes");
        let payload_present = total.saturating_sub(HEADER_LEN);
        if payload_present < payload_len {
            return Err(BlobError::Truncated {
                what: "payload".into(),
                offset: HEADER_LEN,
                needed: payload_len as u64,
                available: payload_present,
            });
        }
        if payload_present > payload_len {
            return Err(BlobError::TrailingBytes {
                extra: payload_present - payload_len,
            });
        }
        // Bounds before allocation: every item needs ≥ 8 bytes (id length + count), every row
        // `row_bytes`.
        let minimum = n_items as u64 * 8 + rows as u64 * row_bytes(dtype, dim);
        if minimum > payload_len as u64 {
            return Err(BlobError::Truncated {
                what: format!("{n_items} items and {rows} rows × {dim}"),
                offset: HEADER_LEN,
                needed: minimum,
                available: payload_len,
            });
        }
        let found = source.sha256(HEADER_LEN..total);
        if found.as_slice() != checksum {
            return Err(BlobError::ChecksumMismatch {
                expected: hex(&checksum),
                found: hex(&found),
            });
        }
        // Two passes over the ids and titles: the first sums their lengths, so the one text
        // buffer is allocated once at its size (growing it by doubling would leave a larger
        // high-water mark in wasm memory, which never shrinks).
        let texts_start = r.pos;
        let fields = if has_titles { 2 } else { 1 };
        let mut text_bytes = 0usize;
        for _ in 0..n_items * fields {
            let len = r.text_len("item text")?;
            r.skip(len, "item text")?;
            text_bytes += len;
        }
        r.seek(texts_start);
        let mut items = ItemTexts::with_capacity(n_items, text_bytes);
        for index in 0..n_items {
            let id = r.text("item id", index)?;
            let title = if has_titles {
                r.text("item title", index)?
            } else {
                String::new()
            };
            items
                .push(&id, &title)
                .map_err(|e| BlobError::Invalid(e.to_string()))?;
        }
        let mut counts = Vec::with_capacity(n_items);
        for _ in 0..n_items {
            counts.push(r.u32("count")?);
        }
        let data = r.rows(rows, dim, dtype, centred, "rows")?;
        let cold = if has_cold {
            let zero = counts.iter().filter(|&&c| c == 0).count();
            let data = r.rows(zero, dim, dtype, centred, "cold-start rows")?;
            Some(
                ItemMatrix::from_data(data, dim, vec![true; zero])
                    .map_err(|e| BlobError::Invalid(e.to_string()))?,
            )
        } else {
            None
        };
        if r.pos != total {
            return Err(BlobError::TrailingBytes {
                extra: total - r.pos,
            });
        }
        let valid = match kind {
            BlobKind::Global => counts.iter().map(|&c| c > 0).collect(),
            BlobKind::Memory => vec![true; rows],
        };
        let matrix = ItemMatrix::from_data(data, dim, valid)
            .map_err(|e| BlobError::Invalid(e.to_string()))?;
        let blob = Blob {
            kind,
            model_fingerprint,
            items,
            has_titles,
            counts,
            matrix,
            cold,
        };
        blob.check_shape()?;
        Ok(blob)
    }
}

/// Stored bytes of one row of `dim` values: the elements, plus an f32 scale for int8.
fn row_bytes(dtype: DType, dim: usize) -> u64 {
    let dim = dim as u64;
    match dtype {
        DType::F32 => 4 * dim,
        DType::F16 => 2 * dim,
        DType::I8 => dim + 4,
    }
}

/// Appends a matrix's storage: f32 or f16 values, or int8 (the offset when `centred`, zeros
/// for a matrix without one) scales, then values.
fn put_rows(payload: &mut Vec<u8>, matrix: &ItemMatrix, centred: bool) {
    match matrix.data() {
        RowData::F32(v) => v
            .iter()
            .for_each(|x| payload.extend_from_slice(&x.to_le_bytes())),
        RowData::F16(v) => v
            .iter()
            .for_each(|x| payload.extend_from_slice(&x.to_bits().to_le_bytes())),
        RowData::I8 {
            values,
            scales,
            offset,
        } => {
            if centred {
                let zeros = vec![0f32; matrix.dim()];
                offset
                    .as_deref()
                    .unwrap_or(&zeros)
                    .iter()
                    .for_each(|x| payload.extend_from_slice(&x.to_le_bytes()));
            }
            scales
                .iter()
                .for_each(|x| payload.extend_from_slice(&x.to_le_bytes()));
            payload.extend(values.iter().map(|&q| q as u8));
        }
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Bytes a blob is parsed from: a slice, or (in the browser) the download kept outside wasm
/// memory.
pub trait BlobSource {
    /// Length in bytes.
    fn len(&self) -> usize;
    /// True for no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies the bytes at `offset..offset + out.len()` (within `len()`) into `out`.
    fn read_into(&self, offset: usize, out: &mut [u8]);
    /// sha256 of the bytes in `range`, read a chunk at a time.
    fn sha256(&self, range: std::ops::Range<usize>) -> [u8; 32] {
        const CHUNK: usize = 1 << 20;
        let mut hasher = Sha256::new();
        let mut chunk = vec![0u8; CHUNK.min(range.len())];
        let mut at = range.start;
        while at < range.end {
            let n = CHUNK.min(range.end - at);
            self.read_into(at, &mut chunk[..n]);
            hasher.update(&chunk[..n]);
            at += n;
        }
        hasher.finalize().into()
    }
}

impl BlobSource for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn read_into(&self, offset: usize, out: &mut [u8]) {
        out.copy_from_slice(&self[offset..offset + out.len()]);
    }
    fn sha256(&self, range: std::ops::Range<usize>) -> [u8; 32] {
        Sha256::digest(&self[range]).into()
    }
}

/// Reads fields in order from a [`BlobSource`]: small fields through a buffered window (one
/// source read per window, not per field), large ones straight into their destination.
struct Reader<'a, S: BlobSource + ?Sized> {
    source: &'a S,
    pos: usize,
    /// `window[window_pos..]` holds the source's bytes from `pos` on.
    window: Vec<u8>,
    window_pos: usize,
}

const WINDOW: usize = 1 << 16;

impl<'a, S: BlobSource + ?Sized> Reader<'a, S> {
    fn new(source: &'a S, pos: usize) -> Self {
        Reader {
            source,
            pos,
            window: Vec::new(),
            window_pos: 0,
        }
    }

    /// The bytes left, if at least `needed` (checked in u64 before anything is allocated: a
    /// corrupt length must not allocate gigabytes); otherwise says what was truncated.
    fn ensure(&self, needed: u64, what: impl FnOnce() -> String) -> Result<usize, BlobError> {
        let available = self.source.len() - self.pos;
        if needed > available as u64 {
            return Err(BlobError::Truncated {
                what: what(),
                offset: self.pos,
                needed,
                available,
            });
        }
        Ok(available)
    }

    /// Fills `out` with the next `out.len()` bytes, or says what was truncated.
    fn take_into(&mut self, out: &mut [u8], what: &str) -> Result<(), BlobError> {
        let n = out.len();
        let available = self.ensure(n as u64, || what.to_string())?;
        let buffered = self.window.len() - self.window_pos;
        if n <= buffered {
            out.copy_from_slice(&self.window[self.window_pos..self.window_pos + n]);
            self.window_pos += n;
        } else if n >= WINDOW {
            self.source.read_into(self.pos, out);
            self.window.clear();
            self.window_pos = 0;
        } else {
            let len = WINDOW.min(available);
            self.window.resize(len, 0);
            self.source.read_into(self.pos, &mut self.window);
            out.copy_from_slice(&self.window[..n]);
            self.window_pos = n;
        }
        self.pos += n;
        Ok(())
    }

    fn take(&mut self, n: usize, what: &str) -> Result<Vec<u8>, BlobError> {
        self.ensure(n as u64, || what.to_string())?;
        let mut out = vec![0u8; n];
        self.take_into(&mut out, what)?;
        Ok(out)
    }
    fn u8(&mut self, what: &str) -> Result<u8, BlobError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, BlobError> {
        let mut b = [0u8; 2];
        self.take_into(&mut b, what)?;
        Ok(u16::from_le_bytes(b))
    }
    fn u32(&mut self, what: &str) -> Result<u32, BlobError> {
        let mut b = [0u8; 4];
        self.take_into(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }
    /// `rows` × `dim` values of `dtype` (int8: scales first), the size checked in u64 against
    /// the bytes left before anything is allocated.
    fn rows(
        &mut self,
        rows: usize,
        dim: usize,
        dtype: DType,
        centred: bool,
        what: &str,
    ) -> Result<RowData, BlobError> {
        let offset_bytes = if centred { 4 * dim as u64 } else { 0 };
        let needed = offset_bytes + rows as u64 * row_bytes(dtype, dim);
        self.ensure(needed, || format!("{what}: {rows} × {dim} {dtype:?}"))?;
        let values = rows * dim;
        Ok(match dtype {
            DType::F32 => RowData::F32(
                self.take(values * 4, what)?
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                    .collect(),
            ),
            DType::F16 => RowData::F16(
                self.take(values * 2, what)?
                    .chunks_exact(2)
                    .map(|c| f16::from_bits(u16::from_le_bytes(c.try_into().expect("2"))))
                    .collect(),
            ),
            DType::I8 => {
                let offset = if centred {
                    Some(
                        self.take(dim * 4, "int8 offset")?
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                            .collect(),
                    )
                } else {
                    None
                };
                let scales = self
                    .take(rows * 4, "int8 scales")?
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                    .collect();
                let mut values = vec![0i8; values];
                self.take_into(bytemuck::cast_slice_mut(&mut values), what)?;
                RowData::I8 {
                    values,
                    scales,
                    offset,
                }
            }
        })
    }

    /// The length prefix of an id or title, checked against [`MAX_TEXT`].
    fn text_len(&mut self, field: &'static str) -> Result<usize, BlobError> {
        let len = self.u32(field)? as usize;
        if len > MAX_TEXT {
            return Err(BlobError::OutOfRange {
                field,
                found: len as u64,
                expected: format!("at most {MAX_TEXT} bytes"),
            });
        }
        Ok(len)
    }

    /// Moves past the next `n` bytes, or says what was truncated.
    fn skip(&mut self, n: usize, what: &str) -> Result<(), BlobError> {
        self.ensure(n as u64, || what.to_string())?;
        let buffered = self.window.len() - self.window_pos;
        if n <= buffered {
            self.window_pos += n;
        } else {
            self.window.clear();
            self.window_pos = 0;
        }
        self.pos += n;
        Ok(())
    }

    /// Continues reading at `pos` (the window is dropped).
    fn seek(&mut self, pos: usize) {
        self.pos = pos;
        self.window.clear();
        self.window_pos = 0;
    }

    fn text(&mut self, field: &'static str, index: usize) -> Result<String, BlobError> {
        let len = self.text_len(field)?;
        let raw = self.take(len, field)?;
        String::from_utf8(raw).map_err(|_| BlobError::BadUtf8 { field, index })
    }
}

impl From<BlobError> for crate::error::Error {
    fn from(e: BlobError) -> Self {
        crate::error::Error::Blob(Box::new(e))
    }
}
