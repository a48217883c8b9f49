//! Byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`): every token spelled in GPT-2's
//! byte alphabet, merges listed in the file, a pre-tokenizer split chosen by
//! `tokenizer.ggml.pre`.

use std::collections::HashMap;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::{CONTROL, USER_DEFINED, strings};
use crate::error::{FormatError, Result};
use crate::gguf::reader::{GgufFile, GgufValue};

/// The pre-tokenizer split of Llama-3 style vocabularies (`tokenizer.ggml.pre` = llama-bpe, ...).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

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

/// The tokenizer of a byte-level BPE file, with its control tokens as special tokens and its
/// user-defined ones as added tokens.
pub(super) fn build(file: &GgufFile, tokens: &[&str], types: &[i64]) -> Result<Tokenizer> {
    let merges = strings(file, "tokenizer.ggml.merges")?;
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
        .zip(types)
        .filter(|&(t, &ty)| ty == CONTROL && spelled(t))
        .map(|(t, _)| AddedToken::from(t.to_string(), true).normalized(false))
        .collect();
    tokenizer.add_special_tokens(&control);
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|&(_, &ty)| ty == USER_DEFINED)
        .map(|(t, _)| AddedToken::from(t.to_string(), false).normalized(false))
        .collect();
    tokenizer.add_tokens(&user);

    Ok(tokenizer)
}
