//! Rotary embeddings of queries or keys in one pass, and its backward (the inverse rotation).
//!
//! burn's composition (`RopeTables::apply_composed`) is a dozen operations on one thread (the
//! pairs cut apart, four products, two sums, then joined by `cat` or `stack`), and twice as many
//! with autodiff. Where keys are kept (a prefix run to be continued, generation) every block
//! runs it on the queries and on the keys. The rotation itself ([`rotate_all`]) is also the
//! one the fused attention applies inside.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{with_gathered, with_values};

/// `x` (`[b, heads, s, hd]`) rotated by the tables (`[b, 1, s, hd / 2]`) in the pair layout
/// `code` (1: `(i, i + hd/2)`, 2: interleaved), or rotated back (`inverse`).
fn rotated(
    x: FloatTensor<Flex>,
    cos: &FloatTensor<Flex>,
    sin: &FloatTensor<Flex>,
    code: u8,
    inverse: bool,
) -> FloatTensor<Flex> {
    let (shape, device) = (x.shape(), x.device());
    let dims = [shape[0], shape[1], shape[2], shape[3]];
    let out = with_values(cos.clone(), |cos| {
        with_values(sin.clone(), |sin| {
            with_gathered(x, |x| {
                rotate_all(x, dims, (cos, sin, dims[2]), code == 2, inverse)
            })
        })
    });
    Flex::float_from_data(TensorData::new(out, shape), &device)
}

pub(super) fn forward(
    x: FloatTensor<Flex>,
    cos: FloatTensor<Flex>,
    sin: FloatTensor<Flex>,
    code: u8,
) -> FloatTensor<Flex> {
    rotated(x, &cos, &sin, code, false)
}

/// The backward of [`forward`]: the output's gradient rotated back (the rotation is
/// orthogonal); its state is the tables and the layout.
#[derive(Debug)]
struct RotaryBackward;

impl Backward<Flex, 1> for RotaryBackward {
    type State = (FloatTensor<Flex>, FloatTensor<Flex>, u8);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (cos, sin, code) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, rotated(dy, &cos, &sin, code, true));
        }
    }
}

/// [`forward`] on autodiff tensors: the gradient reaches `x` (the tables are constants).
pub(super) fn tracked<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    cos: FloatTensor<Autodiff<Flex, C>>,
    sin: FloatTensor<Autodiff<Flex, C>>,
    code: u8,
) -> FloatTensor<Autodiff<Flex, C>> {
    let (x, node) = x.into_parts();
    let (cos, sin) = (cos.into_parts().0, sin.into_parts().0);
    let out = rotated(x, &cos, &sin, code, false);
    match RotaryBackward
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((cos, sin, code), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// Rotates (or, `inverse`, rotates back: the transpose, for a gradient) every head vector of
/// `x` (`[b, heads, s, hd]`: the last `s` of `table_seq` columns) by its row's and position's
/// angles (`cos`, `sin`: `[b, table_seq, hd/2]`), in the order of operations of burn's
/// composition (`RopeTables::apply_composed`).
pub(super) fn rotate_all(
    x: &[f32],
    [b, heads, s, hd]: [usize; 4],
    (cos, sin, table_seq): (&[f32], &[f32], usize),
    interleaved: bool,
    inverse: bool,
) -> Vec<f32> {
    let offset = table_seq - s;
    let half = hd / 2;
    // The transpose of a rotation is the rotation by the opposite angle.
    let sign = if inverse { -1.0 } else { 1.0 };
    let fast = super::avx512();
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(s * hd)
        .zip(x.par_chunks(s * hd))
        .enumerate()
        .for_each(|(bh, (out, x))| {
            let row = bh / heads;
            for i in 0..s {
                let at = (row * table_seq + offset + i) * half;
                let tables = (&cos[at..at + half], &sin[at..at + half], sign);
                let (x, o) = (&x[i * hd..(i + 1) * hd], &mut out[i * hd..(i + 1) * hd]);
                #[cfg(target_arch = "x86_64")]
                if fast {
                    // SAFETY: the CPU has AVX-512F.
                    unsafe { rotate_avx512(x, o, tables, interleaved) };
                    continue;
                }
                let _ = fast;
                rotate(x, o, tables, interleaved);
            }
        });
    let _ = b;
    out
}

/// One head vector `x` rotated into `o` by the angles whose cosines and sines are `c`, `sn`
/// (their sines times `sign`): pairs `(2p, 2p+1)` if `interleaved`, else `(p, p + hd/2)`.
#[inline(always)]
fn rotate(x: &[f32], o: &mut [f32], (c, sn, sign): (&[f32], &[f32], f32), interleaved: bool) {
    if interleaved {
        for (((o, x), &c), &sn) in o.chunks_exact_mut(2).zip(x.chunks_exact(2)).zip(c).zip(sn) {
            let s = sign * sn;
            o[0] = x[0] * c - x[1] * s;
            o[1] = x[1] * c + x[0] * s;
        }
    } else {
        let half = c.len();
        let (o1, o2) = o.split_at_mut(half);
        let (x1, x2) = x.split_at(half);
        for p in 0..half {
            let (c, s) = (c[p], sign * sn[p]);
            o1[p] = x1[p] * c - x2[p] * s;
            o2[p] = x2[p] * c + x1[p] * s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn rotate_avx512(x: &[f32], o: &mut [f32], tables: (&[f32], &[f32], f32), interleaved: bool) {
    rotate(x, o, tables, interleaved)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use crate::fused::test_values::{host, max_diff};
    use crate::fused::{RotaryTables, rotary, rotary_composed};

    /// The fused rotation and its gradient against burn's composed operations
    /// ([`rotary_composed`]), both pair layouts, the input as the model passes it
    /// (`[b, s, heads, hd]` viewed as `[b, heads, s, hd]`).
    #[test]
    fn the_rotation_and_its_gradient_match_the_composed_ops() {
        let device = Device::flex();
        let (b, heads, s, hd) = (2, 3, 5, 8);
        let angles: Tensor<4> =
            Tensor::random([b, 1, s, hd / 2], Distribution::Uniform(-3.0, 3.0), &device);
        let (cos, sin) = (angles.clone().cos(), angles.sin());
        let x: Tensor<4> =
            Tensor::random([b, s, heads, hd], Distribution::Normal(0.0, 1.0), &device)
                .swap_dims(1, 2);
        let dy: Tensor<4> =
            Tensor::random([b, heads, s, hd], Distribution::Normal(0.0, 1.0), &device);
        for interleaved in [false, true] {
            let tables = RotaryTables {
                cos: &cos,
                sin: &sin,
                interleaved,
            };
            let run = |fused: bool| {
                let x = x.clone().autodiff().require_grad();
                let y = if fused {
                    rotary(&x, tables).unwrap()
                } else {
                    rotary_composed(x.clone(), tables)
                };
                let grads = (y.clone() * dy.clone().autodiff()).sum().backward();
                (
                    host(y.without_autodiff()),
                    host(x.grad(&grads).unwrap().without_autodiff()),
                )
            };
            let (fused, composed) = (run(true), run(false));
            assert!(
                max_diff(&fused.0, &composed.0) < 1e-6,
                "interleaved {interleaved}: rotation"
            );
            assert!(
                max_diff(&fused.1, &composed.1) < 1e-6,
                "interleaved {interleaved}: gradient"
            );
        }
    }
}
