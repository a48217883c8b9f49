//! Layer × position sweeps: where does patching move the answer? (The tutorial's part-1 figure,
//! which is how its layer was chosen), and layer × head sweeps.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::engine::{self, Cell, Edit};
use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::lm::{LanguageModel, Prompt};
use crate::pair::Pair;
use crate::patch::PromptTrace;
use crate::readout::to_host;
use crate::site::{Component, Site};

/// `p(target)` after replacing the `component` vector of every (layer, position) of `base` by
/// the source's at the aligned position: `result[layer][position]`. Prompts of different
/// lengths are aligned by their last tokens (base position `p` reads source position
/// `p + source_len − base_len`); base positions with no source token there are `NaN`. One
/// batched forward per layer (one row per position), from the clean run's input to that
/// layer.
pub fn residual_sweep(
    lm: &LanguageModel,
    base: &Prompt,
    source: &PromptTrace,
    target: u32,
    component: Component,
) -> Result<Vec<Vec<f32>>> {
    check_sweep(lm, base, source, target)?;
    let site_width = lm.site_width(Site::new(0, component))?;
    let (nb, ns) = (base.len(), source.prompt.len());
    // (base position, source position) of every patched row.
    let aligned: Vec<(usize, usize)> = (0..nb)
        .filter_map(|p| (p + ns).checked_sub(nb).map(|q| (p, q)))
        .collect();
    let replace = Intervention::Replace;
    let probs = layer_by_layer(lm, base, aligned.len(), target, |layer| {
        let site = Site::new(layer, component);
        let sources = aligned
            .iter()
            .map(|&(_, q)| Ok(source.trace.vector(site, 0, q)?.reshape([1, site_width])))
            .collect::<Result<Vec<_>>>()?;
        let cells = aligned
            .iter()
            .enumerate()
            .map(|(row, &(p, _))| Cell { row, column: p })
            .collect();
        Ok(vec![Edit {
            site,
            cells,
            source: Tensor::cat(sources, 0),
            intervention: &replace,
        }])
    })?;
    Ok(probs
        .into_iter()
        .map(|p| {
            let mut row = vec![f32::NAN; nb];
            for (&(position, _), v) in aligned.iter().zip(p) {
                row[position] = v;
            }
            row
        })
        .collect())
}

/// `p(target)` after patching one head of `component` (`head_output`, `query`, `key` or
/// `value`) at the pair's edited tokens, for every layer and head: `result[layer][head]`
/// (TransformerLens' head patching). One batched forward per layer (one row per head), from
/// the clean base run's input to that layer.
pub fn head_sweep(
    lm: &LanguageModel,
    pair: &Pair,
    target: u32,
    component: Component,
) -> Result<Vec<Vec<f32>>> {
    if !component.has_heads() {
        return Err(SubspaceError::NoHeads {
            component: component.to_string(),
        });
    }
    lm.check_pairs([pair])?;
    let source = lm.trace(&pair.source)?;
    check_sweep(lm, &pair.base, &source, target)?;
    let config = &lm.model.config;
    let (heads, width, hd) = (
        component.n_heads(config),
        component.width(config),
        config.head_dim(),
    );
    let replace = Intervention::Replace;
    layer_by_layer(lm, &pair.base, heads, target, |layer| {
        // The source's whole vector (all heads) at each edited token, `[tokens, width]`; row h
        // patches head h from its slice.
        let whole = source.trace.at(Site::new(layer, component))?;
        let sources = Tensor::cat(
            pair.positions
                .iter()
                .map(|a| whole.clone().narrow(1, a.source, 1).reshape([1, width]))
                .collect(),
            0,
        );
        Ok((0..heads)
            .map(|h| Edit {
                site: Site::head(layer, component, h),
                cells: pair
                    .positions
                    .iter()
                    .map(|a| Cell {
                        row: h,
                        column: a.base,
                    })
                    .collect(),
                source: sources.clone().narrow(1, h * hd, hd),
                intervention: &replace,
            })
            .collect())
    })
}

/// For every layer, `p(target)` in each of `rows` copies of `base` run from the clean run's
/// input to that layer with the layer's `edits`: `result[layer][row]`. Layers below the edited
/// one compute what the clean run computes, so each layer's batch starts from the clean run's
/// input to it (one trace), not from the embeddings.
fn layer_by_layer<'a>(
    lm: &LanguageModel,
    base: &Prompt,
    rows: usize,
    target: u32,
    mut edits: impl FnMut(usize) -> Result<Vec<Edit<'a>>>,
) -> Result<Vec<Vec<f32>>> {
    lm.check_memory(rows, base.len(), false)?;
    let batch = lm.batch(&vec![base; rows]);
    let ctx = lm.model.context(&batch);
    let stop = Some(lm.stop_flag());
    let clean = engine::trace_until(
        &lm.model,
        &lm.batch(&[base]),
        lm.n_layers() - 1,
        &[Component::BlockInput],
        stop,
    )?;
    let mut out = Vec::with_capacity(lm.n_layers());
    for layer in 0..lm.n_layers() {
        let edits = edits(layer)?;
        let input = clean
            .at(Site::new(layer, Component::BlockInput))?
            .repeat_dim(0, rows);
        let ran = engine::Blocks::new(layer..lm.n_layers())
            .with_edits(&edits)
            .stopped_by(stop)
            .run(&lm.model, &ctx, input)?;
        let probs = softmax(lm.model.logits_at(ran.h, batch.seq_len - 1), 1);
        out.push(to_host(
            probs.narrow(1, target as usize, 1).reshape([rows]),
        )?);
    }
    Ok(out)
}

fn check_sweep(lm: &LanguageModel, base: &Prompt, source: &PromptTrace, target: u32) -> Result<()> {
    lm.check_prompt(base)?;
    lm.check_prompt(&source.prompt)?;
    if source.trace.layers.len() != lm.n_layers() {
        return Err(SubspaceError::OtherModel {
            what: "the source trace",
            theirs: format!("{} layers", source.trace.layers.len()),
            ours: format!("{} layers", lm.n_layers()),
        });
    }
    if target as usize >= lm.model.config.vocab_size {
        return Err(SubspaceError::Data(format!(
            "target token id {target} is outside the vocabulary ({} tokens)",
            lm.model.config.vocab_size
        )));
    }
    Ok(())
}
