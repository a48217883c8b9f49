//! Pairs into edits: the checks every caller of a pair makes, the source vectors read from the
//! pairs' source prompts, and the [`Edit`]s that apply placed interventions at the pairs' base
//! tokens. Patching, training and generation all build their edits here, just above the loop
//! ([`crate::engine`]) that applies them.

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData};
use llama::TokenBatch;

use crate::engine::prefix::{Planned, PlannedPass, passes_together};
use crate::engine::{self, Cell, Edit, Keep, Trace};
use crate::error::Result;
use crate::intervention::PlacedIntervention;
use crate::lm::LanguageModel;
use crate::pair::Pair;
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
    /// up to the highest of their layers. Each distinct source prompt cut after its position is
    /// run once (RAVEL's training pairs draw their ~4000 sources from ~1400 prompts, and fewer
    /// prefixes), in passes of at most [`crate::engine::TOKENS_PER_FORWARD`] tokens.
    fn source_vectors_at(&self, sites: &[Site], pairs: &[&Pair]) -> Result<Vec<Tensor<2>>> {
        let widths = sites
            .iter()
            .map(|s| s.check(&self.model.config))
            .collect::<Result<Vec<usize>>>()?;
        let Some(top) = sites.iter().map(|s| s.layer).max() else {
            return Ok(Vec::new());
        };
        // Each edited token's source as an index into the distinct reads. A vector at token `p`
        // depends only on tokens `..=p` (attention is causal), so a read is the prompt cut after
        // its position, and prompts that share that much share the read: a city named first in
        // several templates is read once, and no token after the position is run at all.
        let mut distinct: Vec<&[u32]> = Vec::new();
        let mut seen: HashMap<&[u32], usize> = HashMap::new();
        let mut slot: Vec<usize> = Vec::new();
        for p in pairs {
            for a in &p.positions {
                p.source.check_position(a.source, "source")?;
                let prefix = &p.source.ids[..=a.source];
                slot.push(*seen.entry(prefix).or_insert_with(|| {
                    distinct.push(prefix);
                    distinct.len() - 1
                }));
            }
        }
        if slot.is_empty() {
            return Ok(widths
                .iter()
                .map(|&w| Tensor::zeros([0, w], &self.device()))
                .collect());
        }
        // Per site, the distinct reads' vectors in the order read; `rank[i]`: where read `i`
        // lands among them.
        let (read, rank) = if sites.iter().all(|s| *s == Site::block_output(top)) {
            let (vectors, rank) = self.stream_reads(top, &distinct)?;
            (vec![vectors; sites.len()], rank)
        } else {
            self.component_reads(sites, &widths, top, &distinct)?
        };
        let slot: Vec<i64> = slot.into_iter().map(|i| rank[i] as i64).collect();
        let n = slot.len();
        let slot = Tensor::<1, Int>::from_data(TensorData::new(slot, [n]), &self.device());
        Ok(read
            .into_iter()
            .map(|vectors| vectors.select(0, slot.clone()))
            .collect())
    }

    /// The vectors at `sites` (of `widths`) at each prompt's last token, per site `[reads,
    /// width]` in the order read, and for each prompt its row there: forwards up to block `top`
    /// keeping the sites' components.
    fn component_reads(
        &self,
        sites: &[Site],
        widths: &[usize],
        top: usize,
        distinct: &[&[u32]],
    ) -> Result<(Vec<Tensor<2>>, Vec<usize>)> {
        let mut components: Vec<Component> = sites.iter().map(|s| s.component).collect();
        components.dedup();
        // Reads that begin alike (few-shot demonstrations) run their beginning once; the others
        // run whole, sorted by length so that each pass pads little. `rank[i]`: where read `i`
        // lands among the vectors read, in the order they are read.
        let mut rank = vec![0; distinct.len()];
        let mut next = 0;
        let blocks = 0..(top + 1).min(self.model.n_layers());
        let keep = Keep {
            components: &components,
            ..Keep::default()
        };
        let stop = Some(self.stop_flag());
        // Per site, the distinct reads' vectors, pass by pass: each pass's vectors are copied
        // out (`cat`) so that its trace is freed before the next one runs.
        let mut read: Vec<Vec<Tensor<2>>> = vec![Vec::new(); sites.len()];
        let mut take = |layers: Vec<HashMap<Component, Tensor<3>>>,
                        columns: &[usize],
                        reads: &[usize]|
         -> Result<()> {
            let traced = Trace {
                layers,
                logits: None,
                head_dim: self.model.config.head_dim(),
            };
            for (s, &site) in sites.iter().enumerate() {
                let vectors = columns
                    .iter()
                    .enumerate()
                    .map(|(row, &column)| {
                        Ok(traced.vector(site, row, column)?.reshape([1, widths[s]]))
                    })
                    .collect::<Result<Vec<_>>>()?;
                read[s].push(Tensor::cat(vectors, 0));
            }
            for &i in reads {
                rank[i] = next;
                next += 1;
            }
            Ok(())
        };
        let planned = Planned::new(&self.model, distinct, blocks.clone(), stop)?;
        for shared in &planned.shared {
            let members: Vec<&[u32]> = shared.members.iter().map(|&i| distinct[i]).collect();
            for tails in shared
                .prefix
                .tails(&self.model, &members, blocks.clone(), keep, stop)?
            {
                let last: Vec<usize> = tails.lengths.iter().map(|l| l - 1).collect();
                let reads: Vec<usize> = tails.members.iter().map(|&m| shared.members[m]).collect();
                take(tails.ran.components, &last, &reads)?;
            }
        }
        for chunk in planned.whole_passes(distinct) {
            let rows: Vec<Vec<u32>> = chunk.iter().map(|&i| distinct[i].to_vec()).collect();
            let batch = TokenBatch::new(&rows, self.tokenizer.pad_id(), &self.device());
            let traced = engine::trace_until(&self.model, &batch, top, &components, stop)?;
            let last: Vec<usize> = (0..rows.len())
                .map(|r| batch.column(r, rows[r].len() - 1))
                .collect();
            take(traced.layers, &last, &chunk)?;
        }
        let read = read
            .into_iter()
            .map(|passes| Tensor::cat(passes, 0))
            .collect();
        Ok((read, rank))
    }

    /// The stream leaving block `top` at each prompt's last token (`[reads, hidden]`, in the
    /// order read) and, for each prompt, its row there: [`LanguageModel::source_vectors_at`]
    /// where every site is that block's output. Prompts that begin alike run their beginning
    /// once, and all passes run several at a time ([`passes_together`]).
    fn stream_reads(&self, top: usize, prompts: &[&[u32]]) -> Result<(Tensor<2>, Vec<usize>)> {
        let model = &self.model;
        let blocks = 0..(top + 1).min(model.n_layers());
        let stop = Some(self.stop_flag());
        let planned = Planned::new(model, prompts, blocks.clone(), stop)?;
        let passes = planned.passes(model, prompts, self.tokenizer.pad_id())?;
        // Each pass's reads: the prompt read, and its stream at the prompt's last token.
        let reads = passes_together(model, blocks, passes, stop, |pass, h| {
            let [_, _, d] = h.dims();
            // Each row's prompt, and its last token's column in `h`.
            let rows: Vec<(usize, usize)> = match pass {
                PlannedPass::Tails { shared, pass, .. } => pass
                    .members
                    .iter()
                    .zip(&pass.lengths)
                    .map(|(&m, &len)| (shared.members[m], len - 1))
                    .collect(),
                PlannedPass::Whole(whole) => whole
                    .members
                    .iter()
                    .enumerate()
                    .map(|(r, &i)| (i, whole.batch.column(r, prompts[i].len() - 1)))
                    .collect(),
            };
            Ok(rows
                .into_iter()
                .enumerate()
                .map(|(row, (read, column))| {
                    let vector = h.clone().narrow(0, row, 1).narrow(1, column, 1);
                    (read, vector.reshape([1, d]))
                })
                .collect::<Vec<_>>())
        })?;
        let mut rank = vec![0; prompts.len()];
        let mut vectors = Vec::new();
        for (read, vector) in reads.into_iter().flatten() {
            rank[read] = vectors.len();
            vectors.push(vector);
        }
        Ok((Tensor::cat(vectors, 0), rank))
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
