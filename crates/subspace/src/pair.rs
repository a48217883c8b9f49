//! What an interchange intervention compares: a *base* prompt whose run is edited, a *source*
//! prompt whose run gives the new value, and the token of each where that happens (pyvene's
//! base and source units). With a target token it is a training [`Example`].

use std::ops::Range;

use crate::error::{Result, SubspaceError};
use crate::lm::{LanguageModel, Prompt};

/// A base and a source prompt, before their tokens are chosen: [`PairPrompts::at`] names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPrompts {
    pub base: Prompt,
    pub source: Prompt,
}

/// A base and a source prompt and the tokens of each that the intervention writes and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub base: Prompt,
    pub source: Prompt,
    /// The edited tokens, in order: each base position and the source position read for it.
    /// One for a single token; several for a span ([`PairPrompts::at_span`]).
    pub positions: Vec<Aligned>,
}

/// One edited token of a pair: the base prompt's position and the source prompt's position
/// whose vector it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aligned {
    pub base: usize,
    pub source: usize,
}

/// How the tokens of a base span and a source span of different lengths are paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SpanAlignment {
    /// Pair the spans' last tokens, then the ones before them, for as many tokens as the
    /// shorter span has ("New York" ← "Rio de Janeiro" edits " New" ← " de" and " York" ←
    /// " Janeiro"). The last token of a name is where a model gathers it, so it is always
    /// edited.
    #[default]
    Last,
    /// Pair the spans' first tokens, then the ones after them, for as many tokens as the
    /// shorter span has.
    First,
    /// The spans must have the same length ([`crate::SubspaceError::SpansNotAligned`]
    /// otherwise).
    Exact,
}

impl SpanAlignment {
    /// Pairs the tokens of `base` and `source` by this rule.
    pub fn align(self, base: Range<usize>, source: Range<usize>) -> Result<Vec<Aligned>> {
        let (nb, ns) = (base.len(), source.len());
        if nb == 0 || ns == 0 || (self == SpanAlignment::Exact && nb != ns) {
            return Err(SubspaceError::SpansNotAligned {
                base_len: nb,
                source_len: ns,
                rule: format!("{self:?}"),
            });
        }
        let n = nb.min(ns);
        let (b0, s0) = match self {
            SpanAlignment::Last => (base.end - n, source.end - n),
            SpanAlignment::First | SpanAlignment::Exact => (base.start, source.start),
        };
        Ok((0..n)
            .map(|i| Aligned {
                base: b0 + i,
                source: s0 + i,
            })
            .collect())
    }
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

    /// Places the intervention on every token of `base_words` in the base prompt and of
    /// `source_words` in the source (`"New York"`, `"Rio de Janeiro"`), paired by their last
    /// tokens ([`SpanAlignment::Last`]). A one-token span is [`PairPrompts::at`].
    pub fn at_span(self, base_words: &str, source_words: &str) -> Result<Pair> {
        self.at_span_aligned(base_words, source_words, SpanAlignment::Last)
    }

    /// [`PairPrompts::at_span`] with another alignment rule.
    pub fn at_span_aligned(
        self,
        base_words: &str,
        source_words: &str,
        alignment: SpanAlignment,
    ) -> Result<Pair> {
        let base = span_of(&self.base, base_words, "base")?;
        let source = span_of(&self.source, source_words, "source")?;
        self.at_spans(base, source, alignment)
    }

    /// Places the intervention on the token ranges `base` and `source` (e.g. `3..5`), paired
    /// by `alignment`.
    pub fn at_spans(
        self,
        base: Range<usize>,
        source: Range<usize>,
        alignment: SpanAlignment,
    ) -> Result<Pair> {
        let positions = alignment.align(base, source)?;
        Pair::aligned(self.base, self.source, positions)
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
        let position = Aligned {
            base: base_position,
            source: source_position,
        };
        Pair::aligned(base, source, vec![position])
    }

    /// A pair editing several tokens: each base position receives its source position's
    /// vector. Checks every position against its prompt.
    pub fn aligned(base: Prompt, source: Prompt, positions: Vec<Aligned>) -> Result<Self> {
        if positions.is_empty() {
            return Err(SubspaceError::SpansNotAligned {
                base_len: 0,
                source_len: 0,
                rule: format!("{:?}", SpanAlignment::Exact),
            });
        }
        for p in &positions {
            base.check_position(p.base, "base")?;
            source.check_position(p.source, "source")?;
        }
        Ok(Pair {
            base,
            source,
            positions,
        })
    }

    /// The last edited token of the base prompt (the only one, for a single-token pair).
    pub fn base_position(&self) -> usize {
        self.positions.last().map_or(0, |p| p.base)
    }

    /// The last source token read (the only one, for a single-token pair).
    pub fn source_position(&self) -> usize {
        self.positions.last().map_or(0, |p| p.source)
    }

    /// The same source and token, patched into another base prompt (e.g. the continent
    /// question about the same city), at the token `base_word`.
    pub fn with_base(&self, base: Prompt, base_word: &str) -> Result<Pair> {
        let position = word_position(&base, base_word, "base")?;
        Pair::new(base, self.source.clone(), position, self.source_position())
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

fn span_of(prompt: &Prompt, words: &str, which: &'static str) -> Result<Range<usize>> {
    prompt
        .find_span(words)
        .ok_or_else(|| SubspaceError::SpanNotInPrompt {
            which,
            words: words.to_string(),
            tokens: prompt.tokens.clone(),
        })
}
