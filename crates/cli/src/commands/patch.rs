//! `subspace patch`: the base prompt's top-k before and after patching one site from a source.

use anyhow::Result;
use clap::Args as ClapArgs;
use subspace::{Intervention, LanguageModel};

use super::common::{Shown, top_json};
use super::site_args::{SiteArgs, TokenArgs};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The prompt whose prediction is patched.
    #[arg(long)]
    pub base: String,
    /// The prompt whose hidden state is patched in.
    #[arg(long)]
    pub source: String,
    /// Layer patched, 0-based (its block output unless --component says otherwise).
    #[arg(long, required_unless_present = "load")]
    pub layer: Option<usize>,
    #[command(flatten)]
    pub site: SiteArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// Patch only these coordinates, e.g. 0,1,2,4.
    #[arg(long, value_delimiter = ',', conflicts_with = "dims")]
    pub neurons: Option<Vec<usize>>,
    /// Patch the first N coordinates of an untrained random rotation.
    #[arg(long, conflicts_with = "load")]
    pub dims: Option<usize>,
    /// Apply an intervention saved by `subspace das --save` (at the site it was trained for).
    #[arg(long, conflicts_with_all = ["neurons", "layer"])]
    pub load: Option<std::path::PathBuf>,
    /// Seed of that rotation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub shown: Shown,
}

pub fn run(args: Args) -> Result<()> {
    let lm: LanguageModel = args.shown.language_model()?;
    let pair = args.tokens.pair(&lm, &args.base, &args.source)?;
    if args.load.is_some() && args.site.given() {
        anyhow::bail!(
            "--load applies the intervention at the site it was trained for: leave out --component and --head"
        );
    }
    let site = |layer| args.site.site(&lm, layer);
    let (site, intervention) = match (&args.load, &args.neurons, args.dims, args.layer) {
        (Some(path), ..) => {
            let saved = subspace::store::load(path, &lm)?;
            (saved.site, saved.intervention)
        }
        (None, Some(n), _, Some(layer)) => (site(layer)?, Intervention::Neurons(n.clone())),
        (None, None, Some(n), Some(layer)) => {
            let site = site(layer)?;
            let width = lm.site_width(site)?;
            let rotation = Intervention::random_rotation(width, n, args.seed, &lm.device())?;
            (site, rotation)
        }
        (None, None, None, Some(layer)) => (site(layer)?, Intervention::Replace),
        (None, _, _, None) => anyhow::bail!("--layer is required (or --load a saved intervention)"),
    };
    let kind = intervention.kind();
    let patched = lm.patch(&pair, &intervention.at(site))?;
    let (before, after) = (
        patched.before.top(args.shown.k),
        patched.after.top(args.shown.k),
    );
    if args.shown.json {
        println!(
            "{}",
            serde_json::json!({ "base_topk": top_json(&before), "patched_topk": top_json(&after) })
        );
    } else {
        let cmp = subspace::display::Comparison {
            titles: ["base".into(), format!("patched ({kind}, {site})")],
            left: before,
            right: after,
        };
        print!("{cmp}");
    }
    Ok(())
}
