//! A notebook user's mistakes: each a typed error that says what is wrong, never a panic of the
//! kernel. Prompts and predictions of another model, custom interventions of the wrong shape,
//! prompts longer than the context, bad numbers, two writers of one file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::Tensor;
use common::{PARIS, RIO, smollm};
use subspace::intervention::{LowRankSpace, RotatedSpace};
use subspace::patch::PatchSpec;
use subspace::{DasConfig, Intervention, Patched, Site, SubspaceError, Unrotate, train};

/// Runs `f`, failing the test (not aborting it) if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("{what} panicked"))
}

#[test]
fn prompts_and_predictions_of_another_model_are_refused() {
    let (smol, tiny) = (smollm(), common::tiny());
    let foreign = tiny.pair("the quick brown fox", "a lazy dog sat").unwrap();
    let foreign = foreign.at_positions(1, 1).unwrap();
    let e = no_panic("patch", || {
        smol.patch(&foreign, &Intervention::Replace.at(Site::block_output(9)))
    })
    .unwrap_err();
    assert!(matches!(e, SubspaceError::OtherModel { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer"), "{e}");
    let e = no_panic("predict", || smol.predict(&foreign.base)).unwrap_err();
    assert!(matches!(e, SubspaceError::OtherModel { .. }), "{e}");
    let e = no_panic("trace", || smol.trace(&foreign.source)).unwrap_err();
    assert!(matches!(e, SubspaceError::OtherModel { .. }), "{e}");
    let e = no_panic("generate", || smol.generate(&foreign.base, 2)).unwrap_err();
    assert!(matches!(e, SubspaceError::OtherModel { .. }), "{e}");
    // A source trace of the tiny model in a sweep of SmolLM2.
    let base = smol.prompt(PARIS).unwrap();
    let tiny_trace = tiny
        .trace(&tiny.prompt("a b c d e f g h i").unwrap())
        .unwrap();
    let e = no_panic("sweep", || {
        subspace::sweep::residual_sweep(
            smol,
            &base,
            &tiny_trace,
            0,
            subspace::Component::BlockOutput,
        )
    })
    .unwrap_err();
    assert!(matches!(e, SubspaceError::OtherModel { .. }), "{e}");

    // Comparing predictions of two vocabularies.
    let ours = smol.predict(&base).unwrap();
    let theirs = tiny.predict(&tiny.prompt("the quick").unwrap()).unwrap();
    let e = no_panic("Patched::new", || {
        Patched::new("mixed".into(), ours.clone(), theirs.clone())
    })
    .unwrap_err();
    assert!(matches!(e, SubspaceError::OtherModel { .. }), "{e}");
    assert!(ours.check_comparable(&theirs).is_err());
    assert!(ours.check_comparable(&ours).is_ok());
}

#[test]
fn custom_interventions_of_the_wrong_shape_are_refused() {
    let lm = smollm();
    let device = lm.device();
    let pair = lm.pair(PARIS, RIO).unwrap().at("Paris", "Rio").unwrap();
    let site = Site::block_output(9);
    let wrong = [
        Intervention::Rotated(RotatedSpace {
            rotation: Tensor::zeros([64, 64], &device),
            n_dims: 1,
            unrotate: Unrotate::Inverse,
        }),
        Intervention::Rotated(RotatedSpace {
            rotation: Tensor::zeros([576, 576], &device),
            n_dims: 577,
            unrotate: Unrotate::Inverse,
        }),
        Intervention::LowRank(LowRankSpace {
            basis: Tensor::zeros([64, 2], &device),
        }),
        Intervention::Neurons(vec![]),
        Intervention::Neurons(vec![3, 576]),
    ];
    for iv in wrong {
        let kind = iv.kind();
        let e = no_panic(kind, || lm.patch(&pair, &iv.clone().at(site))).unwrap_err();
        assert!(
            matches!(e, SubspaceError::BadIntervention(_)),
            "{kind}: {e}"
        );
        let e = no_panic(kind, || {
            lm.generate_patched(&pair, &[iv.clone().at(site)], 2)
        })
        .unwrap_err();
        assert!(
            matches!(e, SubspaceError::BadIntervention(_)),
            "{kind}: {e}"
        );
        // Training and saving check the same way.
        let mut trained = iv.clone();
        let example = pair.clone().with_target(lm.token(" Brazil").unwrap());
        let e = no_panic(kind, || {
            train::train(
                lm,
                &mut trained,
                &[example],
                &DasConfig::new(site, 1),
                |_| {},
            )
        });
        assert!(e.is_err(), "{kind}");
        let dir = tempfile::tempdir().unwrap();
        let e = subspace::store::save(
            &dir.path().join("x.safetensors"),
            lm,
            site,
            &iv,
            serde_json::json!({}),
        );
        assert!(e.is_err(), "{kind}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{kind}: left a file"
        );
    }
    // A source vector of the wrong length.
    let e = lm
        .patch_vectors(
            &pair.base,
            &[PatchSpec {
                site,
                position: 3,
                source: Tensor::zeros([64], &device),
                intervention: Intervention::Replace,
            }],
        )
        .unwrap_err();
    assert!(e.to_string().contains("576"), "{e}");
    // Changing a rotation's dims, and non-rotations.
    let r = Intervention::random_rotation(576, 1, 0, &device).unwrap();
    assert!(r.clone().with_n_dims(577).is_err());
    assert!(Intervention::Replace.with_n_dims(1).is_err());
    assert!(
        Intervention::Replace
            .with_unrotate(Unrotate::TutorialLiteral)
            .is_err()
    );
}

#[test]
fn words_that_are_not_in_the_prompt_name_its_tokens() {
    let lm = smollm();
    let e = lm.pair(PARIS, RIO).unwrap().at("Lyon", "Rio").unwrap_err();
    match &e {
        SubspaceError::WordNotInPrompt {
            which,
            word,
            tokens,
        } => {
            assert_eq!((*which, word.as_str()), ("base", "Lyon"));
            assert_eq!(tokens[3], " Paris");
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("Paris"), "{e}");
    let e = lm
        .pair(PARIS, RIO)
        .unwrap()
        .at("Paris", "Paris")
        .unwrap_err();
    assert!(
        matches!(
            &e,
            SubspaceError::WordNotInPrompt {
                which: "source",
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        lm.prompt("").unwrap_err(),
        SubspaceError::EmptyPrompt
    ));
}

/// SmolLM2's context is 8192 tokens: "Paris " × 9000 is at least 9000 tokens, refused at
/// tokenization, before any forward pass, naming both lengths and
/// what one layer's attention scores would take.
#[test]
fn a_prompt_longer_than_the_context_is_refused_before_running() {
    let lm = smollm();
    let text = "Paris ".repeat(9000);
    let start = std::time::Instant::now();
    let e = lm.prompt(&text).unwrap_err();
    match &e {
        SubspaceError::PromptTooLong {
            len,
            max,
            attention_mib,
        } => {
            assert_eq!(*max, 8192);
            assert!(*len >= 9000, "{len}");
            // 9 heads × len² × 4 bytes.
            let want = (9 * (*len as u64) * (*len as u64) * 4) >> 20;
            assert_eq!(*attention_mib, want);
        }
        other => panic!("{other}"),
    }
    let SubspaceError::PromptTooLong { len, .. } = e else {
        unreachable!()
    };
    let msg = e.to_string();
    assert!(
        msg.contains("8192") && msg.contains(&len.to_string()),
        "{msg}"
    );
    // Refused by counting, not by running: far below one forward pass of 9000 tokens (minutes).
    assert!(start.elapsed().as_secs() < 30);
    // Generating past the context is refused too.
    let p = lm.prompt(PARIS).unwrap();
    assert!(matches!(
        lm.generate(&p, 8190).unwrap_err(),
        SubspaceError::PromptTooLong { .. }
    ));
}

#[test]
fn an_example_weight_that_is_not_positive_is_refused() {
    let lm = common::tiny();
    for w in [0.0, -1.0, f32::NAN] {
        let example = common::tiny_example(&lm).weighted(w);
        let e = train::DasObjective::new(&lm, Site::block_output(0), &[example], None)
            .err()
            .unwrap();
        assert!(
            matches!(
                &e,
                SubspaceError::BadSetting {
                    name: "example weight",
                    ..
                }
            ),
            "{w}: {e}"
        );
    }
}

#[test]
fn bad_numbers_are_refused_before_any_step() {
    let lm = common::tiny();
    let example = common::tiny_example(&lm);
    let site = Site::block_output(0);
    let base = DasConfig::new(site, 3);
    let cases: Vec<(&str, DasConfig)> = vec![
        ("lr", base.clone().with_lr(f64::NAN)),
        ("lr", base.clone().with_lr(-1e-3)),
        ("lr", base.clone().with_lr(0.0)),
        ("steps", DasConfig::new(site, 0)),
        ("batch size", base.clone().with_batch_size(0)),
        (
            "warm-up",
            base.clone().with_schedule(train::LrSchedule {
                warmup: 3,
                decay: train::Decay::Linear,
            }),
        ),
        (
            "checkpoint interval",
            base.clone().with_checkpoint("/tmp/never-written.ckpt", 0),
        ),
    ];
    for (name, config) in cases {
        let mut iv = Intervention::random_rotation(lm.hidden_size(), 2, 0, &lm.device()).unwrap();
        let mut steps = 0;
        let e = train::train(
            &lm,
            &mut iv,
            std::slice::from_ref(&example),
            &config,
            |_| steps += 1,
        )
        .unwrap_err();
        match &e {
            SubspaceError::BadSetting { name: n, .. } => assert_eq!(*n, name, "{e}"),
            other => panic!("{name}: {other}"),
        }
        assert_eq!(steps, 0, "{name}: a step ran before the check");
    }
    assert!(!std::path::Path::new("/tmp/never-written.ckpt").exists());
}

#[test]
fn a_ravel_run_with_batch_0_is_refused_at_once() {
    use subspace::ravel::{Method, RavelData, RunConfig};
    let lm = smollm();
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let labels = subspace::ravel::Labels::first_probe(None, lm).unwrap();
    for (name, edit) in [
        (
            "batch",
            (|c: &mut RunConfig| c.batch = 0) as fn(&mut RunConfig),
        ),
        ("steps", |c| c.steps = 0),
        ("lr", |c| c.lr = Some(f64::INFINITY)),
        ("train pairs", |c| c.n_train = 0),
        ("epochs", |c| c.epochs = Some(0.0)),
        ("warm-up", |c| c.warmup = 1.0),
        ("isolate weight", |c| c.isolate_weight = f64::NAN),
        ("save path", |c| {
            c.save = Some("/no/such/folder/run.safetensors".into());
        }),
    ] {
        let mut config = RunConfig::new(Method::Das, 9);
        edit(&mut config);
        let e = subspace::ravel::run(lm, &data, &labels, &config).unwrap_err();
        assert!(
            matches!(&e, SubspaceError::BadSetting { name: n, .. } if *n == name),
            "{name}: {e}"
        );
    }
}

/// Two writers of one intervention file: each save either lands whole or is told the file is
/// busy; the file on disk is always one of the saved interventions, never a mix.
#[test]
fn concurrent_saves_to_one_path_never_tear_the_file() {
    let lm = common::tiny();
    let site = Site::block_output(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.safetensors");
    let ivs: Vec<Intervention> = (0..4)
        .map(|s| Intervention::random_rotation(lm.hidden_size(), 4, s, &lm.device()).unwrap())
        .collect();
    let mut busy = 0;
    std::thread::scope(|scope| {
        let handles: Vec<_> = ivs
            .iter()
            .map(|iv| {
                let (lm, path) = (&lm, &path);
                scope.spawn(move || {
                    (0..20)
                        .map(|_| subspace::store::save(path, lm, site, iv, serde_json::json!({})))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for r in h.join().unwrap() {
                match r {
                    Ok(()) => {}
                    Err(SubspaceError::Busy { path: p, .. }) => {
                        assert_eq!(p, path);
                        busy += 1;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    });
    let saved = subspace::store::load(&path, &lm).unwrap();
    let Intervention::Rotated(got) = &saved.intervention else {
        panic!()
    };
    let got = subspace::readout::to_host(got.rotation.clone()).unwrap();
    let matches_one = ivs.iter().any(|iv| {
        let Intervention::Rotated(r) = iv else {
            return false;
        };
        subspace::readout::to_host(r.rotation.clone()).unwrap() == got
    });
    assert!(
        matches_one,
        "the file is not any one of the saved interventions"
    );
    // Only the file remains: no lock or temporary file left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    eprintln!("{busy} of 80 saves were told the file was busy");

    // A lock held (by another process, here another handle) is reported, not waited on.
    let _held = subspace::store::FileLock::acquire(&path).unwrap();
    let e = subspace::store::save(&path, &lm, site, &ivs[0], serde_json::json!({})).unwrap_err();
    assert!(matches!(e, SubspaceError::Busy { .. }), "{e}");
    assert!(e.to_string().contains("another process"), "{e}");
}

/// Training with a checkpoint holds its lock for the whole run: a second run on the same
/// checkpoint is told at once, before any step.
#[test]
fn a_second_run_on_a_checkpoint_in_use_is_told_at_once() {
    let lm = common::tiny();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("run.ckpt");
    let _held = subspace::store::FileLock::acquire(&ck).unwrap();
    let example = common::tiny_example(&lm);
    let mut iv = Intervention::random_rotation(lm.hidden_size(), 2, 0, &lm.device()).unwrap();
    let config = DasConfig::new(Site::block_output(0), 5).with_checkpoint(&ck, 1);
    let mut steps = 0;
    let e = train::train(&lm, &mut iv, &[example], &config, |_| steps += 1).unwrap_err();
    assert!(matches!(e, SubspaceError::Busy { .. }), "{e}");
    assert_eq!(steps, 0);
    assert!(!ck.exists());
}

/// The stop flag (what Ctrl-C raises in the CLI) ends training after the current step with the
/// checkpoint written; running again resumes to exactly the uninterrupted result.
#[test]
fn a_raised_stop_flag_checkpoints_and_the_resume_is_exact() {
    let lm = common::tiny();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("run.ckpt");
    let example = common::tiny_example(&lm);
    let fresh = || Intervention::random_rotation(lm.hidden_size(), 4, 1, &lm.device()).unwrap();
    let site = Site::block_output(0);
    let steps = 12;

    let mut straight = fresh();
    let want = train::train(
        &lm,
        &mut straight,
        std::slice::from_ref(&example),
        &DasConfig::new(site, steps).with_lr(1e-2),
        |_| {},
    )
    .unwrap();

    let stop = subspace::StopFlag::new();
    let config = DasConfig::new(site, steps)
        .with_lr(1e-2)
        .with_checkpoint(&ck, 100)
        .with_stop(stop.clone());
    let mut first = fresh();
    let e = train::train(
        &lm,
        &mut first,
        std::slice::from_ref(&example),
        &config,
        |s| {
            if s.step == 5 {
                stop.raise();
            }
        },
    )
    .unwrap_err();
    // Raised during step 5's report: the loop stops after step 5... or 6 if the flag is read
    // after the next step; the error says which, and the checkpoint holds it.
    let stopped = match e {
        SubspaceError::Interrupted {
            step: Some(step),
            resume,
        } => {
            assert!(resume.contains("run.ckpt"), "{resume}");
            step
        }
        other => panic!("{other}"),
    };
    assert!((5..=6).contains(&stopped), "{stopped}");
    assert!(ck.exists());

    let config = DasConfig::new(site, steps)
        .with_lr(1e-2)
        .with_checkpoint(&ck, 100);
    let mut resumed = fresh();
    let got = train::train(
        &lm,
        &mut resumed,
        std::slice::from_ref(&example),
        &config,
        |_| {},
    )
    .unwrap();
    assert_eq!(got.resumed_after, Some(stopped));
    assert_eq!(got.losses, want.losses);
    let host = |iv: &Intervention| match iv {
        Intervention::Rotated(r) => subspace::readout::to_host(r.rotation.clone()).unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(host(&resumed), host(&straight));
}

/// A batch that fits the context but not the machine (2000 prompts of 4001 tokens: terabytes of
/// attention scores) is refused by its estimate before anything is allocated, naming both sizes.
#[test]
fn a_batch_too_big_for_memory_is_refused_before_allocating() {
    let lm = smollm();
    let long = lm.prompt(&"Paris ".repeat(4000)).unwrap();
    // One forward pass of 2000 such prompts (as a sweep over a 2000-token prompt would make):
    // batched calls split their prompts into passes of at most TOKENS_PER_FORWARD tokens, so
    // this is the estimate each pass is checked against before it allocates.
    let start = std::time::Instant::now();
    let e = lm.check_memory(2000, long.len(), false).unwrap_err();
    match &e {
        SubspaceError::TooBigForMemory {
            need_mib,
            available_mib,
            ..
        } => {
            // 2000 × 9 heads × 4001² × 2 (scores, probabilities) × 4 bytes alone.
            let scores_mib = (2000u64 * 9 * 4001 * 4001 * 2 * 4) >> 20;
            assert!(*need_mib >= scores_mib, "{need_mib} < {scores_mib}");
            assert!(need_mib > available_mib);
        }
        other => panic!("{other}"),
    }
    assert!(
        e.to_string().contains("2000 prompt(s) of 4001 tokens"),
        "{e}"
    );
    assert!(start.elapsed().as_secs() < 10);
    // The same prompt alone fits and runs.
    assert!(lm.check_memory(1, long.len(), true).is_ok());
}
