//! A model's files: Hugging Face `config.json`, l2d's `l2d.json`, the four files that define a
//! model and the fingerprint a blob records.

#[allow(unused_imports)]
use super::*;

/// Hugging Face `config.json` of a Qwen2 model (the fields l2d reads and writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Always `["Qwen2ForCausalLM"]` for models l2d writes.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `"qwen2"`.
    #[serde(default)]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default)]
    pub torch_dtype: Option<String>,
}

pub(super) fn default_rope_theta() -> f64 {
    10_000.0
}
pub(super) fn default_rms_norm_eps() -> f64 {
    1e-6
}
pub(super) fn default_act() -> String {
    "silu".into()
}

impl ModelConfig {
    /// A config for a small from-scratch model.
    pub fn small(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        intermediate: usize,
    ) -> Self {
        ModelConfig {
            architectures: vec!["Qwen2ForCausalLM".into()],
            model_type: "qwen2".into(),
            vocab_size,
            hidden_size: hidden,
            intermediate_size: intermediate,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: heads,
            max_position_embeddings: 1024,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: true,
            hidden_act: "silu".into(),
            use_sliding_window: false,
            sliding_window: Some(1024),
            max_window_layers: Some(layers),
            bos_token_id: None,
            eos_token_id: None,
            torch_dtype: Some("float32".into()),
        }
    }

    /// Parses and validates `config.json` text.
    pub fn from_json(text: &[u8], source: &str) -> Result<Self> {
        let cfg: ModelConfig = serde_json::from_slice(text).map_err(|e| Error::Json {
            file: source.into(),
            source: e,
        })?;
        cfg.validate(source)?;
        Ok(cfg)
    }

    /// Checks the invariants the network relies on.
    pub fn validate(&self, source: &str) -> Result<()> {
        let bad = |field: &str, expected: String, found: String| {
            Err(Error::mismatch(
                format!("{source}: {field}"),
                expected,
                found,
            ))
        };
        if !self.architectures.is_empty()
            && !self.architectures.iter().any(|a| a == "Qwen2ForCausalLM")
        {
            return bad(
                "architectures",
                "[\"Qwen2ForCausalLM\"]".into(),
                format!("{:?}", self.architectures),
            );
        }
        if self.hidden_act != "silu" {
            return bad(
                "hidden_act",
                "\"silu\"".into(),
                format!("{:?}", self.hidden_act),
            );
        }
        let limits = [
            ("vocab_size", self.vocab_size, 1 << 20),
            ("hidden_size", self.hidden_size, 1 << 15),
            ("intermediate_size", self.intermediate_size, 1 << 17),
            ("num_hidden_layers", self.num_hidden_layers, 512),
            ("num_attention_heads", self.num_attention_heads, 1024),
            ("num_key_value_heads", self.num_key_value_heads, 1024),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 20,
            ),
        ];
        for (field, value, max) in limits {
            if value == 0 || value > max {
                return bad(field, format!("1..={max}"), value.to_string());
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads)
            || !(self.hidden_size / self.num_attention_heads).is_multiple_of(2)
        {
            return bad(
                "hidden_size / num_attention_heads",
                "an even whole head dimension".into(),
                format!("{} / {}", self.hidden_size, self.num_attention_heads),
            );
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(
                "num_key_value_heads",
                format!(
                    "a divisor of num_attention_heads ({})",
                    self.num_attention_heads
                ),
                self.num_key_value_heads.to_string(),
            );
        }
        Ok(())
    }

    pub(super) fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// `l2d.json` next to the model files: which prompt template the model was trained with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Prompt template; every consumer renders prompts with it.
    pub template: Template,
}

impl ModelMeta {
    /// Metadata for a model trained with `template`.
    pub fn new(template: Template) -> Self {
        ModelMeta { template }
    }

    /// Parses `l2d.json` text.
    pub fn from_json(text: &[u8], source: &str) -> Result<Self> {
        serde_json::from_slice(text).map_err(|e| Error::Json {
            file: source.into(),
            source: e,
        })
    }

    /// Writes `dir/l2d.json`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(META_FILE);
        let text = serde_json::to_string_pretty(self).expect("meta serializes") + "\n";
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }
}

/// File names of a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// Weights, safetensors.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Hugging Face tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// l2d's own metadata (template).
pub const META_FILE: &str = "l2d.json";
/// The files that define a model, in fingerprint order.
pub const MODEL_FILES: [&str; 4] = [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, META_FILE];

/// The model fingerprint: sha256 over the four model files' sha256 values in [`MODEL_FILES`]
/// order (for an int8 weights file, the sha256 of the `model.safetensors` it was made from:
/// one model, one fingerprint). A blob records it so it is never used with another model.
pub fn model_fingerprint(files: &ModelFiles) -> [u8; 32] {
    let [config, weights, tokenizer, meta] = files.in_order();
    let mut hasher = Sha256::new();
    hasher.update(Sha256::digest(config));
    hasher.update(crate::model::int8_file::fingerprint_digest(weights));
    hasher.update(Sha256::digest(tokenizer));
    hasher.update(Sha256::digest(meta));
    hasher.finalize().into()
}

/// The raw bytes of a model directory's files (how the browser hands them over).
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub config: Vec<u8>,
    pub weights: Vec<u8>,
    pub tokenizer: Vec<u8>,
    pub meta: Vec<u8>,
}

impl ModelFiles {
    /// Reads the four files of `dir`.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| Error::io(&path, e))
        };
        Ok(ModelFiles {
            config: read(CONFIG_FILE)?,
            weights: read(WEIGHTS_FILE)?,
            tokenizer: read(TOKENIZER_FILE)?,
            meta: read(META_FILE)?,
        })
    }

    pub(super) fn in_order(&self) -> [&[u8]; 4] {
        [&self.config, &self.weights, &self.tokenizer, &self.meta]
    }
}
