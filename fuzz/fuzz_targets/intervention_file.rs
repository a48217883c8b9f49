//! The container of saved interventions and checkpoints, on arbitrary bytes. Whatever parses
//! must serialise back to a file that parses to the same thing.
#![no_main]

use formats::intervention_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = intervention_file::parse(data) else {
        return;
    };
    let _ = serde_json::from_str::<serde_json::Value>(&file.metadata_json);
    for t in file.tensors.values() {
        assert!(t.values.iter().all(|v| v.is_finite()));
        assert_eq!(t.values.len(), t.shape.iter().product::<usize>());
    }
    let bytes = intervention_file::serialize(&file.metadata_json, &file.tensors)
        .expect("a parsed container serialises");
    let again = intervention_file::parse(&bytes).expect("a serialised container parses");
    assert_eq!(again, file);
});
