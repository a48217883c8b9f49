//! Greedy generation, optionally with interventions: the edit is applied once, while the prompt
//! is read, and lives on in the keys and values of the cache, so every later token sees the
//! patched prompt ("The city of Paris is in the country of Brazil, ...") — what a forward hook
//! on the prompt's pass does with Hugging Face's `generate`.

use std::fmt;

use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Result, bad_setting};
use crate::intervention::PlacedIntervention;
use crate::lm::{LanguageModel, Prompt};
use crate::pair::Pair;
use crate::run::{Blocks, Edit, Keep, Window};

/// A prompt and the tokens generated after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub prompt: Prompt,
    /// Ids of the generated tokens, in order.
    pub ids: Vec<u32>,
    /// Their text, concatenated.
    pub text: String,
}

impl fmt::Display for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.prompt.text, self.text)
    }
}

impl LanguageModel {
    /// The `n` most likely next tokens, one at a time (greedy decoding). Exactly `n` tokens
    /// are produced: an end-of-text token does not stop it.
    pub fn generate(&self, prompt: &Prompt, n: usize) -> Result<Generated> {
        self.check_prompt(prompt)?;
        self.greedy(prompt, &[], n)
    }

    /// Like [`LanguageModel::generate`] on the pair's base prompt, with `placed` applied at its
    /// base token (the source vectors read from the pair's source prompt). Generated tokens are
    /// not edited themselves: they attend to the edited prompt.
    pub fn generate_patched(
        &self,
        pair: &Pair,
        placed: &[PlacedIntervention],
        n: usize,
    ) -> Result<Generated> {
        self.check_pairs([pair])?;
        self.check_placed(placed)?;
        // One unpadded row: the base token's column is its position.
        let edits = self.pair_edits(&[pair], vec![pair.base_position], placed)?;
        self.greedy(&pair.base, &edits, n)
    }

    fn greedy(&self, prompt: &Prompt, edits: &[Edit], n: usize) -> Result<Generated> {
        if n == 0 {
            return bad_setting("tokens to generate", 0, "at least 1");
        }
        // The whole sequence must fit the context, checked before anything runs.
        self.check_length(prompt.len().saturating_add(n - 1))?;
        let model = &self.model;
        let keep = Keep {
            components: false,
            cache: true,
        };
        // The prompt, with the edits: its keys/values hold them from now on.
        let mut ids = prompt.ids.clone();
        let batch = self.batch(&[prompt]);
        let ctx = model.context(&batch);
        let blocks = Blocks::new(0..model.n_layers())
            .with_edits(edits)
            .keeping(keep)
            .stopped_by(Some(self.stop_flag()));
        let ran = blocks.run(model, &ctx, model.embed(batch.ids.clone()))?;
        let mut cache = ran.cache;
        let mut next = argmax(model.logits_at(ran.h, batch.seq_len - 1))?;
        let mut generated = vec![next];
        while generated.len() < n {
            // One new column: its query attends to the cached columns and itself.
            let from = ids.len();
            ids.push(next);
            let full = llama::TokenBatch::new(&[ids.clone()], 0, &self.device());
            let ctx = model.context(&full).queries_from(from);
            let token = Tensor::<2, Int>::from_data(
                TensorData::new(vec![i64::from(next)], [1, 1]),
                &self.device(),
            );
            let window = Window {
                from,
                prefix: &cache,
            };
            let ran = blocks
                .clone()
                .after(Some(window))
                .run(model, &ctx, model.embed(token))?;
            cache = ran.cache;
            next = argmax(model.logits_at(ran.h, 0))?;
            generated.push(next);
        }
        let text = self
            .tokenizer
            .inner()
            .decode(&generated, false)
            .unwrap_or_else(|_| self.tokenizer.pieces(&generated).concat());
        Ok(Generated {
            prompt: prompt.clone(),
            ids: generated,
            text,
        })
    }
}

/// The most likely token of `[1, vocab]` logits (the first on a tie, as `torch.argmax`).
fn argmax(logits: Tensor<2>) -> Result<u32> {
    let values = crate::readout::to_host(logits)?;
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    Ok(best as u32)
}
