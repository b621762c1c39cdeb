//! The language model: a Qwen2-architecture causal LM (Hugging Face weight names and config),
//! its tokenizer and prompt template. Two operations matter for L2D:
//! - [`Model::last_hidden_batch`]: the final-norm hidden state at the last prompt token, one
//!   forward pass per prompt — the user representation;
//! - [`Qwen2::forward`] with a [`KvCache`] + [`Qwen2::logits`]: next-token logits for the
//!   autoregressive baseline.
//!
//! One implementation serves training and inference: `Pass::Train` uses differentiable
//! composite ops (candle's fused RMSNorm/RoPE/softmax have no backward), `Pass::Infer` the fused
//! kernels. A test proves the network equals `candle_transformers::models::qwen2::Model`.
//!
//! Files: `config` (config.json, l2d.json, the model files and fingerprint), `noise` (dropout:
//! training noise), `qwen2` (the network and its linear layers), `attention` (attention, key/value
//! caches, rotary tables, the causal rule), `int8_file` (the int8 weights file), `encoder`
//! (`Model`: a loaded model's hidden states; `QueryEncoder`: one visitor's session).
//!
//! May import: `error`, `util`, `kernel`, `data`.
//!
//! Module order: int8_file → config → noise → qwen2 → attention → encoder

mod attention;
mod config;
mod encoder;
pub mod int8_file;
mod noise;
mod qwen2;

pub use attention::{BeamCache, ROPE_POSITIONS};
pub use config::*;
pub use encoder::{Model, QueryEncoder, Reuse};
pub use noise::{check_probability, DropoutRates, Noise};
pub use qwen2::{KvCache, Pass, Qwen2, Weights, SMALL_ROWS};

// The files of this folder are one module split for reading: each sees the others' items.
use attention::*;
use noise::*;
use qwen2::*;

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::prompt::Template;
use crate::data::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::kernel::{
    attend, linear_rows, rms_norm_rows, rope, silu_mul, softmax_rows, Heads, QuantActs, QuantRows,
};
use int8_file::{Int8Weights, INT8_WEIGHTS_FILE};
