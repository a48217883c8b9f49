//! `subspace attribute`: attribution patching of one component at every layer and position (and
//! head), from one forward of each prompt and one backward of the base; `--check K` patches the
//! K largest estimates for real beside them.

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use subspace::{Component, Intervention, LanguageModel, Metric, Pair, Site};

use super::common::ModelArgs;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The prompt whose run is differentiated (and, with --check, patched).
    #[arg(long)]
    pub base: String,
    /// The prompt whose activations are patched in (aligned with the base by its last tokens).
    #[arg(long)]
    pub source: String,
    /// The answer whose log-probability the metric reads at the last token (one token).
    #[arg(long)]
    pub target: String,
    /// The metric becomes log p(target) − log p(versus).
    #[arg(long)]
    pub versus: Option<String>,
    /// The component estimated at every layer and position: block_output, block_input,
    /// attention_output, mlp_output, query, key, value, head_output or mlp_hidden.
    #[arg(long, value_enum, default_value_t = Component::BlockOutput)]
    pub component: Component,
    /// Also list mlp_hidden's per-neuron estimates (JSON `neurons`).
    #[arg(long)]
    pub neurons: bool,
    /// Patch the K sites with the largest |estimate| for real, and print both.
    #[arg(long, default_value_t = 0)]
    pub check: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// One estimate: where, and the metric's estimated change.
struct Row {
    layer: usize,
    head: Option<usize>,
    position: usize,
    value: f32,
}

pub fn run(args: Args) -> Result<()> {
    let lm: LanguageModel = args.model.language_model()?;
    if args.neurons && args.component != Component::MlpHidden {
        bail!("--neurons lists mlp_hidden's neurons: add --component mlp_hidden");
    }
    let base = lm.prompt(&args.base)?;
    let source = lm.prompt(&args.source)?;
    let target = lm.token(&args.target)?;
    let versus = args.versus.as_deref().map(|v| lm.token(v)).transpose()?;
    let metric = match versus {
        Some(versus) => Metric::LogProbDiff { target, versus },
        None => Metric::LogProb(target),
    };
    let t0 = std::time::Instant::now();
    let a = lm.attribute(&base, &source, &metric, &[args.component])?;
    let seconds = t0.elapsed().as_secs_f64();
    let heads = if args.component.has_heads() {
        args.component.n_heads(&lm.model.config)
    } else {
        0
    };
    let mut rows = Vec::new();
    for layer in 0..lm.n_layers() {
        for position in 0..base.len() {
            let mut push = |head: Option<usize>| -> Result<()> {
                let site = Site {
                    layer,
                    component: args.component,
                    head,
                };
                let value = a.estimate(site, position)?;
                if value.is_finite() {
                    rows.push(Row {
                        layer,
                        head,
                        position,
                        value,
                    });
                }
                Ok(())
            };
            if heads == 0 {
                push(None)?;
            } else {
                for h in 0..heads {
                    push(Some(h))?;
                }
            }
        }
    }
    // The real effect of the largest estimates: patch each alone, read the metric.
    let read = |p: &subspace::Prediction| {
        let lp = |id: u32| p.prob(id).max(f32::MIN_POSITIVE).ln();
        lp(target) - versus.map_or(0.0, lp)
    };
    let mut by_size: Vec<&Row> = rows.iter().collect();
    by_size.sort_by(|x, y| y.value.abs().total_cmp(&x.value.abs()));
    let mut checked = Vec::new();
    for row in by_size.iter().take(args.check) {
        let site = Site {
            layer: row.layer,
            component: args.component,
            head: row.head,
        };
        // Estimates exist only where a source token is aligned (by the last tokens).
        let q = (row.position + source.len()).saturating_sub(base.len());
        let pair = Pair::new(base.clone(), source.clone(), row.position, q)?;
        let after = read(&lm.patch(&pair, &Intervention::Replace.at(site))?.after);
        checked.push((row, after - a.metric_base));
    }
    if args.json {
        let estimates: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"layer": r.layer, "head": r.head, "position": r.position, "value": r.value})
            })
            .collect();
        let mut out = serde_json::json!({
            "metric": {"base": a.metric_base, "source": a.metric_source},
            "component": args.component.to_string(),
            "tokens": a.tokens,
            "seconds": seconds,
            "estimates": estimates,
        });
        if args.neurons {
            let mut neurons = Vec::new();
            for layer in 0..lm.n_layers() {
                for position in 0..base.len() {
                    let values = a.features(Component::MlpHidden, layer, position)?;
                    if values.iter().all(|v| v.is_finite()) {
                        neurons.push(serde_json::json!({"layer": layer, "position": position, "values": values}));
                    }
                }
            }
            out["neurons"] = serde_json::Value::Array(neurons);
        }
        if args.check > 0 {
            out["check"] = checked
                .iter()
                .map(|(r, real)| {
                    serde_json::json!({"layer": r.layer, "head": r.head, "position": r.position, "estimate": r.value, "patched": real})
                })
                .collect();
        }
        println!("{out}");
        return Ok(());
    }
    println!(
        "metric {}: base {:.3}, source {:.3}; {} estimates of {} in {seconds:.2} s",
        match &args.versus {
            Some(v) => format!("log p({:?}) − log p({v:?})", args.target),
            None => format!("log p({:?})", args.target),
        },
        a.metric_base,
        a.metric_source,
        rows.len(),
        args.component
    );
    println!("largest |estimate|:");
    for r in by_size.iter().take(10.max(args.check)) {
        let head = r.head.map(|h| format!(" head {h}")).unwrap_or_default();
        println!(
            "  layer {:>2}{head} token {:>2} {:<12} {:+.3}",
            r.layer,
            r.position,
            format!("{:?}", a.tokens[r.position]),
            r.value
        );
    }
    for (r, real) in &checked {
        let head = r.head.map(|h| format!(" head {h}")).unwrap_or_default();
        println!(
            "checked: layer {:>2}{head} token {:>2}: estimate {:+.3}, patched {:+.3}",
            r.layer, r.position, r.value, real
        );
    }
    Ok(())
}
