//! The RAVEL recipe's training, timed on its own kind of pairs: the probe file's known prompts
//! (plain and few-shot, ~15 tokens on average), the MDAS recipe's rotation at layer 15, batches
//! of 32, cause and isolate examples as MDAS trains on them. What `subspace ravel` spends its minutes
//! on, so that pairs per second can be set against PyTorch doing the same (bench/compare_pytorch.py
//! reads the examples' token ids from `--ravel-examples`).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use subspace::ravel::{self, Method, RavelData, RunConfig, Split};
use subspace::train::DasObjective;
use subspace::{DasConfig, Example, Intervention, LanguageModel, Site, train};

/// The recipe's site; its size, batch and peak learning rate are `RunConfig::new`'s for MDAS.
pub const LAYER: usize = 15;
/// Cause pairs drawn (plus half as many per kept attribute): 64 examples, two batches.
const CAUSE_PAIRS: usize = 32;

/// The figures, or `None` (with a line on stderr) where the probe file is for another model.
pub fn measure(
    lm: &LanguageModel,
    repeats: usize,
    examples_out: Option<&Path>,
) -> Result<Option<serde_json::Value>> {
    let probe_path = RavelData::default_dir()
        .parent()
        .map(|d| d.join("results/ravel_probe_smollm2.json"))
        .context("the RAVEL data folder has no parent")?;
    let text = std::fs::read_to_string(&probe_path)
        .with_context(|| format!("reading {}", probe_path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    if v["model"].as_str() != Some(lm.name.as_str()) {
        eprintln!(
            "RAVEL recipe step skipped: {} lists the prompts {} knows, not {}",
            probe_path.display(),
            v["model"],
            lm.name
        );
        return Ok(None);
    }
    let probe: ravel::ProbeReport = serde_json::from_value(v["report"].clone())?;
    let data = RavelData::load(&RavelData::default_dir())?;
    let examples: Vec<Example> =
        ravel::split_examples(lm, &data, &probe, Split::Train, CAUSE_PAIRS, 0)?
            .into_iter()
            .map(|e| e.example)
            .collect();
    let recipe = RunConfig::new(Method::Mdas, LAYER);
    let (dims, batch, lr) = (recipe.dims, recipe.batch, recipe.peak_lr());
    let settings = serde_json::json!({ "layer": LAYER, "dims": dims, "batch": batch, "lr": lr });
    if let Some(path) = examples_out {
        write_examples(path, &settings, &examples)?;
    }
    let site = Site::block_output(LAYER);
    lm.site_width(site)?;

    super::phase("the RAVEL recipe's pass before training");
    // The layers below the site, once over every example (what training caches).
    let mut once = Vec::new();
    for _ in 0..repeats.clamp(1, 3) {
        let t = Instant::now();
        DasObjective::new(lm, site, &examples, Some(batch))?;
        once.push(t.elapsed().as_secs_f64());
    }
    let once_s = super::median(once);

    let mut iv = Intervention::random_rotation(lm.hidden_size(), dims, 0, &lm.device())?;
    let mut stamps = Vec::new();
    // Two batches: an even number of timed steps covers each equally often.
    let steps = 2 * repeats.clamp(1, 5) + 1;
    super::phase("the RAVEL recipe's training steps");
    let config = DasConfig::new(site, steps)
        .with_lr(lr)
        .with_batch_size(batch);
    train::train(lm, &mut iv, &examples, &config, |s| {
        stamps.push(s.elapsed.as_secs_f64());
    })?;
    let step_s = super::median(stamps.windows(2).map(|w| w[1] - w[0]).collect());
    let n = examples.len() as f64;
    let mean_base_tokens = examples.iter().map(|e| e.pair.base.len()).sum::<usize>() as f64 / n;
    Ok(Some(serde_json::json!({
        "layer": LAYER,
        "dims": dims,
        "batch": batch,
        "lr": lr,
        "examples": examples.len(),
        "mean_base_tokens": mean_base_tokens,
        "once_s": once_s,
        "once_s_per_example": once_s / n,
        "step_s": step_s,
        "step_pairs_per_s": batch as f64 / step_s,
        // One pass: the prefixes once, then n / batch steps.
        "epoch_pairs_per_s": n / (once_s + (n / batch as f64) * step_s),
    })))
}

/// The settings and the examples as token ids, for the PyTorch side to train the same
/// subspace on the very same inputs.
fn write_examples(path: &Path, settings: &serde_json::Value, examples: &[Example]) -> Result<()> {
    let rows: Vec<_> = examples
        .iter()
        .map(|e| {
            serde_json::json!({
                "base": e.pair.base.ids,
                "source": e.pair.source.ids,
                "base_position": e.pair.base_position(),
                "source_position": e.pair.source_position(),
                "target": e.target,
                "weight": e.weight,
            })
        })
        .collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = settings.clone();
    file["examples"] = serde_json::Value::Array(rows);
    subspace::store::write_atomic(path, &serde_json::to_vec(&file)?)?;
    Ok(())
}
