//! l2d — Light Latent-space Decoding for LLM-based recommendation (EMNLP 2025), natively and
//! in the browser. See ARCHITECTURE.md for the code map.

pub mod aggregate;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod blob;
#[cfg(not(target_arch = "wasm32"))]
pub mod build;
pub mod catalog;
pub mod dataset;
pub mod decode;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod eval;
pub mod follows;
pub mod gpu;
pub mod int8_file;
pub mod kernel;
pub mod manifest;
pub mod memory;
pub mod model;
pub mod prompt;
pub mod pyliteral;
pub mod recommend;
#[cfg(not(target_arch = "wasm32"))]
pub mod sasrec;
pub mod score;
#[cfg(not(target_arch = "wasm32"))]
pub mod synth;
pub mod tokenizer;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
