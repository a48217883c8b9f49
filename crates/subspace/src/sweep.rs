//! Layer × position sweeps: where does patching move the answer? (The tutorial's part-1 figure,
//! which is how its layer was chosen.)

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::error::{Result, input};
use crate::intervention::Intervention;
use crate::lm::{LanguageModel, Prompt};
use crate::patch::PromptTrace;
use crate::readout::to_host;
use crate::run::{self, Edit};
use crate::site::{Component, Site};

/// `p(target)` after replacing the `component` vector of every (layer, position) of `base` by
/// the source's at the same position: `result[layer][position]`. One batched forward per layer
/// (one row per position).
pub fn residual_sweep(
    lm: &LanguageModel,
    base: &Prompt,
    source: &PromptTrace,
    target: u32,
    component: Component,
) -> Result<Vec<Vec<f32>>> {
    if base.len() != source.prompt.len() {
        return input(format!(
            "base ({} tokens) and source ({} tokens) must have the same length to patch position by position",
            base.len(),
            source.prompt.len()
        ));
    }
    let n = base.len();
    let d = lm.hidden_size();
    let rows: Vec<&Prompt> = vec![base; n];
    let batch = lm.batch(&rows);
    let ctx = lm.model.context(&batch);
    let embedded = lm.model.embed(batch.ids.clone());
    let replace = Intervention::Replace;
    let mut out = Vec::with_capacity(lm.n_layers());
    for layer in 0..lm.n_layers() {
        let site = Site::new(layer, component);
        let sources = Tensor::cat(
            (0..n)
                .map(|p| source.trace.vector(site, 0, p).reshape([1, d]))
                .collect(),
            0,
        );
        let edit = Edit {
            site,
            columns: (0..n).collect(),
            source: sources,
            intervention: &replace,
        };
        let h = run::run_blocks(
            &lm.model,
            &ctx,
            embedded.clone(),
            0..lm.n_layers(),
            &[edit],
            None,
        );
        let probs = softmax(lm.model.logits_at(h, n - 1), 1);
        let p = to_host(probs.narrow(1, target as usize, 1).reshape([n]))?;
        out.push(p);
    }
    Ok(out)
}
