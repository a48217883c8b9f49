//! `subspace patch`: the base prompt's top-k before and after patching one site from a source.

use anyhow::Result;
use clap::Args as ClapArgs;
use subspace::{Intervention, LanguageModel, Site};

use super::common::{ModelArgs, top_json};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The prompt whose prediction is patched.
    #[arg(long)]
    pub base: String,
    /// The prompt whose hidden state is patched in.
    #[arg(long)]
    pub source: String,
    /// Layer whose output (residual stream after the block) is patched, 0-based.
    #[arg(long)]
    pub layer: usize,
    /// Token position in the base prompt, 0-based.
    #[arg(long)]
    pub position: usize,
    /// Token position in the source prompt (default: same as --position).
    #[arg(long)]
    pub source_position: Option<usize>,
    /// Patch only these coordinates, e.g. 0,1,2,4.
    #[arg(long, value_delimiter = ',', conflicts_with = "dims")]
    pub neurons: Option<Vec<usize>>,
    /// Patch the first N coordinates of an untrained random rotation.
    #[arg(long)]
    pub dims: Option<usize>,
    /// Seed of that rotation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: Args) -> Result<()> {
    let lm: LanguageModel = args.model.language_model()?;
    let base = lm.prompt(&args.base)?;
    let source = lm.prompt(&args.source)?;
    let intervention = match (&args.neurons, args.dims) {
        (Some(n), _) => Intervention::Neurons(n.clone()),
        (None, Some(n)) => {
            Intervention::random_rotation(lm.hidden_size(), n, args.seed, &lm.device())?
        }
        (None, None) => Intervention::Replace,
    };
    let site = Site::block_output(args.layer);
    let before = lm.predict(&base)?.top(args.k);
    let src = lm.trace(&source)?;
    let after = lm
        .patch(
            &base,
            &src,
            site,
            args.position,
            args.source_position.unwrap_or(args.position),
            &intervention,
        )?
        .top(args.k);
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "base_topk": top_json(&before), "patched_topk": top_json(&after) })
        );
    } else {
        let cmp = subspace::display::Comparison {
            titles: [
                "base".into(),
                format!("patched ({}, {site})", intervention.kind()),
            ],
            left: before,
            right: after,
        };
        print!("{cmp}");
    }
    Ok(())
}
