//! Layer × position sweeps: where does patching move the answer? (The tutorial's part-1 figure,
//! which is how its layer was chosen.)

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::lm::{LanguageModel, Prompt};
use crate::patch::PromptTrace;
use crate::readout::to_host;
use crate::run::{self, Edit};
use crate::site::{Component, Site};

/// `p(target)` after replacing the `component` vector of every (layer, position) of `base` by
/// the source's at the same position: `result[layer][position]`. One batched forward per layer
/// (one row per position), from the clean run's input to that layer.
pub fn residual_sweep(
    lm: &LanguageModel,
    base: &Prompt,
    source: &PromptTrace,
    target: u32,
    component: Component,
) -> Result<Vec<Vec<f32>>> {
    if base.len() != source.prompt.len() {
        return Err(SubspaceError::LengthMismatch {
            base_len: base.len(),
            source_len: source.prompt.len(),
        });
    }
    lm.check_prompt(base)?;
    lm.check_prompt(&source.prompt)?;
    lm.check_memory(base.len(), base.len(), false)?;
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
    let n = base.len();
    let d = lm.hidden_size();
    let rows: Vec<&Prompt> = vec![base; n];
    let batch = lm.batch(&rows);
    let ctx = lm.model.context(&batch);
    // Layers below the edited one compute what the clean run computes: start each layer's
    // batch from the clean run's input to that layer (one trace), not from the embeddings.
    let stop = Some(lm.stop_flag());
    let clean = run::trace(&lm.model, &lm.batch(&[base]), &[], stop)?;
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
        let input = clean
            .at(Site::new(layer, Component::BlockInput))
            .repeat_dim(0, n);
        let ran = run::Blocks::new(layer..lm.n_layers())
            .with_edits(std::slice::from_ref(&edit))
            .stopped_by(stop)
            .run(&lm.model, &ctx, input)?;
        let probs = softmax(lm.model.logits_at(ran.h, batch.seq_len - 1), 1);
        let p = to_host(probs.narrow(1, target as usize, 1).reshape([n]))?;
        out.push(p);
    }
    Ok(out)
}
