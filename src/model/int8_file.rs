//! The model's weights as the browser downloads them when the manifest says
//! `"weights": "int8"`: [`INT8_WEIGHTS_FILE`], a safetensors file (Hugging Face's format, dtype
//! `I8`) holding each linear layer's weight exactly as [`QuantRows`] multiplies it at inference
//! — the integers as `I8` under the weight's own name, one f32 scale per row as
//! `<name>_scale` — and every other tensor (embeddings, norms, biases) as in
//! `model.safetensors`.
//!
//! The quantization is the one `set_weights(Int8)` does at load, done once when the deployment
//! is built, so a model loaded from this file computes the same bits as `model.safetensors`
//! quantized at load (tested), with about half its bytes and none of the f32 weight copies in
//! memory. The file's metadata records the sha256 of the `model.safetensors` it came from; the
//! model fingerprint uses it, so blobs built from the source model load with either file.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use crate::kernel::QuantRows;
use crate::{Error, Result};

/// File name of the int8 weights in a model directory (written by `l2d manifest --weights
/// int8`).
pub const INT8_WEIGHTS_FILE: &str = "model.int8.safetensors";

/// The one metadata key (one, so the header's bytes do not depend on a map's order): the sha256
/// (hex) of the `model.safetensors` the file was made from. Its presence marks the form.
const SOURCE_KEY: &str = "l2d_int8_source_sha256";

/// The linear layers a Qwen2 block multiplies (tensor names end in `<layer>.weight`).
const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Whether tensor `name` is a linear layer's weight (what the int8 file stores as integers).
fn is_projection_weight(name: &str) -> bool {
    name.strip_suffix(".weight")
        .and_then(|stem| stem.rsplit('.').next())
        .is_some_and(|layer| PROJECTIONS.contains(&layer))
}

fn scale_name(name: &str) -> String {
    format!("{name}_scale")
}

fn format_error(source: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(source, format!("not a readable safetensors file ({e})"))
}

/// The int8 weights file of `source` (the bytes of `model.safetensors`).
pub fn write(source: &[u8]) -> Result<Vec<u8>> {
    let tensors =
        SafeTensors::deserialize(source).map_err(|e| format_error("model.safetensors", e))?;
    // Owned bytes first, views over them after (the views borrow).
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut copied = Vec::new();
    for (name, view) in tensors.iter() {
        if !is_projection_weight(name) {
            copied.push((name.to_string(), view));
            continue;
        }
        let shape = view.shape().to_vec();
        let [out, inp] = shape[..] else {
            return Err(Error::mismatch(
                format!("model.safetensors: {name}"),
                "a 2-dimensional weight (out × in)",
                format!("shape {shape:?}"),
            ));
        };
        let values = float_values(name, view.dtype(), view.data())?;
        let rows = QuantRows::new(&values, inp);
        let ints: Vec<u8> = rows.row_major().iter().map(|&v| v as i8 as u8).collect();
        let scales: Vec<u8> = rows.scales().iter().flat_map(|s| s.to_le_bytes()).collect();
        owned.push((name.to_string(), Dtype::I8, vec![out, inp], ints));
        owned.push((scale_name(name), Dtype::F32, vec![out], scales));
    }
    let mut views = Vec::with_capacity(owned.len() + copied.len());
    for (name, dtype, shape, data) in &owned {
        let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
            .map_err(|e| format_error(name, e))?;
        views.push((name.clone(), view));
    }
    views.extend(copied);
    let metadata = HashMap::from([(
        SOURCE_KEY.to_string(),
        format!("{:x}", Sha256::digest(source)),
    )]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| format_error(INT8_WEIGHTS_FILE, e))
}

/// A tensor's values as f32, from the float dtypes model files use.
fn float_values(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    let halves = |f: fn(u16) -> f32| {
        data.chunks_exact(2)
            .map(|b| f(u16::from_le_bytes([b[0], b[1]])))
            .collect()
    };
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => halves(|b| half::f16::from_bits(b).to_f32()),
        Dtype::BF16 => halves(|b| half::bf16::from_bits(b).to_f32()),
        other => {
            return Err(Error::mismatch(
                format!("model.safetensors: {name}"),
                "dtype F32, F16 or BF16",
                format!("{other:?}"),
            ))
        }
    })
}

/// The integer weights of an int8 weights file, taken out by name while the network is built.
pub struct Int8Weights {
    rows: HashMap<String, QuantRows>,
}

/// Whether `bytes` is an int8 weights file (its metadata says so); the source model's sha256
/// when it is.
pub fn source_sha256(bytes: &[u8]) -> Result<Option<[u8; 32]>> {
    let Ok((_, metadata)) = SafeTensors::read_metadata(bytes) else {
        // Not safetensors at all: the loader reports it with the file's name.
        return Ok(None);
    };
    let Some(meta) = metadata.metadata() else {
        return Ok(None);
    };
    let Some(hex) = meta.get(SOURCE_KEY).map(String::as_str) else {
        return Ok(None);
    };
    let digest = (hex.len() == 64)
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten()
        .and_then(|d| <[u8; 32]>::try_from(d).ok());
    match digest {
        Some(d) => Ok(Some(d)),
        None => Err(Error::mismatch(
            format!("{INT8_WEIGHTS_FILE}: metadata {SOURCE_KEY}"),
            "the source model's sha256 (64 hex digits)",
            format!("`{hex}`"),
        )),
    }
}

/// The sha256 a model fingerprint takes for a weights file: the file's own, or for an int8
/// weights file its source model's (so one fingerprint names the model in either form).
pub fn fingerprint_digest(bytes: &[u8]) -> [u8; 32] {
    match source_sha256(bytes) {
        Ok(Some(source)) => source,
        _ => Sha256::digest(bytes).into(),
    }
}

impl Int8Weights {
    /// The integer weights of `bytes` when it is an int8 weights file (`None` for a plain
    /// model file).
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>> {
        if source_sha256(bytes)?.is_none() {
            return Ok(None);
        }
        let tensors =
            SafeTensors::deserialize(bytes).map_err(|e| format_error(INT8_WEIGHTS_FILE, e))?;
        let mut rows = HashMap::new();
        for (name, view) in tensors.iter() {
            if !is_projection_weight(name) {
                continue;
            }
            let what = |part: &str| format!("{INT8_WEIGHTS_FILE}: {part}");
            let (out, inp) = match (view.dtype(), view.shape()) {
                (Dtype::I8, &[out, inp]) => (out, inp),
                (dtype, shape) => {
                    return Err(Error::mismatch(
                        what(name),
                        "dtype I8, shape [out, in]",
                        format!("{dtype:?} {shape:?}"),
                    ))
                }
            };
            let scale = scale_name(name);
            let scales = tensors.tensor(&scale).map_err(|_| {
                Error::mismatch(what(&scale), format!("the row scales of {name}"), "none")
            })?;
            if scales.dtype() != Dtype::F32 || scales.shape() != [out] {
                return Err(Error::mismatch(
                    what(&scale),
                    format!("dtype F32, shape [{out}]"),
                    format!("{:?} {:?}", scales.dtype(), scales.shape()),
                ));
            }
            let scales: Vec<f32> = float_values(&scale, Dtype::F32, scales.data())?;
            if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
                return Err(Error::mismatch(what(&scale), "finite scales ≥ 0", bad));
            }
            let values: Vec<i16> = view.data().iter().map(|&b| i16::from(b as i8)).collect();
            if values.contains(&-128) {
                return Err(Error::mismatch(
                    what(name),
                    "integers in [-127, 127]",
                    "-128",
                ));
            }
            rows.insert(name.to_string(), QuantRows::from_parts(values, scales, inp));
        }
        Ok(Some(Int8Weights { rows }))
    }

    /// The weight `name` (`out × inp`), removed from the file's set.
    pub fn take(&mut self, name: &str, out: usize, inp: usize) -> Result<QuantRows> {
        let rows = self.rows.remove(name).ok_or_else(|| {
            Error::mismatch(
                format!("{INT8_WEIGHTS_FILE}: {name}"),
                "an I8 weight",
                "none",
            )
        })?;
        if (rows.out(), rows.inp()) != (out, inp) {
            return Err(Error::mismatch(
                format!("{INT8_WEIGHTS_FILE}: {name}"),
                format!("shape [{out}, {inp}] (config.json)"),
                format!("[{}, {}]", rows.out(), rows.inp()),
            ));
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_weights_are_recognised_by_name() {
        for (name, expected) in [
            ("model.layers.0.self_attn.q_proj.weight", true),
            ("model.layers.11.mlp.down_proj.weight", true),
            ("model.layers.0.self_attn.q_proj.bias", false),
            ("model.embed_tokens.weight", false),
            ("model.layers.0.input_layernorm.weight", false),
            ("lm_head.weight", false),
            ("q_proj.weight", true),
        ] {
            assert_eq!(is_projection_weight(name), expected, "{name}");
        }
    }
}
