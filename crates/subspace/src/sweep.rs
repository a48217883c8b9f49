//! Layer × position sweeps: where does patching move the answer? (The tutorial's part-1 figure,
//! which is how its layer was chosen), and layer × head sweeps.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::lm::{LanguageModel, Prompt};
use crate::pair::Pair;
use crate::patch::PromptTrace;
use crate::readout::to_host;
use crate::run::{self, Cell, Edit};
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
    let n = aligned.len();
    lm.check_memory(n, nb, false)?;
    let rows: Vec<&Prompt> = vec![base; n];
    let batch = lm.batch(&rows);
    let ctx = lm.model.context(&batch);
    // Layers below the edited one compute what the clean run computes: start each layer's
    // batch from the clean run's input to that layer (one trace), not from the embeddings.
    let stop = Some(lm.stop_flag());
    let clean = run::trace_until(
        &lm.model,
        &lm.batch(&[base]),
        lm.n_layers() - 1,
        &[Component::BlockInput],
        stop,
    )?;
    let replace = Intervention::Replace;
    let mut out = Vec::with_capacity(lm.n_layers());
    for layer in 0..lm.n_layers() {
        let site = Site::new(layer, component);
        let sources = Tensor::cat(
            aligned
                .iter()
                .map(|&(_, q)| Ok(source.trace.vector(site, 0, q)?.reshape([1, site_width])))
                .collect::<Result<Vec<_>>>()?,
            0,
        );
        let cells = aligned
            .iter()
            .enumerate()
            .map(|(row, &(p, _))| Cell { row, column: p })
            .collect();
        let edit = Edit {
            site,
            cells,
            source: sources,
            intervention: &replace,
        };
        let input = clean
            .at(Site::new(layer, Component::BlockInput))?
            .repeat_dim(0, n);
        let ran = run::Blocks::new(layer..lm.n_layers())
            .with_edits(std::slice::from_ref(&edit))
            .stopped_by(stop)
            .run(&lm.model, &ctx, input)?;
        let probs = softmax(lm.model.logits_at(ran.h, batch.seq_len - 1), 1);
        let p = to_host(probs.narrow(1, target as usize, 1).reshape([n]))?;
        let mut row = vec![f32::NAN; nb];
        for (&(position, _), v) in aligned.iter().zip(p) {
            row[position] = v;
        }
        out.push(row);
    }
    Ok(out)
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
        return Err(SubspaceError::NoHeads { component });
    }
    lm.check_pairs([pair])?;
    let source = lm.trace(&pair.source)?;
    check_sweep(lm, &pair.base, &source, target)?;
    let config = &lm.model.config;
    let heads = component.n_heads(config);
    let width = component.width(config);
    lm.check_memory(heads, pair.base.len(), false)?;
    let rows: Vec<&Prompt> = vec![&pair.base; heads];
    let batch = lm.batch(&rows);
    let ctx = lm.model.context(&batch);
    let stop = Some(lm.stop_flag());
    let clean = run::trace_until(
        &lm.model,
        &lm.batch(&[&pair.base]),
        lm.n_layers() - 1,
        &[Component::BlockInput],
        stop,
    )?;
    let replace = Intervention::Replace;
    let mut out = Vec::with_capacity(lm.n_layers());
    for layer in 0..lm.n_layers() {
        // Row h patches head h: one edit per head, each on its own row.
        let whole = source.trace.at(Site::new(layer, component))?;
        let sources: Vec<Tensor<2>> = pair
            .positions
            .iter()
            .map(|a| whole.clone().narrow(1, a.source, 1).reshape([1, width]))
            .collect();
        let edits: Vec<Edit> = (0..heads)
            .map(|h| {
                let site = Site::head(layer, component, h);
                let hd = config.head_dim();
                Edit {
                    site,
                    cells: pair
                        .positions
                        .iter()
                        .map(|a| Cell {
                            row: h,
                            column: a.base,
                        })
                        .collect(),
                    source: Tensor::cat(sources.clone(), 0).narrow(1, h * hd, hd),
                    intervention: &replace,
                }
            })
            .collect();
        let input = clean
            .at(Site::new(layer, Component::BlockInput))?
            .repeat_dim(0, heads);
        let ran = run::Blocks::new(layer..lm.n_layers())
            .with_edits(&edits)
            .stopped_by(stop)
            .run(&lm.model, &ctx, input)?;
        let probs = softmax(lm.model.logits_at(ran.h, batch.seq_len - 1), 1);
        out.push(to_host(
            probs.narrow(1, target as usize, 1).reshape([heads]),
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
