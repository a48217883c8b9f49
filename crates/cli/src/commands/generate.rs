//! `subspace generate`: continuation of a prompt (greedy, or sampled with `--temperature`,
//! `--top-p`, `--seed`), optionally with a patch from a source prompt: applied at the prompt's
//! tokens and held in the cache, or with `--hold` applied again on every token that predicts a
//! new one.

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use subspace::{GenerateConfig, Held, Intervention};

use super::common::ModelArgs;
use super::site_args::{SiteArgs, TokenArgs};

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
    /// Layer patched, 0-based (its block output unless --component says otherwise; the whole
    /// vector is replaced).
    #[arg(long, requires = "source")]
    pub layer: Option<usize>,
    /// Apply an intervention saved by `subspace das --save` instead (at its trained site).
    #[arg(long, requires = "source", conflicts_with = "layer")]
    pub load: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub site: SiteArgs,
    /// Tokens of the prompt patched and of the source read (with --hold: the source token
    /// read; the edit is applied on every token that predicts a new one).
    #[command(flatten)]
    pub at: TokenArgs,
    /// Hold the source's vector on every token that predicts a new one (the prompt's last
    /// token, then each generated one) instead of patching the prompt's tokens.
    #[arg(long, requires = "source")]
    pub hold: bool,
    /// Sample with this temperature (above 0) instead of taking the most likely token.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// With --temperature: sample from the smallest set of most likely tokens whose
    /// probability reaches this, in (0, 1].
    #[arg(long, default_value_t = 1.0, requires = "temperature")]
    pub top_p: f32,
    /// With --temperature: seed of the sampler (the same seed gives the same text).
    #[arg(long, default_value_t = 0, requires = "temperature")]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: Args) -> Result<()> {
    let lm = args.model.language_model()?;
    let prompt = lm.prompt(&args.prompt)?;
    let mut config = GenerateConfig::greedy(args.tokens);
    if let Some(t) = args.temperature {
        config = config.sampled(t, args.top_p, args.seed);
    }
    let plain = lm.generate_with(&prompt, &config)?;
    let patched = match &args.source {
        None => None,
        Some(source) => {
            if args.load.is_some() && args.site.given() {
                bail!(
                    "--load applies the intervention at the site it was trained for: leave out --component and --head"
                );
            }
            let placed = match (&args.load, args.layer) {
                (Some(path), _) => {
                    let saved = subspace::store::load(path, &lm)?;
                    saved.intervention.at(saved.site)
                }
                (None, Some(layer)) => Intervention::Replace.at(args.site.site(&lm, layer)?),
                (None, None) => bail!("--layer or --load is required with --source"),
            };
            if args.hold {
                let read = args
                    .at
                    .source_positions
                    .as_ref()
                    .unwrap_or(&args.at.positions);
                let &[position] = read.as_slice() else {
                    bail!("--hold holds one source token's vector: give one --source-positions");
                };
                let source = lm.prompt(source)?;
                let source = lm.trace(&source)?.vector(placed.site, position)?;
                let held = Held {
                    site: placed.site,
                    intervention: placed.intervention,
                    source,
                };
                Some(lm.generate_with(&prompt, &config.clone().holding(held))?)
            } else {
                let pair = args.at.pair(&lm, &args.prompt, source)?;
                Some(lm.generate_patched_with(&pair, std::slice::from_ref(&placed), &config)?)
            }
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
