//! The tutorial's operations on one pair: read every layer of a run, and patch a base run with
//! a source run's vector at a site.

use burn::tensor::Tensor;

use crate::display::Patched;
use crate::error::{Result, bad_intervention};
use crate::intervention::{Intervention, PlacedIntervention};
use crate::lm::{LanguageModel, Prompt, rows_per_forward};
use crate::pair::Pair;
use crate::readout::Prediction;
use crate::run::{self, Edit, Trace};
use crate::site::Site;

/// Every hidden state of one prompt's run.
#[derive(Debug, Clone)]
pub struct PromptTrace {
    pub prompt: Prompt,
    pub trace: Trace,
}

impl PromptTrace {
    /// The vector at `site`, token `position`, `[hidden]`.
    pub fn vector(&self, site: Site, position: usize) -> Result<Tensor<1>> {
        site.check(self.trace.layers.len())?;
        self.prompt.check_position(position, "source")?;
        Ok(self.trace.vector(site, 0, position))
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
            trace: run::trace(&self.model, &batch, &[], Some(self.stop_flag()))?,
        })
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
        let d = self.hidden_size();
        for p in patches {
            p.site.check(self.n_layers())?;
            base.check_position(p.position, "base")?;
            p.intervention.check(d)?;
            if p.source.dims() != [d] {
                return bad_intervention(format!(
                    "a source vector must have {d} values (the hidden size), got {:?}",
                    p.source.dims()
                ));
            }
        }
        let batch = self.batch(&[base]);
        let edits: Vec<Edit> = patches
            .iter()
            .map(|p| Edit {
                site: p.site,
                columns: vec![batch.column(0, p.position)],
                source: p.source.clone().reshape([1, d]),
                intervention: &p.intervention,
            })
            .collect();
        let logits = run::last_logits(&self.model, &batch, &edits, Some(self.stop_flag()))?;
        Ok(self.prediction(logits)?.remove(0))
    }

    /// Patches a batch of pairs, each at its own tokens: the next-token distribution of every
    /// patched base. Left-padded forward passes of at most
    /// [`crate::lm::TOKENS_PER_FORWARD`] tokens each.
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
            let columns: Vec<usize> = chunk
                .iter()
                .enumerate()
                .map(|(r, p)| batch.column(r, p.base_position))
                .collect();
            let edits = self.pair_edits(&refs, columns, placed)?;
            let logits = run::last_logits(&self.model, &batch, &edits, Some(self.stop_flag()))?;
            out.extend(self.prediction(logits)?);
        }
        Ok(out)
    }
}
