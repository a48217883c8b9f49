//! DAS training: the tutorial's run, gradients against finite differences, orthogonality over
//! long runs, and saving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use burn::tensor::{Tensor, TensorData};
use common::{CONTINENT, LANGUAGE, PARIS, RIO, smollm};
use subspace::intervention::orthogonal;
use subspace::readout::to_host;
use subspace::site::Component;
use subspace::train::{self, DasObjective};
use subspace::{DasConfig, Example, Intervention, LanguageModel, Pair, Site};

fn tutorial_pair(lm: &LanguageModel) -> Pair {
    lm.pair(PARIS, RIO).unwrap().at("Paris", "Rio").unwrap()
}

fn tutorial_example(lm: &LanguageModel) -> Example {
    tutorial_pair(lm).with_target(lm.token(" Brazil").unwrap())
}

#[test]
fn das_on_the_tutorial_pair_moves_the_country_and_keeps_the_continent() {
    let lm = smollm();
    let site = Site::block_output(9);
    let mut iv = Intervention::random_rotation(lm.hidden_size(), 1, 0, &lm.device()).unwrap();
    let mut seen = Vec::new();
    let report = train::train(
        lm,
        &mut iv,
        &[tutorial_example(lm)],
        &DasConfig::new(site, 10),
        |s| seen.push(s.step),
    )
    .unwrap();
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    assert_eq!(report.losses.len(), 10);
    assert!(report.losses[9] < report.losses[0], "{:?}", report.losses);

    let pair = tutorial_pair(lm);
    let placed = iv.at(site);
    let country = lm.patch(&pair, &placed).unwrap().after;
    let top = country.argmax();
    assert_eq!(top.token, " Brazil", "{:?}", country.top(3));
    assert!(top.prob >= 0.5, "{:?}", country.top(3));
    let on = |base: &str| {
        let pair = pair.with_base(lm.prompt(base).unwrap(), "Paris").unwrap();
        lm.patch(&pair, &placed).unwrap().after
    };
    let continent = on(CONTINENT);
    assert_eq!(
        continent.argmax().token,
        " Europe",
        "{:?}",
        continent.top(3)
    );
    let language = on(LANGUAGE);
    eprintln!(
        "after DAS: country {:?}\ncontinent {:?}\nlanguage {:?}",
        country.top(3),
        continent.top(3),
        language.top(3)
    );
}

#[test]
fn rotation_gradient_agrees_with_finite_differences() {
    let lm = smollm();
    let d = lm.hidden_size();
    let device = lm.device();
    let objective =
        DasObjective::new(lm, Site::block_output(9), &[tutorial_example(lm)], None).unwrap();
    let host = |m: &[f64], shape: [usize; 2]| {
        Tensor::<2>::from_data(
            TensorData::new(m.iter().map(|&v| v as f32).collect::<Vec<_>>(), shape),
            &device,
        )
    };
    let rotation = orthogonal::random_orthogonal(d, 3);
    let base = host(&rotation[..2 * d], [2, d]);
    // A point away from L = 0, so the exponential's higher terms are exercised too.
    let l0: Vec<f64> = orthogonal::gaussian(d * d, 5)
        .iter()
        .map(|v| v * 2e-3)
        .collect();
    let (_, grad) = objective
        .loss_and_grad_exp(&base, &host(&l0, [d, d]), 0)
        .unwrap();
    let grad: Vec<f64> = to_host(grad).unwrap().into_iter().map(f64::from).collect();
    let dir = orthogonal::gaussian(d * d, 11);
    let eps = 1e-3;
    let at = |s: f64| {
        let l: Vec<f64> = l0.iter().zip(&dir).map(|(a, u)| a + s * u).collect();
        let (loss, _) = objective
            .loss_and_grad_exp(&base, &host(&l, [d, d]), 0)
            .unwrap();
        f64::from(loss)
    };
    let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
    let analytic: f64 = grad.iter().zip(&dir).map(|(g, u)| g * u).sum();
    let rel = (numeric - analytic).abs() / analytic.abs().max(1e-2);
    assert!(rel < 0.03, "numeric {numeric}, analytic {analytic}");
}

#[test]
fn low_rank_frame_gradient_agrees_with_finite_differences() {
    let lm = smollm();
    let d = lm.hidden_size();
    let objective =
        DasObjective::new(lm, Site::block_output(9), &[tutorial_example(lm)], None).unwrap();
    let k = 2;
    let mut frame = orthogonal::gaussian(k * d, 3);
    orthogonal::orthonormalize_rows(&mut frame, k, d);
    let to_tensor = |m: &[f64]| {
        Tensor::<2>::from_data(
            TensorData::new(m.iter().map(|&v| v as f32).collect::<Vec<_>>(), [k, d]),
            &lm.device(),
        )
    };
    let (_, grad) = objective.loss_and_grad(&to_tensor(&frame), 0).unwrap();
    let grad: Vec<f64> = to_host(grad).unwrap().into_iter().map(f64::from).collect();
    // A unit direction mixing the gradient's and a random one: the derivative along it is large
    // enough to rise above f32 rounding of the loss, and not trivially the gradient itself.
    let unit = |v: Vec<f64>| {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<f64>>()
    };
    let (g, r) = (unit(grad.clone()), unit(orthogonal::gaussian(k * d, 11)));
    let dir = unit(g.iter().zip(&r).map(|(a, b)| 0.6 * a + 0.8 * b).collect());
    let eps = 1e-2;
    let at = |s: f64| {
        let m: Vec<f64> = frame.iter().zip(&dir).map(|(f, u)| f + s * u).collect();
        let iv = Intervention::LowRank(subspace::intervention::LowRankSpace {
            basis: to_tensor(&m).transpose(),
        });
        f64::from(objective.loss(&iv, 0).unwrap())
    };
    let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
    let analytic: f64 = grad.iter().zip(&dir).map(|(g, u)| g * u).sum();
    let rel = (numeric - analytic).abs() / analytic.abs().max(1e-3);
    assert!(rel < 0.02, "numeric {numeric}, analytic {analytic}");
}

#[test]
fn rotation_stays_orthogonal_over_a_thousand_steps() {
    let lm = common::tiny();
    let d = lm.hidden_size();
    let ex = common::tiny_example(&lm);
    let mut iv = Intervention::random_rotation(d, 8, 1, &lm.device()).unwrap();
    train::train(
        &lm,
        &mut iv,
        &[ex],
        &DasConfig::new(Site::block_output(0), 1000).with_lr(1e-2),
        |_| {},
    )
    .unwrap();
    let Intervention::Rotated(r) = &iv else {
        unreachable!()
    };
    let m = to_host(r.rotation.clone()).unwrap();
    let err = orthogonal::orthogonality_error(&m, d, d);
    assert!(err < 1e-4, "max |R Rᵀ − I| = {err}");
}

#[test]
fn a_saved_intervention_reloads_bit_exactly_and_refuses_another_model() {
    let lm = smollm();
    let site = Site::block_output(9);
    let mut iv = Intervention::random_rotation(lm.hidden_size(), 4, 5, &lm.device()).unwrap();
    train::train(
        lm,
        &mut iv,
        &[tutorial_example(lm)],
        &DasConfig::new(site, 3),
        |_| {},
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paris-country.safetensors");
    subspace::store::save(&path, lm, site, &iv, serde_json::json!({"steps": 3})).unwrap();
    let loaded = subspace::store::load(&path, lm).unwrap();
    assert_eq!(loaded.site, site);
    let (Intervention::Rotated(a), Intervention::Rotated(b)) = (&iv, &loaded.intervention) else {
        panic!()
    };
    assert_eq!(a.n_dims, b.n_dims);
    let (a, b) = (
        to_host(a.rotation.clone()).unwrap(),
        to_host(b.rotation.clone()).unwrap(),
    );
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    let pair = tutorial_pair(lm);
    let p1 = lm.patch(&pair, &iv.at(site)).unwrap().after;
    let p2 = lm
        .patch(&pair, &loaded.intervention.at(site))
        .unwrap()
        .after;
    assert_eq!(p1.probs, p2.probs);

    let other = common::tiny();
    let err = subspace::store::load(&path, &other)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("made for") && err.contains("hidden 576"),
        "{err}"
    );
    // Nothing but the file itself was left in the directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// The training objective (cached lower layers, cached prefix keys/values, left-padded batch,
/// LM head at the last column) must compute the same patched distribution as patching each
/// example alone, which is what evaluation uses and what the PyTorch-hook test pins down.
#[test]
fn the_training_objective_sees_what_evaluation_sees_on_a_padded_batch() {
    use burn::tensor::activation::softmax;

    let lm = common::tiny();
    let examples = tiny_examples(&lm, &PADDED[..3]);
    let iv = Intervention::random_rotation(lm.hidden_size(), 5, 3, &lm.device()).unwrap();
    // Each distinct window its own group, and one group for the whole batch.
    for (layer, cost) in [(0, 0), (1, 0), (1, usize::MAX)] {
        let site = Site::block_output(layer);
        let objective = DasObjective::new(&lm, site, &examples, None)
            .unwrap()
            .with_window_group_cost(cost);
        let probs = to_host(softmax(objective.logits(&iv, 0).unwrap(), 1)).unwrap();
        let vocab = probs.len() / examples.len();
        for (i, e) in examples.iter().enumerate() {
            let alone = lm.patch(&e.pair, &iv.clone().at(site)).unwrap().after;
            let diff = common::max_abs_diff(&probs[i * vocab..(i + 1) * vocab], &alone.probs);
            assert!(
                diff < 1e-5,
                "layer {layer}, cost {cost}, example {i}: max |diff| {diff}"
            );
        }
    }
}

/// Prompts that share a few-shot beginning run it once (below the site and above it, bases
/// and sources alike); what each example then sees must be what patching it alone sees, where
/// nothing is shared. Three beginnings (run together, as lanes of one run; one whose prompts are
/// all patched inside it), sites on the stream and inside a block, cells before and after the
/// end of the shared beginning.
#[test]
fn prompts_sharing_a_beginning_see_what_each_sees_alone() {
    use burn::tensor::activation::softmax;

    let lm = common::tiny();
    let demos = [
        "the quick brown fox jumps over the lazy dog . the red house is near the green tree .",
        "a cat and one dog . my old car goes down the hill near the house by the tree .",
    ];
    let shared: Vec<usize> = demos.iter().map(|d| lm.prompt(d).unwrap().len()).collect();
    assert!(
        shared.iter().all(|&n| n >= 12) && shared[0] != shared[1],
        "the beginnings must be long enough to share, and of different lengths: {shared:?}"
    );
    let (demo, shared_0) = (demos[0], shared[0]);
    let tails = [
        ("one dog", "a cat", 1, 0),
        ("my old car goes down", "his new bike", 2, 2),
        ("near the tree", "one dog and a cat", 0, 3),
        ("the lazy dog jumps", "a quick fox", 3, 1),
        ("a cat", "my old car", 1, 2),
        // A read that sorts among the short ones but is long: the passes below the site take
        // the reads by length, so they run in another order than the prompts sort in.
        ("one dog", "a quick brown fox jumps", 0, 4),
    ];
    // Each tail after either beginning: three or more prompts on each, worth sharing.
    let examples: Vec<Example> = tails
        .iter()
        .enumerate()
        .flat_map(|(i, &tail)| [(i, tail, 0), (i, tail, 1)])
        .filter(|&(i, _, d)| (i + d) % 2 == 0 || i < 2)
        .map(|(_, (b, s, bp, sp), d)| {
            let (demo, shared) = (demos[d], shared[d]);
            lm.pair(&format!("{demo} {b}"), &format!("{demo} {s}"))
                .unwrap()
                .at_positions(shared + bp, shared + sp)
                .unwrap()
                .with_target(7)
        })
        .collect();
    // One example patched inside the shared beginning (its cell and its source's).
    let mut examples = examples;
    examples.push(
        lm.pair(&format!("{demo} one dog"), &format!("{demo} a cat"))
            .unwrap()
            .at_positions(shared_0 - 3, shared_0 - 5)
            .unwrap()
            .with_target(7),
    );
    // A third beginning whose prompts are all patched inside it: their passes keep none of
    // their own tokens' keys/values above the site.
    let inside = "near the green tree the red house is by the lazy dog and my old car .";
    let shared_inside = lm.prompt(inside).unwrap().len();
    for (b, s, _, _) in &tails[..4] {
        examples.push(
            lm.pair(&format!("{inside} {b}"), &format!("{inside} {s}"))
                .unwrap()
                .at_positions(shared_inside - 2, shared_inside - 4)
                .unwrap()
                .with_target(7),
        );
    }
    // The stream at two layers, one head's queries and the MLP's neurons (sites inside a block:
    // their source vectors are read inside the shared beginning's passes too).
    let sites = [
        Site::block_output(0),
        Site::block_output(1),
        Site::head(1, Component::Query, 1),
        Site::new(1, Component::MlpHidden),
    ];
    for site in sites {
        let width = lm.site_width(site).unwrap();
        let iv = Intervention::random_rotation(width, 5.min(width), 3, &lm.device()).unwrap();
        let alone: Vec<Vec<f32>> = examples
            .iter()
            .map(|e| lm.patch(&e.pair, &iv.clone().at(site)).unwrap().after.probs)
            .collect();
        let objective = DasObjective::new(&lm, site, &examples, None).unwrap();
        let probs = to_host(softmax(objective.logits(&iv, 0).unwrap(), 1)).unwrap();
        let vocab = probs.len() / examples.len();
        let pairs: Vec<_> = examples.iter().map(|e| e.pair.clone()).collect();
        let batched = lm.patch_pairs(&pairs, &[iv.clone().at(site)]).unwrap();
        for (i, a) in alone.iter().enumerate() {
            let diff = common::max_abs_diff(&probs[i * vocab..(i + 1) * vocab], a);
            assert!(
                diff < 1e-5,
                "{site}, example {i}, training: max |diff| {diff}"
            );
            let diff = common::max_abs_diff(&batched[i].probs, a);
            assert!(
                diff < 1e-5,
                "{site}, example {i}, patching: max |diff| {diff}"
            );
        }
    }
}

/// More distinct prompts than one run of the blocks takes (about 2048 tokens): the bases' and
/// the sources' passes go to the pool's threads as several runs, and each example must still
/// see what patching it alone sees, whichever run its base and its source ran in.
#[test]
fn examples_spread_over_several_runs_see_what_each_sees_alone() {
    use burn::tensor::activation::softmax;

    let lm = common::tiny();
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "red", "house", "near",
        "green", "tree", "a", "cat", "my", "old", "car", "goes", "down", "hill", "by",
    ];
    // Prompt `seed`: 40 to 70 words drawn by a generator of its own (no two share a beginning
    // worth running once).
    let text = |seed: u64| {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let n = 40 + seed as usize * 7 % 31;
        let mut word = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            words[(x >> 33) as usize % words.len()]
        };
        (0..n).map(|_| word()).collect::<Vec<_>>().join(" ")
    };
    let examples: Vec<Example> = (0..120)
        .map(|i| {
            lm.pair(&text(2 * i as u64), &text(2 * i as u64 + 1))
                .unwrap()
                .at_positions(10 + i % 20, 35 + i % 5)
                .unwrap()
                .with_target(7)
        })
        .collect();
    // The sources run up to their read position (36 to 40 tokens each).
    let bases: usize = examples.iter().map(|e| e.pair.base.ids.len()).sum();
    let sources: usize = examples
        .iter()
        .map(|e| e.pair.positions[0].source + 1)
        .sum();
    assert!(
        bases.min(sources) > 2 * 2048,
        "bases and sources must need several runs each: {bases}, {sources} tokens"
    );
    let site = Site::block_output(0);
    let iv = Intervention::random_rotation(lm.hidden_size(), 5, 3, &lm.device()).unwrap();
    let objective = DasObjective::new(&lm, site, &examples, None).unwrap();
    let probs = to_host(softmax(objective.logits(&iv, 0).unwrap(), 1)).unwrap();
    let vocab = probs.len() / examples.len();
    for (i, e) in examples.iter().enumerate() {
        let alone = lm.patch(&e.pair, &iv.clone().at(site)).unwrap().after.probs;
        let diff = common::max_abs_diff(&probs[i * vocab..(i + 1) * vocab], &alone);
        assert!(diff < 1e-5, "example {i}: max |diff| {diff}");
    }
}

/// (base, source, base position, source position) on the tiny model: prompts of different
/// lengths, so that a batch of them is padded.
const PADDED: [(&str, &str, usize, usize); 5] = [
    ("the quick brown fox jumps over the lazy", "a cat", 2, 1),
    ("one dog", "the red house is near the green tree by", 1, 6),
    ("my old car goes down the", "his new bike goes up a", 3, 3),
    ("the lazy dog jumps over", "a quick fox", 4, 2),
    ("near the green tree", "one dog and a cat", 3, 0),
];

/// Examples of `texts` with target id 7.
fn tiny_examples(lm: &LanguageModel, texts: &[(&str, &str, usize, usize)]) -> Vec<Example> {
    texts
        .iter()
        .map(|&(b, s, bp, sp)| {
            lm.pair(b, s)
                .unwrap()
                .at_positions(bp, sp)
                .unwrap()
                .with_target(7)
        })
        .collect()
}

/// Minibatches of 2 over 5 examples (3 a epoch): the given order in epoch 0, a permutation of
/// every example in each later epoch (the same for the same seed, another for another seed),
/// and each minibatch, whatever its order and padding, sees what patching each pair alone sees.
#[test]
fn minibatches_are_reshuffled_each_epoch_and_still_see_what_evaluation_sees() {
    use burn::tensor::activation::softmax;

    let lm = common::tiny();
    let examples = tiny_examples(&lm, &PADDED);
    let site = Site::block_output(1);
    let objective = DasObjective::new(&lm, site, &examples, Some(2))
        .unwrap()
        .with_order_seed(11);
    assert_eq!(objective.n_batches(), 3);
    let epoch = |e: usize, o: &DasObjective| -> Vec<usize> {
        (3 * e..3 * e + 3)
            .flat_map(|i| o.batch_examples(i))
            .collect()
    };
    assert_eq!(epoch(0, &objective), [0, 1, 2, 3, 4]);
    let orders: Vec<Vec<usize>> = (1..4).map(|e| epoch(e, &objective)).collect();
    for order in &orders {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3, 4]);
    }
    assert!(orders.iter().any(|o| o != &[0, 1, 2, 3, 4]), "{orders:?}");
    assert_ne!(orders[0], orders[1], "epochs 1 and 2 drew the same order");
    let other = DasObjective::new(&lm, site, &examples, Some(2))
        .unwrap()
        .with_order_seed(12);
    assert_ne!((1..4).map(|e| epoch(e, &other)).collect::<Vec<_>>(), orders);
    let iv = Intervention::random_rotation(lm.hidden_size(), 5, 3, &lm.device()).unwrap();
    for step in [3, 4, 5, 7] {
        let which = objective.batch_examples(step);
        let probs = to_host(softmax(objective.logits(&iv, step).unwrap(), 1)).unwrap();
        let vocab = probs.len() / which.len();
        for (row, &i) in which.iter().enumerate() {
            let alone = lm
                .patch(&examples[i].pair, &iv.clone().at(site))
                .unwrap()
                .after;
            let diff = common::max_abs_diff(&probs[row * vocab..(row + 1) * vocab], &alone.probs);
            assert!(diff < 1e-5, "step {step}, example {i}: max |diff| {diff}");
        }
    }
}

/// All 576 rotated dimensions patched is residual patching, for any rotation: `Rᵀ(R s) = s`.
/// (The end point of a dims curve: a subspace can do no more than the whole vector.) A 575-dim
/// patch is not, so the test would notice a rotation that ignored `n_dims`.
#[test]
fn das_with_every_dimension_is_residual_patching() {
    let lm = smollm();
    let pair = tutorial_pair(lm);
    let site = Site::block_output(9);
    let d = lm.hidden_size();
    let residual = lm
        .patch(&pair, &Intervention::Replace.at(site))
        .unwrap()
        .after;
    let clean = lm.predict(&pair.base).unwrap();
    assert!(
        common::max_abs_diff(&residual.probs, &clean.probs) > 1e-2,
        "the patch moves"
    );
    for seed in [0, 7] {
        let full = Intervention::random_rotation(d, d, seed, &lm.device()).unwrap();
        let got = lm.patch(&pair, &full.at(site)).unwrap().after;
        let diff = common::max_abs_diff(&got.probs, &residual.probs);
        assert!(diff < 1e-4, "seed {seed}: max |prob diff| {diff}");
    }
    let most = Intervention::random_rotation(d, d - 1, 0, &lm.device()).unwrap();
    let got = lm.patch(&pair, &most.at(site)).unwrap().after;
    assert!(common::max_abs_diff(&got.probs, &residual.probs) > 1e-4);
}

/// The loss of a batch of weighted examples is `Σ wᵢ CEᵢ / Σ wᵢ`, each `CEᵢ` measured alone
/// (multi-task DAS weighs the cause objective against the isolate ones this way).
#[test]
fn weighted_examples_give_the_weighted_mean_of_their_losses() {
    let lm = common::tiny();
    let site = Site::block_output(1);
    let iv = Intervention::random_rotation(lm.hidden_size(), 4, 3, &lm.device()).unwrap();
    let a = common::tiny_example(&lm);
    let b = lm
        .pair("over the lazy dog the quick", "brown fox the quick jumps")
        .unwrap()
        .at_positions(4, 1)
        .unwrap()
        .with_target(9);
    let alone = |e: &Example| {
        let objective = DasObjective::new(&lm, site, std::slice::from_ref(e), None).unwrap();
        f64::from(objective.loss(&iv, 0).unwrap())
    };
    let (la, lb) = (alone(&a), alone(&b));
    assert!(
        (la - lb).abs() > 1e-3,
        "the two examples must differ: {la} {lb}"
    );
    // Their windows (columns from the patched token on) differ, so they run in one group or in
    // one group each.
    let window = |e: &Example| e.pair.base.len() - e.pair.base_position();
    assert_ne!(window(&a), window(&b));
    for cost in [0, usize::MAX] {
        let both = |wa: f32, wb: f32| {
            let batch = [a.clone().weighted(wa), b.clone().weighted(wb)];
            f64::from(
                DasObjective::new(&lm, site, &batch, None)
                    .unwrap()
                    .with_window_group_cost(cost)
                    .loss(&iv, 0)
                    .unwrap(),
            )
        };
        let expect = (3.0 * la + 0.5 * lb) / 3.5;
        assert!(
            (both(3.0, 0.5) - expect).abs() < 1e-4,
            "cost {cost}: {} vs {expect}",
            both(3.0, 0.5)
        );
        // Equal weights of any size are the plain mean.
        assert!((both(2.0, 2.0) - (la + lb) / 2.0).abs() < 1e-4);
        assert!((both(1.0, 1.0) - (la + lb) / 2.0).abs() < 1e-4);
    }
}

/// Each step's learning rate follows the schedule: warm-up 1/(w+1), 2/(w+1), ... then a linear
/// fall to 0 after the last step (hand-computed for lr 1e-2, 2 warm-up steps of 6).
#[test]
fn the_learning_rate_follows_the_warm_up_and_the_decay() {
    let lm = common::tiny();
    let example = common::tiny_example(&lm);
    let mut iv = Intervention::random_rotation(lm.hidden_size(), 2, 0, &lm.device()).unwrap();
    let config = DasConfig::new(Site::block_output(0), 6)
        .with_lr(1e-2)
        .with_schedule(train::LrSchedule {
            warmup: 2,
            decay: train::Decay::Linear,
        });
    let mut lrs = Vec::new();
    train::train(&lm, &mut iv, &[example], &config, |s| lrs.push(s.lr)).unwrap();
    let expect = [1e-2 / 3.0, 2e-2 / 3.0, 1e-2, 0.75e-2, 0.5e-2, 0.25e-2];
    for (got, want) in lrs.iter().zip(expect) {
        assert!((got - want).abs() < 1e-12, "{lrs:?}");
    }
    assert_eq!(lrs.len(), 6);
}
