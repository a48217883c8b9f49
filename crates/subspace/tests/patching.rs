//! Patching semantics: identities that must hold whatever the model, and the tutorial's residual
//! patch against PyTorch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{CONTINENT, LANGUAGE, PARIS, RIO, smollm};
use subspace::patch::PatchSpec;
use subspace::{Component, Intervention, Pair, Site};

#[test]
fn patching_layer0_everywhere_from_a_same_length_source_gives_the_source_run() {
    let lm = smollm();
    let base = lm.prompt(PARIS).unwrap();
    let source = lm.prompt(RIO).unwrap();
    assert_eq!(base.len(), source.len());
    let src = lm.trace(&source).unwrap();
    let site = Site::block_output(0);
    let patches: Vec<PatchSpec> = (0..base.len())
        .map(|p| PatchSpec {
            site,
            position: p,
            source: src.vector(site, p).unwrap(),
            intervention: Intervention::Replace,
        })
        .collect();
    let patched = lm.patch_vectors(&base, &patches).unwrap();
    let want = lm.predict(&source).unwrap();
    let diff = common::max_abs_diff(&common::log(&patched.probs), &common::log(&want.probs));
    assert!(diff < 1e-3, "log-prob diff {diff}");
    assert_eq!(patched.argmax().token, " Brazil");

    // Patching with the base's own vectors changes nothing.
    let own = lm.trace(&base).unwrap();
    let patches: Vec<PatchSpec> = (0..base.len())
        .map(|p| PatchSpec {
            site,
            position: p,
            source: own.vector(site, p).unwrap(),
            intervention: Intervention::Replace,
        })
        .collect();
    let same = lm.patch_vectors(&base, &patches).unwrap();
    let clean = lm.predict(&base).unwrap();
    assert!(common::max_abs_diff(&same.probs, &clean.probs) < 1e-6);
}

#[test]
fn subspace_and_neuron_patches_reduce_to_residual_patching_at_the_extremes() {
    let lm = smollm();
    let d = lm.hidden_size();
    let device = lm.device();
    let pair = lm.pair(PARIS, RIO).unwrap().at("Paris", "Rio").unwrap();
    let base = pair.base.clone();
    let site = Site::block_output(9);
    let run = |iv: &Intervention| lm.patch(&pair, &iv.clone().at(site)).unwrap().after.probs;

    let residual = run(&Intervention::Replace);
    // The unpatched run through the same code path (no edits).
    let clean = lm.patch_vectors(&base, &[]).unwrap().probs;
    assert!(common::max_abs_diff(&clean, &lm.predict(&base).unwrap().probs) < 1e-5);
    let all_dims = run(&Intervention::random_rotation(d, d, 7, &device).unwrap());
    let no_dims = run(&Intervention::random_rotation(d, 0, 7, &device).unwrap());
    let all_neurons = run(&Intervention::Neurons((0..d).collect()));
    assert!(common::max_abs_diff(&all_dims, &residual) < 1e-4);
    assert_eq!(
        common::max_abs_diff(&no_dims, &clean),
        0.0,
        "0 dims must be exactly the identity"
    );
    assert_eq!(common::max_abs_diff(&all_neurons, &residual), 0.0);
    // And a middle case is neither.
    let some = run(&Intervention::random_rotation(d, 64, 7, &device).unwrap());
    assert!(
        common::max_abs_diff(&some, &residual) > 1e-3 && common::max_abs_diff(&some, &clean) > 1e-4
    );
}

#[test]
fn the_tutorials_literal_unrotation_scrambles_the_base_even_with_zero_dims() {
    let lm = smollm();
    let d = lm.hidden_size();
    let pair = lm.pair(PARIS, RIO).unwrap().at("Paris", "Rio").unwrap();
    let Intervention::Rotated(mut r) =
        Intervention::random_rotation(d, 0, 1, &lm.device()).unwrap()
    else {
        unreachable!()
    };
    r.unrotate = subspace::Unrotate::TutorialLiteral;
    let p = lm
        .patch(&pair, &Intervention::Rotated(r).at(Site::block_output(9)))
        .unwrap()
        .after;
    assert!(p.prob_of(" France").unwrap() < 0.3, "{:?}", p.top(3));
}

#[test]
fn residual_patch_matches_pytorch_hooks() {
    let lm = smollm();
    let fix = common::fixtures();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fix.join("residual_patch.json")).unwrap())
            .unwrap();
    let residual = Intervention::Replace.at(Site::block_output(9));
    for (i, base) in [PARIS, CONTINENT, LANGUAGE].iter().enumerate() {
        assert_eq!(meta["cases"][i]["base"].as_str().unwrap(), *base);
        let pair = lm.pair(base, RIO).unwrap().at("Paris", "Rio").unwrap();
        let got = lm.patch(&pair, &residual).unwrap().after;
        let want_logits = common::read_f32(
            &fix.join("residual_patch_logits.safetensors"),
            &format!("patched.{i}"),
        );
        // Compare log-probabilities (logits up to their log-sum-exp).
        let lse = {
            let m = want_logits
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            m + want_logits.iter().map(|v| (v - m).exp()).sum::<f32>().ln()
        };
        let want: Vec<f32> = want_logits.iter().map(|v| v - lse).collect();
        let diff = common::max_abs_diff(&common::log(&got.probs), &want);
        assert!(diff <= 2e-3, "case {i}: max |diff| {diff}");
    }
    let paris = lm.pair(PARIS, RIO).unwrap().at("Paris", "Rio").unwrap();
    let top = lm.patch(&paris, &residual).unwrap().after.argmax();
    assert_eq!(top.token, " Brazil");
    assert!((top.prob - 0.48).abs() < 0.02);
}

#[test]
fn attention_and_mlp_output_sites_are_distinct_and_consistent() {
    let lm = smollm();
    let pair = lm.pair(PARIS, RIO).unwrap().at("Paris", "Rio").unwrap();
    let base = pair.base.clone();
    let src = lm.trace(&pair.source).unwrap();
    let patched_at = |site| {
        lm.patch(&pair, &Intervention::Replace.at(site))
            .unwrap()
            .after
            .probs
    };
    let at = |c| patched_at(Site::new(5, c));
    // Block input of layer l+1 is block output of layer l.
    let a = at(Component::BlockOutput);
    let b = patched_at(Site::new(6, Component::BlockInput));
    assert!(common::max_abs_diff(&a, &b) < 1e-6);
    let attn = at(Component::AttentionOutput);
    let mlp = at(Component::MlpOutput);
    assert!(common::max_abs_diff(&attn, &mlp) > 1e-4);
    // Zeroing an attention output changes the prediction; adding a zero vector does not.
    let zero = lm
        .patch_vectors(
            &base,
            &[subspace::patch::PatchSpec {
                site: Site::new(5, Component::AttentionOutput),
                position: 3,
                source: src
                    .vector(Site::new(5, Component::AttentionOutput), 3)
                    .unwrap()
                    .zeros_like(),
                intervention: Intervention::Add,
            }],
        )
        .unwrap();
    assert!(common::max_abs_diff(&zero.probs, &lm.predict(&base).unwrap().probs) < 1e-6);
}

#[test]
fn out_of_range_inputs_are_clear_errors() {
    let lm = smollm();
    let pair = lm.pair(PARIS, RIO).unwrap().at("Paris", "Rio").unwrap();
    let e = lm
        .patch(&pair, &Intervention::Replace.at(Site::block_output(30)))
        .unwrap_err();
    assert!(e.to_string().contains("layers 0 to 29"), "{e}");
    let prompts = lm.pair(PARIS, RIO).unwrap();
    let e = prompts.clone().at_positions(9, 3).unwrap_err();
    assert!(
        e.to_string().contains("position 9") && e.to_string().contains("base"),
        "{e}"
    );
    let e = prompts.at_positions(3, 12).unwrap_err();
    assert!(e.to_string().contains("source"), "{e}");
    let e = lm
        .patch(
            &pair,
            &Intervention::Neurons(vec![5000]).at(Site::block_output(9)),
        )
        .unwrap_err();
    assert!(e.to_string().contains("5000"), "{e}");
    assert!(Intervention::random_rotation(576, 577, 0, &lm.device()).is_err());
    assert!(lm.prompt("").is_err());
}

#[test]
fn a_batch_of_pairs_of_different_lengths_matches_patching_each_alone() {
    let lm = smollm();
    let site = Site::block_output(9);
    let pairs = [
        (PARIS, RIO, 3, 3),
        (
            "The city of Tokyo is in the country of",
            "The city of Rio de Janeiro is in the country of",
            3,
            5,
        ),
        (LANGUAGE, "The city of Berlin is in the country of", 3, 3),
    ];
    let pairs: Vec<Pair> = pairs
        .iter()
        .map(|&(b, s, bp, sp)| lm.pair(b, s).unwrap().at_positions(bp, sp).unwrap())
        .collect();
    let placed = Intervention::random_rotation(lm.hidden_size(), 32, 3, &lm.device())
        .unwrap()
        .at(site);
    let batched = lm
        .patch_pairs(&pairs, std::slice::from_ref(&placed))
        .unwrap();
    // The same pairs 100 times over: more tokens than one forward pass takes
    // (TOKENS_PER_FORWARD), so the call splits them into passes; each must still give its
    // pair's own answer.
    let many: Vec<Pair> = pairs.iter().cycle().take(300).cloned().collect();
    let longest = many
        .iter()
        .map(|p| p.base.len().max(p.source.len()))
        .max()
        .unwrap();
    assert!(many.len() * longest > subspace::engine::TOKENS_PER_FORWARD);
    let split = lm
        .patch_pairs(&many, std::slice::from_ref(&placed))
        .unwrap();
    for (k, got) in split.iter().enumerate() {
        let diff = common::max_abs_diff(&got.probs, &batched[k % pairs.len()].probs);
        assert!(diff < 1e-4, "pair {k}: {diff}");
    }
    for (pair, got) in pairs.iter().zip(&batched) {
        // Alone: the source vector read from the source prompt's own run.
        let source = lm.trace(&pair.source).unwrap();
        let alone = lm
            .patch_vectors(
                &pair.base,
                &[PatchSpec {
                    site,
                    position: pair.base_position(),
                    source: source.vector(site, pair.source_position()).unwrap(),
                    intervention: placed.intervention.clone(),
                }],
            )
            .unwrap();
        let diff = common::max_abs_diff(&got.probs, &alone.probs);
        assert!(diff < 1e-4, "{:?}: {diff}", pair.base.text);
    }
}

/// The sweep (one batch per layer, started from the clean run's input to that layer) must give,
/// cell by cell, what a single patch gives, and the single patch is pinned to PyTorch hooks.
#[test]
fn the_layer_by_position_sweep_agrees_with_single_patches() {
    let lm = smollm();
    let base = lm.prompt(PARIS).unwrap();
    let source = lm.trace(&lm.prompt(RIO).unwrap()).unwrap();
    let brazil = lm.token(" Brazil").unwrap();
    for component in [Component::BlockOutput, Component::AttentionOutput] {
        let sweep = subspace::sweep::residual_sweep(lm, &base, &source, brazil, component).unwrap();
        assert_eq!((sweep.len(), sweep[0].len()), (30, 9));
        for (layer, position) in [(0, 0), (0, 3), (9, 3), (17, 8), (29, 8), (29, 2)] {
            let site = Site::new(layer, component);
            let single = lm
                .patch_vectors(
                    &base,
                    &[PatchSpec {
                        site,
                        position,
                        source: source.vector(site, position).unwrap(),
                        intervention: Intervention::Replace,
                    }],
                )
                .unwrap()
                .prob(brazil);
            let got = sweep[layer][position];
            assert!(
                (got - single).abs() < 1e-4,
                "{component:?} layer {layer} position {position}: sweep {got}, patch {single}"
            );
        }
    }
}
