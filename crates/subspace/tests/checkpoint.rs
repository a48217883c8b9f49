//! Stopping and resuming training: a run killed after a checkpoint and started again reaches,
//! bit for bit, the weights and losses of a run that was never interrupted; a crash while a
//! checkpoint is being written leaves the previous one loadable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use subspace::readout::to_host;
use subspace::{DasConfig, Example, Intervention, LanguageModel, Site, train};

const STEPS: usize = 8;

fn examples(lm: &LanguageModel) -> Vec<Example> {
    let pairs = [
        (
            "the quick brown fox jumps over",
            "the lazy dog jumps over the",
            7,
        ),
        ("a small cat sat on the", "one big dog ran to a", 11),
        ("the red house is near", "a green tree is by the", 3),
        ("my old car goes down the", "his new bike goes up a", 19),
    ];
    pairs
        .iter()
        .map(|&(b, s, t)| {
            lm.pair(b, s)
                .unwrap()
                .at_positions(2, 2)
                .unwrap()
                .with_target(t)
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Rotated,
    LowRank,
    Boundless,
}

fn fresh(lm: &LanguageModel, kind: Kind) -> Intervention {
    let (d, dev) = (lm.hidden_size(), lm.device());
    match kind {
        Kind::Rotated => Intervention::random_rotation(d, 3, 7, &dev),
        Kind::LowRank => Intervention::random_low_rank(d, 3, 7, &dev),
        Kind::Boundless => Intervention::random_boundless(d, 0.1, 7, &dev),
    }
    .unwrap()
}

fn weights(iv: &Intervention) -> Vec<f32> {
    match iv {
        Intervention::Rotated(r) => to_host(r.rotation.clone()).unwrap(),
        Intervention::LowRank(l) => to_host(l.basis.clone()).unwrap(),
        Intervention::Boundless(b) => {
            let mut w = to_host(b.rotation.clone()).unwrap();
            w.extend(to_host(b.boundary.clone()).unwrap());
            w
        }
        _ => unreachable!(),
    }
}

fn config(kind: Kind) -> DasConfig {
    // Minibatches of 2 of the 4 examples, so a resumed run must also pick up the batch order.
    let lr = if matches!(kind, Kind::Rotated) {
        2e-2
    } else {
        5e-2
    };
    DasConfig::new(Site::block_output(0), STEPS)
        .with_lr(lr)
        .with_batch_size(2)
}

/// Trains a fresh intervention of `kind` with `config`; returns the report and the weights.
fn run(
    lm: &LanguageModel,
    kind: Kind,
    config: &DasConfig,
) -> subspace::Result<(subspace::TrainReport, Vec<f32>)> {
    let mut iv = fresh(lm, kind);
    let report = train::train(lm, &mut iv, &examples(lm), config, |_| {})?;
    Ok((report, weights(&iv)))
}

/// Trains with checkpoints every 3 steps and "kills" the run (a panic out of the progress
/// callback) after step `kill_after`.
fn killed_run(lm: &LanguageModel, kind: Kind, path: &Path, kill_after: usize) {
    let mut iv = fresh(lm, kind);
    let config = config(kind).with_checkpoint(path, 3);
    let result = catch_unwind(AssertUnwindSafe(|| {
        train::train(lm, &mut iv, &examples(lm), &config, |s| {
            if s.step == kill_after {
                panic!("simulated kill after step {kill_after}");
            }
        })
    }));
    assert!(result.is_err(), "the run was meant to be killed");
}

#[test]
fn a_killed_run_resumes_to_exactly_the_uninterrupted_weights() {
    let lm = common::tiny();
    for kind in [Kind::Rotated, Kind::LowRank, Kind::Boundless] {
        let (uninterrupted, straight) = run(&lm, kind, &config(kind)).unwrap();
        assert_ne!(
            straight,
            weights(&fresh(&lm, kind)),
            "{kind:?}: training moved the weights"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ckpt");
        killed_run(&lm, kind, &path, 5);
        assert!(path.exists(), "{kind:?}: the step-3 checkpoint was written");

        let (report, resumed) = run(&lm, kind, &config(kind).with_checkpoint(&path, 3)).unwrap();
        assert_eq!(report.resumed_after, Some(3), "{kind:?}");
        assert_eq!(report.losses, uninterrupted.losses, "{kind:?}: losses");
        assert_eq!(
            resumed, straight,
            "{kind:?}: resumed weights must equal the uninterrupted run's bit for bit"
        );
    }
}

#[test]
fn a_crash_mid_save_leaves_the_previous_checkpoint_usable() {
    let lm = common::tiny();
    let kind = Kind::Rotated;
    let (_, straight) = run(&lm, kind, &config(kind)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    killed_run(&lm, kind, &path, 5);
    let good = std::fs::read(&path).unwrap();
    // A process killed inside the write of the step-6 checkpoint leaves a partial temporary
    // file beside the real one (writes go to a temporary file renamed into place when complete).
    std::fs::write(
        dir.path().join(".run.ckpt.99999.tmp"),
        &good[..good.len() / 3],
    )
    .unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        good,
        "the checkpoint is untouched"
    );
    let (report, resumed) = run(&lm, kind, &config(kind).with_checkpoint(&path, 3)).unwrap();
    assert_eq!(report.resumed_after, Some(3));
    assert_eq!(resumed, straight);
}

#[test]
fn a_torn_or_foreign_checkpoint_is_refused_with_what_to_do() {
    let lm = common::tiny();
    let kind = Kind::LowRank;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    killed_run(&lm, kind, &path, 4);

    // Another learning rate is another run: its checkpoint must not be mixed in.
    let err = run(
        &lm,
        kind,
        &config(kind).with_lr(1e-3).with_checkpoint(&path, 3),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("different run") && err.contains("delete it"),
        "{err}"
    );

    // A file cut short (a disk that lied about a flush) is refused, not half-read.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = run(&lm, kind, &config(kind).with_checkpoint(&path, 3))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not a usable checkpoint") && err.contains("delete it"),
        "{err}"
    );
}
