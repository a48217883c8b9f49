//! `subspace topk`: the most likely next tokens after a prompt.

use anyhow::Result;
use clap::Args as ClapArgs;

use super::common::{Shown, top_json};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    #[command(flatten)]
    pub shown: Shown,
}

pub fn run(args: Args) -> Result<()> {
    let lm = args.shown.language_model()?;
    let prompt = lm.prompt(&args.prompt)?;
    let top = lm.predict(&prompt)?.top(args.shown.k);
    if args.shown.json {
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
