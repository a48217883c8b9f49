//! Hugging Face Hub ids (`meta-llama/Llama-3.2-1B`): files come from the local cache, or are
//! downloaded when the network and a token allow it.

use std::path::PathBuf;

use crate::error::{LlamaError, Result};

/// True when the user asked for no network (`HF_HUB_OFFLINE=1`). hf-hub 0.4 ignores the
/// variable, so it is honoured here.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"))
}

/// Fetches (or finds in the cache) the files of a Llama checkpoint and returns the directory
/// holding them, with the shards resolved.
pub fn snapshot(repo: &str) -> Result<PathBuf> {
    let hub_err = |reason: String| LlamaError::Hub {
        repo: repo.to_string(),
        reason,
    };
    let get = |file: &str| -> Result<PathBuf> {
        let cache = hf_hub::Cache::from_env();
        if let Some(p) = cache.model(repo.to_string()).get(file) {
            return Ok(p);
        }
        if offline() {
            return Err(hub_err(format!(
                "`{file}` is not in the local cache ({}) and HF_HUB_OFFLINE is set; run once with network access, or unset HF_HUB_OFFLINE",
                cache.path().display()
            )));
        }
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| hub_err(e.to_string()))?;
        api.model(repo.to_string()).get(file).map_err(|e| {
            hub_err(format!(
                "cannot download `{file}`: {e}. Gated models such as meta-llama/* need an accepted licence and a token in HF_TOKEN (or `huggingface-cli login`); without network, copy the files into the cache or pass a local directory"
            ))
        })
    };

    let config = get("config.json")?;
    get("tokenizer.json")?;
    match get("model.safetensors.index.json") {
        Ok(index) => {
            let shards = crate::load::safetensors::shard_names(&index)?;
            for shard in shards {
                get(&shard)?;
            }
        }
        Err(_) => {
            get("model.safetensors")?;
        }
    }
    config
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| hub_err("cache path has no parent".into()))
}
