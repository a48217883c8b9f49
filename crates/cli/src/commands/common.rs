//! Options every model-using subcommand accepts, and loading the model from them.

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

    /// The model as the interventions library holds it.
    pub fn language_model(&self) -> Result<subspace::LanguageModel> {
        let source = self.source()?;
        let backend = Backend::parse(&self.backend)?;
        subspace::LanguageModel::load_on(&source, backend)
            .with_context(|| format!("loading model {}", source.name()))
    }
}

/// A top-k list as the JSON entries every command prints.
pub fn top_json(top: &subspace::TopK) -> serde_json::Value {
    serde_json::to_value(&top.0).unwrap_or_default()
}
