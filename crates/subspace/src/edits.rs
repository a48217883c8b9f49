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
use crate::run::{self, Cell, Edit};
use crate::site::{Component, Site};

impl LanguageModel {
    /// The source vectors of the pairs at `site`: for each pair, for each of its edited tokens
    /// (one, or a span's), the vector at its source position, from batched forwards of the
    /// distinct source prompts up to the site's layer.
    ///
    /// # Shapes
    /// - output: `[edited tokens of all pairs, site width]`
    pub fn source_vectors(&self, site: Site, pairs: &[&Pair]) -> Result<Tensor<2>> {
        Ok(self.source_vectors_at(&[site], pairs)?.remove(0))
    }

    /// [`LanguageModel::source_vectors`] at several sites, from forwards of the source prompts
    /// up to the highest of their layers. Each distinct (source prompt, position) is read once
    /// (RAVEL's training pairs draw their ~4000 sources from ~1400 prompts), in passes of at
    /// most [`crate::lm::TOKENS_PER_FORWARD`] tokens.
    fn source_vectors_at(&self, sites: &[Site], pairs: &[&Pair]) -> Result<Vec<Tensor<2>>> {
        let widths = sites
            .iter()
            .map(|s| s.check(&self.model.config))
            .collect::<Result<Vec<usize>>>()?;
        let Some(top) = sites.iter().map(|s| s.layer).max() else {
            return Ok(Vec::new());
        };
        // Each edited token's source as an index into the distinct (prompt, position) reads.
        let mut distinct: Vec<(&Prompt, usize)> = Vec::new();
        let mut seen: HashMap<(&[u32], usize), usize> = HashMap::new();
        let slot: Vec<i64> = pairs
            .iter()
            .flat_map(|p| p.positions.iter().map(move |a| (&p.source, a.source)))
            .map(|(prompt, position)| {
                *seen
                    .entry((prompt.ids.as_slice(), position))
                    .or_insert_with(|| {
                        distinct.push((prompt, position));
                        distinct.len() - 1
                    }) as i64
            })
            .collect();
        if slot.is_empty() {
            return Ok(widths
                .iter()
                .map(|&w| Tensor::zeros([0, w], &self.device()))
                .collect());
        }
        let mut components: Vec<Component> = sites.iter().map(|s| s.component).collect();
        components.dedup();
        let longest = distinct.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        // Per site, the distinct reads' vectors, chunk by chunk: each chunk's vectors are copied
        // out (`cat`) so that its trace is freed before the next one runs.
        let mut read: Vec<Vec<Tensor<2>>> = vec![Vec::new(); sites.len()];
        for chunk in distinct.chunks(rows_per_forward(longest)) {
            let prompts: Vec<&Prompt> = chunk.iter().map(|(p, _)| *p).collect();
            let batch = self.batch(&prompts);
            let traced = run::trace_until(
                &self.model,
                &batch,
                top,
                &components,
                Some(self.stop_flag()),
            )?;
            for (s, &site) in sites.iter().enumerate() {
                let rows = chunk
                    .iter()
                    .enumerate()
                    .map(|(row, (_, position))| {
                        Ok(traced
                            .vector(site, row, batch.column(row, *position))?
                            .reshape([1, widths[s]]))
                    })
                    .collect::<Result<Vec<_>>>()?;
                read[s].push(Tensor::cat(rows, 0));
            }
        }
        let n = slot.len();
        let slot = Tensor::<1, Int>::from_data(TensorData::new(slot, [n]), &self.device());
        Ok(read
            .into_iter()
            .map(|chunks| Tensor::cat(chunks, 0).select(0, slot.clone()))
            .collect())
    }

    /// The cells of a batch that the pairs edit: every edited token of pair `r`, at its column
    /// in row `r` (`column(r, position)`), in the order of [`LanguageModel::source_vectors`].
    pub(crate) fn pair_cells(pairs: &[&Pair], column: impl Fn(usize, usize) -> usize) -> Vec<Cell> {
        pairs
            .iter()
            .enumerate()
            .flat_map(|(row, p)| p.positions.iter().map(move |a| (row, a.base)))
            .map(|(row, position)| Cell {
                row,
                column: column(row, position),
            })
            .collect()
    }

    /// The edits that apply `placed` at each pair's edited tokens (pair `r` in batch row `r`,
    /// its token at `column(r, position)`), the source vectors read from the pairs' source
    /// prompts.
    pub(crate) fn pair_edits<'a>(
        &self,
        pairs: &[&Pair],
        column: impl Fn(usize, usize) -> usize,
        placed: &'a [PlacedIntervention],
    ) -> Result<Vec<Edit<'a>>> {
        let sites: Vec<Site> = placed.iter().map(|p| p.site).collect();
        let cells = Self::pair_cells(pairs, column);
        Ok(placed
            .iter()
            .zip(self.source_vectors_at(&sites, pairs)?)
            .map(|(p, source)| Edit {
                site: p.site,
                cells: cells.clone(),
                source,
                intervention: &p.intervention,
            })
            .collect())
    }

    /// Checks that placed interventions fit this model: their sites exist, their shapes fit
    /// the sites' widths.
    pub fn check_placed(&self, placed: &[PlacedIntervention]) -> Result<()> {
        for p in placed {
            let width = p.site.check(&self.model.config)?;
            p.intervention.check(width)?;
        }
        Ok(())
    }

    /// The width of the vector at `site` (the hidden size on the residual stream, one head's
    /// width for a head, the MLP's for `mlp_hidden`), or an error if this model has no such
    /// site.
    pub fn site_width(&self, site: Site) -> Result<usize> {
        site.check(&self.model.config)
    }

    /// Checks that pairs can run on this model: prompts of its tokenizer, within its context.
    pub fn check_pairs<'p>(&self, pairs: impl IntoIterator<Item = &'p Pair>) -> Result<()> {
        for p in pairs {
            self.check_prompt(&p.base)?;
            self.check_prompt(&p.source)?;
            for a in &p.positions {
                p.base.check_position(a.base, "base")?;
                p.source.check_position(a.source, "source")?;
            }
        }
        Ok(())
    }
}
