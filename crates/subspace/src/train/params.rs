//! The trainable tensors of each kind of intervention, and the three things training does with
//! them: build the live (autodiff) intervention, take an optimiser step, write the result back.
//!
//! - rotation (`Exp`): torch's parametrisation, `base · exp(L.tril(−1) − L.tril(−1)ᵀ)`, Adam on `L`;
//! - low-rank (`Frame`): the orthonormal rows themselves, Adam then a QR retraction;
//! - boundless: the rotation (retracted like a frame) and the boundary (clamped to `[0, 1]`).

use burn::tensor::{Device, Tensor};

use super::adam::{AdamConfig, AdamState};
use super::exp_map;
use crate::error::{Result, SubspaceError, bad_intervention};
use crate::intervention::orthogonal::{complete_rotation, orthonormalize_rows};
use crate::intervention::{BoundlessSpace, Intervention, LowRankSpace, RotatedSpace, Unrotate};
use crate::readout::to_host;

/// The trainable tensors of an intervention.
#[derive(Debug, Clone)]
pub(super) enum Params {
    /// A full rotation, parametrised as torch does: first rows `base` (`[n, d]`) times
    /// `exp(L.tril(−1) − L.tril(−1)ᵀ)`, `L` (`[d, d]`) trained.
    Exp { base: Tensor<2>, l: Tensor<2> },
    /// Orthonormal rows spanning the patched subspace, `[k, d]`, kept orthonormal by a QR
    /// retraction after each step (low-rank DAS).
    Frame(Tensor<2>),
    /// A full rotation `[d, d]` and a boundary `[1]`.
    Boundless(Tensor<2>, Tensor<1>),
}

/// Adam's state for the parameters (the boundary of boundless DAS has its own).
#[derive(Debug, Clone)]
pub(super) struct Moments {
    pub main: AdamState<2>,
    pub boundary: Option<AdamState<1>>,
}

/// The autodiff leaves of one step's live intervention.
pub(super) struct Leaves {
    main: Tensor<2>,
    boundary: Option<Tensor<1>>,
}

impl Params {
    /// The trainable tensors of `intervention`; an error for a kind that has none.
    pub fn of(intervention: &Intervention) -> Result<Params> {
        match intervention {
            Intervention::Rotated(r) => {
                if r.unrotate == Unrotate::TutorialLiteral {
                    return bad_intervention(
                        "the tutorial's literal unrotation is for illustration only and cannot be trained; use Unrotate::Inverse",
                    );
                }
                if r.n_dims == 0 {
                    return bad_intervention(
                        "patching 0 dimensions leaves nothing to train; choose at least 1",
                    );
                }
                let d = r.rotation.dims()[0];
                Ok(Params::Exp {
                    base: r.rotation.clone().narrow(0, 0, r.n_dims),
                    l: Tensor::zeros([d, d], &r.rotation.device()),
                })
            }
            Intervention::LowRank(l) => Ok(Params::Frame(l.basis.clone().transpose())),
            Intervention::Boundless(b) => {
                Ok(Params::Boundless(b.rotation.clone(), b.boundary.clone()))
            }
            other => Err(SubspaceError::NotTrainable { kind: other.kind() }),
        }
    }

    /// Fresh optimiser state.
    pub fn moments(&self) -> Moments {
        match self {
            Params::Exp { l, .. } => Moments {
                main: AdamState::new(l),
                boundary: None,
            },
            Params::Frame(f) => Moments {
                main: AdamState::new(f),
                boundary: None,
            },
            Params::Boundless(r, b) => Moments {
                main: AdamState::new(r),
                boundary: Some(AdamState::new(b)),
            },
        }
    }

    /// The tensors, on the host (for checkpoints and run fingerprints).
    pub fn host_tensors(&self) -> Result<Vec<formats::intervention_file::HostTensor>> {
        use crate::store::host_tensor;
        match self {
            Params::Exp { base, l } => {
                Ok(vec![host_tensor(base.clone())?, host_tensor(l.clone())?])
            }
            Params::Frame(f) => Ok(vec![host_tensor(f.clone())?]),
            Params::Boundless(r, b) => Ok(vec![host_tensor(r.clone())?, host_tensor(b.clone())?]),
        }
    }

    /// The intervention to differentiate through at this step, and its leaves.
    ///
    /// For the rotation, a generator grown large is first folded into the base rows (so a
    /// step's cost does not grow with the distance travelled); one absurdly large means the
    /// learning rate is far too high: [`SubspaceError::Diverged`].
    pub fn live(
        &mut self,
        temperature: f32,
        step: usize,
        device: &Device,
    ) -> Result<(Intervention, Leaves)> {
        // The generator's bound, read once (zero once it is folded into the base rows).
        let mut bound = 0.0;
        if let Params::Exp { base, l } = self {
            bound = exp_map::norm_bound(l)?;
            if !bound.is_finite() || bound > exp_map::MAX_STEP_BOUND {
                return Err(SubspaceError::Diverged {
                    step,
                    what: format!("the rotation's generator reached ‖A‖ ≈ {bound:.3e}"),
                });
            }
            if bound > exp_map::REBASE_ABOVE {
                let folded = exp_map::exp_rows(base.clone(), l.clone(), bound)?;
                *base = retract(folded, device)?;
                *l = l.zeros_like();
                bound = 0.0;
            }
        }
        Ok(match self {
            Params::Exp { base, l } => {
                let leaf = l.clone().autodiff().require_grad();
                let frame = exp_map::exp_rows(base.clone(), leaf.clone(), bound)?;
                (
                    frame_intervention(frame),
                    Leaves {
                        main: leaf,
                        boundary: None,
                    },
                )
            }
            Params::Frame(f) => {
                let leaf = f.clone().autodiff().require_grad();
                (
                    frame_intervention(leaf.clone()),
                    Leaves {
                        main: leaf,
                        boundary: None,
                    },
                )
            }
            Params::Boundless(r, b) => {
                let r = r.clone().autodiff().require_grad();
                let b = b.clone().autodiff().require_grad();
                let live = Intervention::Boundless(BoundlessSpace {
                    rotation: r.clone(),
                    boundary: b.clone(),
                    temperature,
                });
                (
                    live,
                    Leaves {
                        main: r,
                        boundary: Some(b),
                    },
                )
            }
        })
    }

    /// One optimiser step from the gradients of `leaves`.
    pub fn update(
        self,
        leaves: Leaves,
        grads: &burn::tensor::Gradients,
        adam: &AdamConfig,
        moments: &mut Moments,
        device: &Device,
    ) -> Result<Params> {
        let grad2 = |leaf: &Tensor<2>, like: &Tensor<2>| {
            leaf.grad(grads)
                .map(|g| g.without_autodiff())
                .unwrap_or_else(|| like.zeros_like())
        };
        Ok(match self {
            Params::Exp { base, l } => {
                let g = grad2(&leaves.main, &l);
                let l = moments.main.step(adam, l, g);
                Params::Exp { base, l }
            }
            Params::Frame(f) => {
                let g = grad2(&leaves.main, &f);
                Params::Frame(retract(moments.main.step(adam, f, g), device)?)
            }
            Params::Boundless(r, b) => {
                let gr = grad2(&leaves.main, &r);
                let r = retract(moments.main.step(adam, r, gr), device)?;
                let b = match (leaves.boundary, moments.boundary.as_mut()) {
                    (Some(leaf), Some(state)) => {
                        let gb = leaf
                            .grad(grads)
                            .map(|g| g.without_autodiff())
                            .unwrap_or_else(|| b.zeros_like());
                        state.step(adam, b, gb).clamp(0.0, 1.0)
                    }
                    _ => b,
                };
                Params::Boundless(r, b)
            }
        })
    }

    /// Writes the trained tensors back into `intervention` (of the kind they came from).
    pub fn write_into(&self, intervention: &mut Intervention, temperature: f32) -> Result<()> {
        match (intervention, self) {
            (Intervention::Rotated(r), Params::Exp { base, l }) => {
                let f = &exp_map::exp_rows(base.clone(), l.clone(), exp_map::norm_bound(l)?)?;
                let [k, d] = f.dims();
                let frame: Vec<f64> = to_host(f.clone())?.into_iter().map(f64::from).collect();
                let old: Vec<f64> = to_host(r.rotation.clone())?
                    .into_iter()
                    .map(f64::from)
                    .collect();
                let full = complete_rotation(&frame, &old, k, d);
                *r = RotatedSpace {
                    rotation: crate::intervention::host_matrix(&full, [d, d], &f.device()),
                    n_dims: r.n_dims,
                    unrotate: r.unrotate,
                };
            }
            (Intervention::LowRank(l), Params::Frame(f)) => {
                l.basis = f.clone().transpose();
            }
            (Intervention::Boundless(b), Params::Boundless(r, bound)) => {
                b.rotation = r.clone();
                b.boundary = bound.clone();
                b.temperature = temperature;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The patch of an orthonormal frame `[k, d]` (rows span the patched subspace).
pub(super) fn frame_intervention(frame: Tensor<2>) -> Intervention {
    Intervention::LowRank(LowRankSpace {
        basis: frame.transpose(),
    })
}

/// Re-orthonormalises the rows of a frame (QR retraction), on the host in `f64`.
fn retract(frame: Tensor<2>, device: &Device) -> Result<Tensor<2>> {
    let [k, d] = frame.dims();
    let mut m: Vec<f64> = to_host(frame)?.into_iter().map(f64::from).collect();
    if !orthonormalize_rows(&mut m, k, d) {
        return Err(SubspaceError::SubspaceCollapsed);
    }
    Ok(crate::intervention::host_matrix(&m, [k, d], device))
}
