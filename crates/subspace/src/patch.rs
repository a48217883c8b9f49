//! The tutorial's operations on one prompt: read every layer of a run, patch a base run with a
//! source run's vector at a site.

use burn::tensor::Tensor;

use crate::error::{Result, input};
use crate::intervention::Intervention;
use crate::lm::{LanguageModel, Prompt};
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

/// One edit of a patched run: at `site`, token `position` of the base prompt, apply
/// `intervention` with `source` as the source vector.
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
        let batch = self.batch(&[prompt]);
        Ok(PromptTrace {
            prompt: prompt.clone(),
            trace: run::trace(&self.model, &batch, &[]),
        })
    }

    /// The next-token distribution of `base` with the vector at (`site`, `base_position`)
    /// patched from `source`'s run at `source_position` through `intervention`.
    pub fn patch(
        &self,
        base: &Prompt,
        source: &PromptTrace,
        site: Site,
        base_position: usize,
        source_position: usize,
        intervention: &Intervention,
    ) -> Result<Prediction> {
        base.check_position(base_position, "base")?;
        let vector = source.vector(site, source_position)?;
        self.patch_many(
            base,
            &[PatchSpec {
                site,
                position: base_position,
                source: vector,
                intervention: intervention.clone(),
            }],
        )
    }

    /// The next-token distribution of `base` with several edits applied in one run.
    pub fn patch_many(&self, base: &Prompt, patches: &[PatchSpec]) -> Result<Prediction> {
        let d = self.hidden_size();
        for p in patches {
            p.site.check(self.n_layers())?;
            base.check_position(p.position, "base")?;
            p.intervention.check(d)?;
            if p.source.dims() != [d] {
                return input(format!(
                    "a source vector must have {d} values, got {:?}",
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
        let ctx = self.model.context(&batch);
        let h = self.model.embed(batch.ids.clone());
        let h = run::run_blocks(&self.model, &ctx, h, 0..self.n_layers(), &edits, None);
        let logits = self.model.logits_at(h, batch.seq_len - 1);
        Ok(self.prediction(logits)?.remove(0))
    }
}

impl LanguageModel {
    /// The source vector of each example at `site` (its source prompt, its source position),
    /// from one batched forward of the source prompts up to the site's layer.
    ///
    /// # Shapes
    /// - output: `[examples, hidden]`
    pub fn source_vectors(&self, site: Site, examples: &[crate::train::Example]) -> Tensor<2> {
        let d = self.hidden_size();
        let sources: Vec<&Prompt> = examples.iter().map(|e| &e.source).collect();
        let batch = self.batch(&sources);
        let traced = run::trace_until(&self.model, &batch, site.layer);
        Tensor::cat(
            examples
                .iter()
                .enumerate()
                .map(|(r, e)| {
                    traced
                        .vector(site, r, batch.column(r, e.source_position))
                        .reshape([1, d])
                })
                .collect(),
            0,
        )
    }

    /// Patches a batch of (base, source) pairs in one forward pass (left-padded), each at its own
    /// positions: the next-token distribution of every patched base. The examples' targets are
    /// not used.
    pub fn patch_examples(
        &self,
        site: Site,
        examples: &[crate::train::Example],
        intervention: &Intervention,
    ) -> Result<Vec<Prediction>> {
        site.check(self.n_layers())?;
        intervention.check(self.hidden_size())?;
        if examples.is_empty() {
            return Ok(Vec::new());
        }
        for e in examples {
            e.base.check_position(e.base_position, "base")?;
            e.source.check_position(e.source_position, "source")?;
        }
        let source = self.source_vectors(site, examples);
        let bases: Vec<&Prompt> = examples.iter().map(|e| &e.base).collect();
        let batch = self.batch(&bases);
        let edit = Edit {
            site,
            columns: examples
                .iter()
                .enumerate()
                .map(|(r, e)| batch.column(r, e.base_position))
                .collect(),
            source,
            intervention,
        };
        let ctx = self.model.context(&batch);
        let h = self.model.embed(batch.ids.clone());
        let h = run::run_blocks(&self.model, &ctx, h, 0..self.n_layers(), &[edit], None);
        self.prediction(self.model.logits_at(h, batch.seq_len - 1))
    }
}
