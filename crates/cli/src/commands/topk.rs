//! `subspace topk`: the most likely next tokens after a prompt.

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use llama::TokenBatch;

use super::common::{ModelArgs, TokenProb};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// How many tokens to show.
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: Args) -> Result<()> {
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let loaded = args.model.load()?;
    let ids = loaded.tokenizer.encode(&args.prompt)?;
    if ids.is_empty() {
        bail!("the prompt is empty: give some text to continue");
    }
    let model = &loaded.model;
    let batch = TokenBatch::new(&[ids.clone()], loaded.tokenizer.pad_id(), &model.device());
    let logits = model.forward(&batch);
    let [_, s, v] = logits.dims();
    let last: Vec<f32> = logits
        .narrow(1, s - 1, 1)
        .reshape([v])
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
    let probs = softmax(&last);
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let top: Vec<TokenProb> = order
        .iter()
        .take(args.k)
        .map(|&i| TokenProb {
            id: i as u32,
            token: loaded.tokenizer.decode_one(i as u32),
            prob: probs[i],
        })
        .collect();
    if args.json {
        let out = serde_json::json!({
            "model": loaded.source.name(),
            "prompt": args.prompt,
            "token_ids": ids,
            "tokens": loaded.tokenizer.pieces(&ids),
            "topk": top,
        });
        println!("{out}");
    } else {
        for t in &top {
            println!("{:>16} ({:.2})", format!("{:?}", t.token), t.prob);
        }
    }
    Ok(())
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = x.iter().map(|&v| f64::from(v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|&e| (e / sum) as f32).collect()
}
