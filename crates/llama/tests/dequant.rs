//! GGUF dequantisation against the Python `gguf` package (fixtures from scripts/make_fixtures.py).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use llama::load::gguf::GgufFile;

#[test]
fn every_supported_type_matches_python_gguf() {
    let file = GgufFile::open(common::fixtures().join("dequant.gguf")).unwrap();
    let expected = common::read_f32(&common::fixtures().join("dequant_expected.safetensors"));
    assert_eq!(file.tensors.len(), expected.len());
    for info in &file.tensors {
        let (shape, want) = &expected[&info.name];
        assert_eq!(&info.shape(), shape, "{}", info.name);
        let got = file.dequantize(info).unwrap();
        let tol = want.iter().fold(0f32, |m, v| m.max(v.abs())) * 1e-6;
        let diff = common::max_abs_diff(&got, want);
        assert!(
            diff <= tol,
            "{} ({:?}): max diff {diff}",
            info.name,
            info.ggml_type
        );
    }
}

#[test]
fn real_model_tensors_match_python_gguf() {
    let source = llama::ModelSource::default_model().expect("run scripts/fetch-model.sh");
    let llama::ModelSource::Gguf(path) = source else {
        panic!("default model is a GGUF")
    };
    let file = GgufFile::open(path).unwrap();
    let samples = common::read_f32(&common::fixtures().join("smollm2_dequant_samples.safetensors"));
    for name in [
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.29.ffn_down.weight",
        "output_norm.weight",
    ] {
        let info = file.tensor(name).unwrap();
        let got = file.dequantize(info).unwrap();
        let (_, head) = &samples[&format!("{name}.head")];
        let (_, tail) = &samples[&format!("{name}.tail")];
        assert_eq!(
            common::max_abs_diff(&got[..head.len()], head),
            0.0,
            "{name} head"
        );
        assert_eq!(
            common::max_abs_diff(&got[got.len() - tail.len()..], tail),
            0.0,
            "{name} tail"
        );
    }
}

#[test]
fn corrupt_headers_are_errors_not_panics() {
    let good = std::fs::read(common::fixtures().join("dequant.gguf")).unwrap();
    let msg = |bytes: Vec<u8>| GgufFile::from_bytes(bytes).unwrap_err().to_string();

    assert!(msg(b"GGML\x03\x00\x00\x00".to_vec()).contains("wrong magic"));
    let mut v9 = good.clone();
    v9[4] = 9;
    assert!(msg(v9).contains("version 9"));
    // Truncation anywhere in the header or data is reported, never read past.
    // (The file ends with up to 31 bytes of alignment padding, so cut well inside.)
    for cut in [3, 10, 30, 200, good.len() / 2, good.len() - 40] {
        let e = msg(good[..cut].to_vec());
        assert!(
            e.contains("truncated") || e.contains("end of file") || e.contains("more than"),
            "cut {cut}: {e}"
        );
    }
    // A header that claims 2^60 tensors must not allocate for them.
    let mut huge = good.clone();
    huge[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(msg(huge).contains("more than"));
}
