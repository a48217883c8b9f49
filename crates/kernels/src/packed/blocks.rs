//! A weight matrix kept in its GGUF blocks, unpacked to one signed byte per weight so that one
//! kernel serves every block type: `w = scale · q + min`, with one scale and min per group of
//! 32 weights (16 for Q6_K).

use formats::gguf::{GgmlType, scale_min_k4};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::rows::{BLOCK, PackedRow, PackedRows, TileCache};
use crate::error::{KernelError, Result};

/// A `[rows, cols]` row-major matrix (Hugging Face orientation: `[out, in]`).
/// `w[r][c] = scale[r, c/g] · q[r][c] + min[r, c/g]` for groups of `g` = 32 weights (16 for
/// Q6_K), computed in `f32` exactly as the dequantiser does (same operations, same order), so a
/// product with these weights equals one with the dequantised `f32` matrix up to the order of
/// the sums. The K-quants' super-block scales are folded in: a Q4_K group's scale is `d · sc`,
/// its min `−dmin · m`.
///
/// One byte per weight instead of the file's half byte (Q4): twice the bytes of Q4 to stream, a
/// third of `f32`'s, and a kernel with no bit shuffling that serves every type.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    /// Weights per scale: 32, or 16 (Q6_K).
    group: usize,
    /// `[rows, cols / group]`
    scale: Vec<f32>,
    /// `[rows, cols / group]`; zeros for the symmetric types.
    min: Vec<f32>,
    /// `[rows, cols]`
    q: Vec<i8>,
    tiles: TileCache,
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Accumulates groups: each block of the file appends its groups' scales and mins and fills
/// its weights' quants.
struct Groups {
    scale: Vec<f32>,
    min: Vec<f32>,
}

impl Groups {
    fn push(&mut self, scale: f32, min: f32) {
        self.scale.push(scale);
        self.min.push(min);
    }
}

/// Unpacks one file block (`b`) into its quants (`q`, the block's weights) and groups, with
/// the dequantiser's formulas (crates/formats/src/gguf/dequant.rs).
fn unpack(ty: GgmlType, b: &[u8], q: &mut [i8], g: &mut Groups) {
    match ty {
        GgmlType::Q8_0 => {
            g.push(f16_at(b, 0), 0.0);
            for (qi, &byte) in q.iter_mut().zip(&b[2..34]) {
                *qi = byte as i8;
            }
        }
        GgmlType::Q4_0 => {
            // `d (q − 8)`: the offset moves into the integer, exactly.
            g.push(f16_at(b, 0), 0.0);
            for (j, &byte) in b[2..18].iter().enumerate() {
                q[j] = (byte & 0x0F) as i8 - 8;
                q[j + 16] = (byte >> 4) as i8 - 8;
            }
        }
        GgmlType::Q4_1 => {
            g.push(f16_at(b, 0), f16_at(b, 2));
            for (j, &byte) in b[4..20].iter().enumerate() {
                q[j] = (byte & 0x0F) as i8;
                q[j + 16] = (byte >> 4) as i8;
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let (min, qh_at, qs_at, offset) = if ty == GgmlType::Q5_0 {
                (0.0, 2, 6, 16)
            } else {
                (f16_at(b, 2), 4, 8, 0)
            };
            g.push(f16_at(b, 0), min);
            let qh = u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
            for (j, &byte) in b[qs_at..qs_at + 16].iter().enumerate() {
                let h0 = (((qh >> j) << 4) & 0x10) as u8;
                let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                q[j] = ((byte & 0x0F) | h0) as i8 - offset;
                q[j + 16] = ((byte >> 4) | h1) as i8 - offset;
            }
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            // `d · sc · q − dmin · m` per sub-block of 32, q with a fifth bit for Q5_K.
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let scales = &b[4..16];
            let (qh, qs) = if ty == GgmlType::Q5K {
                (Some(&b[16..48]), &b[48..176])
            } else {
                (None, &b[16..144])
            };
            for (chunk, (qs, q)) in qs.chunks_exact(32).zip(q.chunks_exact_mut(64)).enumerate() {
                for half in 0..2 {
                    let (sc, m) = scale_min_k4(2 * chunk + half, scales);
                    g.push(d * sc, -(dmin * m));
                    let bit = (1u8 << half) << (2 * chunk);
                    for l in 0..32 {
                        let low = if half == 0 { qs[l] & 0x0F } else { qs[l] >> 4 };
                        let high = qh.map_or(0, |qh| if qh[l] & bit != 0 { 16 } else { 0 });
                        q[32 * half + l] = (low | high) as i8;
                    }
                }
            }
        }
        GgmlType::Q6K => {
            // `d · sc · (q − 32)` per sub-block of 16.
            let d = f16_at(b, 208);
            for half in 0..2 {
                let ql = &b[64 * half..64 * half + 64];
                let qh = &b[128 + 32 * half..128 + 32 * half + 32];
                let sc = &b[192 + 8 * half..192 + 8 * half + 8];
                let q = &mut q[128 * half..128 * half + 128];
                for l in 0..32 {
                    q[l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
                    q[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                    q[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                    q[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                }
                // Groups in weight order: weights 16 k .. 16 k + 16 use `sc[k]`.
                for &s in sc {
                    g.push(d * f32::from(s as i8), 0.0);
                }
            }
        }
        _ => {}
    }
}

impl QuantMatrix {
    /// The block types this matrix can hold without changing a weight.
    pub fn supports(ty: GgmlType) -> bool {
        use GgmlType::*;
        matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4K | Q5K | Q6K)
    }

    /// Unpacks a GGUF tensor's bytes (`rows × cols` elements of type `ty`).
    pub fn from_gguf(ty: GgmlType, bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        let (block, block_bytes) = ty.block_layout();
        let bad = |reason: String| KernelError::CannotPack {
            type_name: ty.name(),
            reason,
        };
        if !Self::supports(ty) {
            return Err(bad(
                "only Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K are kept in blocks".into(),
            ));
        }
        if !cols.is_multiple_of(block) {
            return Err(bad(format!(
                "its rows ({cols} values) are not whole blocks of {block}"
            )));
        }
        let n_blocks = rows * cols / block;
        if bytes.len() != n_blocks * block_bytes {
            return Err(bad(format!(
                "{} bytes for {n_blocks} blocks of {block_bytes}",
                bytes.len()
            )));
        }
        let group = if ty == GgmlType::Q6K { 16 } else { BLOCK };
        let n_groups = rows * cols / group;
        let mut groups = Groups {
            scale: Vec::with_capacity(n_groups),
            min: Vec::with_capacity(n_groups),
        };
        let mut q = vec![0i8; rows * cols];
        for (b, qb) in bytes
            .chunks_exact(block_bytes)
            .zip(q.chunks_exact_mut(block))
        {
            unpack(ty, b, qb, &mut groups);
        }
        Ok(QuantMatrix {
            ty,
            rows,
            cols,
            group,
            scale: groups.scale,
            min: groups.min,
            q,
            tiles: TileCache::default(),
        })
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn bytes(&self) -> usize {
        self.q.len() + 4 * (self.scale.len() + self.min.len())
    }
}

/// Row `r`'s groups and quants.
#[derive(Debug, Clone, Copy)]
pub struct QuantRow<'a> {
    pub(crate) scale: &'a [f32],
    pub(crate) min: &'a [f32],
    pub(crate) q: &'a [i8],
    /// Groups of 16 (two per block) instead of 32.
    pub(crate) halves: bool,
}

impl PackedRow for QuantRow<'_> {
    #[inline(always)]
    fn block(self, b: usize) -> [f32; BLOCK] {
        let qb: &[i8; BLOCK] = self.q[b * BLOCK..(b + 1) * BLOCK]
            .try_into()
            .unwrap_or(&[0; BLOCK]);
        let (d, m) = if self.halves {
            (
                [self.scale[2 * b], self.scale[2 * b + 1]],
                [self.min[2 * b], self.min[2 * b + 1]],
            )
        } else {
            ([self.scale[b]; 2], [self.min[b]; 2])
        };
        let mut w = [0f32; BLOCK];
        for j in 0..BLOCK {
            // Same operations as the dequantiser (`d · q + m`, not fused), so the weight is exact.
            w[j] = d[j / 16] * f32::from(qb[j]) + m[j / 16];
        }
        w
    }
}

impl PackedRows for QuantMatrix {
    type Row<'a> = QuantRow<'a>;

    fn rows(&self) -> usize {
        self.rows
    }

    fn cols(&self) -> usize {
        self.cols
    }

    #[inline(always)]
    fn row(&self, r: usize) -> QuantRow<'_> {
        let ng = self.cols / self.group;
        QuantRow {
            scale: &self.scale[r * ng..(r + 1) * ng],
            min: &self.min[r * ng..(r + 1) * ng],
            q: &self.q[r * self.cols..(r + 1) * self.cols],
            halves: self.group != BLOCK,
        }
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn dequantize_row_runs_avx512(&self, r: usize, out: &mut [f32], stride: usize) {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { dequantize_blocks_runs(self.row(r), out, stride) }
    }

    fn tile_cache(&self) -> &TileCache {
        &self.tiles
    }
}

#[cfg(target_arch = "x86_64")]
/// A block-quantised row in `f32` (the dequantiser's `d · q + m`, not fused), run `c` of 16
/// weights written at `out[c · stride ..]` (`stride ≥ 16`; 16: the row itself, more: the
/// packed GEMM's tile layout, written directly instead of through a row buffer).
#[target_feature(enable = "avx512f")]
fn dequantize_blocks_runs(row: QuantRow<'_>, out: &mut [f32], stride: usize) {
    let QuantRow {
        scale,
        min,
        q,
        halves,
    } = row;
    let group = if halves { 16 } else { 32 };
    let runs = q.len() / 16;
    assert!(q.len() == scale.len() * group && min.len() == scale.len() && stride >= 16);
    assert!(runs == 0 || out.len() >= (runs - 1) * stride + 16);
    let (qp, op) = (q.as_ptr(), out.as_mut_ptr());
    for c in 0..runs {
        let at = c * 16;
        let g = at / group;
        let (d, m) = (_mm512_set1_ps(scale[g]), _mm512_set1_ps(min[g]));
        // SAFETY: `at + 16 <= q.len()` and `c · stride + 16 <= out.len()` (asserted above).
        unsafe {
            let q8 = _mm_loadu_si128(qp.add(at).cast());
            let qf = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8));
            _mm512_storeu_ps(op.add(c * stride), _mm512_add_ps(_mm512_mul_ps(d, qf), m));
        }
    }
}
