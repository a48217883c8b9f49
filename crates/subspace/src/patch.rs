//! The tutorial's operations on one pair: read every layer of a run, and patch a base run with
//! a source run's vector at a site.

use burn::tensor::Tensor;

use crate::display::Patched;
use crate::error::{Result, bad_intervention};
use crate::intervention::{Intervention, PlacedIntervention};
use crate::lm::{LanguageModel, Prompt};
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
            trace: run::trace(&self.model, &batch, &[]),
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
        Ok(self
            .prediction(run::last_logits(&self.model, &batch, &edits))?
            .remove(0))
    }

    /// The source vector of each pair at `site` (its source prompt, its source position), from
    /// one batched forward of the source prompts up to the site's layer.
    ///
    /// # Shapes
    /// - output: `[pairs, hidden]`
    pub fn source_vectors(&self, site: Site, pairs: &[&Pair]) -> Tensor<2> {
        self.source_vectors_at(&[site], pairs).remove(0)
    }

    /// [`LanguageModel::source_vectors`] at several sites, from one forward of the source
    /// prompts up to the highest of their layers.
    fn source_vectors_at(&self, sites: &[Site], pairs: &[&Pair]) -> Vec<Tensor<2>> {
        let Some(top) = sites.iter().map(|s| s.layer).max() else {
            return Vec::new();
        };
        let d = self.hidden_size();
        let sources: Vec<&Prompt> = pairs.iter().map(|p| &p.source).collect();
        let batch = self.batch(&sources);
        let traced = run::trace_until(&self.model, &batch, top);
        sites
            .iter()
            .map(|&site| {
                Tensor::cat(
                    pairs
                        .iter()
                        .enumerate()
                        .map(|(r, p)| {
                            traced
                                .vector(site, r, batch.column(r, p.source_position))
                                .reshape([1, d])
                        })
                        .collect(),
                    0,
                )
            })
            .collect()
    }

    /// The edits that apply `placed` at each pair's base token, found at batch column
    /// `columns[r]` for pair `r`, the source vectors read from the pairs' source prompts.
    pub(crate) fn pair_edits<'a>(
        &self,
        pairs: &[&Pair],
        columns: Vec<usize>,
        placed: &'a [PlacedIntervention],
    ) -> Vec<Edit<'a>> {
        let sites: Vec<Site> = placed.iter().map(|p| p.site).collect();
        placed
            .iter()
            .zip(self.source_vectors_at(&sites, pairs))
            .map(|(p, source)| Edit {
                site: p.site,
                columns: columns.clone(),
                source,
                intervention: &p.intervention,
            })
            .collect()
    }

    /// Checks that placed interventions fit this model: their layers exist, their shapes fit
    /// its hidden size.
    pub fn check_placed(&self, placed: &[PlacedIntervention]) -> Result<()> {
        for p in placed {
            p.site.check(self.n_layers())?;
            p.intervention.check(self.hidden_size())?;
        }
        Ok(())
    }

    /// Checks that pairs can run on this model: prompts of its tokenizer, within its context.
    pub fn check_pairs<'p>(&self, pairs: impl IntoIterator<Item = &'p Pair>) -> Result<()> {
        for p in pairs {
            self.check_prompt(&p.base)?;
            self.check_prompt(&p.source)?;
            p.base.check_position(p.base_position, "base")?;
            p.source.check_position(p.source_position, "source")?;
        }
        Ok(())
    }

    /// Patches a batch of pairs in one forward pass (left-padded), each at its own tokens: the
    /// next-token distribution of every patched base.
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
        self.check_memory(pairs.len(), longest, false)?;
        let refs: Vec<&Pair> = pairs.iter().collect();
        let bases: Vec<&Prompt> = pairs.iter().map(|p| &p.base).collect();
        let batch = self.batch(&bases);
        let columns: Vec<usize> = pairs
            .iter()
            .enumerate()
            .map(|(r, p)| batch.column(r, p.base_position))
            .collect();
        let edits = self.pair_edits(&refs, columns, placed);
        self.prediction(run::last_logits(&self.model, &batch, &edits))
    }
}
