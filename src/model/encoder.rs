//! A loaded model (`Model`: the last prompt token's hidden state) and one visitor's session
//! (`QueryEncoder`: a history that grows by a click reuses the previous prompt's keys and values).

#[allow(unused_imports)]
use super::*;
use crate::util::Shard;

/// A loaded model: network, tokenizer, template, and its fingerprint.
pub struct Model {
    /// The network.
    pub net: Qwen2,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The prompt template the model was trained with.
    pub template: Template,
    /// [`model_fingerprint`] of the files it was loaded from.
    pub fingerprint: [u8; 32],
    /// Token ids of each title's prompt segment, tokenized once (see [`Model::prompt_ids`]).
    pub(super) segments: std::sync::Mutex<Segments>,
}

/// The prompt prefix's ids and each title segment's, filled on first use.
#[derive(Default)]
pub(super) struct Segments {
    pub(super) prefix: Option<Vec<u32>>,
    pub(super) titles: std::collections::HashMap<String, Vec<u32>>,
}

impl Model {
    /// Loads a model from its files' bytes (natively read from disk, in the browser fetched).
    pub fn from_files(files: &ModelFiles) -> Result<Self> {
        let cfg = ModelConfig::from_json(&files.config, CONFIG_FILE)?;
        let meta = ModelMeta::from_json(&files.meta, META_FILE)?;
        let tokenizer = Tokenizer::from_bytes(&files.tokenizer, TOKENIZER_FILE)?;
        if tokenizer.vocab_size() > cfg.vocab_size {
            return Err(Error::mismatch(
                "tokenizer.json vocabulary",
                format!("at most config.json vocab_size = {}", cfg.vocab_size),
                tokenizer.vocab_size(),
            ));
        }
        let int8 = Int8Weights::parse(&files.weights)?;
        let vb =
            VarBuilder::from_buffered_safetensors(files.weights.clone(), DType::F32, &Device::Cpu)?;
        let net = Qwen2::build(&cfg, vb, int8)?;
        Ok(Model::new(
            net,
            tokenizer,
            meta.template,
            model_fingerprint(files),
        ))
    }

    /// A model from its parts.
    pub fn new(
        net: Qwen2,
        tokenizer: Tokenizer,
        template: Template,
        fingerprint: [u8; 32],
    ) -> Self {
        Model {
            net,
            tokenizer,
            template,
            fingerprint,
            segments: Default::default(),
        }
    }

    /// Loads the model in directory `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        Self::from_files(&ModelFiles::read_dir(dir)?)
    }

    /// Token ids of the prompt for `history` (titles, oldest first, already truncated).
    ///
    /// With the compact template they are assembled, not tokenized: its special tokens split
    /// the text before pre-tokenization, so the prompt's ids are the prefix's followed by each
    /// title segment's (`title<|sep|>`), and each title is tokenized once and kept (equal to
    /// the tokenizer's ids; tested on every catalog title and on histories). Other templates
    /// join titles with plain text and go through the tokenizer.
    pub fn prompt_ids<S: AsRef<str>>(&self, history: &[S]) -> Result<Vec<u32>> {
        if self.template != Template::Compact {
            return self.tokenizer_prompt_ids(history);
        }
        let mut segments = self
            .segments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ids = match &segments.prefix {
            Some(prefix) => prefix.clone(),
            None => {
                let prefix = self.tokenizer.encode(&self.template.fixed_text())?;
                segments.prefix = Some(prefix.clone());
                prefix
            }
        };
        for title in history {
            let title = title.as_ref();
            if let Some(segment) = segments.titles.get(title) {
                ids.extend_from_slice(segment);
                continue;
            }
            let segment = self.tokenizer.encode(&self.template.target(title))?;
            ids.extend_from_slice(&segment);
            segments.titles.insert(title.to_string(), segment);
        }
        Ok(ids)
    }

    /// [`Model::prompt_ids`] through the tokenizer, whatever the template (the reference the
    /// assembled ids are tested against).
    pub fn tokenizer_prompt_ids<S: AsRef<str>>(&self, history: &[S]) -> Result<Vec<u32>> {
        self.tokenizer.encode(&self.template.prompt(history))
    }

    /// Token ids of the prompt for a history of catalog items (truncated as in training).
    pub fn history_prompt_ids(
        &self,
        catalog: &crate::data::catalog::Catalog,
        history: &[crate::data::catalog::ItemIndex],
    ) -> Result<Vec<u32>> {
        self.prompt_ids(&crate::data::prompt::history_titles(catalog, history))
    }

    /// Hidden size (dimension of L2D representations).
    pub fn hidden_size(&self) -> usize {
        self.net.cfg.hidden_size
    }

    /// Last-token final-norm hidden state of each prompt, in one batched forward pass.
    /// Prompts are right-padded: causal attention keeps real positions unaffected.
    pub fn last_hidden_batch(&self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        if prompts.iter().any(Vec::is_empty) {
            return Err(Error::invalid("prompt", "empty token sequence"));
        }
        let mut ids = Vec::with_capacity(prompts.len() * longest);
        for p in prompts {
            ids.extend_from_slice(p);
            ids.extend(std::iter::repeat_n(0u32, longest - p.len()));
        }
        let ids = Tensor::from_vec(ids, (prompts.len(), longest), &Device::Cpu)?;
        let last: Vec<usize> = prompts.iter().map(|p| p.len() - 1).collect();
        let hidden = self.net.forward_rows(&ids, None, &last)?;
        (0..prompts.len())
            .map(|row| Ok(hidden.i((row, 0))?.to_vec1::<f32>()?))
            .collect()
    }

    /// Last-token hidden states of many prompts, row-major (`prompts.len()` × hidden size), in
    /// batches of `batch_size` prompts of similar length (little padding); `progress(done,
    /// total)` is called after each batch.
    pub fn last_hidden_many(
        &self,
        prompts: &[Vec<u32>],
        batch_size: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        let (_, states) = self.last_hidden_shard(prompts, batch_size, Shard::WHOLE, progress)?;
        Ok(states)
    }

    /// The part of [`Model::last_hidden_many`] that `shard` computes: the length-sorted batches
    /// of the whole run are dealt round-robin to the shards, so every prompt is computed in
    /// exactly the batch a single run puts it in (bit-identical states). Returns the prompt
    /// indices covered (ascending) and their states, row-major in that order.
    pub fn last_hidden_shard(
        &self,
        prompts: &[Vec<u32>],
        batch_size: usize,
        shard: Shard,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Vec<usize>, Vec<f32>)> {
        let dim = self.hidden_size();
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| prompts[i].len());
        let mine: Vec<&[usize]> = order
            .chunks(batch_size.max(1))
            .enumerate()
            .filter(|(b, _)| b % shard.count == shard.index)
            .map(|(_, c)| c)
            .collect();
        let mut covered: Vec<usize> = mine.iter().flat_map(|c| c.iter().copied()).collect();
        covered.sort_unstable();
        let total = covered.len();
        let mut row_of = vec![usize::MAX; prompts.len()];
        for (row, &i) in covered.iter().enumerate() {
            row_of[i] = row;
        }
        let mut states = vec![0f32; total * dim];
        let mut done = 0;
        for chunk in mine {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            let hidden = self.last_hidden_batch(&batch)?;
            for (&i, h) in chunk.iter().zip(hidden) {
                let row = row_of[i];
                states[row * dim..(row + 1) * dim].copy_from_slice(&h);
            }
            done += chunk.len();
            progress(done, total);
        }
        Ok((covered, states))
    }

    /// The L2D representation of one history of titles.
    pub fn last_hidden<S: AsRef<str>>(&self, history: &[S]) -> Result<Vec<f32>> {
        let ids = self.prompt_ids(history)?;
        Ok(self.last_hidden_batch(&[ids])?.remove(0))
    }
}

/// How [`QueryEncoder::encode`] obtained a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// The same prompt was encoded recently: its state, no forward pass.
    Memo,
    /// The previous prompt is a prefix of this one (a history grown by appended items whose
    /// window has not slid): its keys and values were reused and only these new tokens run.
    Extended { new_tokens: usize },
    /// A full forward pass.
    Full,
}

/// The query encoder of one visitor's session: a history that grows by a click keeps its
/// prompt as a prefix (compact template, window not slid), so the previous prompt's key/value
/// cache is reused and only the new title's tokens run — exact, since attention is causal. The
/// last [`QueryEncoder::MEMO`] prompts' states are kept, so asking again costs nothing. Memory
/// is bounded: one cache (at most the model's positions) and `MEMO` states.
#[derive(Debug, Default)]
pub struct QueryEncoder {
    pub(super) last: Option<(Vec<u32>, KvCache)>,
    pub(super) memo: std::collections::VecDeque<(Vec<u32>, Vec<f32>)>,
}

impl QueryEncoder {
    /// Prompts whose states are memoized.
    pub const MEMO: usize = 32;

    /// An encoder with nothing cached.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last-token final-norm hidden state of `ids` (equal to
    /// [`Model::last_hidden_batch`] of it within float rounding), and how it was obtained.
    pub fn encode(&mut self, model: &Model, ids: &[u32]) -> Result<(Vec<f32>, Reuse)> {
        if ids.is_empty() {
            return Err(Error::invalid("prompt", "empty token sequence"));
        }
        if let Some(at) = self.memo.iter().position(|(p, _)| p == ids) {
            let entry = self.memo.remove(at).expect("found");
            let state = entry.1.clone();
            self.memo.push_back(entry);
            return Ok((state, Reuse::Memo));
        }
        let extend = self
            .last
            .take()
            .filter(|(prev, cache)| {
                prev.len() < ids.len() && ids.starts_with(prev) && cache.len() == prev.len()
            })
            .map(|(_, cache)| cache);
        let (mut cache, start, reuse) = match extend {
            Some(cache) => {
                let start = cache.len();
                let reuse = Reuse::Extended {
                    new_tokens: ids.len() - start,
                };
                (cache, start, reuse)
            }
            None => (model.net.new_cache(), 0, Reuse::Full),
        };
        let new = &ids[start..];
        let tensor = Tensor::new(new, &Device::Cpu)?.unsqueeze(0)?;
        let hidden = model
            .net
            .forward_rows(&tensor, Some(&mut cache), &[new.len() - 1])?;
        let state = hidden.i((0, 0))?.to_vec1::<f32>()?;
        self.last = Some((ids.to_vec(), cache));
        if self.memo.len() == Self::MEMO {
            self.memo.pop_front();
        }
        self.memo.push_back((ids.to_vec(), state.clone()));
        Ok((state, reuse))
    }
}
