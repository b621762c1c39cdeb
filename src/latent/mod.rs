//! The latent space: the memory of training states (`memory`, with its shards), item
//! representations and their distances (`score`), the item-to-item follows term (`follows`),
//! L2D-G means and L2D-L / density scoring (`aggregate`), the WebGPU scorer (`gpu`, with its
//! shader beside it) and the blob file that carries representations to the browser (`blob`).
//!
//! May import: `error`, `util`, `kernel`, `data`, `model`. Knows nothing of manifests,
//! training or evaluation.
//!
//! Module order: memory → score → follows → aggregate → gpu → blob

pub mod aggregate;
pub mod blob;
pub mod follows;
pub mod gpu;
pub mod memory;
pub mod score;
