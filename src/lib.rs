//! l2d — Light Latent-space Decoding for LLM-based recommendation (EMNLP 2025), natively and
//! in the browser. The layers, lowest first; a layer imports only the layers before it
//! (`tests/architecture.rs` enforces it, ARCHITECTURE.md maps them):
//!
//! `error`, `util` → `kernel` → `data` → `model` → `latent` → `serve` → `offline` → the CLI
//! (`src/cli/`) and the browser API (`web`).

pub mod error;
pub mod util;

pub mod kernel;

pub mod data;

pub mod model;

pub mod latent;

pub mod serve;

/// Native only: nothing the browser runs lives here, so none of it reaches the wasm build.
#[cfg(not(target_arch = "wasm32"))]
pub mod offline;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
