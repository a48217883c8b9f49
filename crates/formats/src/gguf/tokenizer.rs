//! A `tokenizers::Tokenizer` built from GGUF metadata (`tokenizer.ggml.*`), so a lone GGUF file
//! is enough. Byte-level BPE (`tokenizer.ggml.model = "gpt2"`) only, built the way transformers
//! builds it from the same file, so token ids agree with it.

use std::collections::HashMap;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::reader::{GgufFile, GgufValue};
use crate::error::{FormatError, Result};

/// Token types of `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The pre-tokenizer split of Llama-3 style vocabularies (`tokenizer.ggml.pre` = llama-bpe, ...).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What the tokenizer needs besides the vocabulary: BOS handling and a padding id.
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub add_bos: bool,
}

/// GPT-2's reversible map from bytes to printable characters (the "byte alphabet").
fn bytes_to_unicode() -> HashMap<u8, char> {
    let mut bs: Vec<u32> = (b'!'..=b'~')
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .map(u32::from)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..=255u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .filter_map(|(b, c)| Some((u8::try_from(b).ok()?, char::from_u32(c)?)))
        .collect()
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
    if model != "gpt2" {
        return Err(FormatError::Tokenizer(format!(
            "GGUF tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`); use a Hugging Face directory with tokenizer.json instead"
        )));
    }
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let merges = strings(file, "tokenizer.ggml.merges")?;
    let types: Vec<i64> = match file
        .get("tokenizer.ggml.token_type")
        .and_then(GgufValue::as_array)
    {
        Some(a) => a.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };

    // Every real token of a byte-level vocabulary is spelled in the byte alphabet; a token that
    // is not (a converter's oversight) is respelled byte by byte, as transformers does.
    let spelling = bytes_to_unicode();
    let alphabet: std::collections::HashSet<char> = spelling.values().copied().collect();
    let spelled = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let key = if spelled(t) {
            (*t).to_string()
        } else {
            t.bytes().filter_map(|b| spelling.get(&b)).collect()
        };
        vocab.insert(key, i as u32);
    }
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    FormatError::Tokenizer(format!("malformed merge `{m}` (expected two pieces)"))
                })
        })
        .collect::<Result<_>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(
            vocab
                .into_iter()
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .build()
        .map_err(|e| {
            FormatError::Tokenizer(format!("cannot build BPE from GGUF vocabulary: {e}"))
        })?;

    let mut tokenizer = Tokenizer::new(bpe);
    let pre = file
        .get("tokenizer.ggml.pre")
        .and_then(GgufValue::as_str)
        .unwrap_or("default");
    let byte_level = ByteLevel::new(false, true, true);
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" | "falcon3" | "dbrx" => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_SPLIT.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| FormatError::Tokenizer(e.to_string()))?;
            let seq = Sequence::new(vec![
                PreTokenizerWrapper::Split(split),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
            ]);
            tokenizer.with_pre_tokenizer(Some(seq));
        }
        _ => {
            tokenizer.with_pre_tokenizer(Some(byte_level));
        }
    }
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|&(t, &ty)| ty == CONTROL && spelled(t))
        .map(|(t, _)| AddedToken::from(t.to_string(), true).normalized(false))
        .collect();
    tokenizer.add_special_tokens(&control);
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|&(_, &ty)| ty == USER_DEFINED)
        .map(|(t, _)| AddedToken::from(t.to_string(), false).normalized(false))
        .collect();
    tokenizer.add_tokens(&user);

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
