//! The packed-weight products against a plain `f64` product of the weights as Python's `gguf`
//! package dequantises them (fixtures from scripts/make_fixtures.py), for every block type the
//! kernels hold and bf16, every kernel body this CPU runs, and token counts that exercise every
//! tile size, tail and the multi-threaded split.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use formats::gguf::GgufFile;
use kernels::{
    Bf16Matrix, Kernels, PackedMatrix, PackedRows, QuantMatrix, linear, matmul_w_with,
    matmul_wt_with,
};

const COLS: usize = 512;

/// Every block type the kernels hold, as the fixture names them.
const BLOCK_TYPES: [&str; 8] = [
    "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k",
];

/// A `[rows, 512]` matrix of type `name` made of the fixture's blocks (rows and blocks shuffled
/// so that no two rows are alike): its raw bytes, and the `f32` values gguf-py gives them.
fn raw_matrix(name: &str, rows: usize) -> (formats::gguf::GgmlType, Vec<u8>, Vec<f32>) {
    let file = GgufFile::open(common::fixtures().join("dequant.gguf")).unwrap();
    let expected = common::read_f32(&common::fixtures().join("dequant_expected.safetensors"));
    let info = file.tensor(name).unwrap();
    let (_, values) = &expected[name];
    let bytes = file.tensor_bytes(info);
    // bf16 is stored one value at a time: shuffle it in runs of 32 like the 32-blocks.
    let (block, block_bytes) = match info.ggml_type.block_layout() {
        (1, size) => (32, 32 * size),
        layout => layout,
    };
    let n_blocks = values.len() / block;
    let (mut q, mut f) = (Vec::new(), Vec::new());
    for r in 0..rows {
        for j in 0..COLS / block {
            let b = (r * 5 + j * 7 + r * j) % n_blocks;
            q.extend_from_slice(&bytes[b * block_bytes..(b + 1) * block_bytes]);
            f.extend_from_slice(&values[b * block..(b + 1) * block]);
        }
    }
    (info.ggml_type, q, f)
}

fn matrix(name: &str, rows: usize) -> (QuantMatrix, Vec<f32>) {
    let (ty, q, f) = raw_matrix(name, rows);
    (QuantMatrix::from_gguf(ty, &q, rows, COLS).unwrap(), f)
}

fn bf16_matrix(rows: usize) -> (Bf16Matrix, Vec<f32>) {
    let (_, q, f) = raw_matrix("bf16", rows);
    (Bf16Matrix::from_bytes(q, rows, COLS).unwrap(), f)
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

/// Each value rounded to the nearest bf16 (ties to even), back in `f32`.
fn round_to_bf16(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|&x| half::bf16::from_f32(x).to_f32())
        .collect()
}

/// 67 rows: tiles of 4 with a tail of 3, and several parallel tasks for large m (300 tokens:
/// more than one block of rows on the AMX tiles).
const ROWS: usize = 67;

#[test]
fn products_match_python_dequantised_weights_for_every_kernel_body() {
    assert_eq!(Kernels::available().last(), Some(&Kernels::Portable));
    for name in BLOCK_TYPES {
        let (w, dense) = matrix(name, ROWS);
        check_products(name, &w, &dense);
    }
    let (w, dense) = bf16_matrix(ROWS);
    check_products("bf16", &w, &dense);
}

fn check_products(name: &str, w: &impl PackedRows, dense: &[f32]) {
    let rows = ROWS;
    let kernels = Kernels::available();
    {
        for m in [1, 2, 5, 6, 7, 9, 13, 16, 17, 33, 45, 70, 96, 109, 131, 300] {
            let x = values(m * COLS, m);
            let want_y = reference(&x, m, dense, rows, COLS, true);
            let g = values(m * rows, m + 1);
            let want_g = reference(&g, m, dense, COLS, rows, false);
            // vdpbf16ps multiplies bf16 weights by the activations rounded to bf16.
            let x_bf16: Vec<f32> = x
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect();
            let want_y_bf16 = reference(&x_bf16, m, dense, rows, COLS, true);
            // AMX multiplies both operands rounded to bf16.
            let (dense_bf16, g_bf16) = (round_to_bf16(dense), round_to_bf16(&g));
            let on_tiles = m >= Kernels::AMX_MIN_ROWS;
            let want_y_amx = reference(&x_bf16, m, &dense_bf16, rows, COLS, true);
            let want_g_amx = reference(&g_bf16, m, &dense_bf16, COLS, rows, false);
            for &k in kernels {
                let what = format!("{name}, m = {m}, {}", k.name());
                let (want, want_grad) = match k {
                    Kernels::Avx512Bf16 if name == "bf16" => (&want_y_bf16, &want_g),
                    Kernels::Amx if on_tiles => (&want_y_amx, &want_g_amx),
                    _ => (&want_y, &want_g),
                };
                assert_close(&matmul_wt_with(k, &x, m, w), want, &format!("x·Wᵀ {what}"));
                assert_close(
                    &matmul_w_with(k, &g, m, w),
                    want_grad,
                    &format!("g·W {what}"),
                );
            }
        }
    }
}

/// Unasked, the kernels are exact: the bf16 bodies (`avx512bf16`, `amx`) are only used when
/// `SUBSPACE_KERNELS` names them.
#[test]
fn the_default_kernels_are_exact() {
    if std::env::var_os("SUBSPACE_KERNELS").is_none() {
        assert!(Kernels::best().is_exact(), "{:?}", Kernels::best());
    }
    for k in Kernels::available() {
        let rounds = matches!(k, Kernels::Avx512Bf16 | Kernels::Amx);
        assert_eq!(k.is_exact(), !rounds, "{k:?}");
    }
}

/// Exactly (`==`: equal values, the only slack being the sign of a zero, which the `+ min` of
/// `d · q + min` turns positive), with the portable and (where the CPU has it) the AVX-512
/// widening of a row.
#[test]
fn weights_unpack_to_python_values_exactly() {
    fn check(name: &str, w: &impl PackedRows, dense: &[f32]) {
        assert_eq!(w.dequantize(), dense, "{name}");
        #[cfg(target_arch = "x86_64")]
        if Kernels::available().contains(&Kernels::Avx512) {
            let mut row = vec![0f32; COLS];
            for r in 0..w.rows() {
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe { w.dequantize_row_avx512(r, &mut row) };
                assert_eq!(row, dense[r * COLS..(r + 1) * COLS], "{name} row {r}");
            }
        }
    }
    for name in BLOCK_TYPES {
        let (w, dense) = matrix(name, 9);
        check(name, &w, &dense);
    }
    let (w, dense) = bf16_matrix(9);
    check("bf16", &w, &dense);
}

#[test]
fn types_the_kernels_do_not_hold_are_refused() {
    let file = GgufFile::open(common::fixtures().join("dequant.gguf")).unwrap();
    for name in ["f16", "f32", "bf16"] {
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
    let (w, dense) = matrix("q4_k", rows);
    let w = std::sync::Arc::new(PackedMatrix::Blocks(w));
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
