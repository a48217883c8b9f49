//! A weight matrix kept in its GGUF blocks of 32, unpacked to one signed byte per weight so that
//! one kernel serves every block type: `w = scale · q + min` per block.

use formats::gguf::GgmlType;

use crate::error::{LlamaError, Result};

/// Weights per block (every block type kept here has 32).
pub const BLOCK: usize = 32;

/// A `[rows, cols]` row-major matrix (Hugging Face orientation: `[out, in]`) in blocks of 32
/// along each row. `w[r][c] = scale[r, c/32] · q[r][c] + min[r, c/32]`, computed in `f32` exactly
/// as the dequantiser does (same operations, same order), so a product with these weights equals
/// one with the dequantised `f32` matrix up to the order of the sums.
///
/// One byte per weight instead of the file's half byte (Q4): twice the bytes of Q4 to stream, a
/// third of `f32`'s, and a kernel with no nibble shuffling that also serves Q8_0.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    rows: usize,
    cols: usize,
    /// `[rows, cols / 32]`
    scale: Vec<f32>,
    /// `[rows, cols / 32]`; zeros for the symmetric types (Q4_0, Q8_0).
    min: Vec<f32>,
    /// `[rows, cols]`
    q: Vec<i8>,
}

impl QuantMatrix {
    /// The block types this matrix can hold without changing a weight.
    pub fn supports(ty: GgmlType) -> bool {
        matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
    }

    /// Unpacks a GGUF tensor's bytes (`rows × cols` elements of type `ty`).
    pub fn from_gguf(ty: GgmlType, bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        let (block, block_bytes) = ty.block_layout();
        let bad = |why: String| {
            LlamaError::Input(format!("cannot keep a {ty:?} tensor in blocks: {why}"))
        };
        if !Self::supports(ty) || block != BLOCK {
            return Err(bad("only Q4_0, Q4_1 and Q8_0 are kept quantised".into()));
        }
        if !cols.is_multiple_of(BLOCK) {
            return Err(bad(format!(
                "its rows ({cols} values) are not whole blocks of 32"
            )));
        }
        let n_blocks = rows * cols / BLOCK;
        if bytes.len() != n_blocks * block_bytes {
            return Err(bad(format!(
                "{} bytes for {n_blocks} blocks of {block_bytes}",
                bytes.len()
            )));
        }
        let mut scale = Vec::with_capacity(n_blocks);
        let mut min = Vec::with_capacity(n_blocks);
        let mut q = vec![0i8; rows * cols];
        let f16_at = |b: &[u8], at: usize| half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
        for (b, qb) in bytes
            .chunks_exact(block_bytes)
            .zip(q.chunks_exact_mut(BLOCK))
        {
            scale.push(f16_at(b, 0));
            match ty {
                GgmlType::Q8_0 => {
                    min.push(0.0);
                    for (qi, &byte) in qb.iter_mut().zip(&b[2..34]) {
                        *qi = byte as i8;
                    }
                }
                GgmlType::Q4_0 => {
                    // `d (q − 8)`: the offset moves into the integer, exactly.
                    min.push(0.0);
                    for (j, &byte) in b[2..18].iter().enumerate() {
                        qb[j] = (byte & 0x0F) as i8 - 8;
                        qb[j + 16] = (byte >> 4) as i8 - 8;
                    }
                }
                _ => {
                    // Q4_1: `d q + m`.
                    min.push(f16_at(b, 2));
                    for (j, &byte) in b[4..20].iter().enumerate() {
                        qb[j] = (byte & 0x0F) as i8;
                        qb[j + 16] = (byte >> 4) as i8;
                    }
                }
            }
        }
        Ok(QuantMatrix {
            rows,
            cols,
            scale,
            min,
            q,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `r`'s blocks: `(scales, mins, quants)`.
    #[inline(always)]
    pub(crate) fn row(&self, r: usize) -> (&[f32], &[f32], &[i8]) {
        let nb = self.cols / BLOCK;
        (
            &self.scale[r * nb..(r + 1) * nb],
            &self.min[r * nb..(r + 1) * nb],
            &self.q[r * self.cols..(r + 1) * self.cols],
        )
    }

    /// Row `r` in `f32`, written into `out` (`cols` values).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (scale, min, q) = self.row(r);
        for (b, (ob, qb)) in out
            .chunks_exact_mut(BLOCK)
            .zip(q.chunks_exact(BLOCK))
            .enumerate()
        {
            for (o, &qi) in ob.iter_mut().zip(qb) {
                *o = scale[b] * f32::from(qi) + min[b];
            }
        }
    }

    /// The whole matrix in `f32`, row-major `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            self.dequantize_row(r, row);
        }
        out
    }
}
