//! How much one forward pass takes on: the tokens a batched call puts in one pass, and the
//! memory a pass would need, refused before it allocates.

use llama::LlamaConfig;

use crate::error::{Result, SubspaceError};
use crate::site::Component;

/// The most tokens (rows × padded length) one forward pass of a batched call takes: a block over
/// them runs in a fraction of a second on 2 cores, so a stop is read often enough, and their
/// activations stay small. Bigger batches are split into passes of this size.
pub const TOKENS_PER_FORWARD: usize = 2048;

/// Rows of `len` tokens in one forward pass of a batched call (at least one).
pub(crate) fn rows_per_forward(len: usize) -> usize {
    (TOKENS_PER_FORWARD / len.max(1)).max(1)
}

/// Bytes of memory the system can still give (Linux `MemAvailable`); `None` elsewhere.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses a forward pass that would not fit in memory, before it allocates: `batch` rows
/// of `len` tokens; `keep_trace` when every layer's components are kept (a trace).
/// The estimate counts what grows with the input: one layer's attention scores and
/// probabilities (`batch × heads × len² × 2`), the mask, the stream and MLP activations, and
/// the kept trace (`layers × batch × len ×` the widths of every [`crate::Component`]: four
/// residual vectors, queries, keys, values, head outputs and the MLP's hidden activation),
/// all `f32`.
pub fn check_memory(c: &LlamaConfig, batch: usize, len: usize, keep_trace: bool) -> Result<()> {
    let Some(available) = available_memory() else {
        return Ok(());
    };
    let (b, s) = (batch as u128, len as u128);
    let attention = b * c.num_attention_heads as u128 * s * s * 2 + b * s * s;
    let activations = b * s * (8 * c.hidden_size as u128 + 3 * c.intermediate_size as u128);
    let trace = if keep_trace {
        let widths: usize = Component::ALL.iter().map(|comp| comp.width(c)).sum();
        c.num_hidden_layers as u128 * b * s * widths as u128
    } else {
        0
    };
    let need = (attention + activations + trace) * 4;
    if need > available as u128 {
        return Err(SubspaceError::TooBigForMemory {
            what: format!(
                "a forward pass of {batch} prompt(s) of {len} tokens{}",
                if keep_trace {
                    " keeping every layer"
                } else {
                    ""
                }
            ),
            need_mib: u64::try_from(need >> 20).unwrap_or(u64::MAX),
            available_mib: available >> 20,
        });
    }
    Ok(())
}
