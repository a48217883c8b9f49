//! A `tokenizers::Tokenizer` built from GGUF metadata (`tokenizer.ggml.*`), so a lone GGUF file
//! is enough: byte-level BPE (`tokenizer.ggml.model = "gpt2"`: Llama 3, SmolLM2) or Gemma's
//! SentencePiece vocabulary (`llama`), each built the way transformers builds it from the same
//! file, so token ids agree with it.

mod byte_level;
mod sentencepiece;

use tokenizers::Tokenizer;
use tokenizers::processors::template::TemplateProcessing;

use super::reader::{GgufFile, GgufValue};
use crate::error::{FormatError, Result};

/// Token types of `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// What the tokenizer needs besides the vocabulary: BOS handling and a padding id.
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub add_bos: bool,
}

fn strings<'a>(file: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let bad = || {
        FormatError::Tokenizer(format!(
            "GGUF metadata `{key}` is missing or not a list of strings"
        ))
    };
    file.get(key)
        .and_then(GgufValue::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_str().ok_or_else(bad))
        .collect()
}

fn id(file: &GgufFile, key: &str, vocab: usize) -> Option<u32> {
    file.get(key)
        .and_then(GgufValue::as_u64)
        .filter(|&i| (i as usize) < vocab)
        .and_then(|i| u32::try_from(i).ok())
}

/// Builds the tokenizer a GGUF file describes.
pub fn from_gguf(file: &GgufFile) -> Result<(Tokenizer, SpecialTokens)> {
    let model = file
        .get("tokenizer.ggml.model")
        .and_then(GgufValue::as_str)
        .ok_or_else(|| {
            FormatError::Tokenizer("the GGUF file has no tokenizer (tokenizer.ggml.model)".into())
        })?;
    let arch = file
        .get("general.architecture")
        .and_then(GgufValue::as_str)
        .unwrap_or("llama");
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let types: Vec<i64> = match file
        .get("tokenizer.ggml.token_type")
        .and_then(GgufValue::as_array)
    {
        Some(a) => a.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    let mut tokenizer = match model {
        "gpt2" => byte_level::build(file, &tokens, &types)?,
        // SentencePiece vocabularies; Gemma's is the one whose merges are recovered as
        // transformers recovers them (file order, not scores).
        "llama" if arch.starts_with("gemma") => sentencepiece::gemma(&tokens, &types)?,
        other => {
            return Err(FormatError::Tokenizer(format!(
                "GGUF tokenizer model `{other}` of architecture `{arch}` is not supported (supported: byte-level BPE `gpt2`; SentencePiece `llama` of Gemma files); use a Hugging Face directory with tokenizer.json instead"
            )));
        }
    };
    let n = tokens.len();
    let special = SpecialTokens {
        bos_id: id(file, "tokenizer.ggml.bos_token_id", n),
        eos_id: id(file, "tokenizer.ggml.eos_token_id", n),
        pad_id: id(file, "tokenizer.ggml.padding_token_id", n),
        add_bos: file
            .get("tokenizer.ggml.add_bos_token")
            .and_then(GgufValue::as_bool)
            .unwrap_or(false),
    };
    if special.add_bos
        && let Some(bos) = special.bos_id
    {
        let bos_token = tokens[bos as usize].to_string();
        let template = TemplateProcessing::builder()
            .try_single(format!("{bos_token} $A"))
            .and_then(|b| b.try_pair(format!("{bos_token} $A $B")))
            .map_err(|e| FormatError::Tokenizer(e.to_string()))?
            .special_tokens(vec![(bos_token, bos)])
            .build()
            .map_err(|e| FormatError::Tokenizer(e.to_string()))?;
        tokenizer.with_post_processor(Some(template));
    }
    Ok((tokenizer, special))
}
