//! Options every model-using subcommand accepts, and loading the model from them.

use anyhow::{Context, Result};
use clap::Args;
use llama::{Backend, Loaded, ModelSource};

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

    pub fn load(&self) -> Result<Loaded> {
        let source = self.source()?;
        let device = Backend::parse(&self.backend)?.device()?;
        llama::load::load(&source, &device)
            .with_context(|| format!("loading model {}", source.name()))
    }
}

/// One entry of a top-k list, as every `--json` output prints it.
#[derive(serde::Serialize, Debug, Clone)]
pub struct TokenProb {
    pub id: u32,
    pub token: String,
    pub prob: f32,
}
