//! The offline work, native only (one `cfg` gate in `lib.rs` keeps all of it out of the wasm
//! build): synthetic catalogs (`synth`), metrics (`eval`), the methods `l2d eval` compares (`methods`), the choice of scoring on valid (`choose`),
//! benchmarks (`bench`), data-parallel training steps (`data_parallel`), the epoch ceiling and learning-rate schedule (`schedule`), training (`train`), the SASRec baseline (`sasrec`), the rules of
//! `l2d build` and of a deployed site (`site`) and the build's cost model (`cost`).
//!
//! May import every layer below. Nothing below imports it.
//!
//! Module order: synth → eval → bench → data_parallel → schedule → train → sasrec → recipe → deploy → methods → choose → site → cost

pub mod bench;
pub mod choose;
pub mod cost;
pub mod data_parallel;
pub mod deploy;
pub mod eval;
pub mod methods;
pub mod recipe;
pub mod sasrec;
pub mod schedule;
pub mod site;
pub mod synth;
pub mod train;
