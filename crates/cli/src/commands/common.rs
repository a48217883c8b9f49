//! Options every model-using subcommand accepts, and loading the model from them.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use clap::Args;
use llama::{Backend, ModelSource};

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A GGUF file, a Hugging Face directory, or a hub id (e.g. meta-llama/Llama-3.2-1B).
    /// Default: data/models/SmolLM2-135M-Instruct.Q4_1.gguf (fetched by scripts/setup.sh).
    #[arg(long)]
    pub model: Option<String>,

    /// flex (pure-Rust CPU, default), tch (LibTorch CPU) or cuda (LibTorch CUDA); the last two
    /// need a build with `--features tch`.
    #[arg(long, env = "SUBSPACE_BACKEND", default_value = "flex")]
    pub backend: String,
}

impl ModelArgs {
    pub fn source(&self) -> Result<ModelSource> {
        Ok(match &self.model {
            Some(spec) => ModelSource::parse(spec)?,
            None => ModelSource::default_model()?,
        })
    }

    /// The model as the interventions library holds it, stopped by Ctrl-C / SIGTERM
    /// ([`stop_on_signals`]) in every long call made on it.
    pub fn language_model(&self) -> Result<subspace::LanguageModel> {
        let stop = stop_on_signals();
        let source = self.source()?;
        let backend = Backend::parse(&self.backend)?;
        let lm = subspace::LanguageModel::load_on(&source, backend)
            .with_context(|| format!("loading model {}", source.name()))?
            .with_stop_flag(stop.clone());
        // A Ctrl-C while the weights were read stops here, before any work.
        stop.check(|| "stopped while loading the model; nothing was done".into())?;
        Ok(lm)
    }
}

/// What the commands that show next-token answers share: how many, as JSON or a table, and
/// the model they ask.
#[derive(Args, Debug, Clone)]
pub struct Shown {
    /// How many tokens to show.
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

impl Shown {
    /// The model, once `--k` is checked (a top-0 list shows nothing).
    pub fn language_model(&self) -> Result<subspace::LanguageModel> {
        if self.k == 0 {
            anyhow::bail!("--k must be at least 1");
        }
        self.model.language_model()
    }
}

/// A top-k list as the JSON entries every command prints.
pub fn top_json(top: &subspace::TopK) -> serde_json::Value {
    serde_json::to_value(&top.0).unwrap_or_default()
}

/// The process's flag raised by Ctrl-C (SIGINT) or SIGTERM, its handler installed on the first
/// call. Every long call on a model that reads it ([`ModelArgs::language_model`]) returns
/// [`subspace::SubspaceError::Interrupted`] within a block of its forward pass: training writes
/// its checkpoint (if one was asked for) with the steps it finished, nothing else is written,
/// and the command exits with 130. A second signal exits at once (files on disk are still whole:
/// they are replaced atomically).
pub fn stop_on_signals() -> subspace::StopFlag {
    static FLAG: OnceLock<subspace::StopFlag> = OnceLock::new();
    FLAG.get_or_init(|| {
        let stop = subspace::StopFlag::new();
        let flag = stop.clone();
        let installed = ctrlc::set_handler(move || {
            if flag.is_raised() {
                std::process::exit(130);
            }
            flag.raise();
            eprintln!("\nstopping (press Ctrl-C again to quit now)");
        });
        if let Err(e) = installed {
            eprintln!("warning: Ctrl-C will not stop cleanly: {e}");
        }
        stop
    })
    .clone()
}

/// `result`, with `what` (what the command was doing, what it did not write) before the message
/// when it was stopped by Ctrl-C; other errors pass unchanged.
pub fn if_interrupted<T>(result: subspace::Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    match result {
        Err(e @ subspace::SubspaceError::Interrupted { .. }) => {
            Err(anyhow::Error::new(e).context(what()))
        }
        other => Ok(other?),
    }
}

/// Training progress on stderr: a bar with loss, examples/s and ETA on a terminal, about 20
/// lines over the run otherwise (logs, notebooks).
pub fn progress() -> impl FnMut(&subspace::StepReport) {
    let tty = std::io::stderr().is_terminal();
    let mut examples = 0usize;
    move |s: &subspace::StepReport| {
        let mut err = std::io::stderr();
        examples += s.examples;
        let secs = s.elapsed.as_secs_f64();
        let rate = s.step as f64 / secs.max(1e-9);
        let per_second = examples as f64 / secs.max(1e-9);
        let eta = (s.steps - s.step.min(s.steps)) as f64 / rate.max(1e-9);
        if tty {
            let done = 30 * s.step / s.steps.max(1);
            let _ = write!(
                err,
                "\r[{}{}] {}/{} loss {:.4}  {:.1} examples/s  lr {:.1e}  ETA {:.0}s ",
                "#".repeat(done),
                " ".repeat(30 - done),
                s.step,
                s.steps,
                s.loss,
                per_second,
                s.lr,
                eta
            );
            if s.step == s.steps {
                let _ = writeln!(err);
            }
        } else if s.step.is_multiple_of((s.steps / 20).max(1)) || s.step == s.steps {
            let _ = writeln!(
                err,
                "step {}/{} loss {:.4} ({:.1} examples/s, lr {:.1e}, {:.1}s, ETA {:.0}s)",
                s.step, s.steps, s.loss, per_second, s.lr, secs, eta
            );
        }
    }
}
