//! Generation, greedy or sampled, optionally with interventions of two kinds:
//! - a pair's patch, applied once while the prompt is read: it lives on in the keys and values
//!   of the cache, so every later token sees the patched prompt ("The city of Paris is in the
//!   country of Brazil, ...") — what a forward hook on the prompt's pass does with Hugging
//!   Face's `generate`;
//! - [`Held`] edits, applied again on every token that predicts a new one (steering with
//!   [`Intervention::Add`], or a trained subspace held at a source's value) — a forward hook
//!   left on for the whole of `generate`.

use std::fmt;

use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::limits::rows_per_forward;
use crate::engine::{Blocks, Cell, Edit, Keep, Window};
use crate::error::{Result, bad_intervention, bad_setting};
use crate::intervention::{Intervention, PlacedIntervention};
use crate::lm::{LanguageModel, Prompt};
use crate::pair::Pair;
use crate::site::Site;

/// How each next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Sampling {
    /// The most likely token (the first on a tie, as `torch.argmax`).
    #[default]
    Greedy,
    /// Drawn from `softmax(logits / temperature)` restricted to the smallest set of most
    /// likely tokens whose probability reaches `top_p` (nucleus sampling), by a seeded ChaCha8
    /// generator: the same seed gives the same tokens on every machine.
    Sample {
        /// Above 0: below 1 sharpens the distribution, above 1 flattens it.
        temperature: f32,
        /// In (0, 1]; 1 keeps every token.
        top_p: f32,
        seed: u64,
    },
}

impl Sampling {
    /// Checks the temperature and top-p.
    pub fn check(&self) -> Result<()> {
        if let Sampling::Sample {
            temperature, top_p, ..
        } = *self
        {
            if !(temperature.is_finite() && temperature > 0.0) {
                return bad_setting(
                    "temperature",
                    temperature,
                    "a finite number above 0 (use Sampling::Greedy for the most likely token)",
                );
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return bad_setting("top_p", top_p, "a number in (0, 1]");
            }
        }
        Ok(())
    }
}

/// An intervention held on every token that predicts a new one: the prompt's last token, then
/// each generated token, at `site`, with `source` as its source vector.
#[derive(Debug, Clone)]
pub struct Held {
    pub site: Site,
    pub intervention: Intervention,
    /// `[site width]`: the source vector (the vector added, for [`Intervention::Add`]).
    pub source: Tensor<1>,
}

/// What to generate: how many tokens, how each is chosen, and the edits held while it runs.
#[derive(Debug, Clone, Default)]
pub struct GenerateConfig {
    pub tokens: usize,
    pub sampling: Sampling,
    pub held: Vec<Held>,
}

impl GenerateConfig {
    /// `tokens` greedy tokens, nothing held.
    pub fn greedy(tokens: usize) -> Self {
        GenerateConfig {
            tokens,
            ..GenerateConfig::default()
        }
    }

    /// Samples with `temperature` and `top_p`, seeded by `seed`.
    pub fn sampled(mut self, temperature: f32, top_p: f32, seed: u64) -> Self {
        self.sampling = Sampling::Sample {
            temperature,
            top_p,
            seed,
        };
        self
    }

    /// Holds `held` on every token that predicts a new one.
    pub fn holding(mut self, held: Held) -> Self {
        self.held.push(held);
        self
    }
}

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
        self.generate_with(prompt, &GenerateConfig::greedy(n))
    }

    /// Generates `config.tokens` tokens after `prompt`, chosen by `config.sampling`, with
    /// `config.held` applied on every token that predicts a new one.
    pub fn generate_with(&self, prompt: &Prompt, config: &GenerateConfig) -> Result<Generated> {
        self.check_prompt(prompt)?;
        self.generate_one(prompt, &[], config)
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
        self.generate_patched_with(pair, placed, &GenerateConfig::greedy(n))
    }

    /// [`LanguageModel::generate_with`] on the pair's base prompt, with `placed` applied at its
    /// edited tokens while the prompt is read (and `config.held` on every predicting token).
    pub fn generate_patched_with(
        &self,
        pair: &Pair,
        placed: &[PlacedIntervention],
        config: &GenerateConfig,
    ) -> Result<Generated> {
        self.check_pairs([pair])?;
        self.check_placed(placed)?;
        // One unpadded row: the base token's column is its position.
        let edits = self.pair_edits(&[pair], |_, position| position, placed)?;
        self.generate_one(&pair.base, &edits, config)
    }

    /// The `n` most likely next tokens after each prompt, one at a time (greedy, as
    /// [`LanguageModel::generate`] for each), the prompts left-padded into batched passes of at
    /// most [`crate::engine::TOKENS_PER_FORWARD`] tokens: their ids, in the prompts' order.
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
        let greedy = GenerateConfig::greedy(n);
        for chunk in prompts.chunks(rows_per_forward(longest)) {
            out.extend(self.decode_tokens(chunk, &[], &greedy)?);
        }
        Ok(out)
    }

    fn generate_one(
        &self,
        prompt: &Prompt,
        edits: &[Edit],
        config: &GenerateConfig,
    ) -> Result<Generated> {
        let n = config.tokens;
        if n == 0 {
            return bad_setting("tokens to generate", 0, "at least 1");
        }
        config.sampling.check()?;
        for held in &config.held {
            let width = self.site_width(held.site)?;
            held.intervention.check(width)?;
            if held.source.dims() != [width] {
                return bad_intervention(format!(
                    "the source vector held at {} must have {width} values (the site's width), got {:?}",
                    held.site,
                    held.source.dims()
                ));
            }
        }
        // The whole sequence must fit the context, checked before anything runs.
        self.check_length(prompt.len().saturating_add(n - 1))?;
        let generated = self.decode_tokens(&[prompt], edits, config)?.remove(0);
        Ok(Generated {
            prompt: prompt.clone(),
            text: self.decode(&generated),
            ids: generated,
        })
    }

    /// `config.tokens` tokens after each of `prompts` (left-padded into one batch), `edits`
    /// applied while the prompts are read, `config.held` on every token that predicts one.
    fn decode_tokens(
        &self,
        prompts: &[&Prompt],
        edits: &[Edit],
        config: &GenerateConfig,
    ) -> Result<Vec<Vec<u32>>> {
        let n = config.tokens;
        let mut chooser = Chooser::new(config.sampling);
        let model = &self.model;
        // The held edits at one column of every row.
        let held_at = |column: usize| -> Vec<Edit> {
            config
                .held
                .iter()
                .map(|held| {
                    let width = held.source.dims()[0];
                    Edit {
                        site: held.site,
                        cells: (0..prompts.len()).map(|row| Cell { row, column }).collect(),
                        source: held
                            .source
                            .clone()
                            .reshape([1, width])
                            .repeat_dim(0, prompts.len()),
                        intervention: &held.intervention,
                    }
                })
                .collect()
        };
        let keep = Keep {
            cache: true,
            ..Keep::default()
        };
        // The prompts, with the edits: their keys/values hold them from now on.
        let mut rows: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
        let batch = self.batch(prompts);
        let ctx = model.context(&batch);
        let mut prompt_edits = edits.to_vec();
        prompt_edits.extend(held_at(batch.seq_len - 1));
        let blocks = Blocks::new(0..model.n_layers())
            .keeping(keep)
            .stopped_by(Some(self.stop_flag()));
        let ran = blocks.clone().with_edits(&prompt_edits).run(
            model,
            &ctx,
            model.embed(batch.ids.clone()),
        )?;
        let mut cache = ran.cache;
        let mut next = chooser.choose(model.logits_at(ran.h, batch.seq_len - 1))?;
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
            let step_edits = held_at(from);
            let ran = blocks
                .clone()
                .with_edits(&step_edits)
                .after(Some(window))
                .run(model, &ctx, model.embed(token))?;
            cache = ran.cache;
            next = chooser.choose(model.logits_at(ran.h, 0))?;
            for (g, &t) in generated.iter_mut().zip(&next) {
                g.push(t);
            }
        }
        Ok(generated)
    }
}

/// Chooses each row's next token from its logits, by a [`Sampling`] rule (with its generator).
struct Chooser {
    sampling: Sampling,
    rng: Option<ChaCha8Rng>,
}

impl Chooser {
    fn new(sampling: Sampling) -> Self {
        let rng = match sampling {
            Sampling::Greedy => None,
            Sampling::Sample { seed, .. } => Some(ChaCha8Rng::seed_from_u64(seed)),
        };
        Chooser { sampling, rng }
    }

    /// The next token of each row of `[rows, vocab]` logits.
    fn choose(&mut self, logits: Tensor<2>) -> Result<Vec<u32>> {
        let [_, v] = logits.dims();
        let values = crate::readout::to_host(logits)?;
        Ok(values
            .chunks(v)
            .map(|row| match (self.sampling, self.rng.as_mut()) {
                (
                    Sampling::Sample {
                        temperature, top_p, ..
                    },
                    Some(rng),
                ) => sample(row, temperature, top_p, rng),
                _ => argmax(row),
            })
            .collect())
    }
}

/// The index of the largest value (the first on a tie, as `torch.argmax`).
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in row.iter().enumerate() {
        if *x > row[best] {
            best = i;
        }
    }
    best as u32
}

/// A draw from `softmax(row / temperature)` cut to its top-`top_p` nucleus: the most likely
/// tokens, in order, up to and including the one at which their probability reaches `top_p`.
fn sample(row: &[f32], temperature: f32, top_p: f32, rng: &mut ChaCha8Rng) -> u32 {
    let scaled: Vec<f64> = row
        .iter()
        .map(|&x| f64::from(x) / f64::from(temperature))
        .collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scaled.iter().map(|x| (x - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut order: Vec<usize> = (0..row.len()).collect();
    // Most likely first; ties by index, so the order (and the draw) is the same everywhere.
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let mut kept = 0.0;
    let mut nucleus = 0;
    for &i in &order {
        kept += weights[i];
        nucleus += 1;
        if kept >= f64::from(top_p) * total {
            break;
        }
    }
    let mut u = rng.random::<f64>() * kept;
    for &i in &order[..nucleus] {
        u -= weights[i];
        if u < 0.0 {
            return i as u32;
        }
    }
    order[nucleus - 1] as u32
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Probabilities 0.5, 0.3, 0.2 (logits their logs): a top-p of 0.6 keeps the first two
    /// (0.5 < 0.6 ≤ 0.8), drawn 5 : 3; top-p 1 keeps all three; temperature 0.5 squares the
    /// probabilities before normalising (25 : 9 : 4).
    #[test]
    fn nucleus_sampling_draws_from_the_stated_tokens_in_the_stated_proportions() {
        let logits: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        let draws = |t: f32, p: f32| {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let mut counts = [0usize; 3];
            for _ in 0..20_000 {
                counts[sample(&logits, t, p, &mut rng) as usize] += 1;
            }
            counts.map(|c| c as f64 / 20_000.0)
        };
        let nucleus = draws(1.0, 0.6);
        assert_eq!(nucleus[2], 0.0);
        assert!((nucleus[0] - 0.625).abs() < 0.015, "{nucleus:?}");
        let all = draws(1.0, 1.0);
        assert!((all[2] - 0.2).abs() < 0.015, "{all:?}");
        let sharp = draws(0.5, 1.0);
        assert!((sharp[0] - 25.0 / 38.0).abs() < 0.015, "{sharp:?}");
        assert!((sharp[2] - 4.0 / 38.0).abs() < 0.015, "{sharp:?}");
    }

    #[test]
    fn argmax_takes_the_first_of_equal_values() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
    }
}
