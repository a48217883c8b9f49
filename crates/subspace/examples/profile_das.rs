//! Times the parts of one DAS step in the tutorial setting (a development aid).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use burn::tensor::Tensor;
use subspace::train::DasObjective;
use subspace::{Intervention, LanguageModel, Site};

fn main() {
    let lm = LanguageModel::load_default().unwrap();
    let ex = lm
        .pair(
            "The city of Paris is in the country of",
            "The city of Rio is in the country of",
        )
        .unwrap()
        .at("Paris", "Rio")
        .unwrap()
        .with_target(lm.token(" Brazil").unwrap());
    let t = Instant::now();
    let obj = DasObjective::new(&lm, Site::block_output(9), &[ex], None).unwrap();
    println!("prepare {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let d = lm.hidden_size();
    let Intervention::Rotated(r) = Intervention::random_rotation(d, 1, 0, &lm.device()).unwrap()
    else {
        unreachable!()
    };
    let base = r.rotation.clone().narrow(0, 0, 1);
    let l: Tensor<2> = Tensor::zeros([d, d], &lm.device());
    let frame_iv = Intervention::LowRank(subspace::intervention::LowRankSpace {
        basis: base.clone().transpose(),
    });
    for _ in 0..3 {
        let t = Instant::now();
        obj.loss(&frame_iv, 0).unwrap();
        let fwd = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        obj.loss_and_grad(&base, 0).unwrap();
        let frame_grad = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        obj.loss_and_grad_exp(&base, &l, 0).unwrap();
        let exp_grad = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "loss only {fwd:.1} ms, loss+grad (frame) {frame_grad:.1} ms, loss+grad (exp, L=0) {exp_grad:.1} ms"
        );
    }
}
