//! `subspace bench`: the figures of BENCHMARKS.md, as medians over repeated runs after warm-up.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args as ClapArgs;
use llama::{Backend, ModelSource};
use subspace::{DasConfig, Example, Intervention, LanguageModel, Pair, PatchSpec, Site, train};

use super::common::{ModelArgs, stop_on_signals};

mod ravel;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Timed repetitions of each measurement (after one warm-up).
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// Examples in the batched (RAVEL-style) training step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// The layer patched and trained at (token 3, the city): 9 on the default model, 8 as the
    /// tutorial does on Llama-3.2-1B.
    #[arg(long, default_value_t = 9)]
    pub layer: usize,
    /// Skip the RAVEL recipe's training step (few-shot prompts at layer 15; ~1 minute).
    #[arg(long)]
    pub skip_ravel: bool,
    /// Write the RAVEL step's examples (token ids) here, for bench/compare_pytorch.py.
    #[arg(long)]
    pub ravel_examples: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

const PARIS: &str = "The city of Paris is in the country of";
const RIO: &str = "The city of Rio is in the country of";
/// Cities for the batched step (one or more tokens each; patched at their last token).
const CITIES: [&str; 16] = [
    "Paris", "Rio", "Tokyo", "Berlin", "Madrid", "Rome", "Cairo", "Lima", "Oslo", "Seoul", "Delhi",
    "Toronto", "Sydney", "Moscow", "Nairobi", "Bangkok",
];

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Median seconds of `repeats` calls of `f` after one warm-up; Ctrl-C is read between calls
/// (and inside those that run the model).
fn time<T>(repeats: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    let stop = stop_on_signals();
    f()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        stop.check(|| "no figures were written".into())?;
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Median seconds per step of a DAS run of `repeats + 1` steps, the first dropped as warm-up.
fn step_time(lm: &LanguageModel, site: Site, examples: &[Example], repeats: usize) -> Result<f64> {
    let mut iv = Intervention::random_rotation(lm.hidden_size(), 1, 0, &lm.device())?;
    let mut stamps = Vec::new();
    train::train(
        lm,
        &mut iv,
        examples,
        &DasConfig::new(site, repeats + 1),
        |s| stamps.push(s.elapsed.as_secs_f64()),
    )?;
    let steps: Vec<f64> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    Ok(median(steps))
}

/// The processor the figures were measured on, as Linux reports it: its model name and the
/// vector extensions the kernels pick from (floors must use this machine's peak, not another's).
fn cpu() -> serde_json::Value {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let flags = field("flags").unwrap_or_default();
    let has: Vec<&str> = [
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512_bf16",
        "avx512_vnni",
        "amx_bf16",
    ]
    .into_iter()
    .filter(|f| flags.split_whitespace().any(|x| x == *f))
    .collect();
    serde_json::json!({
        "model": field("model name"),
        "vendor": field("vendor_id"),
        "cores": std::thread::available_parallelism().map_or(1, usize::from),
        "flags": has,
    })
}

/// What the bench times next, on stderr (a whole bench takes about a minute).
fn phase(what: &str) {
    eprintln!("timing {what}");
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

pub fn run(args: Args) -> Result<()> {
    let source = args.model.source()?;
    let backend = Backend::parse(&args.model.backend)?;
    let device = backend.device()?;
    let r = args.repeats.max(1);

    phase("loading the model");
    let load_s = time(r.min(5), || Ok(llama::load::load(&source, &device)?))?;
    let tokenizer_s = match &source {
        ModelSource::Gguf(path) => time(r.min(5), || {
            let file = llama::load::gguf::GgufFile::open(path)?;
            Ok(llama::load::gguf::tokenizer::from_gguf(&file)?)
        })?,
        _ => f64::NAN,
    };
    let lm = LanguageModel::load_on(&source, backend)?.with_stop_flag(stop_on_signals());
    let rss_after_load = peak_rss_mib();
    let paris = lm.prompt(PARIS)?;
    let rio = lm.prompt(RIO)?;
    phase("forward passes");
    let forward_s = time(r, || Ok(lm.predict(&paris)?))?;
    let rss_load_forward = peak_rss_mib();
    let src = lm.trace(&rio)?;
    let site = Site::block_output(args.layer);
    lm.site_width(site)?;
    // One patched forward, the source vector read beforehand (as the PyTorch script does).
    let spec = PatchSpec {
        site,
        position: 3,
        source: src.vector(site, 3)?,
        intervention: Intervention::Replace,
    };
    phase("patched forward passes");
    let patched_forward_s = time(r, || {
        Ok(lm.patch_vectors(&paris, std::slice::from_ref(&spec))?)
    })?;

    let tutorial = Pair::new(paris.clone(), rio.clone(), 3, 3)?.with_target(lm.token(" Brazil")?);
    phase("DAS steps (the tutorial's pair)");
    let das_step_s = step_time(&lm, site, std::slice::from_ref(&tutorial), r)?;

    let mut batch = Vec::with_capacity(args.batch);
    for i in 0..args.batch {
        let (a, b) = (CITIES[i % CITIES.len()], CITIES[(i * 7 + 3) % CITIES.len()]);
        let base = lm.prompt(&format!("The city of {a} is in the country of"))?;
        let source = lm.prompt(&format!("The city of {b} is in the country of"))?;
        // The city's last token: the token before " is".
        let pos = |p: &subspace::Prompt| {
            p.tokens
                .iter()
                .position(|t| t == " is")
                .map_or(3, |i| i - 1)
        };
        let (bp, sp) = (pos(&base), pos(&source));
        batch.push(Pair::new(base, source, bp, sp)?.with_target(lm.token(" France")?));
    }
    phase("batched DAS steps");
    let ravel_step_s = step_time(&lm, site, &batch, r.min(5))?;
    let ravel_recipe = if args.skip_ravel || lm.n_layers() <= ravel::LAYER {
        None
    } else {
        ravel::measure(&lm, r, args.ravel_examples.as_deref())?
    };
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    // How the weights are held: packed as the file keeps them (GGUF blocks or bf16, multiplied
    // by the packed kernels) or widened to f32 (`SUBSPACE_WEIGHTS=f32`, other backends).
    let storage = lm.model.weight_storage();
    let blocks = storage != "f32";
    // The floors this machine allows, measured now (with the threads the model used).
    phase("this machine's peak arithmetic and memory read rate");
    let roof = kernels::Roofline::measure(threads);
    let out = serde_json::json!({
        "model": lm.name,
        "backend": backend.name(),
        "weights": storage,
        "kernels": if blocks { kernels::Kernels::best().name() } else { "backend matmul" },
        "threads": threads,
        "cpu": cpu(),
        "roofline": {
            "peak_gflops": roof.peak_gflops,
            "peak_bf16_gflops": roof.peak_bf16_gflops,
            "read_gbs": roof.read_gbs,
            "threads": roof.threads,
            "isa": roof.isa,
        },
        "repeats": r,
        "layer": args.layer,
        "load_s": load_s,
        "tokenizer_s": tokenizer_s,
        "forward_s": forward_s,
        "patched_forward_s": patched_forward_s,
        "das_step_s": das_step_s,
        "ravel_step_s": ravel_step_s,
        "ravel_batch": args.batch,
        "ravel_recipe": ravel_recipe,
        "peak_rss_after_load_mib": rss_after_load,
        "peak_rss_load_forward_mib": rss_load_forward,
        "peak_rss_mib": peak_rss_mib(),
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "model {} on {} ({threads} threads, weights {}, kernels {}), medians of {r}:",
            lm.name,
            backend.name(),
            out["weights"].as_str().unwrap_or("?"),
            out["kernels"].as_str().unwrap_or("?")
        );
        println!(
            "cpu: {} ({})",
            out["cpu"]["model"].as_str().unwrap_or("?"),
            out["cpu"]["flags"]
        );
        let bf16 = roof.peak_bf16_gflops.map_or_else(String::new, |g| {
            format!(", {g:.0} GFLOP/s peak bf16 (vdpbf16ps)")
        });
        println!(
            "this machine's ceilings ({} threads): {:.0} GFLOP/s peak f32 ({}){bf16}, {:.1} GB/s reading memory",
            roof.threads, roof.peak_gflops, roof.isa, roof.read_gbs
        );
        for key in [
            "load_s",
            "tokenizer_s",
            "forward_s",
            "patched_forward_s",
            "das_step_s",
            "ravel_step_s",
        ] {
            println!(
                "  {key:<20} {:>9.4} s",
                out[key].as_f64().unwrap_or(f64::NAN)
            );
        }
        if let Some(rr) = &ravel_recipe {
            let f = |k: &str| rr[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "  RAVEL recipe (layer {}, {} dims, batch {}, {} examples of {:.0} tokens): step {:.3} s = {:.1} pairs/s; layers below the site {:.3} s per example; one epoch {:.1} pairs/s",
                rr["layer"],
                rr["dims"],
                rr["batch"],
                rr["examples"],
                f("mean_base_tokens"),
                f("step_s"),
                f("step_pairs_per_s"),
                f("once_s_per_example"),
                f("epoch_pairs_per_s")
            );
        }
        for key in [
            "peak_rss_after_load_mib",
            "peak_rss_load_forward_mib",
            "peak_rss_mib",
        ] {
            println!(
                "  {key:<26} {:>7.0} MiB",
                out[key].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}
