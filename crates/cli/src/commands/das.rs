//! `subspace das`: train a rotation so that patching its first N dimensions moves the base's
//! answer to the target, then evaluate it on other prompts.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use subspace::{DasConfig, Intervention, Pair, train};

use super::common::{Shown, progress, top_json};
use super::site_args::{SiteArgs, TokenArgs};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[arg(long)]
    pub base: String,
    #[arg(long)]
    pub source: String,
    /// The token the patched run should predict, e.g. " Brazil" (one token).
    #[arg(long)]
    pub target: String,
    /// Layer trained at, 0-based (its block output unless --component says otherwise).
    #[arg(long)]
    pub layer: usize,
    #[command(flatten)]
    pub site: SiteArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// Dimensions of the rotated subspace to patch.
    #[arg(long)]
    pub dims: usize,
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed of the initial rotation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Other base prompts to patch with the trained intervention (same site and source).
    #[arg(long = "eval")]
    pub eval: Vec<String>,
    /// Save the trained intervention here (.safetensors).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Checkpoint training to this file; if it already holds a checkpoint of this same run,
    /// training resumes from it (stop with Ctrl-C, run the same command again).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 10, requires = "checkpoint")]
    pub checkpoint_every: usize,
    #[command(flatten)]
    pub shown: Shown,
}

pub fn run(args: Args) -> Result<()> {
    if args.dims == 0 {
        bail!("--dims must be at least 1 (0 dimensions leave nothing to train)");
    }
    let lm = args.shown.language_model()?;
    let site = args.site.site(&lm, args.layer)?;
    let pair = args.tokens.pair(&lm, &args.base, &args.source)?;
    let example = pair.clone().with_target(lm.token(&args.target)?);
    let width = lm.site_width(site)?;
    let mut iv = Intervention::random_rotation(width, args.dims, args.seed, &lm.device())?;
    let mut config = DasConfig::new(site, args.steps).with_lr(args.lr);
    if let Some(path) = &args.checkpoint {
        config = config.with_checkpoint(path, args.checkpoint_every);
    }
    let report = train::train(&lm, &mut iv, &[example], &config, progress())?;
    if let Some(step) = report.resumed_after {
        eprintln!("resumed from the checkpoint after step {step}");
    }
    let placed = iv.clone().at(site);
    let patched = lm.patch(&pair, &placed)?.after.top(args.shown.k);
    let mut evals = Vec::new();
    for text in &args.eval {
        let on_eval = Pair::aligned(
            lm.prompt(text)?,
            pair.source.clone(),
            pair.positions.clone(),
        )?;
        let shown = lm.patch(&on_eval, &placed)?;
        evals.push((
            text.clone(),
            shown.before.top(args.shown.k),
            shown.after.top(args.shown.k),
        ));
    }
    if let Some(path) = &args.save {
        let notes = serde_json::json!({
            "base": args.base, "source": args.source, "target": args.target,
            "steps": args.steps, "lr": args.lr, "seed": args.seed, "losses": report.losses,
        });
        subspace::store::save(path, &lm, site, &iv, notes)?;
    }
    if args.shown.json {
        let eval: Vec<_> = evals
            .iter()
            .map(|(p, b, a)| serde_json::json!({"prompt": p, "base_topk": top_json(b), "patched_topk": top_json(a)}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "losses": report.losses,
                "patched_topk": top_json(&patched),
                "eval": eval,
                "seconds_per_step": report.seconds_per_step,
            })
        );
    } else {
        println!(
            "losses: {:?}",
            report
                .losses
                .iter()
                .map(|l| (l * 1e4).round() / 1e4)
                .collect::<Vec<_>>()
        );
        println!(
            "{:.3} s/step\npatched {:?}:\n{patched}",
            report.seconds_per_step, args.base
        );
        for (p, b, a) in &evals {
            let cmp = subspace::display::Comparison {
                titles: [format!("{p:?}"), "patched".into()],
                left: b.clone(),
                right: a.clone(),
            };
            print!("{cmp}");
        }
        if let Some(path) = &args.save {
            println!("saved to {}", path.display());
        }
    }
    Ok(())
}
