//! [`LanguageModel`]: a loaded model with its tokenizer, and the questions a notebook asks it
//! first (what does it predict, which tokens is this prompt).

use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use llama::{Backend, Llama, ModelSource, TokenBatch, Tokenizer};

use crate::error::{Result, SubspaceError, input};
use crate::readout::Prediction;

/// A tokenized prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub text: String,
    pub ids: Vec<u32>,
    /// The text of each token, e.g. `["The", " city", " of", " Paris", ...]`.
    pub tokens: Vec<String>,
}

impl Prompt {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Checks that `position` is a token of this prompt.
    pub fn check_position(&self, position: usize, what: &'static str) -> Result<()> {
        if position >= self.len() {
            return Err(SubspaceError::PositionOutOfRange {
                what,
                position,
                len: self.len(),
                tokens: self.tokens.clone(),
            });
        }
        Ok(())
    }

    /// The position of the first token whose text (trimmed) equals `word`.
    pub fn find(&self, word: &str) -> Option<usize> {
        self.tokens.iter().position(|t| t.trim() == word.trim())
    }
}

/// A model, its tokenizer and the device they run on.
#[derive(Debug, Clone)]
pub struct LanguageModel {
    pub model: Arc<Llama>,
    pub tokenizer: Arc<Tokenizer>,
    /// What was loaded (file name or hub id).
    pub name: String,
}

impl LanguageModel {
    /// Loads a model: a GGUF file, a Hugging Face directory or a hub id, on the backend named
    /// by `SUBSPACE_BACKEND` (default: flex, the pure-Rust CPU backend).
    pub fn load(spec: &str) -> Result<Self> {
        Self::load_on(&ModelSource::parse(spec)?, Backend::from_env()?)
    }

    /// Loads the default model (SmolLM2-135M-Instruct, fetched by `scripts/setup.sh`).
    pub fn load_default() -> Result<Self> {
        Self::load_on(&ModelSource::default_model()?, Backend::from_env()?)
    }

    pub fn load_on(source: &ModelSource, backend: Backend) -> Result<Self> {
        let loaded = llama::load::load(source, &backend.device()?)?;
        Ok(LanguageModel {
            model: Arc::new(loaded.model),
            tokenizer: Arc::new(loaded.tokenizer),
            name: source.name(),
        })
    }

    pub fn device(&self) -> Device {
        self.model.device()
    }

    pub fn n_layers(&self) -> usize {
        self.model.n_layers()
    }

    pub fn hidden_size(&self) -> usize {
        self.model.hidden_size()
    }

    /// Tokenizes a prompt (refusing an empty one).
    pub fn prompt(&self, text: &str) -> Result<Prompt> {
        let ids = self.tokenizer.encode(text)?;
        if ids.is_empty() {
            return input("the prompt is empty: give some text for the model to continue");
        }
        Ok(Prompt {
            text: text.to_string(),
            tokens: self.tokenizer.pieces(&ids),
            ids,
        })
    }

    /// The one token of `word` (e.g. `" Brazil"`); an error if it is several tokens.
    pub fn token(&self, word: &str) -> Result<u32> {
        Ok(self.tokenizer.single_token(word)?)
    }

    /// A left-padded batch of prompts.
    pub fn batch(&self, prompts: &[&Prompt]) -> TokenBatch {
        let rows: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
        TokenBatch::new(&rows, self.tokenizer.pad_id(), &self.device())
    }

    /// The next-token distribution after `prompt`.
    pub fn predict(&self, prompt: &Prompt) -> Result<Prediction> {
        Ok(self.predict_batch(&[prompt])?.remove(0))
    }

    /// Next-token distributions from `[batch, vocab]` logits.
    pub fn prediction(&self, logits: Tensor<2>) -> Result<Vec<Prediction>> {
        let [b, v] = logits.dims();
        let probs = crate::readout::to_host(burn::tensor::activation::softmax(logits, 1))?;
        Ok((0..b)
            .map(|i| Prediction::new(probs[i * v..(i + 1) * v].to_vec(), self.tokenizer.clone()))
            .collect())
    }
}

impl LanguageModel {
    /// Next-token distributions of several prompts in one (left-padded) forward pass.
    pub fn predict_batch(&self, prompts: &[&Prompt]) -> Result<Vec<Prediction>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.batch(prompts);
        let ctx = self.model.context(&batch);
        let mut h = self.model.embed(batch.ids.clone());
        for block in &self.model.blocks {
            h = block.forward(h, &ctx);
        }
        // The LM head only at the last position: the others are not needed.
        self.prediction(self.model.logits_at(h, batch.seq_len - 1))
    }
}
