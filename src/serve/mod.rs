//! Serving, the same natively and in the browser: the deployed folder's `manifest`, the
//! online pipeline from a history to a ranked list (`recommend`) and the beam-search baseline
//! (`decode`).
//!
//! May import every layer below (`error`, `util`, `kernel`, `data`, `model`, `latent`).
//!
//! Module order: manifest → recommend → backend → decode

pub mod backend;
pub mod decode;
pub mod manifest;
pub mod recommend;
