//! The GGUF reader on arbitrary bytes: parse the header, metadata and tensor directory, then
//! dequantise every tensor it accepted. Must return an error or values, never panic, hang, or
//! allocate more than the input justifies.
#![no_main]

use formats::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for key in file.metadata.keys() {
        let v = file.get(key);
        let _ = v.and_then(|v| v.as_u64());
        let _ = v.and_then(|v| v.as_str());
    }
    for info in &file.tensors {
        // Every accepted tensor lies inside the input, so dequantising is bounded by it
        // (at most 8 values per byte for the 4-bit types, plus per-block headers).
        assert!(info.n_bytes <= data.len());
        if let Ok(values) = file.dequantize(info) {
            assert_eq!(values.len(), info.n_elements());
        }
    }
});
