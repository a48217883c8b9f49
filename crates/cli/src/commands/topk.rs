//! `subspace topk`: the most likely next tokens after a prompt.

use anyhow::{Result, bail};
use clap::Args as ClapArgs;

use super::common::{ModelArgs, top_json};

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
    let lm = args.model.language_model()?;
    let prompt = lm.prompt(&args.prompt)?;
    let top = lm.predict(&prompt)?.top(args.k);
    if args.json {
        let out = serde_json::json!({
            "model": lm.name,
            "prompt": args.prompt,
            "token_ids": prompt.ids,
            "tokens": prompt.tokens,
            "topk": top_json(&top),
        });
        println!("{out}");
    } else {
        print!("{top}");
    }
    Ok(())
}
