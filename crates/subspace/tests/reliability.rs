//! Bad input and failures: clear errors, nothing half-written, last good weights kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use subspace::readout::to_host;
use subspace::{DasConfig, Intervention, Site, SubspaceError, train};

#[test]
fn a_diverging_run_stops_with_the_step_and_keeps_the_last_good_weights() {
    let lm = common::tiny();
    let d = lm.hidden_size();
    let mut iv = Intervention::random_rotation(d, 4, 0, &lm.device()).unwrap();
    let before = match &iv {
        Intervention::Rotated(r) => to_host(r.rotation.clone()).unwrap(),
        _ => unreachable!(),
    };
    // An absurd learning rate blows the rotation up: the run must stop with a clear error and
    // keep finite, orthogonal weights.
    let err = train::train(
        &lm,
        &mut iv,
        &[common::tiny_example(&lm)],
        &DasConfig::new(Site::block_output(0), 50).with_lr(1e30),
        |_| {},
    )
    .err();
    assert!(
        err.is_some(),
        "a learning rate of 1e30 must not train silently"
    );
    let msg = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        matches!(
            err,
            Some(SubspaceError::Diverged { step: 2.., .. })
                | Some(SubspaceError::NonFiniteLoss { .. })
        ),
        "{msg}"
    );
    assert!(
        msg.contains("step") && msg.contains("learning rate"),
        "{msg}"
    );
    let after = match &iv {
        Intervention::Rotated(r) => to_host(r.rotation.clone()).unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(after.len(), before.len());
    let err = subspace::intervention::orthogonal::orthogonality_error(&after, d, d);
    assert!(err < 1e-4, "the kept rotation is still orthogonal: {err}");
    // An ordinary learning rate trains without error.
    let mut iv = Intervention::random_low_rank(d, 4, 0, &lm.device()).unwrap();
    train::train(
        &lm,
        &mut iv,
        &[common::tiny_example(&lm)],
        &DasConfig::new(Site::block_output(0), 5).with_lr(1e-2),
        |_| {},
    )
    .unwrap();
}

#[test]
fn saving_to_an_impossible_path_leaves_nothing_and_corrupt_files_are_refused() {
    let lm = common::tiny();
    let iv = Intervention::random_rotation(lm.hidden_size(), 2, 0, &lm.device()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let err = subspace::store::save(
        &blocker.join("iv.safetensors"),
        &lm,
        Site::block_output(0),
        &iv,
        serde_json::json!({}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot create"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );

    let good = dir.path().join("iv.safetensors");
    subspace::store::save(
        &good,
        &lm,
        Site::block_output(1),
        &iv,
        serde_json::json!({}),
    )
    .unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = subspace::store::load(&cut, &lm).unwrap_err().to_string();
    assert!(err.contains("is not a saved intervention"), "{err}");
    let err = subspace::store::load(&dir.path().join("missing.safetensors"), &lm)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read"), "{err}");
    // The good file still loads.
    assert_eq!(
        subspace::store::load(&good, &lm).unwrap().site,
        Site::block_output(1)
    );
}

#[test]
fn nothing_to_train_and_files_whose_shapes_contradict_their_description_are_refused() {
    let lm = common::tiny();
    let d = lm.hidden_size();
    // Patching 0 dimensions is the identity: nothing to train.
    let mut iv = Intervention::random_rotation(d, 0, 0, &lm.device()).unwrap();
    let err = train::train(
        &lm,
        &mut iv,
        &[common::tiny_example(&lm)],
        &DasConfig::new(Site::block_output(0), 3),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("0 dimensions") && err.contains("at least 1"),
        "{err}"
    );
    // Residual patching has no parameters either.
    let err = train::train(
        &lm,
        &mut Intervention::Replace,
        &[common::tiny_example(&lm)],
        &DasConfig::new(Site::block_output(0), 3),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no parameters to train"), "{err}");

    // A file whose rotation is 64 x 64 but whose description says 2 x 2.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iv.safetensors");
    let iv = Intervention::random_rotation(d, 2, 0, &lm.device()).unwrap();
    subspace::store::save(
        &path,
        &lm,
        Site::block_output(0),
        &iv,
        serde_json::json!({}),
    )
    .unwrap();
    let file = formats::intervention_file::parse(&std::fs::read(&path).unwrap()).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&file.metadata_json).unwrap();
    meta["shapes"]["rotation"] = serde_json::json!([2, 2]);
    let forged = formats::intervention_file::serialize(&meta.to_string(), &file.tensors).unwrap();
    std::fs::write(&path, forged).unwrap();
    let err = subspace::store::load(&path, &lm).unwrap_err().to_string();
    assert!(
        err.contains("rotation") && err.contains("contradicts"),
        "{err}"
    );

    // A rotation of another hidden size under a correct description: refused by its check.
    meta["shapes"]["rotation"] = serde_json::json!([3, 3]);
    let mut tensors = file.tensors.clone();
    tensors.insert(
        "rotation".into(),
        formats::intervention_file::HostTensor::new(vec![3, 3], vec![0.0; 9]).unwrap(),
    );
    let forged = formats::intervention_file::serialize(&meta.to_string(), &tensors).unwrap();
    std::fs::write(&path, forged).unwrap();
    let err = subspace::store::load(&path, &lm).unwrap_err().to_string();
    assert!(err.contains("is not a saved intervention"), "{err}");
}
