//! One case of `tests/fixtures/native_results.json`: written by the native parity test
//! (`tests/web_parity.rs`), checked there and by the wasm build in headless Chromium
//! (`tests/web.rs`).

use serde::{Deserialize, Serialize};

/// A fixed history and what the native build gives for it with the shipped files.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
pub struct Case {
    /// Item ids, oldest first.
    pub history: Vec<String>,
    /// The last prompt token's hidden state.
    pub hidden: Vec<f32>,
    /// Top-20 ids of L2D-G.
    pub global: Vec<String>,
    /// Top-20 ids of L2D-L (M = 20).
    pub local: Vec<String>,
    /// Top-20 ids of the manifest's default scoring.
    pub shipped: Vec<String>,
    /// Top-20 ids of the first tier (the follows file's item-to-item ranking, history left
    /// out), which `tests/follows.mjs` checks the widget's JavaScript against.
    #[serde(default)]
    pub follows: Vec<String>,
}
