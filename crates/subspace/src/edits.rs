//! Pairs into edits: the checks every caller of a pair makes, the source vectors read from the
//! pairs' source prompts, and the [`Edit`]s that apply placed interventions at the pairs' base
//! tokens. Patching, training and generation all build their edits here, just above the loop
//! ([`crate::run`]) that applies them.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::intervention::PlacedIntervention;
use crate::lm::{LanguageModel, Prompt};
use crate::pair::Pair;
use crate::run::{self, Edit};
use crate::site::Site;

impl LanguageModel {
    /// The source vector of each pair at `site` (its source prompt, its source position), from
    /// one batched forward of the source prompts up to the site's layer.
    ///
    /// # Shapes
    /// - output: `[pairs, hidden]`
    pub fn source_vectors(&self, site: Site, pairs: &[&Pair]) -> Result<Tensor<2>> {
        Ok(self.source_vectors_at(&[site], pairs)?.remove(0))
    }

    /// [`LanguageModel::source_vectors`] at several sites, from one forward of the source
    /// prompts up to the highest of their layers.
    fn source_vectors_at(&self, sites: &[Site], pairs: &[&Pair]) -> Result<Vec<Tensor<2>>> {
        let Some(top) = sites.iter().map(|s| s.layer).max() else {
            return Ok(Vec::new());
        };
        let d = self.hidden_size();
        let sources: Vec<&Prompt> = pairs.iter().map(|p| &p.source).collect();
        let batch = self.batch(&sources);
        let traced = run::trace_until(&self.model, &batch, top, Some(self.stop_flag()))?;
        Ok(sites
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
            .collect())
    }

    /// The edits that apply `placed` at each pair's base token, found at batch column
    /// `columns[r]` for pair `r`, the source vectors read from the pairs' source prompts.
    pub(crate) fn pair_edits<'a>(
        &self,
        pairs: &[&Pair],
        columns: Vec<usize>,
        placed: &'a [PlacedIntervention],
    ) -> Result<Vec<Edit<'a>>> {
        let sites: Vec<Site> = placed.iter().map(|p| p.site).collect();
        Ok(placed
            .iter()
            .zip(self.source_vectors_at(&sites, pairs)?)
            .map(|(p, source)| Edit {
                site: p.site,
                columns: columns.clone(),
                source,
                intervention: &p.intervention,
            })
            .collect())
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
}
