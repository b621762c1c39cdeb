//! The prompt: the one place that turns a history of item titles into model input text, and a
//! target title into the text the model is trained to generate after it. Training, memory
//! building, evaluation, the CLI and the browser all go through [`Template`].

use serde::{Deserialize, Serialize};

use crate::data::catalog::{Catalog, ItemIndex};

/// Most history items a prompt holds (the D3 protocol's window; samples keep as many).
pub const MAX_HISTORY: usize = 10;

/// The last [`MAX_HISTORY`] items of a history: what a prompt may hold (as in training).
pub fn truncate_history(history: &[ItemIndex]) -> &[ItemIndex] {
    &history[history.len().saturating_sub(MAX_HISTORY)..]
}

/// Titles of the (truncated) history, oldest first: the input of [`Template::prompt`].
pub fn history_titles<'a>(catalog: &'a Catalog, history: &[ItemIndex]) -> Vec<&'a str> {
    truncate_history(history)
        .iter()
        .map(|&i| catalog.title(i))
        .collect()
}

/// Beginning-of-sequence special token of the compact template.
pub const BOS: &str = "<|bos|>";
/// Item separator of the compact template; it also ends every target title.
pub const SEP: &str = "<|sep|>";
/// End-of-text special token (end marker of the D3 template for l2d tokenizers).
pub const EOS: &str = "<|endoftext|>";
/// Padding token (never attended to by a loss).
pub const PAD: &str = "<|pad|>";
/// Special tokens every l2d-trained tokenizer carries, in id order (0, 1, 2, 3).
pub const SPECIAL_TOKENS: [&str; 4] = [PAD, BOS, SEP, EOS];

/// Which prompt layout a model was trained with; recorded in the model directory (`l2d.json`)
/// so every consumer renders prompts the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Template {
    /// Compact layout for small from-scratch models:
    /// `<|bos|>t1<|sep|>t2<|sep|>…tn<|sep|>` → `target<|sep|>`.
    /// A history's prompt followed by a target is exactly the prompt of the longer history,
    /// which lets training pack a user's timeline into one sequence.
    Compact,
    /// The D3 instruction layout (Bao et al., "Decoding Matters", 2024), for instruction-tuned
    /// checkpoints.
    D3 {
        /// Item category noun, e.g. "movie".
        category: String,
        /// Text that ends a generated title (the tokenizer's end-of-sequence token).
        end_marker: String,
    },
}

impl Template {
    /// The model input for a history (oldest first). Generation of the target starts
    /// right after the returned text; its last token is where L2D reads the hidden state.
    pub fn prompt<S: AsRef<str>>(&self, history: &[S]) -> String {
        match self {
            Template::Compact => {
                let mut text = String::from(BOS);
                for title in history {
                    text += &self.target(title.as_ref());
                }
                text
            }
            Template::D3 { category, .. } => {
                let titles: Vec<String> = history
                    .iter()
                    .map(|t| format!("\"{}\"", neutralize(t.as_ref())))
                    .collect();
                format!(
                    "Below is an instruction that describes a task, paired with an input that provides further context. \
Write a response that appropriately completes the request.\n\n\
### Instruction:\nGiven a list of {category}s the user recently enjoyed, please write a new {category} that the user may like.\n\
### User Input:\nThe user has interacted with the following {category}s before: {}\n\n### Response:\n",
                    titles.join(", ")
                )
            }
        }
    }

    /// The text the model generates for `title` after a prompt, including the end marker.
    pub fn target(&self, title: &str) -> String {
        match self {
            Template::Compact => format!("{}{SEP}", neutralize(title)),
            Template::D3 { end_marker, .. } => format!("\"{}\"{end_marker}", neutralize(title)),
        }
    }

    /// The text that ends a generated title.
    pub fn end_marker(&self) -> &str {
        match self {
            Template::Compact => SEP,
            Template::D3 { end_marker, .. } => end_marker,
        }
    }

    /// Fixed text of the template (everything but titles), used to train tokenizers.
    pub fn fixed_text(&self) -> String {
        self.prompt::<&str>(&[])
    }
}

/// Titles are untrusted: a title that spells a special token (`<|…`) must not become one.
fn neutralize(title: &str) -> std::borrow::Cow<'_, str> {
    if title.contains("<|") {
        title.replace("<|", "< |").into()
    } else {
        title.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_prompt_extends_by_target() {
        let t = Template::Compact;
        let h = ["Toy Story (1995)", "Heat (1995)"];
        assert_eq!(
            t.prompt(&h),
            "<|bos|>Toy Story (1995)<|sep|>Heat (1995)<|sep|>"
        );
        assert_eq!(
            t.prompt(&h) + &t.target("Up (2009)"),
            t.prompt(&[h[0], h[1], "Up (2009)"])
        );
    }

    #[test]
    fn titles_cannot_inject_special_tokens() {
        let t = Template::Compact;
        assert_eq!(t.prompt(&["a<|sep|>b"]), "<|bos|>a< |sep|>b<|sep|>");
    }

    #[test]
    fn d3_template_has_marker_and_quotes() {
        let t = Template::D3 {
            category: "movie".into(),
            end_marker: EOS.into(),
        };
        let p = t.prompt(&["A", "B \"x\""]);
        assert!(p.ends_with("before: \"A\", \"B \"x\"\"\n\n### Response:\n"));
        assert_eq!(t.target("C"), "\"C\"<|endoftext|>");
    }
}
