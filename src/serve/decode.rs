//! The language-space baseline (D3): beam search over the title tokens, constrained to a prefix
//! trie of every catalog title as tokenized after the prompt (each ending with the end marker),
//! batched over beams: the prompt's keys and values are computed once and shared by every beam,
//! the generated tokens' are preallocated and written in place, and beams are reordered by
//! copying only the generated part, only when the order changes ([`BeamCache`]). Length
//! penalty 0: a hypothesis scores the sum of its token log-probabilities. The order of finished
//! titles is the ranking; a title maps to every item carrying it (D3's rule for duplicate
//! titles).

use std::collections::HashMap;

use candle_core::{Device, Tensor, D};

use crate::data::catalog::{Catalog, ItemIndex};
use crate::error::{Error, Result};
use crate::model::{BeamCache, Model};

#[derive(Debug, Default, Clone)]
struct Node {
    children: Vec<(u32, usize)>,
    /// Items whose full target text ends at this node.
    items: Vec<ItemIndex>,
}

/// Longest title, in tokens, a beam search or greedy decoding generates.
pub const MAX_TITLE_TOKENS: usize = 64;

/// Prefix trie of every catalog title's target token ids.
#[derive(Debug, Clone)]
pub struct TitleTrie {
    nodes: Vec<Node>,
}

impl TitleTrie {
    /// Tokenizes every title as the model would generate it and builds the trie.
    pub fn build(model: &Model, catalog: &Catalog) -> Result<Self> {
        let mut nodes = vec![Node::default()];
        let mut lookup: HashMap<(usize, u32), usize> = HashMap::new();
        for (index, item) in catalog.items().enumerate() {
            let ids = model.tokenizer.encode(&model.template.target(item.title))?;
            let mut node = 0;
            for id in ids {
                node = match lookup.get(&(node, id)) {
                    Some(&child) => child,
                    None => {
                        nodes.push(Node::default());
                        let child = nodes.len() - 1;
                        nodes[node].children.push((id, child));
                        lookup.insert((node, id), child);
                        child
                    }
                };
            }
            nodes[node].items.push(index as ItemIndex);
        }
        Ok(TitleTrie { nodes })
    }

    /// Number of trie nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a trie without titles.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }
}

/// One finished hypothesis: the items of its title and its log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub items: Vec<ItemIndex>,
    pub log_prob: f32,
}

struct Hypothesis {
    node: usize,
    log_prob: f32,
    row: usize,
}

/// Constrained beam search with `beam` beams from `prompt_ids`; returns up to `beam` finished
/// titles, best first. `max_tokens` bounds the title length.
pub fn beam_search(
    model: &Model,
    trie: &TitleTrie,
    prompt_ids: &[u32],
    beam: usize,
    max_tokens: usize,
) -> Result<Vec<Finished>> {
    if beam == 0 {
        return Err(Error::invalid("beam", "0 (need at least one beam)"));
    }
    let net = &model.net;
    let mut prompt_cache = net.new_cache();
    let prompt = Tensor::new(prompt_ids, &Device::Cpu)?.unsqueeze(0)?;
    let last = net.forward_rows(&prompt, Some(&mut prompt_cache), &[prompt_ids.len() - 1])?;
    let mut beams = BeamCache::new(net, 1, max_tokens)?;
    let mut log_probs = candle_nn::ops::log_softmax(&net.logits(&last)?.squeeze(1)?, D::Minus1)?
        .to_vec2::<f32>()?;
    let mut active = vec![Hypothesis {
        node: 0,
        log_prob: 0.0,
        row: 0,
    }];
    let mut finished: Vec<Finished> = Vec::new();
    for _ in 0..max_tokens {
        // Expand every active hypothesis along the trie.
        let mut candidates: Vec<(f32, usize, u32, usize)> = Vec::new(); // (score, parent, token, child)
        for (p, h) in active.iter().enumerate() {
            for &(token, child) in &trie.nodes[h.node].children {
                let lp = log_probs[h.row]
                    .get(token as usize)
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY);
                candidates.push((h.log_prob + lp, p, token, child));
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.3.cmp(&b.3)));
        let mut next: Vec<(usize, u32, usize, f32)> = Vec::new(); // (parent, token, child, score)
        for &(score, parent, token, child) in &candidates {
            if next.len() >= beam {
                break;
            }
            let node = &trie.nodes[child];
            if !node.items.is_empty() {
                finished.push(Finished {
                    items: node.items.clone(),
                    log_prob: score,
                });
            }
            if !node.children.is_empty() {
                next.push((parent, token, child, score));
            }
        }
        finished.sort_by(|a, b| b.log_prob.total_cmp(&a.log_prob));
        finished.truncate(beam);
        // Stop when no active hypothesis can still beat the worst kept finished one
        // (log-probabilities only decrease as tokens are added).
        let best_active = next.iter().map(|n| n.3).fold(f32::NEG_INFINITY, f32::max);
        if next.is_empty() || (finished.len() >= beam && best_active <= finished[beam - 1].log_prob)
        {
            break;
        }
        let rows: Vec<u32> = next.iter().map(|n| active[n.0].row as u32).collect();
        beams.reorder(&rows)?;
        let tokens: Vec<u32> = next.iter().map(|n| n.1).collect();
        let hidden = net.forward_beams(&tokens, &prompt_cache, &mut beams)?;
        log_probs = candle_nn::ops::log_softmax(&net.logits(&hidden)?.squeeze(1)?, D::Minus1)?
            .to_vec2::<f32>()?;
        active = next
            .iter()
            .enumerate()
            .map(|(row, n)| Hypothesis {
                node: n.2,
                log_prob: n.3,
                row,
            })
            .collect();
    }
    Ok(finished)
}

/// The ranking a beam search produces: items of finished titles in order, duplicates once,
/// each with its title's log-probability (the beam's score).
pub fn ranking(finished: &[Finished]) -> Vec<(ItemIndex, f32)> {
    let mut out: Vec<(ItemIndex, f32)> = Vec::new();
    for f in finished {
        for &i in &f.items {
            if !out.iter().any(|&(j, _)| j == i) {
                out.push((i, f.log_prob));
            }
        }
    }
    out
}

/// Unconstrained greedy continuation of a prompt until the template's end marker (or
/// `max_tokens`): what the model writes on its own, to check it learned real titles.
pub fn greedy(model: &Model, prompt_ids: &[u32], max_tokens: usize) -> Result<String> {
    let net = &model.net;
    let end = model.tokenizer.token_id(model.template.end_marker())?;
    let mut cache = net.new_cache();
    let mut input = Tensor::new(prompt_ids, &Device::Cpu)?.unsqueeze(0)?;
    let mut out = Vec::new();
    for _ in 0..max_tokens {
        let last = input.dim(1)? - 1;
        let hidden = net.forward_rows(&input, Some(&mut cache), &[last])?;
        let logits = net.logits(&hidden.squeeze(1)?)?.squeeze(0)?;
        let next = logits.argmax(D::Minus1)?.to_scalar::<u32>()?;
        if next == end {
            break;
        }
        out.push(next);
        input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
    }
    model.tokenizer.decode(&out)
}
