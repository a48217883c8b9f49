//! Greedy generation, optionally with interventions: the edit is applied once, while the prompt
//! is read, and lives on in the keys and values of the cache, so every later token sees the
//! patched prompt ("The city of Paris is in the country of Brazil, ...") — what a forward hook
//! on the prompt's pass does with Hugging Face's `generate`.

use std::fmt;

use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Result, bad_setting};
use crate::intervention::PlacedIntervention;
use crate::lm::{LanguageModel, Prompt, rows_per_forward};
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
        self.greedy_one(prompt, &[], n)
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
        let edits = self.pair_edits(&[pair], |_, position| position, placed)?;
        self.greedy_one(&pair.base, &edits, n)
    }

    /// The `n` most likely next tokens after each prompt, one at a time (greedy, as
    /// [`LanguageModel::generate`] for each), the prompts left-padded into batched passes of at
    /// most [`crate::lm::TOKENS_PER_FORWARD`] tokens: their ids, in the prompts' order.
    pub fn generate_batch(&self, prompts: &[&Prompt], n: usize) -> Result<Vec<Vec<u32>>> {
        if n == 0 {
            return bad_setting("tokens to generate", 0, "at least 1");
        }
        for p in prompts {
            self.check_prompt(p)?;
            self.check_length(p.len().saturating_add(n - 1))?;
        }
        let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0) + n - 1;
        let mut out = Vec::with_capacity(prompts.len());
        for chunk in prompts.chunks(rows_per_forward(longest)) {
            out.extend(self.greedy(chunk, &[], n)?);
        }
        Ok(out)
    }

    fn greedy_one(&self, prompt: &Prompt, edits: &[Edit], n: usize) -> Result<Generated> {
        if n == 0 {
            return bad_setting("tokens to generate", 0, "at least 1");
        }
        // The whole sequence must fit the context, checked before anything runs.
        self.check_length(prompt.len().saturating_add(n - 1))?;
        let generated = self.greedy(&[prompt], edits, n)?.remove(0);
        Ok(Generated {
            prompt: prompt.clone(),
            text: self.decode(&generated),
            ids: generated,
        })
    }

    /// Greedy decoding of `n` tokens after each of `prompts` (left-padded into one batch),
    /// `edits` applied while the prompts are read.
    fn greedy(&self, prompts: &[&Prompt], edits: &[Edit], n: usize) -> Result<Vec<Vec<u32>>> {
        let model = &self.model;
        let keep = Keep {
            cache: true,
            ..Keep::default()
        };
        // The prompts, with the edits: their keys/values hold them from now on.
        let mut rows: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
        let batch = self.batch(prompts);
        let ctx = model.context(&batch);
        let blocks = Blocks::new(0..model.n_layers())
            .with_edits(edits)
            .keeping(keep)
            .stopped_by(Some(self.stop_flag()));
        let ran = blocks.run(model, &ctx, model.embed(batch.ids.clone()))?;
        let mut cache = ran.cache;
        let mut next = argmax_rows(model.logits_at(ran.h, batch.seq_len - 1))?;
        let mut generated: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
        for from in batch.seq_len..batch.seq_len + n - 1 {
            // One new column: its query attends to the cached columns and itself. Every row
            // grows by one token, so each keeps its left padding.
            for (row, &t) in rows.iter_mut().zip(&next) {
                row.push(t);
            }
            let full = llama::TokenBatch::new(&rows, self.tokenizer.pad_id(), &self.device());
            let ctx = model.context(&full).queries_from(from);
            let ids: Vec<i64> = next.iter().map(|&t| i64::from(t)).collect();
            let token =
                Tensor::<2, Int>::from_data(TensorData::new(ids, [rows.len(), 1]), &self.device());
            let window = Window {
                from,
                prefix: &cache,
            };
            let ran = blocks
                .clone()
                .after(Some(window))
                .run(model, &ctx, model.embed(token))?;
            cache = ran.cache;
            next = argmax_rows(model.logits_at(ran.h, 0))?;
            for (g, &t) in generated.iter_mut().zip(&next) {
                g.push(t);
            }
        }
        Ok(generated)
    }
}

/// The most likely token of each row of `[rows, vocab]` logits (the first on a tie, as
/// `torch.argmax`).
fn argmax_rows(logits: Tensor<2>) -> Result<Vec<u32>> {
    let [_, v] = logits.dims();
    let values = crate::readout::to_host(logits)?;
    Ok(values
        .chunks(v)
        .map(|row| {
            let mut best = 0;
            for (i, x) in row.iter().enumerate() {
                if *x > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect())
}
