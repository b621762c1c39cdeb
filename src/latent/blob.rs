//! The item-representation blob: the file the browser fetches next to the model.
//!
//! Long because: the reader and the writer of one format stay side by side, so a field cannot
//! change in one without the other (with the items parts, which the header ties to the blob).
//!
//! A 128-byte header (magic, version 2, kind, dtype, flags, counts, the model fingerprint, the
//! payload's and the items parts' sha256), then per-item state counts, the rows in their dtype
//! (f32, f16, int8 or int4 with scales and an optional per-dimension offset), the optional
//! cold-start vectors and the optional follows section. The layout, field by field, is in
//! `docs/design/blob-format.md`, its one description.
//!
//! Reading checks every length against the bytes actually present before allocating.
//!
//! The ids and titles are not in the blob: they are the **items parts** next to it,
//! `items-H-0.jsonl`, `items-H-1.jsonl`, … (H = the first 16 hex digits of their sha256; one
//! `{"id": .., "title": ..}` per line, in catalog order, a new part after every
//! [`PART_BYTES`]), so scoring rows never wait behind text and a
//! page downloads every part in full, in order, whatever it shows (which titles a page fetched
//! would tell the server what was recommended). The header's items sha256 ties the blob to
//! exactly these parts; the global and the memory blob of a model share them.

use half::f16;
use sha2::{Digest, Sha256};

use crate::data::catalog::{Catalog, ItemTexts};
use crate::kernel::Nibbles;
use crate::latent::follows::Follows;
use crate::latent::score::{DType, ItemMatrix, RowData};
use crate::util::hex;

/// Magic bytes at offset 0.
pub const MAGIC: &[u8; 8] = b"L2DBLOB\0";
/// Current format version.
pub const VERSION: u32 = 2;
const HEADER_LEN: usize = 128;
/// A new items part starts once the current one holds this many bytes (whole lines only): a
/// unit of download progress and of caching, not of selection.
pub const PART_BYTES: usize = 4 << 20;
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

impl std::str::FromStr for BlobKind {
    type Err = crate::error::Error;
    /// `global` or `memory`.
    fn from_str(name: &str) -> crate::error::Result<Self> {
        match name {
            "global" => Ok(BlobKind::Global),
            "memory" => Ok(BlobKind::Memory),
            other => Err(crate::error::Error::invalid(
                "blob kind",
                format!("`{other}` (expected global or memory)"),
            )),
        }
    }
}

/// Why a blob was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("bad magic: not an l2d blob (first bytes {found:02x?})")]
    BadMagic { found: Vec<u8> },
    #[error("unsupported blob format version {found} (this build reads version {VERSION}, which keeps ids and titles in separate items parts: rebuild the blob with `l2d blobs` or `l2d blob`)")]
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
    #[error("{part} line {line}: {message}")]
    BadItemLine {
        part: String,
        line: usize,
        message: String,
    },
    #[error("the items parts are not the blob's: the blob expects items sha256 {expected}, the parts hash to {found}")]
    ItemsMismatch { expected: String, found: String },
    #[error("the items parts list {found} items, the blob has {expected}")]
    ItemCount { expected: usize, found: usize },
    #[error("memory counts sum to {found} but the blob has {expected} rows")]
    CountMismatch { expected: u64, found: u64 },
    #[error(transparent)]
    Follows(#[from] crate::latent::follows::FollowsError),
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
    /// The catalog's ids and titles, in one buffer: empty when parsed from the blob's bytes
    /// until [`Blob::with_items`] reads its items parts.
    pub items: ItemTexts,
    /// sha256 of the items parts (see the module docs).
    pub items_sha256: [u8; 32],
    /// Memory states per item (train-target frequency in the memory).
    pub counts: Vec<u32>,
    /// The rows: one per item (global) or one per state, grouped by item (memory).
    pub matrix: ItemMatrix,
    /// Vectors for the items whose count is 0, in catalog order (the cold-start rule of
    /// `Representations::fill_cold_from_titles`); `None` = such items are ranked last.
    pub cold: Option<ItemMatrix>,
    /// Which items followed which in the memory's samples (the `follows` scoring option);
    /// `None` = not stored.
    pub follows: Option<Follows>,
}

impl Blob {
    /// Assembles a blob; `matrix` rows must follow `kind` (see the module docs).
    pub fn new(
        kind: BlobKind,
        model_fingerprint: [u8; 32],
        catalog: &Catalog,
        counts: Vec<u32>,
        matrix: ItemMatrix,
    ) -> Result<Self, BlobError> {
        let items = catalog.texts().clone();
        let mut hasher = Sha256::new();
        for_each_line(&items, |line| hasher.update(line));
        let blob = Blob {
            kind,
            model_fingerprint,
            items,
            items_sha256: hasher.finalize().into(),
            counts,
            matrix,
            cold: None,
            follows: None,
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
        memory: &crate::latent::memory::Memory,
        dtype: DType,
    ) -> crate::error::Result<Self> {
        let local = crate::latent::aggregate::LocalIndex::new(memory, catalog.len())?;
        let matrix = match kind {
            BlobKind::Global => local.global_vectors()?,
            BlobKind::Memory => local.states().clone(),
        };
        Ok(Blob::new(
            kind,
            model_fingerprint,
            catalog,
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

    /// Adds follow weights (over the same catalog).
    pub fn with_follows(mut self, follows: Follows) -> Result<Self, BlobError> {
        self.follows = Some(follows);
        self.check_shape()?;
        Ok(self)
    }

    /// Items whose count is 0, in catalog order (the rows of [`Blob::cold`]).
    pub fn cold_items(&self) -> Vec<crate::data::catalog::ItemIndex> {
        crate::data::catalog::stateless_items(&self.counts)
    }

    fn check_shape(&self) -> Result<(), BlobError> {
        if !self.items.is_empty() && self.counts.len() != self.items.len() {
            return Err(BlobError::Invalid(format!(
                "{} counts for {} items",
                self.counts.len(),
                self.items.len()
            )));
        }
        let expected_rows = match self.kind {
            BlobKind::Global => self.counts.len() as u64,
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
        if let Some(follows) = &self.follows {
            if follows.n_items() != self.counts.len() {
                return Err(BlobError::Invalid(format!(
                    "follow weights over {} items for a blob of {} items",
                    follows.n_items(),
                    self.counts.len()
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

    /// The items parts of this blob's catalog (see the module docs).
    pub fn items_parts(&self) -> Vec<Vec<u8>> {
        items_parts(&self.items)
    }

    /// Reads the items parts (all of them, in order) into [`Blob::items`], checking that they
    /// hash to the header's items sha256 and list one item per count.
    pub fn with_items<'a>(
        mut self,
        parts: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, BlobError> {
        let parts: Vec<_> = parts.into_iter().collect();
        let total = parts.iter().map(|(_, bytes)| bytes.len()).sum();
        let mut reader = ItemsReader::new(self.counts.len(), total);
        for (name, bytes) in parts {
            reader.part(name, bytes)?;
        }
        self.items = reader.finish(&self.items_sha256)?;
        Ok(self)
    }

    /// Serializes the vectors and counts to the documented layout (the ids and titles are
    /// [`Blob::items_parts`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        for c in &self.counts {
            payload.extend_from_slice(&c.to_le_bytes());
        }
        // Dtype 3 when any section has an int8 offset (a section without one stores zeros), so
        // no offset is ever dropped, whichever section carries it.
        let centred = std::iter::once(&self.matrix)
            .chain(&self.cold)
            .any(|m| m.data().offset().is_some());
        put_rows(&mut payload, &self.matrix, centred);
        if let Some(cold) = &self.cold {
            put_rows(&mut payload, cold, centred);
        }
        if let Some(follows) = &self.follows {
            let section = follows.to_bytes();
            payload.extend_from_slice(&(section.len() as u32).to_le_bytes());
            payload.extend_from_slice(&section);
        }
        let flags = (self.cold.is_some() as u16) << 1 | (self.follows.is_some() as u16) << 2;
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
            DType::I4 if centred => 5,
            DType::I4 => 4,
        });
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(self.counts.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.matrix.rows() as u32).to_le_bytes());
        out.extend_from_slice(&(self.matrix.dim() as u32).to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.model_fingerprint);
        out.extend_from_slice(&Sha256::digest(&payload));
        out.extend_from_slice(&self.items_sha256);
        out.extend_from_slice(&payload);
        out
    }

    /// Parses and validates a blob from bytes (a file, or a buffer the browser fetched); its
    /// items come from [`Blob::with_items`].
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
        let centred = code == 3 || code == 5;
        let dtype = match code {
            0 => DType::F32,
            1 => DType::F16,
            2 | 3 => DType::I8,
            4 | 5 => DType::I4,
            found => {
                return Err(BlobError::UnknownCode {
                    field: "dtype",
                    found,
                })
            }
        };
        let flags = r.u16("flags")?;
        if flags & !6 != 0 {
            return Err(BlobError::OutOfRange {
                field: "flags",
                found: flags as u64,
                expected: "bits 1 (cold-start vectors) and 2 (follows) only".into(),
            });
        }
        let has_cold = flags & 2 == 2;
        let has_follows = flags & 4 == 4;
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
        let items_sha256: [u8; 32] = r.take(32, "items checksum")?.try_into().expect("32 bytes");
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
        // Bounds before allocation: every item needs 4 bytes (its count), every row
        // `row_bytes`.
        let minimum = n_items as u64 * 4 + rows as u64 * row_bytes(dtype, dim);
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
        let follows = if has_follows {
            let length = r.u32("follows length")? as usize;
            let section = r.take(length, "follows section")?;
            Some(Follows::from_bytes(&section, n_items)?)
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
            items: ItemTexts::default(),
            items_sha256,
            counts,
            matrix,
            cold,
            follows,
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
        DType::I4 => dim.div_ceil(2) + 4,
    }
}

/// Appends a matrix's storage: f32 or f16 values, or integers (the offset when `centred`,
/// zeros for a matrix without one) scales, then values — int4 rows two per byte (the first in
/// the low four bits, two's complement; an odd row's last high half 0).
fn put_rows(payload: &mut Vec<u8>, matrix: &ItemMatrix, centred: bool) {
    let data = matrix.data();
    match data {
        RowData::F32(v) => v
            .iter()
            .for_each(|x| payload.extend_from_slice(&x.to_le_bytes())),
        RowData::F16(v) => v
            .iter()
            .for_each(|x| payload.extend_from_slice(&x.to_bits().to_le_bytes())),
        RowData::I8 { scales, .. } | RowData::I4 { scales, .. } => {
            if centred {
                let zeros = vec![0f32; matrix.dim()];
                data.offset()
                    .unwrap_or(&zeros)
                    .iter()
                    .for_each(|x| payload.extend_from_slice(&x.to_le_bytes()));
            }
            scales
                .iter()
                .for_each(|x| payload.extend_from_slice(&x.to_le_bytes()));
            let values = data
                .integers(0..matrix.rows(), matrix.dim())
                .expect("integer rows");
            if matrix.dtype() == DType::I4 {
                for row in values.chunks_exact(matrix.dim()) {
                    payload.extend(row.chunks(2).map(|pair| {
                        let low = pair[0] as u8 & 0x0f;
                        let high = pair.get(1).map_or(0, |&v| (v as u8) << 4);
                        low | high
                    }));
                }
            } else {
                payload.extend(values.iter().map(|&q| q as u8));
            }
        }
    }
}

/// One line of an items part.
#[derive(serde::Serialize, serde::Deserialize)]
struct ItemLine<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    title: std::borrow::Cow<'a, str>,
}

/// Each item's line of the items parts (its JSON and a newline), in catalog order: what the
/// parts are cut from, and what their sha256 and size are computed over without building them.
fn for_each_line(items: &ItemTexts, mut f: impl FnMut(&[u8])) {
    let mut line = Vec::new();
    for item in items.iter() {
        line.clear();
        let json = ItemLine {
            id: item.id.into(),
            title: item.title.into(),
        };
        serde_json::to_writer(&mut line, &json).expect("strings serialize");
        line.push(b'\n');
        f(&line);
    }
}

/// The items parts of `items`: JSON lines in order, a new part after every [`PART_BYTES`].
pub fn items_parts(items: &ItemTexts) -> Vec<Vec<u8>> {
    let mut parts = vec![Vec::new()];
    for_each_line(items, |line| {
        let part = parts.last_mut().expect("one part");
        part.extend_from_slice(line);
        if part.len() >= PART_BYTES {
            parts.push(Vec::new());
        }
    });
    if parts.len() > 1 && parts.last().is_some_and(Vec::is_empty) {
        parts.pop();
    }
    parts
}

/// Bytes of the items parts of `items`, all parts together.
pub fn items_bytes(items: &ItemTexts) -> usize {
    let mut bytes = 0;
    for_each_line(items, |line| bytes += line.len());
    bytes
}

/// The file name of part `index` of the items parts hashing to `items_sha256`: named by
/// content, so catalogs side by side in one directory never overwrite each other's.
pub fn items_part_name(items_sha256: &[u8; 32], index: usize) -> String {
    format!("items-{}-{index}.jsonl", &hex(items_sha256)[..16])
}

/// The items parts hashing to `items_sha256` present in `dir`, in order (part 0, 1, … up to
/// the first one missing).
#[cfg(not(target_arch = "wasm32"))]
pub fn items_parts_in(dir: &std::path::Path, items_sha256: &[u8; 32]) -> Vec<String> {
    (0..)
        .map(|i| items_part_name(items_sha256, i))
        .take_while(|name| dir.join(name).is_file())
        .collect()
}

impl Blob {
    /// The file names of this blob's items parts, given how many there are.
    pub fn items_part_names(&self, parts: usize) -> Vec<String> {
        (0..parts)
            .map(|i| items_part_name(&self.items_sha256, i))
            .collect()
    }

    /// Reads a blob file and the items parts beside it (named by [`items_part_name`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_file(path: &std::path::Path) -> crate::error::Result<Blob> {
        use crate::error::Error;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let in_file = |e: BlobError| Error::invalid(path.display().to_string(), e.to_string());
        let blob = Blob::from_bytes(&bytes).map_err(in_file)?;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let mut parts = Vec::new();
        for name in items_parts_in(dir, &blob.items_sha256) {
            let part = dir.join(&name);
            parts.push((name, std::fs::read(&part).map_err(|e| Error::io(part, e))?));
        }
        if parts.is_empty() {
            return Err(Error::invalid(
                path.display().to_string(),
                format!(
                    "its items parts are missing: expected {} beside it",
                    dir.join(items_part_name(&blob.items_sha256, 0)).display()
                ),
            ));
        }
        blob.with_items(parts.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
            .map_err(in_file)
    }
}

/// Bytes of syntax every items line spends at least: `{"id":"","title":""}` and its newline.
const LINE_SYNTAX: usize = 21;

/// Reads items parts one at a time (so a browser copies one part into wasm memory at once),
/// hashing them as they come.
pub struct ItemsReader {
    hasher: Sha256,
    items: ItemTexts,
    expected: usize,
}

impl ItemsReader {
    /// A reader for a catalog of `expected` items whose parts have `part_bytes` bytes in all
    /// (0 when unknown): the text buffer is allocated once, near its final size (growing it by
    /// doubling would leave a larger high-water mark in wasm memory, which never shrinks).
    pub fn new(expected: usize, part_bytes: usize) -> Self {
        let text = part_bytes.saturating_sub(expected.saturating_mul(LINE_SYNTAX));
        ItemsReader {
            hasher: Sha256::new(),
            items: ItemTexts::with_capacity(expected, text),
            expected,
        }
    }

    /// Reads the next part, `name` naming it in errors. A part holds whole lines.
    pub fn part(&mut self, name: &str, bytes: &[u8]) -> Result<(), BlobError> {
        self.hasher.update(bytes);
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            return Err(BlobError::BadItemLine {
                part: name.into(),
                line: bytes.split(|&b| b == b'\n').count(),
                message: "the part ends inside a line (a part holds whole lines)".into(),
            });
        }
        let Some(body) = bytes.strip_suffix(b"\n") else {
            return Ok(());
        };
        // The part's text fits in what the part spends beyond its syntax: grow to exactly
        // that when the estimate from `new` fell short, never by doubling.
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        self.items
            .reserve_exact(lines, bytes.len().saturating_sub(lines * LINE_SYNTAX));
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let bad = |message: String| BlobError::BadItemLine {
                part: name.into(),
                line: i + 1,
                message,
            };
            let item: ItemLine = serde_json::from_slice(line)
                .map_err(|e| bad(format!("expected {{\"id\": .., \"title\": ..}}: {e}")))?;
            for (field, text) in [("id", &item.id), ("title", &item.title)] {
                if text.len() > MAX_TEXT {
                    return Err(bad(format!(
                        "{field} of {} bytes (expected at most {MAX_TEXT})",
                        text.len()
                    )));
                }
            }
            if self.items.len() == self.expected {
                return Err(BlobError::ItemCount {
                    expected: self.expected,
                    found: self.items.len() + 1,
                });
            }
            self.items
                .push(&item.id, &item.title)
                .map_err(|e| bad(e.to_string()))?;
        }
        Ok(())
    }

    /// The items read, once every part hashed to `expected_sha256` and the count is complete.
    pub fn finish(self, expected_sha256: &[u8; 32]) -> Result<ItemTexts, BlobError> {
        let found: [u8; 32] = self.hasher.finalize().into();
        if &found != expected_sha256 {
            return Err(BlobError::ItemsMismatch {
                expected: hex(expected_sha256),
                found: hex(&found),
            });
        }
        if self.items.len() != self.expected {
            return Err(BlobError::ItemCount {
                expected: self.expected,
                found: self.items.len(),
            });
        }
        Ok(self.items)
    }
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
            DType::I8 | DType::I4 => {
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
                if dtype == DType::I4 {
                    // A block of rows at a time: the blob's pairs to int8, then into the
                    // kernel's layout (neither all held at once).
                    const BLOCK_ROWS: usize = 4096;
                    let packed_row = dim.div_ceil(2);
                    let block_rows = rows.clamp(1, BLOCK_ROWS);
                    let mut packed = vec![0u8; packed_row * block_rows];
                    let mut block = vec![0i8; dim * block_rows];
                    let mut nibbles = Nibbles::with_capacity(dim, rows);
                    for first in (0..rows).step_by(BLOCK_ROWS) {
                        let n = block_rows.min(rows - first);
                        let packed = &mut packed[..n * packed_row];
                        let block = &mut block[..n * dim];
                        self.take_into(packed, what)?;
                        for (row, bytes) in block
                            .chunks_exact_mut(dim)
                            .zip(packed.chunks_exact(packed_row))
                        {
                            for (pair, &b) in row.chunks_mut(2).zip(bytes) {
                                pair[0] = ((b << 4) as i8) >> 4;
                                if let Some(high) = pair.get_mut(1) {
                                    *high = (b as i8) >> 4;
                                } else if b >> 4 != 0 {
                                    return Err(BlobError::OutOfRange {
                                        field: "int4 padding (the high half of an odd-width row's last byte)",
                                        found: u64::from(b >> 4),
                                        expected: "0".into(),
                                    });
                                }
                            }
                        }
                        nibbles
                            .push_rows(block)
                            .expect("4-bit values lie in [-8, 7]");
                    }
                    RowData::I4 {
                        values: nibbles,
                        scales,
                        offset,
                    }
                } else {
                    let mut values = vec![0i8; values];
                    self.take_into(bytemuck::cast_slice_mut(&mut values), what)?;
                    RowData::I8 {
                        values,
                        scales,
                        offset,
                    }
                }
            }
        })
    }
}

impl From<BlobError> for crate::error::Error {
    fn from(e: BlobError) -> Self {
        crate::error::Error::Blob(Box::new(e))
    }
}
