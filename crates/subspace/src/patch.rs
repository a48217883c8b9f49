//! The tutorial's operations on one pair: read every layer of a run, and patch a base run with
//! a source run's vector at a site.

use burn::tensor::Tensor;

use crate::display::Patched;
use crate::engine::limits::rows_per_forward;
use crate::engine::{self, Edit, Trace};
use crate::error::{Result, bad_intervention};
use crate::intervention::{Intervention, PlacedIntervention};
use crate::lm::{LanguageModel, Prompt};
use crate::pair::Pair;
use crate::readout::Prediction;
use crate::site::{Component, Site};

/// Every hidden state of one prompt's run.
#[derive(Debug, Clone)]
pub struct PromptTrace {
    pub prompt: Prompt,
    pub trace: Trace,
}

impl PromptTrace {
    /// The vector at `site`, token `position`, `[width]` (the hidden size on the residual
    /// stream; one head's width for a head site).
    pub fn vector(&self, site: Site, position: usize) -> Result<Tensor<1>> {
        if site.layer >= self.trace.layers.len() {
            return Err(crate::SubspaceError::LayerOutOfRange {
                layer: site.layer,
                n_layers: self.trace.layers.len(),
            });
        }
        self.prompt.check_position(position, "source")?;
        self.trace.vector(site, 0, position)
    }

    /// The vectors of a site at every token, `[seq, width]`.
    pub fn at(&self, site: Site) -> Result<Tensor<2>> {
        let h = self.trace.at(site)?;
        let [_, s, w] = h.dims();
        Ok(h.reshape([s, w]))
    }
}

/// One edit with an explicit source vector: at `site`, token `position` of the base prompt,
/// apply `intervention` with `source` as the source vector.
#[derive(Debug, Clone)]
pub struct PatchSpec {
    pub site: Site,
    pub position: usize,
    pub source: Tensor<1>,
    pub intervention: Intervention,
}

impl LanguageModel {
    /// Runs `prompt` and keeps the hidden states of every layer and component.
    pub fn trace(&self, prompt: &Prompt) -> Result<PromptTrace> {
        self.check_prompt(prompt)?;
        self.check_memory(1, prompt.len(), true)?;
        let batch = self.batch(&[prompt]);
        Ok(PromptTrace {
            prompt: prompt.clone(),
            trace: engine::trace(&self.model, &batch, &[], Some(self.stop_flag()))?,
        })
    }

    /// [`LanguageModel::trace`] keeping only `components` of every layer (TransformerLens'
    /// `names_filter`): e.g. `&[Component::BlockOutput]` for the residual stream alone.
    pub fn trace_with(&self, prompt: &Prompt, components: &[Component]) -> Result<PromptTrace> {
        self.check_prompt(prompt)?;
        self.check_memory(1, prompt.len(), true)?;
        let batch = self.batch(&[prompt]);
        Ok(PromptTrace {
            prompt: prompt.clone(),
            trace: engine::trace_keeping(&self.model, &batch, components, Some(self.stop_flag()))?,
        })
    }

    /// The attention probabilities of every head of block `layer` over `prompt`: `[n_heads,
    /// seq, seq]`, row `q` of head `h` the distribution of token `q`'s attention over the
    /// tokens up to it (read-only: transformers' `output_attentions`).
    pub fn attention_pattern(&self, prompt: &Prompt, layer: usize) -> Result<Tensor<3>> {
        self.check_prompt(prompt)?;
        self.site_width(Site::block_output(layer))?;
        self.check_memory(1, prompt.len(), false)?;
        let batch = self.batch(&[prompt]);
        let ctx = self.model.context(&batch);
        let keep = engine::Keep {
            patterns: true,
            ..engine::Keep::default()
        };
        let ran = engine::Blocks::new(0..layer + 1)
            .keeping(keep)
            .stopped_by(Some(self.stop_flag()))
            .run(&self.model, &ctx, self.model.embed(batch.ids.clone()))?;
        let [_, h, q, k] = ran.patterns[layer].dims();
        Ok(ran.patterns[layer].clone().reshape([h, q, k]))
    }

    /// The base prompt's next-token distribution before and after `placed` is applied at the
    /// pair's tokens, with the source prompt's run giving the source vector. Displays as a
    /// table and a plot of the shift.
    pub fn patch(&self, pair: &Pair, placed: &PlacedIntervention) -> Result<Patched> {
        self.patch_all(pair, std::slice::from_ref(placed))
    }

    /// Like [`LanguageModel::patch`] with several interventions (at different sites) in one run.
    pub fn patch_all(&self, pair: &Pair, placed: &[PlacedIntervention]) -> Result<Patched> {
        let before = self.predict(&pair.base)?;
        let after = self
            .patch_pairs(std::slice::from_ref(pair), placed)?
            .remove(0);
        let what: Vec<String> = placed
            .iter()
            .map(|p| format!("{} at {}", p.intervention.kind(), p.site))
            .collect();
        Patched::new(
            format!(
                "{:?} ← {:?}: {}",
                pair.base.text,
                pair.source.text,
                what.join(", ")
            ),
            before,
            after,
        )
    }

    /// The next-token distribution of `base` with edits whose source vectors are given.
    pub fn patch_vectors(&self, base: &Prompt, patches: &[PatchSpec]) -> Result<Prediction> {
        self.check_prompt(base)?;
        for p in patches {
            let d = self.site_width(p.site)?;
            base.check_position(p.position, "base")?;
            p.intervention.check(d)?;
            if p.source.dims() != [d] {
                return bad_intervention(format!(
                    "a source vector at {} must have {d} values (the site's width), got {:?}",
                    p.site,
                    p.source.dims()
                ));
            }
        }
        let batch = self.batch(&[base]);
        let edits: Vec<Edit> = patches
            .iter()
            .map(|p| {
                let d = p.source.dims()[0];
                Edit {
                    site: p.site,
                    cells: Edit::one_per_row(&[batch.column(0, p.position)]),
                    source: p.source.clone().reshape([1, d]),
                    intervention: &p.intervention,
                }
            })
            .collect();
        let logits = engine::last_logits(&self.model, &batch, &edits, Some(self.stop_flag()))?;
        Ok(self.prediction(logits)?.remove(0))
    }

    /// Patches a batch of pairs, each at its own tokens: the next-token distribution of every
    /// patched base. Left-padded forward passes of at most
    /// [`crate::engine::TOKENS_PER_FORWARD`] tokens each.
    pub fn patch_pairs(
        &self,
        pairs: &[Pair],
        placed: &[PlacedIntervention],
    ) -> Result<Vec<Prediction>> {
        self.check_placed(placed)?;
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        self.check_pairs(pairs)?;
        let longest = pairs
            .iter()
            .map(|p| p.base.len().max(p.source.len()))
            .max()
            .unwrap_or(0);
        let rows = rows_per_forward(longest);
        self.check_memory(rows.min(pairs.len()), longest, false)?;
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(rows) {
            let refs: Vec<&Pair> = chunk.iter().collect();
            let bases: Vec<&Prompt> = chunk.iter().map(|p| &p.base).collect();
            let batch = self.batch(&bases);
            let edits = self.pair_edits(&refs, |r, position| batch.column(r, position), placed)?;
            let logits = engine::last_logits(&self.model, &batch, &edits, Some(self.stop_flag()))?;
            out.extend(self.prediction(logits)?);
        }
        Ok(out)
    }
}
