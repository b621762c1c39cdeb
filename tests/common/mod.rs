//! The shipped default model and its blobs, as the native tests load them.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use l2d::latent::blob::Blob;
use l2d::model::Model;

/// `models/default` in this checkout.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
}

/// The shipped model.
pub fn default_model() -> Model {
    Model::load_dir(&default_dir()).unwrap()
}

/// A shipped blob (`memory.blob` or `global.blob`) with its items parts, parsed.
pub fn default_blob(name: &str) -> Blob {
    Blob::read_file(&default_dir().join(name)).unwrap()
}

/// Titles of the shipped catalog spread over it: every `step`-th item of the memory blob's,
/// `count` of them (histories for tests on the shipped model).
pub fn spread_titles(step: usize, count: usize) -> Vec<String> {
    default_blob("memory.blob")
        .items
        .iter()
        .step_by(step)
        .take(count)
        .map(|i| i.title.to_string())
        .collect()
}

/// A small Qwen2 network with seeded random weights (every variable, biases and norm weights
/// included, drawn from N(0, 0.3²) around its initial value), for tests that need a network but
/// not the shipped one. The `VarMap` holds its variables.
pub fn seeded_net(
    cfg: &l2d::model::ModelConfig,
    seed: u64,
) -> (candle_nn::VarMap, l2d::model::Qwen2) {
    use rand::{Rng, SeedableRng};
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(
        &varmap,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    );
    let net = l2d::model::Qwen2::new(cfg, vb).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let values: Vec<f32> = base
            .iter()
            .map(|v| v + 0.3 * (rng.random::<f32>() * 2.0 - 1.0) * 1.7)
            .collect();
        let t =
            candle_core::Tensor::from_vec(values, var.shape(), &candle_core::Device::Cpu).unwrap();
        var.set(&t).unwrap();
    }
    drop(data);
    (varmap, net)
}

/// A small seeded model (2 layers, hidden 32) with the shipped tokenizer and the compact
/// template: for tests of the model's mechanics (caches, read-outs, padding) that need prompts
/// but not the shipped weights.
pub fn seeded_model(seed: u64) -> Model {
    let tokenizer =
        l2d::data::tokenizer::Tokenizer::from_file(&default_dir().join("tokenizer.json")).unwrap();
    let cfg = l2d::model::ModelConfig::small(tokenizer.vocab_size(), 32, 2, 4, 64);
    let (_vars, net) = seeded_net(&cfg, seed);
    Model::new(
        net,
        tokenizer,
        l2d::data::prompt::Template::Compact,
        [0; 32],
    )
}
