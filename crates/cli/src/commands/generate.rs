//! `subspace generate`: greedy continuation of a prompt, optionally with a patch held in the
//! cache (`--source`, `--layer` / `--load`).

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use subspace::{Intervention, Site};

use super::common::ModelArgs;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The prompt to continue (the base prompt when patching).
    #[arg(long)]
    pub prompt: String,
    /// Number of tokens to generate.
    #[arg(short = 'n', long, default_value_t = 12)]
    pub tokens: usize,
    /// Patch from this prompt's run while the prompt is read.
    #[arg(long)]
    pub source: Option<String>,
    /// Layer whose output is patched (the whole residual vector), 0-based.
    #[arg(long, requires = "source")]
    pub layer: Option<usize>,
    /// Apply an intervention saved by `subspace das --save` instead (at its trained site).
    #[arg(long, requires = "source", conflicts_with = "layer")]
    pub load: Option<std::path::PathBuf>,
    /// Token position in the prompt, 0-based.
    #[arg(long, requires = "source")]
    pub position: Option<usize>,
    /// Token position in the source prompt (default: same as --position).
    #[arg(long, requires = "source")]
    pub source_position: Option<usize>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: Args) -> Result<()> {
    let lm = args.model.language_model()?;
    let prompt = lm.prompt(&args.prompt)?;
    let plain = lm.generate(&prompt, args.tokens)?;
    let patched = match &args.source {
        None => None,
        Some(source) => {
            let Some(position) = args.position else {
                bail!("--position is required with --source (the token to patch, 0-based)");
            };
            let placed = match (&args.load, args.layer) {
                (Some(path), _) => {
                    let saved = subspace::store::load(path, &lm)?;
                    saved.intervention.at(saved.site)
                }
                (None, Some(layer)) => Intervention::Replace.at(Site::block_output(layer)),
                (None, None) => bail!("--layer or --load is required with --source"),
            };
            let pair = lm
                .pair(&args.prompt, source)?
                .at_positions(position, args.source_position.unwrap_or(position))?;
            Some(lm.generate_patched(&pair, std::slice::from_ref(&placed), args.tokens)?)
        }
    };
    if args.json {
        let mut out =
            serde_json::json!({ "prompt": args.prompt, "ids": plain.ids, "text": plain.text });
        if let Some(p) = &patched {
            out["patched_ids"] = serde_json::json!(p.ids);
            out["patched_text"] = serde_json::json!(p.text);
        }
        println!("{out}");
    } else {
        println!("{plain}");
        if let Some(p) = &patched {
            println!("patched: {p}");
        }
    }
    Ok(())
}
