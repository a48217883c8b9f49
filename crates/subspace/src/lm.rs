//! [`LanguageModel`]: a loaded model with its tokenizer, and the questions a notebook asks it
//! first (what does it predict, which tokens is this prompt).

use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use llama::{Backend, Llama, ModelSource, TokenBatch, Tokenizer};

use crate::engine::limits::{self, rows_per_forward};
use crate::engine::{self, StopFlag};
use crate::error::{Result, SubspaceError};
use crate::fingerprint::Fnv;
use crate::readout::Prediction;

/// A tokenized prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub text: String,
    pub ids: Vec<u32>,
    /// The text of each token, e.g. `["The", " city", " of", " Paris", ...]`.
    pub tokens: Vec<String>,
    /// The tokenizer that made it ([`LanguageModel::tokenizer_tag`]): a prompt is only run
    /// by a model that reads the same token ids.
    pub(crate) tokenizer_tag: u64,
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

    /// The first run of consecutive tokens whose joined text (trimmed) is `words`, e.g. the two
    /// tokens `[" New", " York"]` of `"New York"`.
    pub fn find_span(&self, words: &str) -> Option<std::ops::Range<usize>> {
        let want = words.trim();
        if want.is_empty() {
            return None;
        }
        (0..self.len()).find_map(|start| {
            let mut joined = String::new();
            for end in start..self.len() {
                joined.push_str(&self.tokens[end]);
                let got = joined.trim();
                if got == want {
                    return Some(start..end + 1);
                }
                if !want.starts_with(got) {
                    return None;
                }
            }
            None
        })
    }
}

/// A model, its tokenizer and the device they run on.
#[derive(Debug, Clone)]
pub struct LanguageModel {
    pub model: Arc<Llama>,
    pub tokenizer: Arc<Tokenizer>,
    /// What was loaded (file name or hub id).
    pub name: String,
    tokenizer_tag: u64,
    /// Raised to stop whatever long call is running on this model (see [`crate::engine::stop`]);
    /// shared by its clones.
    stop: StopFlag,
}

/// A fingerprint of a tokenizer's vocabulary: its size and the text of tokens spread over it.
fn tokenizer_tag(tokenizer: &Tokenizer) -> u64 {
    let n = tokenizer.vocab_size();
    let mut hash = Fnv::new();
    hash.usize(n);
    let step = (n / 512).max(1);
    for id in (0..n).step_by(step) {
        hash.bytes(tokenizer.decode_one(id as u32).as_bytes());
    }
    hash.value()
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
        Ok(Self::new(loaded.model, loaded.tokenizer, source.name()))
    }

    /// A model and tokenizer already in memory.
    pub fn new(model: Llama, tokenizer: Tokenizer, name: String) -> Self {
        LanguageModel {
            tokenizer_tag: tokenizer_tag(&tokenizer),
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            name,
            stop: StopFlag::new(),
        }
    }

    /// This model reading `stop` instead of its own flag (e.g. one a Ctrl-C handler raises,
    /// installed before the model was loaded).
    pub fn with_stop_flag(mut self, stop: StopFlag) -> Self {
        self.stop = stop;
        self
    }

    /// The flag every long call on this model (and its clones) reads, about once a block of
    /// each forward pass: raise it (from a Ctrl-C handler, another thread) and the running call
    /// returns [`SubspaceError::Interrupted`] within a fraction of a second, having written
    /// nothing half-way. Lower it to use the model again.
    pub fn stop_flag(&self) -> &StopFlag {
        &self.stop
    }

    /// Which tokenizer this model reads prompts of (see [`Prompt`]).
    pub fn tokenizer_tag(&self) -> u64 {
        self.tokenizer_tag
    }

    /// Refuses a prompt tokenized by another model's tokenizer, or longer than the context.
    pub fn check_prompt(&self, prompt: &Prompt) -> Result<()> {
        if prompt.tokenizer_tag != self.tokenizer_tag {
            return Err(SubspaceError::OtherModel {
                what: "this prompt",
                theirs: format!("tokenizer {:016x}", prompt.tokenizer_tag),
                ours: format!("{}, tokenizer {:016x}", self.name, self.tokenizer_tag),
            });
        }
        self.check_length(prompt.len())
    }

    /// Refuses a sequence longer than the model's context, before anything is allocated for it.
    pub fn check_length(&self, len: usize) -> Result<()> {
        let max = self.model.config.max_position_embeddings;
        if len > max {
            // Scores of one layer's attention: heads × len × len floats.
            let heads = self.model.config.num_attention_heads as u64;
            let bytes = heads.saturating_mul(len as u64).saturating_mul(len as u64) * 4;
            return Err(SubspaceError::PromptTooLong {
                len,
                max,
                attention_mib: bytes >> 20,
            });
        }
        Ok(())
    }

    /// Refuses a forward pass that would not fit in memory, before it allocates: `batch` rows
    /// of `len` tokens; `keep_trace` when every layer's components are kept (a trace). See
    /// [`crate::engine::limits::check_memory`] for what the estimate counts.
    pub fn check_memory(&self, batch: usize, len: usize, keep_trace: bool) -> Result<()> {
        limits::check_memory(&self.model.config, batch, len, keep_trace)
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
            return Err(SubspaceError::EmptyPrompt);
        }
        self.check_length(ids.len())?;
        Ok(Prompt {
            text: text.to_string(),
            tokens: self.tokenizer.pieces(&ids),
            ids,
            tokenizer_tag: self.tokenizer_tag,
        })
    }

    /// The text of `ids` as the tokenizer decodes it (special tokens kept), or their pieces
    /// joined where it cannot.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer
            .inner()
            .decode(ids, false)
            .unwrap_or_else(|_| self.tokenizer.pieces(ids).concat())
    }

    /// `prompt` followed by the tokens `ids` (e.g. the first tokens of an answer, so that the
    /// next-token distribution is the answer's next token): the ids appended as they are, not
    /// re-tokenized with the text.
    pub fn extend_prompt(&self, prompt: &Prompt, ids: &[u32]) -> Result<Prompt> {
        self.check_prompt(prompt)?;
        self.check_length(prompt.len() + ids.len())?;
        let pieces = self.tokenizer.pieces(ids);
        let mut out = prompt.clone();
        out.text.push_str(&pieces.concat());
        out.ids.extend_from_slice(ids);
        out.tokens.extend(pieces);
        Ok(out)
    }

    /// The one token of `word` (e.g. `" Brazil"`); an error if it is several tokens.
    pub fn token(&self, word: &str) -> Result<u32> {
        Ok(self.tokenizer.single_token(word)?)
    }

    /// A left-padded batch of prompts (checked with [`LanguageModel::check_prompt`] by the
    /// public entry points that take them).
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
            .map(|i| {
                Prediction::new(
                    probs[i * v..(i + 1) * v].to_vec(),
                    self.tokenizer.clone(),
                    self.tokenizer_tag,
                )
            })
            .collect())
    }
}

impl LanguageModel {
    /// Next-token distributions of several prompts, in left-padded forward passes of at most
    /// [`crate::engine::TOKENS_PER_FORWARD`] tokens each.
    pub fn predict_batch(&self, prompts: &[&Prompt]) -> Result<Vec<Prediction>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        for p in prompts {
            self.check_prompt(p)?;
        }
        let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let rows = rows_per_forward(longest);
        self.check_memory(rows.min(prompts.len()), longest, false)?;
        let mut out = Vec::with_capacity(prompts.len());
        for chunk in prompts.chunks(rows) {
            let batch = self.batch(chunk);
            let logits = engine::last_logits(&self.model, &batch, &[], Some(&self.stop))?;
            out.extend(self.prediction(logits)?);
        }
        Ok(out)
    }
}
