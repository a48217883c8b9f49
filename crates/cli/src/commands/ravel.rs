//! `subspace ravel-probe` and `subspace ravel`: RAVEL's Cause / Isolate / Disentangle for one
//! method at one layer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use subspace::ravel::{self, Method, RavelData, RunConfig, RunEvent, Scores, Split};
use subspace::ravel::{Labelling, Labels, SourcePrompts, SplitKind, Unit};
use subspace::train::Decay;

use super::common::{ModelArgs, if_interrupted, progress};

#[derive(ClapArgs, Debug)]
pub struct ProbeArgs {
    /// Country templates (train split) a city is screened with, until one gets it right.
    #[arg(long, default_value_t = 4)]
    pub screen: usize,
    /// Templates per attribute and template split asked of the cities that pass the screen.
    #[arg(long, default_value_t = 1)]
    pub templates: usize,
    /// Prompts per batched generation.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Where to write the answers (default data/results/ravel_answers_smollm2.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The first probe instead (first answer token against the value's, one few-shot country
    /// template per city): the known prompts the runs saved in data/results/ were drawn from.
    #[arg(long)]
    pub first_token: bool,
    /// --first-token: cities probed per split (evenly spaced through the file).
    #[arg(long, default_value_t = 600)]
    pub max_cities: usize,
    /// Print the counts as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// `subspace ravel-probe`: what the model answers to the RAVEL prompts (see
/// `ravel::answers`), written once so that runs reuse it.
pub fn probe(args: ProbeArgs) -> Result<()> {
    if args.first_token {
        return probe_first_token(args);
    }
    let lm = args.model.language_model()?;
    let data = RavelData::load(&RavelData::default_dir())?;
    let plan = ravel::AnswerPlan {
        screen: args.screen,
        per_split: args.templates,
        batch: args.batch,
    };
    let answers = ravel::answers::probe_answers(&lm, &data, plan, |m| eprintln!("{m}"));
    let answers = if_interrupted(answers, || {
        "interrupted while probing (no probe file was written)".into()
    })?;
    let out = args.out.unwrap_or_else(Labels::default_answers_file);
    write_probe_file(&out, &serde_json::to_vec(&answers)?)?;
    let known = answers.known_cities(&data);
    let by_split = |split: Split| {
        known
            .iter()
            .filter(|&&c| data.cities[c].split == split)
            .count()
    };
    let summary = serde_json::json!({
        "model": answers.model,
        "prompts": answers.prompts,
        "seconds": answers.seconds,
        "known_cities": known.len(),
        "known_by_split": { "train": by_split(Split::Train), "val": by_split(Split::Val), "test": by_split(Split::Test) },
        "known_continent": answers.known_for(&data, ravel::Attribute::Continent).len(),
        "known_language": answers.known_for(&data, ravel::Attribute::Language).len(),
        "known_by_country": answers.known_by_country(&data),
        "file": out,
    });
    if args.json {
        println!("{summary}");
    }
    eprintln!(
        "{} prompts in {:.0} s; {} of {} cities state their country; wrote {}",
        answers.prompts,
        answers.seconds,
        known.len(),
        data.cities.len(),
        out.display()
    );
    Ok(())
}

/// Templates per attribute per split of the first probe (as the saved runs were drawn).
const FIRST_TOKEN_TEMPLATES: usize = 4;

fn probe_first_token(args: ProbeArgs) -> Result<()> {
    let lm = args.model.language_model()?;
    let data = RavelData::load(&RavelData::default_dir())?;
    let t = std::time::Instant::now();
    let report = ravel::probe::probe_dataset(
        &lm,
        &data,
        args.max_cities,
        FIRST_TOKEN_TEMPLATES,
        64,
        |m| eprintln!("{m}"),
    );
    let report = if_interrupted(report, || {
        "interrupted while probing (no probe file was written)".into()
    })?;
    let out = args.out.unwrap_or_else(Labels::default_probe_file);
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "model": lm.name,
        "max_cities": args.max_cities,
        "templates_per_attribute": FIRST_TOKEN_TEMPLATES,
        "seconds": t.elapsed().as_secs_f64(),
        "report": report,
    }))?;
    write_probe_file(&out, &json)?;
    eprintln!(
        "{} known prompts of {} tried, {} cities known on all three attributes; wrote {}",
        report.known.len(),
        report.tried,
        report.cities_known_on_all.len(),
        out.display()
    );
    Ok(())
}

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[arg(long, value_enum)]
    pub method: Method,
    #[arg(long)]
    pub layer: usize,
    // The training options default to the recipe chosen on val (`RunConfig::new`, docs/history/RESULTS-sessions.md,
    // "Choosing the recipe on val"); each given option overrides its part of it.
    /// Dimensions of the subspace (neurons: how many). Default 192 for das and mdas, 16 for the
    /// others.
    #[arg(long)]
    pub dims: Option<usize>,
    /// Training steps. Default 240.
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Peak learning rate. Default 1e-3 for das, 3e-3 for mdas, 1e-2 for lowrank/boundless.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Passes over the train examples (replaces --steps).
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Fraction of the steps over which the learning rate warms up linearly from ~0. Default 0.1
    /// for mdas, 0 for the others.
    #[arg(long)]
    pub warmup: Option<f64>,
    /// The learning rate after the warm-up: constant, linear (to 0) or cosine (to 0). Default
    /// linear for mdas, constant for the others.
    #[arg(long, value_enum)]
    pub decay: Option<Decay>,
    /// mdas: weight of each isolate example against a cause example's 1 in the loss. Default 1.
    #[arg(long)]
    pub isolate_weight: Option<f64>,
    /// Examples per step. Default 32.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Cause pairs for training (isolate pairs: half as many per kept attribute). Default 1024.
    #[arg(long)]
    pub train_pairs: Option<usize>,
    /// Cause pairs for val and for test.
    #[arg(long, default_value_t = 200)]
    pub eval_pairs: usize,
    /// RAVEL's held-out set for val and test, with labels from the model's own answers:
    /// context (train cities on held-out templates) or entity (held-out cities on train
    /// templates). Without it: the first probe's pairs (held-out cities on held-out templates,
    /// first-token labels from the dataset), as the runs saved in data/results/.
    #[arg(long, value_enum)]
    pub split_kind: Option<SplitKind>,
    /// Which tokens of the city the pairs edit (with --split-kind): last_token (RAVEL's unit)
    /// or span (every token of the name, base and source names paired from their last tokens).
    #[arg(long, value_enum, default_value_t = Unit::LastToken, requires = "split_kind")]
    pub unit: Unit,
    /// Train pairs use only this many known train cities, the first of a fixed order (with
    /// --split-kind; a learning curve: 100, 200, all). Val and test pairs are not limited.
    #[arg(long, requires = "split_kind")]
    pub train_cities: Option<usize>,
    /// Which prompt the source city is read from (with --split-kind): any template of the
    /// split (RAVEL's sources), or the base's own template filled with the source city (the
    /// same pairs and targets; what the site itself can move).
    #[arg(long, value_enum, default_value_t = SourcePrompts::AnyTemplate, requires = "split_kind")]
    pub sources: SourcePrompts,
    /// Also break the control's test Cause (residual patching on the run's test pairs) down by
    /// the pairs' properties: whether the counterfactual answer states the true value, the
    /// source template's attribute and format, the names' token counts, and what a miss says
    /// (with --split-kind; in the JSON as `control_breakdown`).
    #[arg(long, requires = "split_kind")]
    pub breakdown: bool,
    /// The model's answers, from `subspace ravel-probe` (for --split-kind; default
    /// data/results/ravel_answers_smollm2.json).
    #[arg(long)]
    pub answers: Option<PathBuf>,
    /// Known prompts from `subspace ravel-probe --first-token` (without --split-kind).
    #[arg(long)]
    pub probe: Option<PathBuf>,
    /// Checkpoint training to this file; if it already holds a checkpoint of this same run,
    /// training resumes from it (stop with Ctrl-C, run the same command again).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 10, requires = "checkpoint")]
    pub checkpoint_every: usize,
    /// Save the trained intervention, its settings and its scores to this file (a notebook
    /// loads it with `ravel::load_run`).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Also write the run's settings and its train, val and test pairs (token ids, positions,
    /// targets, roles) to this JSON file before training, for another implementation to run
    /// the same recipe on the very same inputs (`bench/ravel_run_pytorch.py`).
    #[arg(long)]
    pub export_pairs: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Writes a probe's output whole (atomically), creating its folder.
fn write_probe_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(subspace::store::write_atomic(path, bytes)?)
}

/// The labels a run's pairs are drawn from: the model's answers in a RAVEL split kind, else the
/// first probe's known prompts (loaded and checked against the model by the library).
fn labels_of(args: &Args, lm: &subspace::LanguageModel) -> Result<Labels> {
    let labelling = args.split_kind.map(|kind| Labelling {
        kind,
        unit: args.unit,
        train_cities: args.train_cities,
        sources: args.sources,
    });
    Ok(Labels::load(
        labelling,
        lm,
        args.answers.as_deref(),
        args.probe.as_deref(),
    )?)
}

pub fn run(args: Args) -> Result<()> {
    let lm = args.model.language_model()?;
    let data = RavelData::load(&RavelData::default_dir())?;
    let labels = labels_of(&args, &lm)?;
    let mut config = RunConfig::new(args.method, args.layer);
    labels.record(&mut config);
    config.seed = args.seed;
    config.n_eval = args.eval_pairs;
    config.lr = args.lr;
    config.epochs = args.epochs;
    if let Some(v) = args.dims {
        config.dims = v;
    }
    if let Some(v) = args.steps {
        config.steps = v;
    }
    if let Some(v) = args.warmup {
        config.warmup = v;
    }
    if let Some(v) = args.decay {
        config.decay = v;
    }
    if let Some(v) = args.isolate_weight {
        config.isolate_weight = v;
    }
    if let Some(v) = args.batch {
        config.batch = v;
    }
    if let Some(v) = args.train_pairs {
        config.n_train = v;
    }
    if let Some(path) = &args.checkpoint {
        config.checkpoint = Some(subspace::train::CheckpointConfig {
            path: path.clone(),
            every: args.checkpoint_every,
        });
    }
    config.save = args.save.clone();
    if let Some(path) = &args.export_pairs {
        export_pairs(path, &lm, &data, &labels, &config)?;
    }
    let start = std::time::Instant::now();
    let mut step = progress();
    let mut phase = String::from("starting");
    let r = ravel::run_with_progress(&lm, &data, &labels, &config, |event| match event {
        RunEvent::Phase(what) => {
            eprintln!("[{:>5.0} s] {what}", start.elapsed().as_secs_f64());
            phase = what.to_string();
        }
        RunEvent::Step(s) => step(s),
    });
    let r = if_interrupted(r, || {
        format!("interrupted while {phase} (no --save file and no results were written)")
    })?;
    let breakdown = if args.breakdown {
        eprintln!(
            "[{:>5.0} s] the control on the test pairs, broken down by the pairs' properties",
            start.elapsed().as_secs_f64()
        );
        Some(control_breakdown(&lm, &data, &labels, &config)?)
    } else {
        None
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "config": config.resolved(),
                "method": r.method, "layer": r.layer, "dims": r.dims, "cause": r.test.cause,
                "isolate": r.test.isolate, "disentangle": r.test.disentangle,
                "n_cause": r.test.n_cause, "n_isolate": r.test.n_isolate,
                "train_seconds": r.train_seconds,
                "pass_seconds": r.pass_seconds, "steps_seconds": r.steps_seconds,
                "train": r.train, "val": r.val, "losses": r.losses,
                "test": r.test,
                "residual_test": r.residual_test,
                "control_breakdown": breakdown,
                // The kernel body that ran (not the variable asked for: a CPU without it runs
                // another, named in a warning).
                "kernels": kernels::Kernels::best().name(),
            })
        );
    } else {
        println!(
            "{} at layer {} ({:?} dims): Cause {:.3}  Isolate {:.3} ({})  Disentangle {:.3}  (test: {} cause, {} isolate pairs; val Disentangle {:.3}; train Disentangle {:.3}; trained in {:.1} s, the pass below the site {:.2} s of it)",
            r.method,
            r.layer,
            r.dims,
            r.test.cause,
            r.test.isolate,
            per_attribute(&r.test),
            r.test.disentangle,
            r.test.n_cause,
            r.test.n_isolate,
            r.val.disentangle,
            r.train.map_or(f64::NAN, |t| t.disentangle),
            r.train_seconds,
            r.pass_seconds
        );
        if let Some(c) = &r.residual_test {
            println!(
                "  residual patching on the same test pairs: Cause {:.3}  Isolate {:.3}  Disentangle {:.3}",
                c.cause, c.isolate, c.disentangle
            );
        }
        if let Some(b) = &breakdown {
            println!(
                "the control's test Cause (residual patching at layer {}):",
                r.layer
            );
            print!("{}", ravel::pair_breakdown::table(b));
        }
    }
    Ok(())
}

/// Residual patching (the control) on the run's test pairs at its site, its Cause broken down by
/// the pairs' properties.
fn control_breakdown(
    lm: &subspace::LanguageModel,
    data: &RavelData,
    labels: &Labels,
    config: &RunConfig,
) -> Result<Vec<ravel::pair_breakdown::Breakdown>> {
    let test = labels.pairs(lm, data, config, Split::Test)?;
    let site = subspace::Site::block_output(config.layer);
    let replace = subspace::Intervention::Replace;
    let said = ravel::eval::predictions_each(lm, site, &[&replace], &test, config.scoring_batch())?;
    Ok(ravel::pair_breakdown::cause_breakdown(
        data,
        &test,
        said.first().map_or(&[][..], Vec::as_slice),
    ))
}

/// The run's settings and its pairs of every split as token ids (see `Args::export_pairs`).
fn export_pairs(
    path: &Path,
    lm: &subspace::LanguageModel,
    data: &RavelData,
    labels: &Labels,
    config: &RunConfig,
) -> Result<()> {
    let config = config.resolved();
    let mut splits = serde_json::Map::new();
    for split in Split::ALL {
        let pairs = labels.pairs(lm, data, &config, split)?;
        let rows: Vec<_> = pairs
            .iter()
            .map(|e| {
                let p = &e.example.pair;
                serde_json::json!({
                    "base": p.base.ids,
                    "source": p.source.ids,
                    "base_position": p.base_position(),
                    "source_position": p.source_position(),
                    "target": e.example.target,
                    "role": match e.role {
                        ravel::Role::Cause => "cause".to_string(),
                        ravel::Role::Isolate(a) => format!("isolate {}", a.key().to_lowercase()),
                    },
                })
            })
            .collect();
        splits.insert(split.name().into(), serde_json::Value::Array(rows));
    }
    let file = serde_json::json!({ "config": config, "splits": splits });
    subspace::store::write_atomic(path, &serde_json::to_vec(&file)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// "continent 0.71, language 0.62": Isolate split by the attribute the base prompt asks about.
fn per_attribute(s: &Scores) -> String {
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    format!(
        "continent {}, language {}",
        show(s.isolate_continent),
        show(s.isolate_language)
    )
}

#[derive(ClapArgs, Debug)]
pub struct ScoreArgs {
    /// A run saved by `subspace ravel --save`.
    pub file: PathBuf,
    /// Splits to score (repeat the option for several). Default val and test.
    #[arg(long = "split", value_enum)]
    pub splits: Vec<Split>,
    /// Also Cause per source country, with the train cities the model knows in each.
    #[arg(long)]
    pub by_country: bool,
    /// Known prompts from `subspace ravel-probe --first-token` (a run saved without a split kind).
    #[arg(long)]
    pub probe: Option<PathBuf>,
    /// The model's answers from `subspace ravel-probe` (a run saved with a split kind).
    #[arg(long)]
    pub answers: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// `subspace ravel-score`: loads a saved run and scores it again on the pairs its run drew,
/// with every metric this build reports (e.g. Isolate per attribute for a run saved before).
pub fn score(args: ScoreArgs) -> Result<()> {
    let splits = if args.splits.is_empty() {
        vec![Split::Val, Split::Test]
    } else {
        args.splits.clone()
    };
    let lm = args.model.language_model()?;
    let saved = load_saved(&args.file, &lm)?;
    let data = RavelData::load(&RavelData::default_dir())?;
    let labels = saved.labels(&lm, args.answers.as_deref(), args.probe.as_deref())?;
    // Known train cities per country, beside each source country's Cause: the first probe's,
    // or the model's answers' for runs labelled by them.
    let train_known = args
        .by_country
        .then(|| labels.known_train_cities_by_country(&data));
    let mut scored = serde_json::Map::new();
    for split in splits {
        eprintln!("scoring {} pairs", split.name());
        let examples = saved.pairs(&lm, &data, &labels, split)?;
        let hits = ravel::outcomes(
            &lm,
            saved.site,
            &saved.intervention,
            &examples,
            saved.config.batch,
        )?;
        let s = ravel::eval::scores(&examples, &hits);
        let countries = train_known.as_ref().map(|train| {
            ravel::breakdown::cause_by_source_country_beside(&data, train, &examples, &hits)
        });
        if !args.json {
            println!(
                "{:<5} Cause {:.3}  Isolate {:.3} ({})  Disentangle {:.3}  ({} cause, {} isolate pairs)",
                split.name(),
                s.cause,
                s.isolate,
                per_attribute(&s),
                s.disentangle,
                s.n_cause,
                s.n_isolate
            );
        }
        let mut entry = serde_json::to_value(s)?;
        if let Some(rows) = &countries {
            if !args.json {
                print_by_country(rows);
            }
            entry["by_country"] = serde_json::to_value(rows)?;
        }
        scored.insert(split.name().into(), entry);
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "file": args.file,
                "method": saved.recorded.method,
                "layer": saved.site.layer,
                "dims": saved.recorded.dims,
                "scores": scored,
            })
        );
    } else {
        eprintln!("{}", describe(&args.file, &saved));
    }
    Ok(())
}

fn print_by_country(rows: &[ravel::breakdown::CountryCause]) {
    println!(
        "      Cause by the source city's country (train cities known: the model answers their country):"
    );
    println!(
        "      {:<28} {:>5} {:>6} {:>12}",
        "country", "pairs", "Cause", "train cities"
    );
    for r in rows {
        println!(
            "      {:<28} {:>5} {:>6.2} {:>12}",
            r.country,
            r.pairs,
            r.cause(),
            r.train_cities
        );
    }
    for (what, range) in [("none", 0..1), ("1-4", 1..5), ("5 or more", 5..usize::MAX)] {
        let (pairs, cause) = ravel::breakdown::pooled(rows, range);
        println!(
            "      source countries with {what} known train cities: {pairs} pairs, Cause {cause:.2}"
        );
    }
}

fn load_saved(path: &Path, lm: &subspace::LanguageModel) -> Result<ravel::SavedRun> {
    if !path.is_file() {
        anyhow::bail!(
            "no saved run at {}: give a file written by `subspace ravel --save run.safetensors`",
            path.display()
        );
    }
    Ok(ravel::load_run(path, lm)?)
}

fn describe(path: &Path, saved: &ravel::SavedRun) -> String {
    format!(
        "{}: {} at layer {} ({:?} dims), seed {}, trained in {:.0} s",
        path.display(),
        saved.recorded.method,
        saved.site.layer,
        saved.recorded.dims,
        saved.config.seed,
        saved.recorded.train_seconds
    )
}
