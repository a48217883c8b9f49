//! Pairs into edits: the checks every caller of a pair makes, the source vectors read from the
//! pairs' source prompts, and the [`Edit`]s that apply placed interventions at the pairs' base
//! tokens. Patching, training and generation all build their edits here, just above the loop
//! ([`crate::run`]) that applies them.

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData};

use crate::error::Result;
use crate::intervention::PlacedIntervention;
use crate::lm::{LanguageModel, Prompt, rows_per_forward};
use crate::pair::Pair;
use crate::run::{self, Edit};
use crate::site::Site;

impl LanguageModel {
    /// The source vector of each pair at `site` (its source prompt, its source position), from
    /// batched forwards of the distinct source prompts up to the site's layer.
    ///
    /// # Shapes
    /// - output: `[pairs, hidden]`
    pub fn source_vectors(&self, site: Site, pairs: &[&Pair]) -> Result<Tensor<2>> {
        Ok(self.source_vectors_at(&[site], pairs)?.remove(0))
    }

    /// [`LanguageModel::source_vectors`] at several sites, from forwards of the source prompts
    /// up to the highest of their layers. Each distinct source prompt runs once (RAVEL's
    /// training pairs draw their ~4000 sources from ~1400 prompts), in passes of at most
    /// [`crate::lm::TOKENS_PER_FORWARD`] tokens.
    fn source_vectors_at(&self, sites: &[Site], pairs: &[&Pair]) -> Result<Vec<Tensor<2>>> {
        let Some(top) = sites.iter().map(|s| s.layer).max() else {
            return Ok(Vec::new());
        };
        let d = self.hidden_size();
        if pairs.is_empty() {
            return Ok(sites
                .iter()
                .map(|_| Tensor::zeros([0, d], &self.device()))
                .collect());
        }
        // Each pair's source as an index into the distinct (prompt, position) reads.
        let mut distinct: Vec<(&Prompt, usize)> = Vec::new();
        let mut seen: HashMap<(&[u32], usize), usize> = HashMap::new();
        let slot: Vec<i64> = pairs
            .iter()
            .map(|p| {
                let key = (p.source.ids.as_slice(), p.source_position);
                *seen.entry(key).or_insert_with(|| {
                    distinct.push((&p.source, p.source_position));
                    distinct.len() - 1
                }) as i64
            })
            .collect();
        let longest = distinct.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        // Per site, the distinct reads' vectors, chunk by chunk: each chunk's vectors are copied
        // out (`cat`) so that its trace is freed before the next one runs.
        let mut read: Vec<Vec<Tensor<2>>> = vec![Vec::new(); sites.len()];
        for chunk in distinct.chunks(rows_per_forward(longest)) {
            let prompts: Vec<&Prompt> = chunk.iter().map(|(p, _)| *p).collect();
            let batch = self.batch(&prompts);
            let traced = run::trace_until(&self.model, &batch, top, Some(self.stop_flag()))?;
            for (s, &site) in sites.iter().enumerate() {
                let rows = chunk
                    .iter()
                    .enumerate()
                    .map(|(row, (_, position))| {
                        traced
                            .vector(site, row, batch.column(row, *position))
                            .reshape([1, d])
                    })
                    .collect();
                read[s].push(Tensor::cat(rows, 0));
            }
        }
        let slot =
            Tensor::<1, Int>::from_data(TensorData::new(slot, [pairs.len()]), &self.device());
        Ok(read
            .into_iter()
            .map(|chunks| Tensor::cat(chunks, 0).select(0, slot.clone()))
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
