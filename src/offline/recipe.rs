//! The blob recipe: which blobs a model directory ships and how a memory is cut to a byte
//! budget (`l2d blobs`, `l2d blob`, `l2d update`). Offline only; the browser reads the result.

use crate::data::catalog::Catalog;
use crate::error::{Error, Result};
use crate::latent::aggregate::Geometry;
use crate::latent::blob::{Blob, BlobKind};
use crate::latent::follows::Follows;
use crate::latent::memory::Memory;
use crate::model::Model;
use crate::serve::recommend::Representations;

/// What [`build_blob`] writes.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobSpec {
    pub kind: BlobKind,
    pub dtype: crate::latent::score::DType,
    /// Fraction of the memory to keep (the largest one tried under `max_bytes`).
    pub fraction: f64,
    /// Which states the fraction keeps.
    pub keep: crate::latent::memory::Keep,
    /// Largest blob size in bytes: a memory blob keeps the largest fraction that fits.
    pub max_bytes: Option<u64>,
    /// Follow weights to store (the `follows` scoring option), from every sample of the
    /// memory; under `max_bytes` they take at most [`FOLLOWS_SHARE`] of it, their weakest
    /// pairs dropped first, and the states the rest.
    pub follows: Option<Follows>,
}

/// The most of a blob's byte budget its follow weights may take (the states take the rest): a
/// share of the budget, not a tuned constant.
pub const FOLLOWS_SHARE: f64 = 0.25;

/// Bytes (before compression) of what the widget's first tier fetches: the items parts and the
/// follows file, whose weakest follow weights go until both fit. Served gzip, that is about
/// 0.4 MB: under Slow 4G (1.6 Mbps) the first recommendations come within about 3 s.
pub const FIRST_TIER_BYTES: u64 = 640 * 1024;

/// The download budget of the recipe, in bytes as stored (gzip only shrinks them): the model
/// files a first visit fetches (with the int8 weights file) plus the memory blob and its items
/// parts. It is the first-visit goal of 10 MB less the page's own code (the wasm module and
/// scripts, about 1.6 MB gzip), so a whole first visit stays within 10 MB.
pub const DOWNLOAD_BUDGET: u64 = 8_400_000;

/// The recipe's memory blob rows: int4, which keeps twice the states of int8 in the same
/// bytes (docs/ablations.md §6).
pub const MEMORY_DTYPE: crate::latent::score::DType = crate::latent::score::DType::I4;

/// The recipe's blobs, by file name: the global blob (f16) and the memory blob (rows of
/// `memory_dtype`, int8 or int4; the newest states, in time order for the D3 protocol, that
/// keep it within `blob_budget` bytes with the items parts), both with cold-start title
/// vectors and `follows` when given.
pub fn recipe_blobs(
    blob_budget: u64,
    memory_dtype: crate::latent::score::DType,
    follows: Option<&Follows>,
) -> [(&'static str, BlobSpec); 2] {
    let spec = |kind, dtype, max_bytes| BlobSpec {
        kind,
        dtype,
        fraction: 1.0,
        keep: crate::latent::memory::Keep::Newest,
        max_bytes,
        follows: follows.cloned(),
    };
    [
        (
            "global.blob",
            spec(BlobKind::Global, crate::latent::score::DType::F16, None),
        ),
        (
            "memory.blob",
            spec(BlobKind::Memory, memory_dtype, Some(blob_budget)),
        ),
    ]
}

/// The blob of a fraction of `memory` (kept by `spec.keep`), with cold-start title vectors when
/// `model` is given (the `title` rule) and `spec.follows` (cut to their share of `max_bytes`),
/// shrinking the fraction until the blob and its items parts fit `max_bytes` (rows are the
/// part that scales with it). Returns the blob and the fraction used.
pub fn build_blob(
    memory: &Memory,
    catalog: &Catalog,
    fingerprint: [u8; 32],
    model: Option<&Model>,
    spec: &BlobSpec,
) -> Result<(Blob, f64)> {
    let follows = spec.follows.as_ref().map(|f| match spec.max_bytes {
        Some(max) => f.within((max as f64 * FOLLOWS_SHARE) as usize),
        None => f.clone(),
    });
    let build = |fraction: f64| -> Result<Blob> {
        let kept = memory.select(&crate::latent::memory::kept(
            &memory.items,
            fraction,
            spec.keep,
        )?);
        let mut blob = Blob::from_memory(spec.kind, fingerprint, catalog, &kept, spec.dtype)?;
        if let Some(follows) = &follows {
            blob = blob.with_follows(follows.clone())?;
        }
        let Some(model) = model else { return Ok(blob) };
        let mut reps = Representations::from_memory(&kept, catalog.len(), Geometry::plain())?;
        reps.fill_cold_from_titles(model, catalog)?;
        Ok(match reps.cold_vectors()? {
            Some(cold) => blob.with_cold(&cold)?,
            None => blob,
        })
    };
    // The items parts do not depend on the fraction: their size is counted once.
    let items = crate::latent::blob::items_bytes(catalog.texts());
    let mut fraction = spec.fraction;
    let mut attempts = 0;
    let (size, max) = loop {
        let blob = build(fraction)?;
        let Some(max) = spec.max_bytes else {
            return Ok((blob, fraction));
        };
        let size = (blob.to_bytes().len() + items) as u64;
        attempts += 1;
        if size <= max {
            return Ok((blob, fraction));
        }
        // Only a memory blob shrinks with the fraction (its rows); give up after 9 tries.
        let rows = (blob.matrix.rows() as u64 * blob.row_bytes()) as f64;
        fraction *= (1.0 - (size - max) as f64 / rows.max(1.0)) * 0.995;
        if spec.kind == BlobKind::Global || fraction <= 0.0 || attempts == 9 {
            break (size, max);
        }
    };
    Err(Error::invalid(
        "max bytes",
        format!(
            "a {:?} blob cannot fit {max} bytes (smallest tried: {size})",
            spec.kind
        ),
    ))
}
