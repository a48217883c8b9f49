//! Reading results back from the device: next-token distributions and their top-k.

use std::sync::Arc;

use burn::tensor::Tensor;
use llama::Tokenizer;
use serde::Serialize;

use crate::error::{Result, SubspaceError};

/// A tensor's values on the host.
pub fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| SubspaceError::Backend(format!("reading a tensor: {e:?}")))
}

/// One token and its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenProb {
    pub id: u32,
    pub token: String,
    pub prob: f32,
}

/// A next-token distribution (probabilities over the whole vocabulary).
#[derive(Clone)]
pub struct Prediction {
    pub probs: Vec<f32>,
    tokenizer: Arc<Tokenizer>,
    tokenizer_tag: u64,
}

impl std::fmt::Debug for Prediction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prediction")
            .field("top", &self.top(3))
            .finish()
    }
}

impl Prediction {
    pub fn new(probs: Vec<f32>, tokenizer: Arc<Tokenizer>, tokenizer_tag: u64) -> Self {
        Prediction {
            probs,
            tokenizer,
            tokenizer_tag,
        }
    }

    /// Refuses to compare two distributions over different vocabularies.
    pub fn check_comparable(&self, other: &Prediction) -> Result<()> {
        if self.tokenizer_tag != other.tokenizer_tag || self.probs.len() != other.probs.len() {
            return Err(SubspaceError::OtherModel {
                what: "one of these predictions",
                theirs: format!(
                    "vocabulary of {} tokens, tokenizer {:016x}",
                    other.probs.len(),
                    other.tokenizer_tag
                ),
                ours: format!(
                    "vocabulary of {} tokens, tokenizer {:016x}",
                    self.probs.len(),
                    self.tokenizer_tag
                ),
            });
        }
        Ok(())
    }

    /// The text of token `id`.
    pub fn token_text(&self, id: u32) -> String {
        self.tokenizer.decode_one(id)
    }

    /// The `k` most likely tokens, most likely first.
    pub fn top(&self, k: usize) -> TopK {
        let mut idx: Vec<usize> = (0..self.probs.len()).collect();
        let k = k.min(idx.len());
        if k > 0 && k < idx.len() {
            idx.select_nth_unstable_by(k - 1, |&a, &b| self.probs[b].total_cmp(&self.probs[a]));
        }
        idx.truncate(k);
        idx.sort_by(|&a, &b| self.probs[b].total_cmp(&self.probs[a]));
        TopK(
            idx.into_iter()
                .map(|i| TokenProb {
                    id: i as u32,
                    token: self.tokenizer.decode_one(i as u32),
                    prob: self.probs[i],
                })
                .collect(),
        )
    }

    /// Probability of token `id`.
    pub fn prob(&self, id: u32) -> f32 {
        self.probs.get(id as usize).copied().unwrap_or(0.0)
    }

    /// Probability of the one token spelling `word` (e.g. `" Brazil"`).
    pub fn prob_of(&self, word: &str) -> Result<f32> {
        Ok(self.prob(self.token_id(word)?))
    }

    /// The id of the one token spelling `word`; an error if it is several tokens.
    pub fn token_id(&self, word: &str) -> Result<u32> {
        Ok(self.tokenizer.single_token(word)?)
    }

    /// The most likely token.
    pub fn argmax(&self) -> TokenProb {
        self.top(1).0.remove(0)
    }
}

/// The top of a distribution. Displays as a table (plain text, or HTML in a notebook).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct TopK(pub Vec<TokenProb>);

impl TopK {
    pub fn first(&self) -> Option<&TokenProb> {
        self.0.first()
    }

    pub fn tokens(&self) -> Vec<&str> {
        self.0.iter().map(|t| t.token.as_str()).collect()
    }
}
