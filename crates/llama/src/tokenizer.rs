//! Text ↔ token ids, with the questions interpretability code asks: is this word one token,
//! what is the text of token `i`.

use std::path::Path;

use crate::error::{LlamaError, Result};
use crate::load::gguf::tokenizer::SpecialTokens;

/// A tokenizer plus the few special ids the model code needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pad_id: u32,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl Tokenizer {
    /// From a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(LlamaError::Tokenizer(format!(
                "{} does not exist; a Hugging Face model directory needs tokenizer.json",
                path.display()
            )));
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| LlamaError::Tokenizer(format!("{}: {e}", path.display())))?;
        // Padding is masked out, so any id works; prefer the declared one, else 0.
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("<|finetune_right_pad_id|>"))
            .unwrap_or(0);
        Ok(Tokenizer { inner, pad_id })
    }

    pub(crate) fn from_parts(inner: tokenizers::Tokenizer, special: &SpecialTokens) -> Self {
        let pad_id = special.pad_id.or(special.eos_id).unwrap_or(0);
        Tokenizer { inner, pad_id }
    }

    /// Token ids of `text`, with the special tokens the model's tokenizer adds (e.g. Llama-3's
    /// BOS; SmolLM2 adds none).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| LlamaError::Tokenizer(format!("cannot encode {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids of `text` without any added special token (for target words).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| LlamaError::Tokenizer(format!("cannot encode {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The one token that spells `word` (e.g. `" Brazil"`), or an error naming its pieces.
    pub fn single_token(&self, word: &str) -> Result<u32> {
        let ids = self.encode_plain(word)?;
        match ids.as_slice() {
            [id] => Ok(*id),
            [] => Err(LlamaError::Input(format!("{word:?} encodes to no token"))),
            many => {
                let pieces: Vec<String> = many.iter().map(|&i| self.decode_one(i)).collect();
                Err(LlamaError::Input(format!(
                    "{word:?} is {} tokens ({pieces:?}), but a target must be one token; choose a word the tokenizer keeps whole (often with a leading space, e.g. \" Brazil\")",
                    many.len()
                )))
            }
        }
    }

    /// The text of one token (`" France"`), special tokens included.
    pub fn decode_one(&self, id: u32) -> String {
        self.inner
            .decode(&[id], false)
            .unwrap_or_else(|_| format!("<{id}>"))
    }

    /// The text of each token of `ids`.
    pub fn pieces(&self, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&i| self.decode_one(i)).collect()
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
