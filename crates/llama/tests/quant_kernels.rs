//! The quantised-weight products against a plain `f64` product of the weights as Python's
//! `gguf` package dequantises them (fixtures from scripts/make_fixtures.py), for every block type
//! the kernels hold, every kernel body this CPU runs, and token counts that exercise every tile
//! size, tail and the multi-threaded split.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use llama::load::gguf::GgufFile;
use llama::quant::{Kernels, QuantMatrix, linear, matmul_w_with, matmul_wt_with};

const COLS: usize = 512;
const BLOCKS_PER_ROW: usize = COLS / 32;

/// A `[rows, 512]` matrix of type `name` made of the fixture's blocks (rows and blocks shuffled
/// so that no two rows are alike), with the `f32` values gguf-py gives them.
fn matrix(name: &str, rows: usize) -> (QuantMatrix, Vec<f32>) {
    let file = GgufFile::open(common::fixtures().join("dequant.gguf")).unwrap();
    let expected = common::read_f32(&common::fixtures().join("dequant_expected.safetensors"));
    let info = file.tensor(name).unwrap();
    let (_, values) = &expected[name];
    let bytes = file.tensor_bytes(info);
    let (_, block_bytes) = info.ggml_type.block_layout();
    let n_blocks = values.len() / 32;
    let (mut q, mut f) = (Vec::new(), Vec::new());
    for r in 0..rows {
        for j in 0..BLOCKS_PER_ROW {
            let b = (r * 5 + j * 7 + r * j) % n_blocks;
            q.extend_from_slice(&bytes[b * block_bytes..(b + 1) * block_bytes]);
            f.extend_from_slice(&values[b * 32..(b + 1) * 32]);
        }
    }
    (
        QuantMatrix::from_gguf(info.ggml_type, &q, rows, COLS).unwrap(),
        f,
    )
}

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0) - 1.0)
        .collect()
}

/// `a [m, k] · b` where `b` is `[n, k]` (`transposed`) or `[k, n]`, in `f64`; also the sums of
/// absolute products, which bound the rounding of an `f32` product.
fn reference(
    a: &[f32],
    m: usize,
    b: &[f32],
    n: usize,
    k: usize,
    transposed: bool,
) -> (Vec<f64>, Vec<f64>) {
    let (mut y, mut scale) = (vec![0f64; m * n], vec![0f64; m * n]);
    for t in 0..m {
        for j in 0..n {
            for c in 0..k {
                let bv = if transposed {
                    b[j * k + c]
                } else {
                    b[c * n + j]
                };
                let p = f64::from(a[t * k + c]) * f64::from(bv);
                y[t * n + j] += p;
                scale[t * n + j] += p.abs();
            }
        }
    }
    (y, scale)
}

fn assert_close(got: &[f32], (want, scale): &(Vec<f64>, Vec<f64>), what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, (&w, &s))) in got.iter().zip(want.iter().zip(scale)).enumerate() {
        let err = (f64::from(g) - w).abs();
        assert!(
            err <= 1e-5 * s + 1e-6,
            "{what}: element {i}: {g} vs {w} (scale {s})"
        );
    }
}

#[test]
fn products_match_python_dequantised_weights_for_every_kernel_body() {
    let kernels = Kernels::available();
    assert_eq!(kernels.last(), Some(&Kernels::Portable));
    for name in ["q4_0", "q4_1", "q8_0"] {
        // 67 rows: tiles of 4 with a tail of 3, and several parallel tasks for large m.
        let rows = 67;
        let (w, dense) = matrix(name, rows);
        for m in [1, 2, 5, 6, 7, 9, 13, 16, 17, 33, 70] {
            let x = values(m * COLS, m);
            let want_y = reference(&x, m, &dense, rows, COLS, true);
            let g = values(m * rows, m + 1);
            let want_g = reference(&g, m, &dense, COLS, rows, false);
            for &k in kernels {
                let what = format!("{name}, m = {m}, {}", k.name());
                assert_close(
                    &matmul_wt_with(k, &x, m, &w),
                    &want_y,
                    &format!("x·Wᵀ {what}"),
                );
                assert_close(
                    &matmul_w_with(k, &g, m, &w),
                    &want_g,
                    &format!("g·W {what}"),
                );
            }
        }
    }
}

#[test]
fn weights_unpack_to_python_values_exactly() {
    for name in ["q4_0", "q4_1", "q8_0"] {
        let (w, dense) = matrix(name, 9);
        assert_eq!(w.dequantize(), dense, "{name}");
    }
}

#[test]
fn types_the_kernels_do_not_hold_are_refused() {
    let file = GgufFile::open(common::fixtures().join("dequant.gguf")).unwrap();
    for name in ["q5_0", "q4_k", "f16"] {
        let info = file.tensor(name).unwrap();
        let shape = info.shape();
        let err =
            QuantMatrix::from_gguf(info.ggml_type, file.tensor_bytes(info), shape[0], shape[1]);
        assert!(err.is_err(), "{name} should be refused");
    }
}

/// Through burn's autodiff: the layer's output and the gradient of `Σ c ⊙ (x Wᵀ)` with respect
/// to `x`, which is `c · W`.
#[test]
fn autodiff_gives_the_input_gradient() {
    let (rows, m) = (67, 9);
    let (w, dense) = matrix("q4_1", rows);
    let w = std::sync::Arc::new(w);
    let x = values(m * COLS, 3);
    let c = values(m * rows, 4);
    let device = Device::flex().autodiff();
    let xt =
        Tensor::<3>::from_data(TensorData::new(x.clone(), [1, m, COLS]), &device).require_grad();
    let y = linear(xt.clone(), &w);
    assert_eq!(y.dims(), [1, m, rows]);
    let ct = Tensor::<3>::from_data(TensorData::new(c.clone(), [1, m, rows]), &device);
    let loss = (y.clone() * ct).sum();
    let grads = loss.backward();
    let gx = xt.grad(&grads).expect("x gets a gradient");
    let y_host: Vec<f32> = y
        .without_autodiff()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let gx_host: Vec<f32> = gx
        .without_autodiff()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_close(
        &y_host,
        &reference(&x, m, &dense, rows, COLS, true),
        "forward",
    );
    assert_close(
        &gx_host,
        &reference(&c, m, &dense, COLS, rows, false),
        "gradient",
    );
}
