//! A raised [`subspace::StopFlag`] stops every long library call a notebook or a program makes
//! within a second (RELIABILITY.md, "Stopping"): RAVEL runs, the probe, training, big batches,
//! generation. Each call runs on a model with its own flag, raised from another thread while the
//! call is under way; it must return `Interrupted` less than a second later, and the model must
//! answer as before once the flag is lowered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fmt::Debug;
use std::time::{Duration, Instant};

use common::{PARIS, RIO, smollm};
use subspace::ravel::{self, Method, RavelData, RunConfig};
use subspace::{DasConfig, Intervention, LanguageModel, Site, StopFlag, SubspaceError, train};

/// Calls `call` on a model of its own flag, raises the flag `after` into the call, and checks
/// that the call returns `Interrupted` within a second of it.
fn stops_within_a_second<T: Debug>(
    what: &str,
    after: Duration,
    call: impl FnOnce(&LanguageModel) -> subspace::Result<T>,
) {
    let lm = smollm().clone().with_stop_flag(StopFlag::new());
    let flag = lm.stop_flag().clone();
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(after);
        flag.raise();
        Instant::now()
    });
    let result = call(&lm);
    let returned = Instant::now();
    let raised = raiser.join().unwrap();
    let e = result.expect_err(&format!("{what} finished before the flag was raised"));
    assert!(
        matches!(e, SubspaceError::Interrupted { .. }),
        "{what}: {e}"
    );
    let waited = returned.saturating_duration_since(raised);
    println!(
        "{what}: returned {:.3} s after the flag",
        waited.as_secs_f64()
    );
    assert!(waited < Duration::from_secs(1), "{what} took {waited:?}");
    // Lowered, the model answers as the untouched one does.
    lm.stop_flag().lower();
    let paris = lm.prompt(PARIS).unwrap();
    assert_eq!(
        lm.predict(&paris).unwrap().argmax().id,
        smollm().predict(&paris).unwrap().argmax().id
    );
}

fn probe() -> ravel::ProbeReport {
    common::ravel_probe()
}

#[test]
fn a_ravel_run_stops() {
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let labels = ravel::Labels::FirstProbe(probe());
    stops_within_a_second("ravel run", Duration::from_millis(2500), |lm| {
        let mut config = RunConfig::new(Method::Das, 15);
        config.dims = 16;
        config.n_train = 512;
        ravel::run(lm, &data, &labels, &config)
    });
}

#[test]
fn the_probe_stops() {
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    stops_within_a_second("probe", Duration::from_millis(1000), |lm| {
        ravel::probe::probe_dataset(lm, &data, 600, 4, 64, |_| {})
    });
}

#[test]
fn training_stops_inside_a_step() {
    stops_within_a_second("training", Duration::from_millis(800), |lm| {
        let example = lm
            .pair(PARIS, RIO)?
            .at("Paris", "Rio")?
            .with_target(lm.token(" Brazil")?);
        let mut iv = Intervention::random_rotation(lm.hidden_size(), 64, 0, &lm.device())?;
        let examples = vec![example; 64];
        let config = DasConfig::new(Site::block_output(9), 1000).with_batch_size(64);
        train::train(lm, &mut iv, &examples, &config, |_| {})
    });
}

#[test]
fn a_big_batch_stops() {
    stops_within_a_second("patch_pairs", Duration::from_millis(300), |lm| {
        let pair = lm.pair(PARIS, RIO)?.at("Paris", "Rio")?;
        let pairs = vec![pair; 1024];
        lm.patch_pairs(&pairs, &[Intervention::Replace.at(Site::block_output(9))])
    });
}

#[test]
fn generation_stops() {
    stops_within_a_second("generate", Duration::from_millis(300), |lm| {
        lm.generate(&lm.prompt(PARIS)?, 1500)
    });
}
