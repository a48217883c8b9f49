//! Gemma's SentencePiece vocabulary (`tokenizer.ggml.model = "llama"` in a Gemma file) as a BPE
//! with byte fallback, built as transformers builds it from the same file (its
//! `gemma_tokenizer` and `GemmaTokenizer`), so token ids agree with it:
//! - spaces are `▁` (a normalizer), no space is put before the text, and the text is not split
//!   into words first;
//! - the file lists no merges: they are recovered from the vocabulary, every split of a token
//!   into two tokens, ranked by the merged token's place in the file (Gemma's scores do not
//!   follow the merge order; its file order does);
//! - a token of spaces alone is stored with real spaces and looked up as `▁`s.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior, Tokenizer};

use super::{CONTROL, USER_DEFINED};
use crate::error::{FormatError, Result};

/// SentencePiece's visible space.
const SPACE: &str = "\u{2581}";

/// The tokenizer of a Gemma GGUF file's vocabulary (`tokens`, with llama.cpp's token `types`).
pub(super) fn gemma(tokens: &[&str], types: &[i64]) -> Result<Tokenizer> {
    let bad = |e: String| FormatError::Tokenizer(format!("Gemma vocabulary: {e}"));
    // A token of whitespace with a space in it ("  ") is spelled with `▁`s.
    let respelled: Vec<String> = tokens
        .iter()
        .map(|t| {
            if t.contains(' ') && t.trim().is_empty() {
                SPACE.repeat(t.chars().count())
            } else {
                (*t).to_string()
            }
        })
        .collect();
    // Where a spelling repeats, the later id wins (a Python dict built in file order).
    let mut vocab: HashMap<&str, u32> = HashMap::with_capacity(respelled.len());
    let mut first_seen: Vec<&str> = Vec::with_capacity(respelled.len());
    for (i, t) in respelled.iter().enumerate() {
        if vocab.insert(t.as_str(), i as u32).is_none() {
            first_seen.push(t.as_str());
        }
    }
    let merges = merges_from_vocabulary(&first_seen, &vocab);
    let bpe = BPE::builder()
        .vocab_and_merges(
            vocab
                .iter()
                .map(|(t, &i)| ((*t).to_string(), i))
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .unk_token("<unk>".into())
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| bad(format!("cannot build BPE: {e}")))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(
        Replace::new(" ", SPACE).map_err(|e| bad(e.to_string()))?,
    ));
    // As GemmaTokenizer: a split at spaces, which after the normalizer finds none (the text
    // is one word).
    tokenizer.with_pre_tokenizer(Some(
        Split::new(
            SplitPattern::String(" ".into()),
            SplitDelimiterBehavior::MergedWithPrevious,
            false,
        )
        .map_err(|e| bad(e.to_string()))?,
    ));
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(
            // The normalizer's type, which decodes too.
            Replace::new(SPACE, " ").map_err(|e| bad(e.to_string()))?,
        ),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ])));

    // Control tokens (`<bos>`, `<start_of_turn>`, `<unused0>`) are special; user-defined ones
    // (`\n\n`, `[multimodal]`) are matched whole in the text, where the vocabulary has them.
    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|&(_, &ty)| ty == CONTROL)
        .map(|(t, _)| AddedToken::from((*t).to_string(), true).normalized(false))
        .collect();
    tokenizer.add_special_tokens(&control);
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|&(t, &ty)| ty == USER_DEFINED && vocab.contains_key(t))
        .map(|(t, _)| AddedToken::from((*t).to_string(), false).normalized(false))
        .collect();
    tokenizer.add_tokens(&user);
    Ok(tokenizer)
}

/// Every way of writing a token as two tokens, as a merge, best first: the merged token earlier
/// in the file first, then the longer left piece, then the longer right piece; ties keep the
/// order of `tokens` and, within a token, of the pieces' ids (transformers' `generate_merges`
/// with the file position as the score).
fn merges_from_vocabulary(tokens: &[&str], vocab: &HashMap<&str, u32>) -> Vec<(String, String)> {
    struct Merge<'a> {
        left: &'a str,
        right: &'a str,
        merged_id: u32,
        left_len: usize,
        right_len: usize,
    }
    let mut merges: Vec<Merge> = Vec::new();
    for &token in tokens {
        let merged_id = vocab[token];
        let mut local: Vec<Merge> = token
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (left, right) = token.split_at(at);
                (vocab.contains_key(left) && vocab.contains_key(right)).then(|| Merge {
                    left,
                    right,
                    merged_id,
                    left_len: left.chars().count(),
                    right_len: right.chars().count(),
                })
            })
            .collect();
        local.sort_by_key(|m| (vocab[m.left], vocab[m.right]));
        merges.extend(local);
    }
    // Stable: equal keys keep their order, as Python's `sorted(..., reverse=True)` does.
    merges.sort_by(|a, b| {
        (
            a.merged_id,
            std::cmp::Reverse(a.left_len),
            std::cmp::Reverse(a.right_len),
        )
            .cmp(&(
                b.merged_id,
                std::cmp::Reverse(b.left_len),
                std::cmp::Reverse(b.right_len),
            ))
    });
    merges
        .into_iter()
        .map(|m| (m.left.to_string(), m.right.to_string()))
        .collect()
}
