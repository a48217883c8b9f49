//! Rotary position embeddings as a config describes them: the pair layout of a file's weights,
//! the frequency scaling, and the inverse frequencies transformers computes from them.

use serde::{Deserialize, Serialize};

/// How the two halves of each rotary pair are laid out inside a head.
///
/// Hugging Face checkpoints rotate `(x[i], x[i + d/2])` ("half split", `rotate_half`). GGUF files
/// for llama store Q and K permuted so that ggml can rotate adjacent pairs `(x[2i], x[2i + 1])`
/// ("interleaved"). Both give the same attention scores with their own weights, so the loader
/// keeps the file's weights untouched and tells the model which layout they use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RopeLayout {
    #[default]
    HalfSplit,
    Interleaved,
}

/// Frequency scaling (`rope_scaling`): Llama 3's (`rope_type: "llama3"`), or linear (every
/// frequency divided by `factor`: Gemma 3's global layers from 4B up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "default_original_max")]
    pub original_max_position_embeddings: usize,
}

/// The scaling types [`inv_freq`] applies.
pub const SUPPORTED_SCALING: [&str; 3] = ["default", "llama3", "linear"];

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn default_original_max() -> usize {
    8192
}

impl RopeScaling {
    /// Whether the factors make sense for the scaling type.
    pub(crate) fn is_valid(&self) -> bool {
        let factor_ok = self.factor.is_finite() && self.factor > 0.0;
        match self.rope_type.as_str() {
            "llama3" => {
                factor_ok
                    && self.low_freq_factor.is_finite()
                    && self.high_freq_factor.is_finite()
                    && self.low_freq_factor > 0.0
                    && self.high_freq_factor > self.low_freq_factor
                    && self.original_max_position_embeddings > 0
            }
            "linear" => factor_ok,
            _ => true,
        }
    }
}

/// The rotary inverse frequencies `theta^(-2i/d)` of a head of width `head_dim`, with `scaling`
/// and then GGUF's per-frequency divisors (`rope_freqs.weight`) applied, as transformers computes
/// them (in `f64`, then rounded).
pub fn inv_freq(
    theta: f64,
    head_dim: usize,
    scaling: Option<&RopeScaling>,
    freq_factors: Option<&[f32]>,
) -> Vec<f64> {
    let d = head_dim;
    let mut inv: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / d as f64))
        .collect();
    match scaling {
        Some(s) if s.rope_type == "llama3" => {
            let old = s.original_max_position_embeddings as f64;
            let low_wavelen = old / s.low_freq_factor;
            let high_wavelen = old / s.high_freq_factor;
            for f in inv.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= s.factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                }
            }
        }
        Some(s) if s.rope_type == "linear" => inv.iter_mut().for_each(|f| *f /= s.factor),
        _ => {}
    }
    if let Some(factors) = freq_factors {
        for (f, &k) in inv.iter_mut().zip(factors) {
            *f /= f64::from(k);
        }
    }
    inv
}
