//! What an interchange intervention compares: a *base* prompt whose run is edited, a *source*
//! prompt whose run gives the new value, and the token of each where that happens (pyvene's
//! base and source units). With a target token it is a training [`Example`].

use crate::error::{Result, SubspaceError};
use crate::lm::{LanguageModel, Prompt};

/// A base and a source prompt, before their tokens are chosen: [`PairPrompts::at`] names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPrompts {
    pub base: Prompt,
    pub source: Prompt,
}

/// A base and a source prompt and the token of each that the intervention writes and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub base: Prompt,
    pub source: Prompt,
    /// Token position of the edited entity in the base prompt.
    pub base_position: usize,
    /// Token position of the same entity in the source prompt.
    pub source_position: usize,
}

/// A pair and the token the patched run should predict next: one training or evaluation
/// example of DAS.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub pair: Pair,
    pub target: u32,
    /// The example's weight in its minibatch's loss (1 unless set: the loss is then the plain
    /// mean). Multi-task DAS uses it to weigh the cause objective against the isolate ones.
    pub weight: f32,
}

impl Example {
    /// This example with weight `weight` in the loss (relative to the others in its batch).
    pub fn weighted(mut self, weight: f32) -> Example {
        self.weight = weight;
        self
    }
}

impl LanguageModel {
    /// Tokenizes a base and a source prompt: `lm.pair(base, source)?.at("Paris", "Rio")?`.
    pub fn pair(&self, base: &str, source: &str) -> Result<PairPrompts> {
        Ok(PairPrompts {
            base: self.prompt(base)?,
            source: self.prompt(source)?,
        })
    }
}

impl PairPrompts {
    /// Places the intervention on the token `base_word` of the base prompt and `source_word`
    /// of the source (each must be one token, e.g. `"Paris"` for `" Paris"`).
    pub fn at(self, base_word: &str, source_word: &str) -> Result<Pair> {
        let base_position = word_position(&self.base, base_word, "base")?;
        let source_position = word_position(&self.source, source_word, "source")?;
        self.at_positions(base_position, source_position)
    }

    /// Places the intervention on token `base_position` of the base prompt and
    /// `source_position` of the source.
    pub fn at_positions(self, base_position: usize, source_position: usize) -> Result<Pair> {
        Pair::new(self.base, self.source, base_position, source_position)
    }
}

impl Pair {
    /// Checks both positions against their prompts.
    pub fn new(
        base: Prompt,
        source: Prompt,
        base_position: usize,
        source_position: usize,
    ) -> Result<Self> {
        base.check_position(base_position, "base")?;
        source.check_position(source_position, "source")?;
        Ok(Pair {
            base,
            source,
            base_position,
            source_position,
        })
    }

    /// The same source and token, patched into another base prompt (e.g. the continent
    /// question about the same city), at the token `base_word`.
    pub fn with_base(&self, base: Prompt, base_word: &str) -> Result<Pair> {
        let position = word_position(&base, base_word, "base")?;
        Pair::new(base, self.source.clone(), position, self.source_position)
    }

    /// This pair as a training example whose patched run should predict `target`.
    pub fn with_target(self, target: u32) -> Example {
        Example {
            pair: self,
            target,
            weight: 1.0,
        }
    }
}

fn word_position(prompt: &Prompt, word: &str, which: &'static str) -> Result<usize> {
    prompt
        .find(word)
        .ok_or_else(|| SubspaceError::WordNotInPrompt {
            which,
            word: word.to_string(),
            tokens: prompt.tokens.clone(),
        })
}
