//! Building the tokenizer a GGUF's `tokenizer.ggml.*` metadata describes, from arbitrary bytes;
//! when it builds, encoding and decoding a fixed text must not panic either.
#![no_main]

use formats::gguf::{GgufFile, tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let Ok((tok, special)) = tokenizer::from_gguf(&file) else {
        return;
    };
    let vocab = tok.get_vocab_size(true);
    for id in [special.bos_id, special.eos_id, special.pad_id]
        .into_iter()
        .flatten()
    {
        assert!((id as usize) < vocab.max(1));
    }
    if let Ok(enc) = tok.encode("The city of Paris is in the country of 🇫🇷\t42", true) {
        let _ = tok.decode(enc.get_ids(), false);
    }
});
