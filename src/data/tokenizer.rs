//! Byte-level BPE tokenizers: training one on catalog titles plus template text, and loading
//! a standard Hugging Face `tokenizer.json` (from a file natively, from bytes in the browser).

use std::collections::HashSet;
use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder,
};

use crate::data::prompt::{Template, SPECIAL_TOKENS};
use crate::error::{Error, Result};

/// A loaded tokenizer. Prompts are encoded without any added special tokens: the template
/// spells out the ones it needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{context}: {e}"))
}

impl Tokenizer {
    /// Parses a `tokenizer.json` document; `source` names it in errors.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| tok_err(source, e))?;
        Ok(Tokenizer { inner })
    }

    /// Reads a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| tok_err("encode", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids` (special tokens kept, so a decoded title shows its end marker).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| tok_err("decode", e))
    }

    /// Id of a token that must exist (such as a template's special tokens).
    pub fn token_id(&self, token: &str) -> Result<u32> {
        self.inner
            .token_to_id(token)
            .ok_or_else(|| tok_err("vocabulary", format!("token `{token}` is missing")))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, false)
            .map_err(|e| tok_err(&path.display().to_string(), e))
    }
}

/// Trains a byte-level BPE tokenizer on `titles` plus the fixed text of `template`, with the
/// l2d special tokens at ids 0..4.
pub fn train_bpe<'a>(
    titles: impl Iterator<Item = &'a str>,
    template: &Template,
    vocab_size: usize,
) -> Result<Tokenizer> {
    if vocab_size < 300 {
        return Err(Error::invalid(
            "vocab size",
            format!("{vocab_size} (byte-level BPE needs at least 300)"),
        ));
    }
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect::<HashSet<_>>())
        .build();
    let mut builder = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(ByteLevel::new(false, true, true).into()))
    .with_decoder(Some(ByteLevel::default().into()))
    .build()
    .map_err(|e| tok_err("build", e))?;
    let fixed = template.fixed_text();
    let lines: Vec<String> = std::iter::once(fixed)
        .chain(titles.map(str::to_string))
        .collect();
    builder
        .train(&mut trainer, lines.into_iter())
        .map_err(|e| tok_err("train", e))?;
    Ok(Tokenizer {
        inner: builder.into(),
    })
}
