//! Interventions: what happens to a hidden vector at a site, given the base run's vector and a
//! source vector (from another prompt's run, or given).
//!
//! Every kind is a function `(base [n, d], source [n, d]) -> [n, d]` built from tensor ops, so
//! the same code runs in inference and, with autodiff tensors, in training.
//!
//! ## Rotation convention
//! A rotation `R` (`[d, d]`, orthogonal) rotates with `x ↦ x Rᵀ` (what `torch.nn.Linear` with
//! weight `R` does) and back with `y ↦ y R`, its true inverse. Patching the first `N` rotated
//! coordinates is then `base + (source − base) R_Nᵀ R_N` with `R_N` the first `N` rows of `R`: a
//! projection onto an `N`-dimensional subspace, so `N = 0` is exactly the identity and `N = d`
//! is residual patching. (pyvene writes `x R` and `R ᵀ`, i.e. our `Rᵀ`; same thing.)
//!
//! The tutorial's cell "rotates back" with `rotator.weight.T` after `rotator(x)`, which applies
//! the rotation a second time instead of undoing it. [`Unrotate::TutorialLiteral`] reproduces
//! that, for teaching only.

pub mod orthogonal;

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Result, bad_intervention};

/// How a rotated patch is brought back to the model's basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unrotate {
    /// `y ↦ y R`, the inverse of `x ↦ x Rᵀ`.
    #[default]
    Inverse,
    /// `y ↦ y Rᵀ`, as the tutorial's cell writes it: rotates twice. Teaching only.
    TutorialLiteral,
}

/// A full `d × d` orthogonal rotation of which the first `n_dims` rotated coordinates are
/// patched (the tutorial's and DAS's unit).
#[derive(Debug, Clone)]
pub struct RotatedSpace {
    /// `[d, d]`, orthogonal.
    pub rotation: Tensor<2>,
    pub n_dims: usize,
    pub unrotate: Unrotate,
}

/// A `d × k` orthonormal basis of the patched subspace (low-rank DAS). Equivalent to a rotation
/// whose first `k` rows are `basisᵀ`, without storing the other `d − k` rows.
#[derive(Debug, Clone)]
pub struct LowRankSpace {
    /// `[d, k]`, orthonormal columns.
    pub basis: Tensor<2>,
}

/// Boundless DAS (pyvene's `BoundlessRotatedSpaceIntervention`): every rotated coordinate is
/// mixed by a soft mask `σ((i − 0)/τ) · σ((b·d − i)/τ)`, so that the learned boundary `b ∈ [0, 1]`
/// decides how many coordinates are patched.
#[derive(Debug, Clone)]
pub struct BoundlessSpace {
    /// `[d, d]`, orthogonal.
    pub rotation: Tensor<2>,
    /// `[1]`, the boundary as a fraction of `d`.
    pub boundary: Tensor<1>,
    /// Temperature τ of the sigmoid edges (annealed towards 0 during training).
    pub temperature: f32,
}

/// What an intervention does to the base vector.
// The rotated variants hold tensor handles (a few words each); boxing them would only add
// indirection to an enum that is created a handful of times per run.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Intervention {
    /// Replace the whole vector by the source's (residual / activation patching).
    Replace,
    /// Replace the listed coordinates ("neurons") by the source's.
    Neurons(Vec<usize>),
    /// Patch the first `n_dims` coordinates of a rotated basis.
    Rotated(RotatedSpace),
    /// Patch a `k`-dimensional subspace given by an orthonormal basis.
    LowRank(LowRankSpace),
    /// Patch a soft, learned number of rotated coordinates.
    Boundless(BoundlessSpace),
    /// Set the vector to zero (the source is ignored).
    Zero,
    /// Add the source vector to the base (steering).
    Add,
}

impl Intervention {
    /// A short name for tables and files.
    pub fn kind(&self) -> &'static str {
        match self {
            Intervention::Replace => "replace",
            Intervention::Neurons(_) => "neurons",
            Intervention::Rotated(_) => "rotated",
            Intervention::LowRank(_) => "low_rank",
            Intervention::Boundless(_) => "boundless",
            Intervention::Zero => "zero",
            Intervention::Add => "add",
        }
    }

    /// An untrained rotation of `d` dims patching `n_dims`, initialised like torch's
    /// `orthogonal_` from `seed`.
    pub fn random_rotation(d: usize, n_dims: usize, seed: u64, device: &Device) -> Result<Self> {
        if n_dims > d {
            return bad_intervention(format!(
                "cannot patch {n_dims} dimensions of a {d}-dimensional vector"
            ));
        }
        Ok(Intervention::Rotated(RotatedSpace {
            rotation: host_matrix(&orthogonal::random_orthogonal(d, seed), [d, d], device),
            n_dims,
            unrotate: Unrotate::Inverse,
        }))
    }

    /// A rotation from a given row-major `d × d` matrix (e.g. exported from a torch run).
    pub fn rotation_from(matrix: &[f32], d: usize, n_dims: usize, device: &Device) -> Result<Self> {
        if matrix.len() != d * d {
            return bad_intervention(format!(
                "a {d}×{d} rotation needs {} numbers, got {}",
                d * d,
                matrix.len()
            ));
        }
        if n_dims > d {
            return bad_intervention(format!(
                "cannot patch {n_dims} dimensions of a {d}-dimensional vector"
            ));
        }
        let err = orthogonal::orthogonality_error(matrix, d, d);
        if err > 1e-3 {
            return bad_intervention(format!(
                "the given matrix is not orthogonal (max |R Rᵀ − I| = {err:.2e})"
            ));
        }
        Ok(Intervention::Rotated(RotatedSpace {
            rotation: Tensor::from_data(TensorData::new(matrix.to_vec(), [d, d]), device),
            n_dims,
            unrotate: Unrotate::Inverse,
        }))
    }

    /// A random `k`-dimensional subspace (orthonormal basis from a seeded Gaussian).
    pub fn random_low_rank(d: usize, k: usize, seed: u64, device: &Device) -> Result<Self> {
        if k == 0 || k > d {
            return bad_intervention(format!(
                "a low-rank subspace needs 1 to {d} dimensions, got {k}"
            ));
        }
        let mut rows = orthogonal::gaussian(k * d, seed);
        orthogonal::orthonormalize_rows(&mut rows, k, d);
        let basis = host_matrix(&orthogonal::transpose(&rows, k, d), [d, k], device);
        Ok(Intervention::LowRank(LowRankSpace { basis }))
    }

    /// Boundless DAS with a random rotation, boundary at `initial_boundary` (fraction of d).
    pub fn random_boundless(
        d: usize,
        initial_boundary: f32,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        if !(0.0..=1.0).contains(&initial_boundary) {
            return bad_intervention(
                "the boundary is a fraction of the hidden size, between 0 and 1",
            );
        }
        Ok(Intervention::Boundless(BoundlessSpace {
            rotation: host_matrix(&orthogonal::random_orthogonal(d, seed), [d, d], device),
            boundary: Tensor::from_data(TensorData::new(vec![initial_boundary], [1]), device),
            temperature: 1.0,
        }))
    }

    /// Checks the intervention's sizes against the hidden size `d`.
    pub fn check(&self, d: usize) -> Result<()> {
        let bad =
            |what: String| bad_intervention(format!("{what} does not fit a hidden size of {d}"));
        match self {
            Intervention::Neurons(idx) => {
                if let Some(&i) = idx.iter().find(|&&i| i >= d) {
                    return bad(format!("neuron index {i}"));
                }
                if idx.is_empty() {
                    return bad_intervention("the neuron list is empty: give at least one index");
                }
            }
            Intervention::Rotated(r) => {
                if r.rotation.dims() != [d, d] || r.n_dims > d {
                    return bad(format!(
                        "a {:?} rotation patching {} dims",
                        r.rotation.dims(),
                        r.n_dims
                    ));
                }
            }
            Intervention::LowRank(l) => {
                let [rows, k] = l.basis.dims();
                if rows != d || k == 0 || k > d {
                    return bad(format!("a [{rows}, {k}] basis"));
                }
            }
            Intervention::Boundless(b) => {
                if b.rotation.dims() != [d, d] {
                    return bad(format!("a {:?} rotation", b.rotation.dims()));
                }
            }
            Intervention::Replace | Intervention::Zero | Intervention::Add => {}
        }
        Ok(())
    }

    /// The patched vectors.
    ///
    /// # Shapes
    /// - `base`, `source`: `[n, d]`
    /// - output: `[n, d]`
    pub fn apply(&self, base: Tensor<2>, source: Tensor<2>) -> Tensor<2> {
        match self {
            Intervention::Replace => source,
            Intervention::Zero => base.zeros_like(),
            Intervention::Add => base + source,
            Intervention::Neurons(idx) => {
                let [_, d] = base.dims();
                let mut keep = vec![1f32; d];
                for &i in idx {
                    keep[i] = 0.0;
                }
                let keep = Tensor::<1>::from_data(TensorData::new(keep, [d]), &base.device())
                    .unsqueeze_dim::<2>(0);
                let take = keep.clone().neg() + 1.0;
                base * keep + source * take
            }
            Intervention::Rotated(r) => match r.unrotate {
                Unrotate::Inverse => {
                    if r.n_dims == 0 {
                        return base;
                    }
                    let rn = r.rotation.clone().narrow(0, 0, r.n_dims);
                    project_patch(base, source, rn)
                }
                Unrotate::TutorialLiteral => {
                    let rt = r.rotation.clone().transpose();
                    let rb = base.matmul(rt.clone());
                    let rs = source.matmul(rt.clone());
                    let [_, d] = rb.dims();
                    let mixed = if r.n_dims == 0 {
                        rb
                    } else if r.n_dims == d {
                        rs
                    } else {
                        Tensor::cat(
                            vec![
                                rs.narrow(1, 0, r.n_dims),
                                rb.narrow(1, r.n_dims, d - r.n_dims),
                            ],
                            1,
                        )
                    };
                    mixed.matmul(rt)
                }
            },
            Intervention::LowRank(l) => project_patch(base, source, l.basis.clone().transpose()),
            Intervention::Boundless(b) => {
                let [_, d] = base.dims();
                let mask = boundless_mask(&b.boundary, d, b.temperature, &base.device());
                let rt = b.rotation.clone().transpose();
                let rb = base.matmul(rt.clone());
                let rs = source.matmul(rt);
                let mixed = rb.clone() + (rs - rb) * mask.unsqueeze_dim::<2>(0);
                mixed.matmul(b.rotation.clone())
            }
        }
    }

    /// Moves the intervention's tensors to `device`.
    pub fn to_device(&self, device: &Device) -> Self {
        match self {
            Intervention::Rotated(r) => Intervention::Rotated(RotatedSpace {
                rotation: r.rotation.clone().to_device(device),
                ..r.clone()
            }),
            Intervention::LowRank(l) => Intervention::LowRank(LowRankSpace {
                basis: l.basis.clone().to_device(device),
            }),
            Intervention::Boundless(b) => Intervention::Boundless(BoundlessSpace {
                rotation: b.rotation.clone().to_device(device),
                boundary: b.boundary.clone().to_device(device),
                temperature: b.temperature,
            }),
            other => other.clone(),
        }
    }
}

/// `base + (source − base) Pᵀ P` for `P` with orthonormal rows (`[k, d]`): the source's
/// component in span(P) replaces the base's, the rest of the base is kept.
fn project_patch(base: Tensor<2>, source: Tensor<2>, p: Tensor<2>) -> Tensor<2> {
    let delta = (source - base.clone())
        .matmul(p.clone().transpose())
        .matmul(p);
    base + delta
}

/// The boundless mask over rotated coordinates `i = 0..d`:
/// `σ(i / τ) · σ((b·d − i) / τ)` (pyvene's `sigmoid_boundary` with start 0).
pub fn boundless_mask(
    boundary: &Tensor<1>,
    d: usize,
    temperature: f32,
    device: &Device,
) -> Tensor<1> {
    let idx = Tensor::<1, Int>::arange(0..d as i64, device).float();
    let end = boundary.clone().clamp(0.0, 1.0) * d as f32;
    let t = f64::from(temperature);
    sigmoid(idx.clone() / t) * sigmoid((end - idx) / t)
}

/// A host `f64` matrix as an `f32` tensor.
pub(crate) fn host_matrix(m: &[f64], shape: [usize; 2], device: &Device) -> Tensor<2> {
    let data: Vec<f32> = m.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// An intervention and the site it acts on: `Intervention::Replace.at(Site::block_output(9))`.
/// The token positions come from the [`crate::Pair`] it is applied to.
#[derive(Debug, Clone)]
pub struct PlacedIntervention {
    pub site: crate::site::Site,
    pub intervention: Intervention,
}

impl Intervention {
    /// This intervention at `site`.
    pub fn at(self, site: crate::site::Site) -> PlacedIntervention {
        PlacedIntervention {
            site,
            intervention: self,
        }
    }
}

impl Intervention {
    /// The same rotation patching its first `n_dims` rotated coordinates instead; an error for
    /// an intervention that is not a rotation or for more dimensions than it has.
    pub fn with_n_dims(self, n_dims: usize) -> Result<Intervention> {
        match self {
            Intervention::Rotated(r) => {
                let d = r.rotation.dims()[0];
                if n_dims > d {
                    return bad_intervention(format!(
                        "a {d}-dimensional rotation cannot patch {n_dims} dimensions"
                    ));
                }
                Ok(Intervention::Rotated(RotatedSpace { n_dims, ..r }))
            }
            other => bad_intervention(format!(
                "only a rotation has a number of patched dimensions to change, not {}",
                other.kind()
            )),
        }
    }

    /// The same rotation brought back to the model's basis with `unrotate` (the tutorial's
    /// literal form is [`Unrotate::TutorialLiteral`]); an error for a non-rotation.
    pub fn with_unrotate(self, unrotate: Unrotate) -> Result<Intervention> {
        match self {
            Intervention::Rotated(r) => Ok(Intervention::Rotated(RotatedSpace { unrotate, ..r })),
            other => bad_intervention(format!(
                "only a rotation is rotated back, not {}",
                other.kind()
            )),
        }
    }
}
